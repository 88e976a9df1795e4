"""Streaming benchmarks: real-time factor per chunk size, per-chunk cost over a long stream, caption
metrics on recordings, and streaming WER against full-context WER."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from asr.audio import SAMPLE_RATE
from asr.evaluation.bench import _model
from asr.evaluation.metrics import cer, wer
from asr.inference.captions import ScreenMetrics
from asr.inference.model_dir import DEFAULT_MODEL, load_model
from asr.inference.streaming import (
    EndpointConfig,
    EndpointRule,
    Recognizer,
    StreamingOptions,
    chunk_frames,
    live_recognizer,
)
from asr.text import normalize_text

NO_ENDPOINT = EndpointConfig(EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0))


def _recognizer(model: str, chunk_ms: int, left_chunks: int, vocab_size: int = 5000, endpoint=NO_ENDPOINT,
                quantize: str | None = None):
    m, desc = _model(model, vocab_size, "cpu", quantize)

    class _LM:  # the Recognizer needs model + tokenizer; random presets get a stand-in tokenizer
        pass

    loaded = _LM()
    loaded.model, loaded.path = m, model
    try:
        loaded.tokenizer = load_model(model).tokenizer
    except (FileNotFoundError, ValueError):
        class _Tok:
            def decode(self, ids):
                return " ".join(map(str, ids))

            def is_word_start(self, i):
                return True

        loaded.tokenizer = _Tok()
    chunk = chunk_frames(m, chunk_ms)
    opts = StreamingOptions(chunk=chunk, left_chunks=left_chunks, endpoint=endpoint, final="none")
    return Recognizer(loaded, opts), desc


def chunk_rtf(model: str = DEFAULT_MODEL, chunk_ms: int = 640, left_chunks: int = 4, seconds: float = 60.0,
              minutes_long: float = 0.0, quantize: str | None = None) -> dict:
    """Stream ``seconds`` of noise through one stream (features + encoder + CTC + partial search) and time
    every chunk. With ``minutes_long``, stream that long and compare the last minute's chunk cost with the
    first minute's (bounded state means flat cost)."""
    # the live endpoint rules (a segment ends after 20 s at most), as in real use; the second pass is
    # left out so the figure is the streaming path's own cost
    rec, desc = _recognizer(model, chunk_ms, left_chunks, endpoint=EndpointConfig(), quantize=quantize)
    rng = np.random.default_rng(0)
    total = (minutes_long * 60) if minutes_long else seconds
    block = int(chunk_ms / 1000 * SAMPLE_RATE)
    s = rec.create_stream()
    times, t_audio = [], []
    fed = 0
    while fed < total * SAMPLE_RATE:
        x = (rng.standard_normal(block) * 0.05).astype(np.float32)
        t0 = time.perf_counter()
        s.accept_waveform(x, SAMPLE_RATE)
        rec.decode_ready(s)
        times.append(time.perf_counter() - t0)
        fed += block
        t_audio.append(fed / SAMPLE_RATE)
    per_chunk = chunk_ms / 1000
    first = [t for t, a in zip(times, t_audio) if a <= 60]
    last = [t for t, a in zip(times, t_audio) if a > total - 60]
    out = {"model": desc, "chunk_ms": chunk_ms, "left_chunks": left_chunks, "threads": torch.get_num_threads(),
           "audio_seconds": round(fed / SAMPLE_RATE, 1), "rtf": round(sum(times) / (fed / SAMPLE_RATE), 4),
           "median_chunk_ms": round(1000 * statistics.median(times), 2),
           "median_chunk_rtf": round(statistics.median(times) / per_chunk, 4)}
    if minutes_long:
        out["first_minute_median_chunk_ms"] = round(1000 * statistics.median(first), 2)
        out["last_minute_median_chunk_ms"] = round(1000 * statistics.median(last), 2)
        out["last_vs_first"] = round(statistics.median(last) / statistics.median(first), 3)
    return out


