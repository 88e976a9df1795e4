"""Our caption server and sherpa-onnx's own streaming server, same model, same load, side by side (issue 32, item 3).

    .venv/bin/pip install sherpa-onnx-bin==2.0.1       # sherpa-onnx's C++ binaries (the websocket servers)
    .venv/bin/python tools/sherpa_serve_load.py --audio A.wav --audio B.wav --clients 1 5 10 20 --chunk-ms 640 320

The model (``--model``, default ``demo``) is exported once with ``asr export-sherpa``; sherpa-onnx's
``sherpa-onnx-online-websocket-server`` serves ``model-streaming.onnx`` (its WeNet CTC path: greedy CTC, its own
fbank front end and endpointing; ``--wenet-ctc-chunk-size`` = our chunk, 4 left chunks, ``--num-threads 1`` and 2
work threads on these 2 cores, endpoint rule 2 at 0.5 s of trailing silence like ours) and our server runs
``asr.apps.serve_bench.serve_load`` (CTC prefix beam partials, silero-vad, attention-rescoring commits and the
punctuator: it does more per stream). For each client count N and chunk size, both get N loopback clients each
streaming the same audio (the recordings with 1 s of silence after each, looped, ``--seconds`` long) at real time in
100-ms blocks. Figures per run, defined alike for both: partial latency (a token's first display minus when the
block holding its audio was sent; sherpa-onnx: its token timestamps), end-of-speech-to-final latency (a segment's
final result minus when its last token's audio was sent), the server's CPU (cores busy) and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asr.apps.serve_bench import BLOCK_SECONDS, _free_port, _pct, session_audio  # noqa: E402
from asr.audio import SAMPLE_RATE  # noqa: E402


async def _sherpa_client(url: str, x: np.ndarray, delay: float, end_wait: float) -> dict:
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    block = int(BLOCK_SECONDS * SAMPLE_RATE)
    sent_at: list[float] = []
    partial, final, seen = [], [], {"segment": -1, "tokens": 0}
    done = asyncio.Event()

    def audio_sent(t: float) -> float | None:
        k = int(t / BLOCK_SECONDS)
        return sent_at[k] if 0 <= k < len(sent_at) else None

    async def receive(ws):
        async for raw in ws:
            now = time.monotonic()
            if raw == "Done!":
                break
            m = json.loads(raw)
            if m["segment"] != seen["segment"]:
                seen.update(segment=m["segment"], tokens=0)
            ts = [m["start_time"] + t for t in m["timestamps"]]
            partial.extend(now - s for s in map(audio_sent, ts[seen["tokens"]:]) if s is not None)
            seen["tokens"] = max(seen["tokens"], len(ts))
            if m["is_final"] and ts and m["text"].strip():
                s = audio_sent(ts[-1])
                if s is not None:
                    final.append(now - s)
        done.set()

    async with connect(url, max_size=None, ping_interval=None) as ws:
        rx = asyncio.create_task(receive(ws))
        t0 = time.monotonic()
        for k, i in enumerate(range(0, x.size, block)):
            pause = t0 + k * BLOCK_SECONDS - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            sent_at.append(time.monotonic())
            await ws.send(x[i:i + block].astype("<f4").tobytes())
        await ws.send("Done")
        try:
            await asyncio.wait_for(done.wait(), end_wait)
        except (asyncio.TimeoutError, TimeoutError):
            pass
        rx.cancel()
    return {"partial_latency": partial, "commit_latency": final}


async def _sherpa_clients(url: str, x: np.ndarray, n: int, end_wait: float) -> list[dict]:
    block = int(BLOCK_SECONDS * SAMPLE_RATE)
    shift = [(i * (x.size // block) // max(1, n)) * block for i in range(n)]  # as serve_bench: different speech
    return await asyncio.gather(*(_sherpa_client(url, np.roll(x, -s), i / max(1, n), end_wait)
                                  for i, s in enumerate(shift)))


def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    cpu = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


def sherpa_load(binary: str, model_dir: Path, x: np.ndarray, n: int, chunk: int, end_wait: float = 30.0) -> dict:
    port = _free_port()
    proc = subprocess.Popen([binary, f"--port={port}", f"--tokens={model_dir / 'tokens.txt'}",
                             f"--wenet-ctc-model={model_dir / 'model-streaming.onnx'}", f"--wenet-ctc-chunk-size={chunk}",
                             "--wenet-ctc-num-left-chunks=4", "--model-type=wenet_ctc", "--num-threads=1",
                             "--num-work-threads=2", "--num-io-threads=1", f"--max-batch-size={max(1, n)}",
                             "--enable-endpoint=true", "--rule2-min-trailing-silence=0.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # wait for the port
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        cpu0, _ = _proc_cpu_rss(proc.pid)
        wall0 = time.perf_counter()
        peak = [0.0]

        async def run():
            async def sample():
                while True:
                    peak[0] = max(peak[0], _proc_cpu_rss(proc.pid)[1])
                    await asyncio.sleep(1.0)
            s = asyncio.create_task(sample())
            out = await _sherpa_clients(f"ws://127.0.0.1:{port}", x, n, end_wait)
            s.cancel()
            return out

        clients = asyncio.run(run())
        wall = time.perf_counter() - wall0
        cpu1, _ = _proc_cpu_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    partial = [v for c in clients for v in c["partial_latency"]]
    final = [v for c in clients for v in c["commit_latency"]]
    return {"server": "sherpa-onnx", "clients": n, "chunk_ms": chunk * 40,
            "partial_latency_median_s": _pct(partial, 50), "partial_latency_p90_s": _pct(partial, 90),
            "commit_latency_median_s": _pct(final, 50), "commit_latency_p90_s": _pct(final, 90),
            "finals_delivered": len(final), "server_cpu_cores": round((cpu1 - cpu0) / wall, 2),
            "rss_mb_peak": round(peak[0]), "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", action="append", required=True)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 5, 10, 20])
    ap.add_argument("--chunk-ms", type=int, nargs="+", default=[640, 320])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--servers", nargs="+", default=["asr", "sherpa-onnx"], choices=("asr", "sherpa-onnx"))
    a = ap.parse_args()
    binary = shutil.which("sherpa-onnx-online-websocket-server", path=str(Path(sys.executable).parent)) or \
        shutil.which("sherpa-onnx-online-websocket-server")
    if binary is None:
        sys.exit("sherpa-onnx-online-websocket-server not found: pip install sherpa-onnx-bin==2.0.1")

    import torch

    from asr.apps.serve_bench import serve_load
    from asr.export.sherpa import export_sherpa
    from asr.inference.model_dir import load_model
    from asr.inference.punctuate import cached_punctuator
    from asr.inference.streaming import Recognizer, StreamingOptions

    torch.set_num_threads(a.threads)
    loaded = load_model(a.model)
    x = session_audio(a.audio)
    x = np.tile(x, int(np.ceil(a.seconds * SAMPLE_RATE / x.size)))[: int(a.seconds * SAMPLE_RATE)]
    with tempfile.TemporaryDirectory() as tmp:
        export_sherpa(a.model, Path(tmp) / "sherpa")
        with tempfile.NamedTemporaryFile(suffix=".wav") as wav:  # our clients read files
            import soundfile as sf

            sf.write(wav.name, x, SAMPLE_RATE)
            for ms in a.chunk_ms:
                chunk = ms // 40
                rec = Recognizer(loaded, StreamingOptions(chunk=chunk, vad=True), punctuator=cached_punctuator())
                for n in a.clients:
                    if "asr" in a.servers:
                        ours = serve_load(rec, [wav.name], n, a.seconds)  # the same audio, its own 1-s gap added
                        keep = ("clients", "chunk_ms", "partial_latency_median_s", "partial_latency_p90_s",
                                "commit_latency_median_s", "commit_latency_p90_s", "commits_delivered",
                                "server_cpu_cores", "rss_mb_peak", "wall_s")
                        print(json.dumps({"server": "asr", **{k: ours[k] for k in keep}}), flush=True)
                    if "sherpa-onnx" in a.servers:
                        print(json.dumps(sherpa_load(binary, Path(tmp) / "sherpa", x, n, chunk)), flush=True)


if __name__ == "__main__":
    main()
