"""The one-call Python API behind :func:`asr.load_model`:

    import asr
    model = asr.load_model("demo")
    result = model.transcribe("talk.wav")                     # or a float array (16 kHz unless sample_rate=)
    print(result.text)
    for seg in result.segments:                               # long audio is cut at quiet points (<= 20 s)
        print(seg.start, seg.end, seg.text)
    for w in result.words:                                    # word timings and confidences
        print(w.word, w.start, w.end)

    live = model.stream()                                     # streaming: feed any block size, any rate
    for block in blocks:
        partial = live.feed(block, sample_rate=48000)         # committed + tentative text so far
    segments = live.finish()                                  # the rest committed (second pass)

Everything here is a thin layer over :mod:`asr.inference.transcribe` (the same segmentation and batching as
``asr transcribe``), :mod:`asr.inference.decode` and :mod:`asr.inference.streaming`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, check_samples, load_audio, resample, to_mono
from asr.search.align import Word


@dataclass(frozen=True)
class Segment:
    text: str
    start: float  # seconds
    end: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Result:
    text: str
    segments: tuple[Segment, ...]
    words: tuple[Word, ...]
    duration: float  # seconds of audio

    def as_dict(self) -> dict:
        return {"text": self.text, "duration": round(self.duration, 3),
                "segments": [{"text": s.text, "start": round(s.start, 3), "end": round(s.end, 3)} for s in self.segments],
                "words": [w.as_dict() for w in self.words]}


def _samples(audio, sample_rate: int | None) -> tuple[np.ndarray, str]:
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio), str(audio)
    x = np.asarray(audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio, dtype=np.float32)
    if x.ndim == 2:  # (samples, channels) or (channels, samples): the longer axis is time
        x = to_mono(x if x.shape[0] >= x.shape[1] else x.T)
    if x.ndim != 1:
        raise ValueError(f"audio must be a path or a 1-D / 2-D array, not shape {x.shape}")
    if sample_rate is None:
        sample_rate = SAMPLE_RATE
    x = check_samples(x, "<array>")
    return (resample(x, sample_rate) if sample_rate != SAMPLE_RATE else x), "<array>"


def transcribe(lm, audio, decoder: str = "ctc_greedy", sample_rate: int | None = None, max_segment: float = 20.0,
               lm_dir: str | os.PathLike | None = None, hotwords=None, **options) -> Result:
    """One recording (a path or samples) -> :class:`Result`. ``decoder``: any of :data:`asr.inference.decode.METHODS`
    the model has; ``lm_dir``: an ``asr lm train`` directory; ``hotwords``: a file or ``[(phrase, boost), ...]``;
    other keyword arguments are :class:`asr.inference.decode.DecodeOptions` fields (``beam=``, ``ctc_weight=``...)."""
    from asr.inference.decode import DecodeOptions, available_methods
    from asr.search.hotwords import load_hotwords, parse_hotwords
    from asr.inference.transcribe import transcribe_files

    samples, _ = _samples(audio, sample_rate)
    have = available_methods(lm.model, with_lm=lm_dir is not None)
    if decoder not in have:
        raise ValueError(f"decoder {decoder!r} is not available for this model (it has: {', '.join(have)})")
    if isinstance(hotwords, (str, os.PathLike)):
        hotwords = load_hotwords(hotwords)
    elif hotwords:  # phrases, or (phrase, boost) pairs: normalised and checked as a file's lines are
        hotwords = parse_hotwords("\n".join(h if isinstance(h, str) else f"{h[0]} {float(h[1])}" for h in hotwords))
    opts = DecodeOptions(**{"lm": str(lm_dir) if lm_dir else "", "hotwords": tuple(hotwords or ()), **options})
    device = str(next(lm.model.parameters()).device) if isinstance(lm.model, torch.nn.Module) else "cpu"
    out: list = []
    summary = transcribe_files(lm, [("audio", samples)], decoder, opts, max_segment=max_segment, device=device,
                               on_result=out.append)
    if summary.failed:
        raise ValueError(summary.failed[0])
    segments = tuple(Segment(t.text, t.words[0].start if t.words else a, t.words[-1].end if t.words else b, t.words)
                     for a, b, t in out[0].segments if t.text.strip())
    words = tuple(w for s in segments for w in s.words)
    return Result(" ".join(s.text for s in segments), segments, words, len(samples) / SAMPLE_RATE)


class LiveSession:
    """A streaming session over one audio source (see :meth:`asr.inference.model_dir.LoadedModel.stream`)."""

    def __init__(self, lm, **options):
        from asr.inference.streaming import Recognizer, StreamingOptions

        self._rec = Recognizer(lm, StreamingOptions(**options))
        self._stream = self._rec.create_stream()

    def feed(self, samples, sample_rate: int = SAMPLE_RATE) -> str:
        """Add audio (any block size, any rate); decode what is ready; commit at endpoints. Returns the text so
        far: committed (never changes) and the running segment's tentative tail."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._stream.accept_waveform(sample_rate, x)
        self._run()
        return self._stream.result.text

    def _run(self) -> None:
        with torch.inference_mode():
            while self._rec.is_ready(self._stream):
                self._rec.decode([self._stream])
                if self._stream.is_endpoint:
                    self._rec.finalize(self._stream)

    @property
    def committed(self) -> str:
        return self._stream.result.committed

    @property
    def tentative(self) -> str:
        return self._stream.result.tentative

    def finish(self) -> list[Segment]:
        """No more audio: decode the rest, commit it; returns every committed segment of the session."""
        self._stream.input_finished()
        self._run()
        self._rec.finalize(self._stream)
        return [Segment(s.text, s.start, s.end, tuple(s.words)) for s in self._stream.result.segments]


__all__ = ["Result", "Segment", "LiveSession", "transcribe"]
