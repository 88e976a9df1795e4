"""Serving capacity: the caption server (:mod:`asr.apps.serve`) in this process, N loopback clients in another,
each streaming a recording at real time in 100-ms blocks and saying ``end``; bounded (every client stops by
itself). Per run: partial latency (a token's first display minus when the block holding its audio was sent),
end-of-speech-to-commit latency (a segment's commit minus when its last word's audio was sent), commits
delivered, queued and undecoded audio, refusals, the server's CPU (cores busy) and RSS.

    asr bench-serve --audio a.wav --audio b.wav --clients 1 --clients 5 --clients 10 --chunk-ms 640 --chunk-ms 320

The client process uses the ``websockets`` asyncio client only (no torch), so it costs the server little CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, load_audio
from asr.config import DECODE_WORKERS
from asr.inference.latency import ArrivalClock

BLOCK_SECONDS = 0.1


# ------------------------------------------------------------------------------------- the clients (other process)
async def _one_client(url: str, pcm: bytes, delay: float, end_wait: float) -> dict:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    await asyncio.sleep(delay)
    block = int(BLOCK_SECONDS * SAMPLE_RATE) * 2
    clock = ArrivalClock(BLOCK_SECONDS, keep_seconds=len(pcm) / 2 / SAMPLE_RATE + 1)  # when each block was sent
    sent_at: list[float] = []  # monotonic time each block was sent
    out = {"commits": 0, "code": None, "reason": ""}
    done = asyncio.Event()

    async def receive(ws):
        try:
            async for raw in ws:
                now = time.monotonic()
                m = json.loads(raw)
                clock.shown(m.get("shown", ()), now)
                clock.committed(m.get("commit_ends", ()), now)
                out["commits"] += len(m.get("commit_ends", ()))
                if m.get("final"):
                    done.set()
        except ConnectionClosed:
            pass
        done.set()

    try:
        async with connect(url, max_size=None, ping_interval=None) as ws:
            await ws.send(json.dumps({"sample_rate": SAMPLE_RATE}))
            rx = asyncio.create_task(receive(ws))
            t0 = time.monotonic()
            for k, i in enumerate(range(0, len(pcm), block)):
                pause = t0 + k * BLOCK_SECONDS - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                sent_at.append(time.monotonic())
                clock.arrived((k + 1) * BLOCK_SECONDS, sent_at[-1])
                await ws.send(pcm[i:i + block])
            await ws.send("end")
            try:
                await asyncio.wait_for(done.wait(), end_wait)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            out["send_lag_seconds"] = round(max(0.0, sent_at[-1] - t0 - (len(sent_at) - 1) * BLOCK_SECONDS), 2)
            await ws.close()
            await rx
            out["code"] = ws.close_code
    except ConnectionClosed as e:
        out["code"] = e.rcvd.code if e.rcvd else None
        out["reason"] = e.rcvd.reason if e.rcvd else ""
    out["partial_latency"], out["commit_latency"] = clock.partial, clock.commit
    return out


def session_audio(paths: list[str], gap: float = 1.0) -> np.ndarray:
    """The recordings one after another with ``gap`` seconds of silence after each (so that endpoints fire)."""
    silence = np.zeros(int(gap * SAMPLE_RATE), np.float32)
    return np.concatenate([part for p in paths for part in (load_audio(p), silence)])


async def _clients(url: str, audio: list[str], n: int, seconds: float, end_wait: float) -> list[dict]:
    x = session_audio(audio)
    reps = int(np.ceil(seconds * SAMPLE_RATE / x.size))
    x = np.tile(x, reps)[: int(seconds * SAMPLE_RATE)]
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    # N people talking, not one recording N times in step: client i starts its audio 1/N of the way further in
    # (whole 100-ms blocks) and connects i/N seconds after the first
    block = int(BLOCK_SECONDS * SAMPLE_RATE) * 2
    shift = [(i * (len(pcm) // block) // max(1, n)) * block for i in range(n)]
    return await asyncio.gather(*(_one_client(url, pcm[s:] + pcm[:s], i / max(1, n), end_wait)
                                  for i, s in enumerate(shift)))


# ------------------------------------------------------------------------------------- one run (this process)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return round(float(np.percentile(xs, q)), 3)


def serve_load(recognizer, audio: list[str | Path], n: int, seconds: float = 30.0, max_streams: int | None = None,
               end_wait: float = 30.0, sample_every: float = 1.0, workers: int = DECODE_WORKERS) -> dict:
    """One run: the server with ``recognizer`` and ``n`` clients each streaming ``seconds`` of ``audio`` (the
    recordings with a second of silence after each, looped) at real time. Returns the figures (latencies in seconds over all clients' tokens and segments)."""
    from asr.apps.serve import CaptionServer, serve

    port = _free_port()
    ready, stop = threading.Event(), threading.Event()
    srv = CaptionServer(recognizer, max_streams=max_streams or max(n, 1), timing=True, workers=workers)
    t = threading.Thread(target=lambda: asyncio.run(serve(recognizer, None, "127.0.0.1", port, ready, stop, server=srv)),
                         daemon=True)
    t.start()
    if not ready.wait(30):
        raise RuntimeError("the caption server did not start")
    rss, cpu0, wall0 = [], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # the clients' figures go to a file (a pipe would fill and block)
        result = Path(tmp) / "clients.json"
        proc = subprocess.Popen([sys.executable, "-m", "asr.apps.serve_bench", f"ws://127.0.0.1:{port}/ws/audio",
                                 json.dumps([str(a) for a in audio]), str(n), str(seconds), str(end_wait), str(result)])
        while proc.poll() is None:
            rss.append(_rss_mb())
            time.sleep(sample_every)
        if proc.returncode != 0 or not result.is_file():
            stop.set()
            raise RuntimeError(f"the load clients failed (exit code {proc.returncode})")
        clients = json.loads(result.read_text())
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    t.join(15)
    partial = [x for c in clients for x in c["partial_latency"]]
    commit = [x for c in clients for x in c["commit_latency"]]
    served = [c for c in clients if c["code"] != 1013]
    finished = list(srv.finished)
    busy = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "clients": n, "chunk_ms": round(recognizer.options.chunk * recognizer.frame_seconds * 1000),
        "served": len(served), "refused": len(clients) - len(served),
        "partial_latency_median_s": _pct(partial, 50), "partial_latency_p90_s": _pct(partial, 90),
        "commit_latency_median_s": _pct(commit, 50), "commit_latency_p90_s": _pct(commit, 90),
        "commits_delivered": sum(c["commits"] for c in served),
        "clients_without_final": sum(1 for c in served if not c["commit_latency"]),
        "max_send_lag_s": max((c.get("send_lag_seconds", 0.0) for c in served), default=0.0),
        "max_queued_audio_s": max((f["max_queued_seconds"] for f in finished), default=0.0),
        "undecoded_audio_s": round(sum(f["undecoded_seconds"] for f in finished), 2),
        "server_cpu_cores": round(busy / wall, 2), "rss_mb_peak": round(max(rss, default=0.0)),
        "rss_mb_first": round(rss[0]) if rss else None, "rss_mb_last": round(rss[-1]) if rss else None,
        "rss_mb_each_minute": [round(x) for x in rss[::max(1, int(60 / sample_every))]],
        "wall_s": round(wall, 1), "max_batch": srv.stats["max_batch"], "workers": srv.workers,
        "light_commits": srv.stats["light_commits"], "commit_thread": recognizer.options.background_commits,
    }


