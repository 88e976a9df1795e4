"""Live captions: microphone (sounddevice) or a recording paced at real time -> Recognizer -> terminal
and a running transcript file.

Capture runs in the audio callback and only queues blocks (an overflowing device is counted, never
fatal); recognition runs in the calling thread. Committed lines are printed once; the tentative tail is
redrawn in place (dim) on a terminal.
"""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import ssl
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from asr.apps.serve import LOOPBACK, Access, CaptionServer, serve
from asr.audio import SAMPLE_RATE, load_audio
from asr.config import DECODE_WORKERS, MAX_LIVE_STREAMS
from asr.errors import UserError
from asr.inference.captions import VTT_HEADER, ScreenMetrics, caption_cues, srt_cue, vtt_cue
from asr.inference.latency import ArrivalClock
from asr.inference.model_dir import live_capacity
from asr.inference.streaming import Recognizer, Segment, Stream


# ------------------------------------------------------------------------------------- sources
def file_source(path: str | Path, block_seconds: float = 0.1, realtime: bool = True) -> Iterator[tuple[np.ndarray, int]]:
    """``(samples, sample_rate)`` blocks of a recording (16 kHz float32), paced at real time unless ``realtime`` is
    False."""
    audio = load_audio(path)
    n = int(block_seconds * SAMPLE_RATE)
    t0 = time.perf_counter()
    for i in range(0, len(audio), n):
        if realtime:
            due = t0 + i / SAMPLE_RATE
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        yield audio[i:i + n], SAMPLE_RATE


@dataclass
class MicStats:
    overflows: int = 0
    blocks: int = 0


