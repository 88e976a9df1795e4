"""Voice activity detection with silero-vad (PyPI ``silero-vad``; its weights ship in the wheel).

Two uses: :func:`speech_segments` cuts a long recording at speech boundaries for batch transcription (audio
without speech is never decoded, so noise, tones and music give no words), and :class:`StreamGate` follows a live
stream so that a segment in which nobody spoke shows and commits nothing.
"""

from __future__ import annotations

import collections
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from asr.audio import SAMPLE_RATE

# silero_vad's model module calls torch.set_num_threads(1) when it is imported: every command that imports this one
# decoded on one core (asr transcribe of 8 real clips with Whisper, beam 5: 12.3 s against 7.4 s with two). The
# process keeps the count it had.
_threads = torch.get_num_threads()
from silero_vad import load_silero_vad  # noqa: E402

torch.set_num_threads(_threads)

WINDOW = 512  # samples per silero-vad decision at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window silero-vad sees with each window
THRESHOLD = 0.5


def load_vad():
    """The silero-vad network (TorchScript, CPU), loaded once per process and shared: its recurrent state is not
    kept inside but passed explicitly (:class:`VadState`), so one model serves every stream, batched."""
    if not _LOADED:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice is not the user's business
            warnings.simplefilter("ignore")
            _LOADED.append(load_silero_vad()._model)  # the 16 kHz network: (context + window, state) -> (prob, state)
    return _LOADED[0]


_LOADED: list = []
shared_vad = load_vad  # the model batch transcription passes around (kept as a name for callers)


@dataclass
class VadState:
    """silero-vad's recurrent state of B streams: ``state (2, B, 128)`` and the last ``context (B, 64)`` samples."""

    state: torch.Tensor
    context: torch.Tensor

    @staticmethod
    def zeros(batch: int = 1) -> "VadState":
        return VadState(torch.zeros(2, batch, 128), torch.zeros(batch, CONTEXT))


@torch.inference_mode()
def window_probs(model, windows: torch.Tensor, st: VadState) -> tuple[torch.Tensor, VadState]:
    """Speech probability of ``windows (B, K, 512)``: K windows of each of B streams in order, one batched network
    call per window index. Returns ``(probs (B, K), new state)``."""
    probs, state, context = [], st.state, st.context
    for k in range(windows.size(1)):
        x = torch.cat([context, windows[:, k]], 1)  # (B, 64 + 512)
        p, state = model(x, state)
        probs.append(p.reshape(-1))
        context = x[:, -CONTEXT:]
    out = torch.stack(probs, 1) if probs else torch.zeros(windows.size(0), 0)
    return out, VadState(state, context)


def speech_probabilities(audio: np.ndarray, model=None) -> np.ndarray:
    """The probability of speech in each 32-ms window of 16 kHz ``audio``."""
    return speech_probabilities_batch([audio], model)[0]