def summarize(rows: list[dict], limit: float = 1.0, light_share: float = 0.1) -> dict:
    """The largest client count per chunk size whose p90 partial latency stayed under ``limit`` seconds with every
    served client getting its final commit and at most ``light_share`` of the commits without their second pass (a
    server whose commits are mostly the partials' text is past its capacity, however fast the partials)."""
    best: dict[int, int] = {}
    for r in rows:
        ok = (r["partial_latency_p90_s"] is not None and r["partial_latency_p90_s"] < limit
              and r["clients_without_final"] == 0 and r["refused"] == 0
              and r["light_commits"] <= light_share * max(r["commits_delivered"], 1))
        if ok:
            best[r["chunk_ms"]] = max(best.get(r["chunk_ms"], 0), r["clients"])
    return {"largest_n_with_p90_partial_latency_under_s": limit, "light_commits_at_most": light_share,
            **{f"chunk_{k}ms": v for k, v in sorted(best.items())}}


if __name__ == "__main__":  # the client process: URL AUDIO_JSON N SECONDS END_WAIT OUT -> a JSON list in OUT
    url, audio_path, count, secs, wait, out_path = sys.argv[1:7]
    figures = asyncio.run(_clients(url, json.loads(audio_path), int(count), float(secs), float(wait)))
    Path(out_path).write_text(json.dumps(figures))
