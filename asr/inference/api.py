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
from dataclasses import dataclass, replace

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, as_samples, load_audio, resample
from asr.errors import UserError
from asr.inference import model_dir
from asr.inference.model_dir import LoadedModel
from asr.inference.punctuate import cached_punctuator
from asr.inference.streaming import live_recognizer, streaming_options
from asr.inference.transcribe import transcribe_files
from asr.inference.vad import shared_vad
from asr.results import Result, Segment
from asr.search.methods import available_methods, check_lms, default_method
from asr.search.options import decode_options


def _samples(audio, sample_rate: int | None) -> tuple[np.ndarray, str]:
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio), str(audio)
    rate = SAMPLE_RATE if sample_rate is None else sample_rate
    x = as_samples(audio, rate)
    return (resample(x, int(rate)) if rate != SAMPLE_RATE else x), "<array>"


def model_device(model) -> torch.device:
    """Where a model's weights are (the CPU for an ONNX model)."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else iter(())
    return next(params, torch.empty(0)).device


def transcribe(loaded: LoadedModel, audio, decoder: str = "auto", sample_rate: int | None = None,
               max_segment: float = 20.0, lm_dir: str | os.PathLike | None = None, hotwords=None, vad: bool = True,
               punctuate: bool = True, **options) -> Result:
    """One recording (a path or samples) -> :class:`asr.results.Result`. ``decoder``: any of
    :data:`asr.search.methods.METHODS` the model has; ``lm_dir``: an ``asr lm train`` directory (its card's tuned
    weights apply, as with ``asr transcribe --lm``); ``hotwords``: a file or ``[(phrase, boost), ...]``; other
    keyword arguments are :class:`asr.search.options.DecodeOptions` fields (``beam=``, ``ctc_weight=``...).
    ``vad``: cut at speech boundaries found by silero-vad and decode speech only (else cut at quiet points);
    ``punctuate``: cased, punctuated text (``result.raw_text`` and each word's ``word`` keep the recognizer's own)."""
    samples, _ = _samples(audio, sample_rate)
    decoder = default_method(loaded.model) if decoder == "auto" else decoder
    have = available_methods(loaded.model, with_lm=lm_dir is not None)
    if decoder not in have:
        raise UserError(f"decoder {decoder!r} is not available for this model (it has: {', '.join(have)})")
    opts = decode_options(lm_dir, hotwords, **options)
    check_lms(loaded.model, loaded.tokenizer, opts, [decoder])
    out: list[Result] = []
    summary = transcribe_files(loaded, [("audio", samples)], decoder, opts, max_segment=max_segment,
                               device=str(model_device(loaded.model)), on_result=out.append,
                               vad=shared_vad() if vad else None, punctuator=cached_punctuator() if punctuate else None)
    if summary.failed:
        raise UserError(summary.failed[0])
    return replace(out[0], id="", path=None)


class LiveSession:
    """A streaming session over one audio source (see :meth:`Model.stream`)."""

    def __init__(self, loaded: LoadedModel, punctuate: bool = True, vad: bool = True, **options):
        self._rec = live_recognizer(loaded, streaming_options(vad=vad, **options),
                               punctuator=cached_punctuator() if punctuate else None)
        self._stream = self._rec.create_stream()
        self._segments: list[Segment] = []  # every committed segment (the stream itself keeps only the last ones)

    def feed(self, samples, sample_rate: int = SAMPLE_RATE) -> str:
        """Add audio (any block size, any rate); decode what is ready; commit at endpoints. Returns the text so
        far: committed (never changes) and the running segment's tentative tail. A long block (an hour in one
        call) is decoded second by second, in flat memory."""
        if self._stream.finished:
            raise UserError("this live session has finished: start another with model.stream()")
        x = as_samples(samples, sample_rate, "<stream>", allow_empty=True)
        step = int(sample_rate)
        for i in range(0, x.size, step):
            self._stream.accept_waveform(x[i:i + step], sample_rate)
            self._run()
        return self._stream.result.text

    def _run(self) -> None:
        self._segments += self._rec.decode_ready(self._stream)

    @property
    def committed(self) -> str:
        return self._stream.result.committed

    @property
    def tentative(self) -> str:
        return self._stream.result.tentative

    def finish(self) -> list[Segment]:
        """No more audio: decode the rest, commit it; returns every committed segment of the session."""
        if self._stream.finished:
            return list(self._segments)
        self._stream.input_finished()
        self._run()  # to the end: the last segment is committed
        return list(self._segments)


@dataclass(frozen=True)
class Model(LoadedModel):
    """A loaded model with the one-call API (what :func:`asr.load_model` returns)."""

    def transcribe(self, audio, decoder: str = "auto", **kwargs) -> Result:
        """A path or samples -> :class:`asr.results.Result` (text, segments, words); see :func:`transcribe`."""
        return transcribe(self, audio, decoder, **kwargs)

    def stream(self, **options) -> LiveSession:
        """A streaming session; ``options``: :class:`asr.inference.streaming.StreamingOptions` fields
        (``chunk=``, ``final=``...), decoding options (``lm_dir=``, ``hotwords=``, ``beam=``...), ``punctuate=``
        (committed text cased and punctuated, default on) and ``vad=`` (silero-vad gate, default on)."""
        return LiveSession(self, **options)


def load_model(path, device: str = "cpu", quantize: str | None = None) -> Model:
    """A model directory or a bundled model (``demo``) -> :class:`Model` (see
    :func:`asr.inference.model_dir.load_model`)."""
    m = model_dir.load_model(path, device, quantize)
    return Model(m.model, m.tokenizer, m.config, m.path)


__all__ = ["Model", "LiveSession", "Result", "Segment", "load_model", "transcribe"]