def mic_source(device=None, samplerate: int | None = None, block_seconds: float = 0.1, stop: threading.Event | None = None,
               stats: MicStats | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """Blocks from a sounddevice input stream at the device's rate (the stream resamples to 16 kHz)."""
    import sounddevice as sd

    info = sd.query_devices(device, "input")
    rate = int(samplerate or info["default_samplerate"])
    q: queue.Queue = queue.Queue()
    stats = stats or MicStats()

    def callback(indata, frames, t, status):  # audio thread: never blocks
        if status.input_overflow:
            stats.overflows += 1
        q.put(indata[:, 0].copy())

    with sd.InputStream(device=device, samplerate=rate, channels=1, dtype="float32",
                        blocksize=int(block_seconds * rate), callback=callback):
        while stop is None or not stop.is_set():
            try:
                block = q.get(timeout=0.5)
            except queue.Empty:
                continue
            stats.blocks += 1
            yield block, rate


def list_devices() -> str:
    import sounddevice as sd

    return str(sd.query_devices())


# ------------------------------------------------------------------------------------- outputs
class TranscriptWriter:
    """The running transcript, appended and flushed as each segment ends (txt, srt, vtt or jsonl)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fmt = self.path.suffix.lstrip(".").lower()
        if self.fmt not in ("txt", "srt", "vtt", "jsonl"):
            raise UserError(f"{path}: --output must end in .txt, .srt, .vtt or .jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w", encoding="utf-8")
        self.n = 0
        if self.fmt == "vtt":
            self.f.write(VTT_HEADER)
            self.f.flush()

    def write(self, seg: Segment) -> None:
        if self.fmt in ("srt", "vtt"):  # a long segment becomes several cues (two lines of 42, 7 s at most)
            for cue in caption_cues(seg.words) if seg.words else [(seg.start, seg.end, seg.text)]:
                self.n += 1
                self.f.write(srt_cue(self.n, cue) if self.fmt == "srt" else vtt_cue(cue))
            self.f.flush()
            return
        self.n += 1
        if self.fmt == "txt":
            self.f.write(seg.text + "\n")
        elif self.fmt == "jsonl":
            self.f.write(json.dumps({"start": round(seg.start, 3), "end": round(seg.end, 3), "text": seg.text,
                                     "words": [w.as_dict() for w in seg.words]}, ensure_ascii=False) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class TerminalCaptions:
    """Finished lines printed once; the tentative tail redrawn in place (dim) when stdout is a terminal."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.shown = ""

    def tentative(self, text: str) -> None:
        if self.tty and text != self.shown:
            self.out.write("\r\033[2m" + text[-(120):] + "\033[0m\033[K")
            self.out.flush()
            self.shown = text

    def commit(self, seg: Segment) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        self.out.write(f"[{seg.start:7.2f} - {seg.end:7.2f}] {seg.text}\n")
        self.out.flush()
        self.shown = ""


# ------------------------------------------------------------------------------------- the loop
@dataclass
class CaptionStats:
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    partial_latency: list[float] = field(default_factory=list)  # audio arrival -> first display of a token
    final_latency: list[float] = field(default_factory=list)  # endpoint fired -> final text ready (second pass)
    commit_latency: list[float] = field(default_factory=list)  # last word's audio arrived -> its segment committed
    screen: ScreenMetrics = field(default_factory=ScreenMetrics)  # erasure and flicker of the tentative text
    segments: int = 0
    tentative_changes: int = 0
    overflows: int = 0

    def report(self) -> str:
        def med(v):
            return f"{1000 * statistics.median(v):.0f} ms" if v else "n/a"

        rtf = self.compute_seconds / self.audio_seconds if self.audio_seconds else float("nan")
        return (f"audio {self.audio_seconds:.1f} s, RTF {rtf:.3f}; partial latency median {med(self.partial_latency)}; "
                f"end of speech to commit median {med(self.commit_latency)} (second pass {med(self.final_latency)}); "
                f"erasure rate {100 * self.screen.erasure_rate:.1f}%, flicker {self.screen.flicker_per_word:.3f} per "
                f"word; segments {self.segments}; tentative changes "
                f"{self.tentative_changes}; overflows {self.overflows}")


def run_captions(recognizer: Recognizer, source, on_tentative: Callable[[str], None] | None = None,
                 on_segment: Callable[[Segment], None] | None = None, stop: threading.Event | None = None) -> CaptionStats:
    """Feed ``source`` (iterator of ``(rate, samples)``) through one stream until it ends, ``stop`` is set
    or Ctrl-C; the last segment is always finalized."""
    stats = CaptionStats()
    stream = recognizer.create_stream()
    clock = ArrivalClock(recognizer.frame_seconds)  # when each encoder frame's audio arrived (wall time)
    stats.partial_latency, stats.commit_latency = clock.partial, clock.commit

    def partial(s: Stream) -> None:
        clock.shown([f * s.frame_seconds for f, _ in s.newly_shown], time.perf_counter())
        stats.screen.tentative(s.result.tentative)
        if on_tentative:
            on_tentative(s.result.tentative)

    def pump(to_end: bool = False) -> None:
        """The rounds there is work for now (``to_end``: also waiting for the commits still running)."""
        while True:
            if not recognizer.pending(stream):
                if not (to_end and stream.inflight):
                    return
                stream.inflight[0].job.exception()  # wait for the second pass on the commit thread
            r = recognizer.step([stream], on_partial=partial)
            stats.compute_seconds += r.decode_seconds + r.final_seconds + r.commit_seconds
            for (_, seg), wait in zip(r.ended, r.waits):
                stats.screen.commit(seg.text if seg is not None else "", len(seg.words) if seg is not None else 0)
                if seg is None:
                    continue
                stats.final_latency.append(wait)
                clock.committed([seg.words[-1].end if seg.words else seg.end], time.perf_counter())
                stats.segments += 1
                if on_segment:
                    on_segment(seg)

    try:
        for block, rate in source:
            stream.accept_waveform(block, rate)
            clock.arrived(stream.seconds, time.perf_counter())
            stats.audio_seconds = stream.seconds
            pump()
            if stop is not None and stop.is_set():
                break
    except KeyboardInterrupt:
        pass
    stream.input_finished()
    pump(to_end=True)
    stats.tentative_changes = stream.stats["tentative_changes"]
    return stats


# ------------------------------------------------------------------------------------- the app
def live_source(input_file: Path | None = None, fast: bool = False, input_device=None, samplerate: int | None = None,
                mic: bool = True, mic_stats: MicStats | None = None):
    """The audio a live session captions: a recording (paced at real time unless ``fast``), the microphone
    (``input_device``: an index or a name), or None (``mic=False``: a server for browser clients only)."""
    if input_file is not None:
        load_audio(input_file)  # a bad file fails here with its one-line error
        return file_source(input_file, realtime=not fast)
    if not mic:
        return None
    dev = int(input_device) if isinstance(input_device, str) and input_device.isdigit() else input_device
    return mic_source(dev, samplerate, stats=mic_stats)


def caption_terminal(recognizer: Recognizer, source, output: Path | None = None) -> CaptionStats:
    """Captions in the terminal (committed lines printed once, the tentative tail redrawn) and, with
    ``output``, a running transcript file; Ctrl-C ends cleanly and keeps the last segment."""
    writer = TranscriptWriter(output) if output else None
    term = TerminalCaptions()

    def on_segment(seg: Segment) -> None:
        term.commit(seg)
        if writer:
            writer.write(seg)

    try:
        return run_captions(recognizer, source, term.tentative, on_segment)
    finally:
        if writer:
            writer.close()


def server_access(host: str, port: int, token: str | None = None, no_auth: bool = False, allow_origins=(),
                  certfile: Path | None = None, keyfile: Path | None = None):
    """``(Access, ssl context or None, URL to open)`` for ``asr live --serve``: off loopback a token is required
    (generated when not given, as Jupyter does) unless ``no_auth``; TLS with a certificate and key."""
    if token is None and host not in LOOPBACK and not no_auth:
        token = secrets.token_urlsafe(16)
    ctx = None
    if certfile is not None or keyfile is not None:
        if certfile is None:
            raise UserError("--keyfile needs --certfile")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        except (OSError, ssl.SSLError) as e:
            raise UserError(f"{certfile}: cannot use it as the TLS certificate ({e})") from None
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    url = f"{'https' if ctx else 'http'}://{shown}:{port}/" + (f"?token={token}" if token else "")
    return Access.for_server(host, port, token, allow_origins), ctx, url


def server_max_streams(recognizer: Recognizer, given: int | None = None) -> int:
    """Live clients the caption server admits: ``given``, else the capacity measured for the model that commits the
    captions (its ``serving.json``: the demo 20, Whisper tiny.en 1, at 640 ms on 2 cores), else
    :data:`MAX_LIVE_STREAMS`."""
    if given:
        return given
    return live_capacity((recognizer.final or recognizer.loaded).path) or MAX_LIVE_STREAMS


def caption_server(recognizer: Recognizer, source, host: str, port: int, output: Path | None = None,
                   log: Callable[[str], None] = print, max_streams: int | None = None, token: str | None = None,
                   no_auth: bool = False, allow_origins=(), certfile: Path | None = None,
                   keyfile: Path | None = None, workers: int = DECODE_WORKERS) -> dict:
    """The caption web page (:mod:`asr.apps.serve`) until Ctrl-C; the server's own captions also go to ``output``.
    Access and TLS: :func:`server_access`. Returns the server's figures (batches, segments, tentative changes)."""

    access, ctx, url = server_access(host, port, token, no_auth, allow_origins, certfile, keyfile)
    writer = TranscriptWriter(output) if output else None
    max_streams = server_max_streams(recognizer, max_streams)
    srv = CaptionServer(recognizer, on_segment=writer.write if writer else None, max_streams=max_streams,
                        workers=workers)
    log(f"serving captions on {url} (at most {max_streams} live clients; Ctrl-C to stop)")
    if host not in LOOPBACK and access.token is None:
        log("warning: --no-auth: anyone who can reach this address can read the captions and send audio")
    try:
        asyncio.run(serve(recognizer, source, host, port, server=srv, access=access, ssl_context=ctx))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        raise OSError(f"cannot serve on {host}:{port}: {e}") from None
    finally:
        srv.stop.set()
        for t in srv.threads:
            t.join(timeout=10)  # worker 0 commits the last segment (and writes it) before it ends
        if writer:
            writer.close()
    st = srv.server.stream.stats
    return {**{k: round(v, 3) if isinstance(v, float) else v for k, v in srv.stats.items()},
            "tentative_changes": st["tentative_changes"]}