def streaming_wer(loaded, cuts, chunk_ms: int = 640, left_chunks: int = 4, final: str = "auto",
                  decode=None, tail_seconds: float = 2.0, pause: float | None = None, partial: str = "ctc") -> dict:
    """Decode each cut as a live stream and score the committed text; also count tentative changes, and time what a caption reader sees.

    The audio (plus ``tail_seconds`` of silence, so the end-of-speech rule can fire as it would live) is fed
    in 100 ms blocks on a simulated real-time clock: a block arrives at its audio time, a chunk is decoded as
    soon as it is complete and the decoder is free, so compute slower than real time shows as lag.
    ``partial_latency``: for each committed word, the time from the end of its audio (its final timestamp) to
    the first display of a partial with that many words in its segment (or its commit, if the partials never
    got that far). ``commit_latency``: from the end of each segment's last word to its commit (endpoint
    detection plus the second pass). Medians and 90th percentiles in seconds. ``erasure_rate``: characters of
    shown tentative words later changed or removed (by a later partial or by the committed text) over
    characters shown (a word that only grows erases nothing);
    ``flicker_per_word``: updates that removed shown text, per committed word. ``pause``: rule 2's
    end-of-speech silence in seconds (default: the live default). ``partial``: ``ctc`` or ``mask_ctc``
    tentative text; ``partial_wer`` scores each segment's last tentative text (what the reader saw just
    before the second pass replaced it)."""
    extra = {"decode": decode} if decode is not None else {}
    if pause is not None:
        d = EndpointConfig()
        extra["endpoint"] = EndpointConfig(d.rule1, EndpointRule(True, pause, 0.0), d.rule3)
    rec = live_recognizer(loaded, StreamingOptions(chunk_ms=chunk_ms, left_chunks=left_chunks, final=final,
                                                   partial=partial, background_commits=False, **extra))  # (its clock)
    partial_hyps: list[str] = []
    refs, hyps, changes, t_compute, audio_s = [], [], 0, 0.0, 0.0
    partial_lat: list[float] = []
    commit_lat: list[float] = []
    screen = ScreenMetrics()
    block = SAMPLE_RATE // 10
    for c in cuts:
        audio = c.load_audio()[0].astype(np.float32)
        audio = np.concatenate([audio, np.zeros(int(tail_seconds * SAMPLE_RATE), dtype=np.float32)])
        s = rec.create_stream()
        clock = 0.0  # simulated wall time (s since the stream began)
        first_seen: dict[int, float] = {}  # word index in the running segment -> first display time
        last_partials: list[str] = []
        showing = ""  # the running segment's partial on screen

        def run(now_audio: float) -> None:
            """The live loop's rounds (Recognizer.step) while a chunk is ready (and to the end once the input is
            finished), on the simulated clock: a round starts when its audio has arrived and the decoder is free."""
            nonlocal clock, t_compute, showing
            while rec.pending(s):
                start = max(clock, now_audio)
                t0 = time.perf_counter()

                def shown(st) -> None:  # a decoded chunk's partial shows at once
                    nonlocal showing
                    at = start + time.perf_counter() - t0
                    showing = st.result.tentative
                    screen.tentative(showing)
                    for j in range(len(showing.split())):
                        first_seen.setdefault(j, at)

                r = rec.step([s], on_partial=shown)
                clock = start + time.perf_counter() - t0
                t_compute += r.decode_seconds + r.final_seconds
                for _, seg in r.ended:  # second pass + commit: shows at the round's end
                    if showing:
                        last_partials.append(showing)
                    showing = ""
                    if seg is not None:
                        for j, w in enumerate(seg.words):
                            partial_lat.append(min(first_seen.get(j, clock), clock) - w.end)
                        commit_lat.append(clock - seg.end)
                    screen.commit(seg.text if seg is not None else "", len(seg.words) if seg is not None else 0)
                    first_seen.clear()

        for i in range(0, len(audio), block):
            s.accept_waveform(audio[i:i + block], SAMPLE_RATE)
            run((i + len(audio[i:i + block])) / SAMPLE_RATE)
        s.input_finished()
        run(len(audio) / SAMPLE_RATE)
        audio_s += len(audio) / SAMPLE_RATE
        changes += s.stats["tentative_changes"]
        refs.append(normalize_text(" ".join(x.text for x in c.supervisions)))
        hyps.append(s.result.committed)
        partial_hyps.append(" ".join(last_partials))
    lat = {"partial_latency": partial_lat, "commit_latency": commit_lat}
    return _report(refs, hyps, partial_hyps, lat, screen, t_compute / audio_s, changes,
                   {"chunk_ms": chunk_ms, "partial": partial, "final": rec.options.final,
                    "pause_s": rec.options.endpoint.rule2.min_trailing_silence})


def _report(refs, hyps, partial_hyps, latencies: dict, screen, rtf: float, changes: int,
            head: dict) -> dict:
    """:func:`streaming_wer`'s figures: WER / CER, partial WER, RTF, latency medians and 90th
    percentiles, screen stability."""
    def q(xs: list[float], p: float) -> float | None:
        return round(float(np.quantile(xs, p)), 3) if xs else None

    lat = {f"{k}_{n}_s": q(v, p) for k, v in latencies.items() for n, p in (("median", 0.5), ("p90", 0.9))}
    return {"utterances": len(refs), **head, "partial_wer": round(wer(refs, partial_hyps).rate, 4),
            "wer": round(wer(refs, hyps).rate, 4), "cer": round(cer(refs, hyps).rate, 4), "rtf": round(rtf, 4),
            "tentative_changes": changes, **lat,
            "erasure_rate": round(screen.erasure_rate, 4), "flicker_per_word": round(screen.flicker_per_word, 4)}
