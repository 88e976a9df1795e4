"""Voice activity detection with silero-vad (PyPI ``silero-vad``; its weights ship in the wheel).

Two uses: :func:`speech_segments` cuts a long recording at speech boundaries for batch transcription (audio
without speech is never decoded, so noise, tones and music give no words), and :class:`StreamGate` follows a live
stream so that a segment in which nobody spoke shows and commits nothing.
"""

from __future__ import annotations

import collections
import copy
import warnings

import numpy as np
import torch
from silero_vad import load_silero_vad

from asr.audio import SAMPLE_RATE

WINDOW = 512  # samples per silero-vad decision at 16 kHz (32 ms)
THRESHOLD = 0.5


def load_vad():
    """A silero-vad model (TorchScript, CPU). It keeps its recurrent state inside: one per audio stream (a copy of
    one loaded model, 4 ms)."""
    if not _LOADED:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice is not the user's business
            warnings.simplefilter("ignore")
            _LOADED.append(load_silero_vad())
    return copy.deepcopy(_LOADED[0])


_LOADED: list = []


_SHARED = []


def shared_vad():
    """One silero-vad model for batch work in this process (:func:`speech_probabilities` resets its state)."""
    if not _SHARED:
        _SHARED.append(load_vad())
    return _SHARED[0]


def _window_probs(model, x: np.ndarray) -> list[float]:
    """Speech probability of each whole 32-ms window of 16 kHz ``x``; the model's recurrent state carries on."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.inference_mode():
        return [float(model(t[i * WINDOW:(i + 1) * WINDOW], SAMPLE_RATE)) for i in range(len(t) // WINDOW)]


def speech_probabilities(audio: np.ndarray, model=None) -> np.ndarray:
    """The probability of speech in each 32-ms window of 16 kHz ``audio``."""
    model = model or load_vad()
    model.reset_states()
    return np.asarray(_window_probs(model, audio), dtype=np.float32)


def speech_regions(probs: np.ndarray, threshold: float = THRESHOLD, min_speech: float = 0.25,
                   min_silence: float = 0.3, pad: float = 0.2, total: int | None = None) -> list[tuple[int, int]]:
    """Speech as ``[(start, end)]`` sample ranges from per-window probabilities (silero's hysteresis: speech starts
    at ``threshold`` and ends below ``threshold - 0.15`` for ``min_silence`` seconds), each padded by ``pad``."""
    win_s = WINDOW / SAMPLE_RATE
    regions, start, quiet = [], None, 0
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, quiet = i, 0
        elif p < threshold - 0.15:
            quiet += 1
            if quiet * win_s >= min_silence:
                regions.append((start, i - quiet + 1))
                start = None
        else:
            quiet = 0
    if start is not None:
        regions.append((start, len(probs)))
    total = total if total is not None else len(probs) * WINDOW
    padn = int(pad * SAMPLE_RATE)
    out = []
    for a, b in regions:
        if (b - a) * win_s < min_speech:
            continue
        a, b = max(0, a * WINDOW - padn), min(total, b * WINDOW + padn)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def speech_segments(audio: np.ndarray, max_segment: float = 20.0, model=None, gap: float = 1.0,
                    split=None) -> list[tuple[int, int]]:
    """Cut a recording into ``[(start, end)]`` sample ranges of speech of at most ``max_segment`` seconds: speech
    regions closer than ``gap`` seconds are joined while they fit; a longer region is cut by ``split(audio,
    max_segment)`` (the energy cut of :func:`asr.inference.transcribe.split_points`). No speech: no segment."""
    regions = speech_regions(speech_probabilities(audio, model), total=len(audio))
    limit, joined = int(max_segment * SAMPLE_RATE), []
    for a, b in regions:
        if joined and a - joined[-1][1] <= gap * SAMPLE_RATE and b - joined[-1][0] <= limit:
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    out = []
    for a, b in joined:
        if b - a <= limit or split is None:
            out.append((a, b))
        else:
            out += [(a + x, a + y) for x, y in split(audio[a:b], max_segment)]
    return out


class StreamGate:
    """Speech seen by silero-vad in a live stream: :meth:`accept` takes the stream's 16 kHz samples as they come,
    :meth:`speech_between` says whether any window between two stream times (seconds) held speech. The stream
    calls :meth:`forget_before` as each segment begins, so it keeps only the decisions of the running segment and
    of audio not yet decoded: memory stays flat however long the stream runs."""

    def __init__(self, threshold: float = THRESHOLD):
        self.model = load_vad()
        self.threshold = threshold
        self.pending = np.zeros(0, np.float32)
        self.windows = 0  # windows decided so far
        self.speech: collections.deque[int] = collections.deque()  # windows with speech, oldest first

    def accept(self, samples: np.ndarray) -> None:
        x = np.concatenate([self.pending, samples.astype(np.float32, copy=False)])
        n = len(x) // WINDOW
        if n:
            probs = _window_probs(self.model, x[: n * WINDOW])
            self.speech.extend(self.windows + i for i, p in enumerate(probs) if p >= self.threshold)
            self.windows += n
        self.pending = x[n * WINDOW:]

    def forget_before(self, seconds: float) -> None:
        """Drop the decisions of windows that end before ``seconds``."""
        first = int(seconds * SAMPLE_RATE / WINDOW)
        while self.speech and self.speech[0] < first:
            self.speech.popleft()

    def speech_between(self, start: float, end: float) -> bool:
        a, b = int(start * SAMPLE_RATE / WINDOW), int(end * SAMPLE_RATE / WINDOW) + 1
        return any(a <= i < b for i in self.speech)


__all__ = ["load_vad", "shared_vad", "speech_probabilities", "speech_regions", "speech_segments", "StreamGate", "WINDOW",
           "THRESHOLD"]