def speech_probabilities_batch(audios: list[np.ndarray], model=None) -> list[np.ndarray]:
    """:func:`speech_probabilities` of several recordings in one batched pass (zeros after the shorter ones'
    ends are run but not returned; a recording's windows see only its own past, so each result equals its own)."""
    counts = [len(a) // WINDOW for a in audios]
    K = max(counts, default=0)
    x = np.zeros((len(audios), K * WINDOW), np.float32)
    for i, (a, n) in enumerate(zip(audios, counts)):
        x[i, : n * WINDOW] = a[: n * WINDOW]
    probs, _ = window_probs(model or load_vad(), torch.from_numpy(x).view(len(audios), K, WINDOW),
                            VadState.zeros(len(audios)))
    return [probs[i, :n].numpy() for i, n in enumerate(counts)]


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
                    split=None, probs: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Cut a recording into ``[(start, end)]`` sample ranges of speech of at most ``max_segment`` seconds: speech
    regions closer than ``gap`` seconds are joined while they fit; a longer region is cut by ``split(audio,
    max_segment)`` (the energy cut of :func:`asr.inference.transcribe.split_points`). No speech: no segment.
    ``probs``: its :func:`speech_probabilities` when already computed (batched with other recordings)."""
    probs = speech_probabilities(audio, model) if probs is None else probs
    regions = speech_regions(probs, total=len(audio))
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
    """Speech seen by silero-vad in a live stream: :meth:`accept` queues the stream's 16 kHz samples as they come;
    :func:`decide` runs the network over the queued windows of many gates at once; :meth:`speech_between` says
    whether any decided window between two stream times (seconds) held speech. The stream calls
    :meth:`forget_before` as each segment begins, so it keeps only the decisions of the running segment and of audio
    not yet decoded: memory stays flat however long the stream runs."""

    def __init__(self, threshold: float = THRESHOLD):
        self.threshold = threshold
        self.pending: list[np.ndarray] = []  # samples not yet decided
        self.pending_n = 0
        self.vad = VadState.zeros(1)
        self.windows = 0  # windows decided so far
        self.speech: collections.deque[int] = collections.deque()  # windows with speech, oldest first

    def accept(self, samples: np.ndarray) -> None:
        self.pending.append(samples.astype(np.float32, copy=False))
        self.pending_n += samples.size

    def _take_windows(self) -> np.ndarray:
        """The whole windows queued ``(K, 512)``; the remainder stays queued."""
        x = np.concatenate(self.pending) if len(self.pending) > 1 else (self.pending[0] if self.pending else
                                                                        np.zeros(0, np.float32))
        n = len(x) // WINDOW
        rest = x[n * WINDOW:]
        self.pending, self.pending_n = ([rest] if rest.size else []), rest.size
        return x[: n * WINDOW].reshape(n, WINDOW)

    def forget_before(self, seconds: float) -> None:
        """Drop the decisions of windows that end before ``seconds``."""
        first = int(seconds * SAMPLE_RATE / WINDOW)
        while self.speech and self.speech[0] < first:
            self.speech.popleft()

    def skip_to(self, seconds: float) -> None:
        """A segment begins at ``seconds``: the decisions before it are dropped (:meth:`forget_before`), and so are
        the queued windows before it that were never decided (the stream skipped the network while its last segment
        had heard speech already); after such a skip the network starts afresh, as on a new stream."""
        self.forget_before(seconds)
        skip = min(int(seconds * SAMPLE_RATE / WINDOW) - self.windows, self.pending_n // WINDOW)
        if skip <= 0:
            return
        x = np.concatenate(self.pending)[skip * WINDOW:]
        self.pending, self.pending_n = ([x] if x.size else []), x.size
        self.windows += skip
        self.vad = VadState.zeros(1)

    def speech_between(self, start: float, end: float) -> bool:
        """Whether a decided window between ``start`` and ``end`` seconds held speech (call :func:`decide` first)."""
        a, b = int(start * SAMPLE_RATE / WINDOW), int(end * SAMPLE_RATE / WINDOW) + 1
        return any(a <= i < b for i in self.speech)


def decide(gates: list[StreamGate]) -> None:
    """Run silero-vad over every gate's queued windows, the gates batched (one network call per window index)."""
    work = [(g, g._take_windows()) for g in gates if g.pending_n >= WINDOW]
    if not work:
        return
    model = load_vad()
    # gates with equal window counts advance together (in a server most do: one chunk each)
    by_count: dict[int, list] = {}
    for g, w in work:
        by_count.setdefault(len(w), []).append((g, w))
    for n, group in by_count.items():
        x = torch.from_numpy(np.stack([w for _, w in group]))  # (B, n, 512)
        st = VadState(torch.cat([g.vad.state for g, _ in group], 1), torch.cat([g.vad.context for g, _ in group], 0))
        probs, st = window_probs(model, x, st)
        for i, (g, _) in enumerate(group):
            g.vad = VadState(st.state[:, i:i + 1], st.context[i:i + 1])
            g.speech.extend(g.windows + j for j, p in enumerate(probs[i].tolist()) if p >= g.threshold)
            g.windows += n


__all__ = ["load_vad", "shared_vad", "decide", "window_probs", "VadState", "speech_probabilities", "speech_probabilities_batch", "speech_regions", "speech_segments", "StreamGate", "WINDOW",
           "THRESHOLD"]
