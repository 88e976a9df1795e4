"""Committing live segments: the second pass of a segment that ended, as a job that reads nothing of its stream.

When an endpoint fires, the recognizer takes what the second pass needs from the stream (:class:`EndedSegment`:
the partial's best path, the CTC log-probs, the encoder output or the audio, whether the VAD heard speech), the
stream begins its next segment at once, and the job runs where the :class:`Committer` says: inline (the result is
there when it returns: the live loop as it always was) or on one commit thread of its own, so that a slow second
pass (Whisper's decoder over a segment: 0.5-2 s on 2 cores) never holds up the next chunk's partials. Either way
the results land in the stream in the order its segments ended (:meth:`asr.inference.streaming.Stream.land`), on the
thread that decodes the stream: no stream state is written from the commit thread.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from asr.audio import SAMPLE_RATE
from asr.features import features
from asr.inference.decode import decode_features, segment_from_tokens
from asr.inference.punctuate import punctuate_segments
from asr.results import Captions, Segment
from asr.search.methods import search
from asr.search.options import DecodeOptions


@dataclass(frozen=True)
class EndedSegment:
    """What a second pass needs of a segment that ended, taken from its stream when it ended."""
    tokens: tuple[int, ...]  # the partial's best path (a light commit commits it)
    log_probs: torch.Tensor  # (T, V) the streaming model's CTC log-probs over the segment
    enc: torch.Tensor | None  # (T, D) its encoder output (a pass of the streaming model itself; else None)
    audio: np.ndarray | None  # its 16 kHz samples (a final model's pass; else None)
    start: float  # stream seconds
    end: float
    heard: bool  # silero-vad heard speech in it (or there is no VAD gate)


@dataclass(frozen=True)
class PendingCommit:
    """A segment that ended and waits for its second pass: ``job`` (a Future of ``(segments, seconds)``, one batch)
    holds its result at ``index``."""
    job: Future
    index: int
    partial: str  # the segment's partial text when it ended: shown until the commit lands
    paused: bool  # it ended at a pause, not at the maximum length (punctuation: a sentence may end there)
    last: bool  # the stream's last segment: the stream has ended when it lands
    closed_at: float  # time.perf_counter() when it ended

    def outcome(self) -> tuple[Segment | None, float]:
        """The committed segment (None: nothing to commit) and the job's compute seconds (its share of the batch);
        waits for the job; raises what the job raised."""
        segs, seconds = self.job.result()
        return segs[self.index], seconds / len(segs)


class Committer:
    """Runs second-pass jobs, in the order submitted: inline (``background`` False) or on one thread of their own.
    ``backlog``: jobs submitted and not finished (a caller commits light, without second passes, beyond a limit)."""

    def __init__(self, background: bool = False):
        self.background = background
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="asr-commit") if background else None
        self._lock = threading.Lock()
        self.backlog = 0

    def submit(self, job: Callable[[], list[Segment | None]], inline: bool = False) -> Future:
        """A Future of ``(job(), compute seconds)``. Run inline (no commit thread, or ``inline``: a job with no second
        pass to wait for) it is already done, and what ``job`` raises, raises here."""
        if self._pool is None or inline:
            ran: Future = Future()
            ran.set_result(_timed(job))
            return ran
        with self._lock:
            self.backlog += 1
        fut = self._pool.submit(_timed, job)
        fut.add_done_callback(self._finished)
        return fut

    @staticmethod
    def done(segs: list[Segment | None]) -> Future:
        """A job that has nothing to compute: ``segs`` (e.g. segments with no audio decoded)."""
        fut: Future = Future()
        fut.set_result((segs, 0.0))
        return fut

    def _finished(self, _fut: Future) -> None:
        with self._lock:
            self.backlog -= 1


def _timed(job: Callable[[], list]) -> tuple[list, float]:
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = job()
    return out, time.perf_counter() - t0


def own_passes(model, tokenizer, method: str, opts: DecodeOptions, frame_seconds: float,
               ended: list[EndedSegment]) -> list[Segment | None]:
    """The segments by the streaming model itself: ``method`` (a search of :mod:`asr.search.methods`, or ``none``:
    the partial's best path) over their encoder outputs in one padded batch; words timed on their CTC log-probs."""
    best = [(e.tokens, 0.0) for e in ended]
    run = [i for i, e in enumerate(ended) if e.tokens] if method != "none" else []
    if run:
        encs = [ended[i].enc for i in run]  # (T, D) each
        lens = torch.tensor([e.size(0) for e in encs], device=encs[0].device)
        enc = torch.nn.utils.rnn.pad_sequence(encs, batch_first=True)
        lp = torch.nn.utils.rnn.pad_sequence([ended[i].log_probs for i in run], batch_first=True).to(enc.device)
        nbests = search(model, enc, lens, method, opts, ctc_log_probs=lp, tokenizer=tokenizer)
        for i, nb in zip(run, nbests):
            best[i] = (nb[0].tokens, nb[0].score)
    out: list[Segment | None] = []
    for e, (tokens, score) in zip(ended, best):
        tokens = tokens if e.heard else ()  # no speech in this segment: noise, a tone or music says nothing
        ok = tokens and tokenizer.decode(tokens).strip()  # word separators alone are no segment
        out.append(segment_from_tokens(tokenizer, tokens, score, e.log_probs, frame_seconds, e.start, e.end)
                   if ok else None)
    return out


def final_model_passes(final, method: str, opts: DecodeOptions, device: torch.device,
                       ended: list[EndedSegment]) -> list[Segment | None]:
    """The segments' audio decoded by the loaded model ``final`` (as `asr transcribe` would decode it; one padded
    batch); a segment without partial text, without speech or under 0.1 s commits nothing."""
    run = [i for i, e in enumerate(ended)
           if e.tokens and e.heard and method != "none" and e.audio is not None and e.audio.size >= SAMPLE_RATE // 10]
    out: list[Segment | None] = [None] * len(ended)
    if run:
        feats = [features(ended[i].audio, final.model.cfg.frontend) for i in run]  # (T, F) each
        lens = torch.tensor([x.size(0) for x in feats], device=device)
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(device)
        segs = decode_features(final.model, final.tokenizer, x, lens, method, opts,
                               offsets=[ended[i].start for i in run])
        for i, seg in zip(run, segs):
            out[i] = seg if seg.text.strip() else None
    return out


def punctuated(punctuator, shown: Captions, seg: Segment, paused: bool) -> Segment:
    """``seg`` cased and punctuated in the context of the last segments ``shown`` committed (``paused``: it ended
    at a pause, where a sentence may end)."""
    before = [w for x in list(shown.segments)[-3:] for w in x.raw.split()]
    new_sentence = not shown.segments or shown.segments[-1].text.endswith((".", "?"))
    return punctuate_segments([seg], punctuator, before, ends_sentence=paused, starts_sentence=new_sentence)[0]
