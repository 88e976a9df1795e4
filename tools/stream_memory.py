"""Memory of a long live session (issue 33, item 4): the Python API's streaming session over hours of audio.

    python tools/stream_memory.py --audio a.wav --audio b.wav --minutes 120 --block 0.1    # fed in 100-ms blocks
    python tools/stream_memory.py --audio a.wav --minutes 60 --block 0                     # one feed() of an hour

The recordings (with a second of silence after each) are looped to ``--minutes``. Prints one JSON line every
``--report`` minutes of audio (RSS now, peak so far, segments committed, wall time) and a summary line; the peak
is the process's (ru_maxrss), model included. Options as `asr live` (silero-vad gate, punctuation) unless
``--no-vad`` / ``--no-punctuate``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asr  # noqa: E402
from asr.apps.serve_bench import session_audio  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", action="append", required=True, help="recording(s), looped (repeatable)")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--block", type=float, default=0.1, help="seconds per feed() call; 0: all the audio in one call")
    ap.add_argument("--report", type=float, default=10.0, help="minutes of audio between reports")
    ap.add_argument("--no-vad", action="store_true")
    ap.add_argument("--no-punctuate", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model = asr.load_model(args.model)
    live = model.stream(vad=not args.no_vad, punctuate=not args.no_punctuate)
    base = session_audio(args.audio)
    total = int(args.minutes * 60 * 16000)
    live.feed(np.zeros(1600, np.float32))  # everything loaded before the baseline
    start_rss, t0 = rss_mb(), time.perf_counter()
    print(json.dumps({"baseline_rss_mb": round(start_rss), "peak_mb": round(peak_mb())}), flush=True)
    if args.block <= 0:
        x = np.resize(base, total)  # the caller's hour of audio (230 MB)
        live.feed(x)
        del x
    else:
        n, report, fed = int(args.block * 16000), int(args.report * 60 * 16000), 0
        while fed < total:
            i = fed % base.size
            block = base[i:i + n]
            live.feed(block)
            fed += block.size
            if fed // report != (fed - block.size) // report:
                print(json.dumps({"audio_minutes": round(fed / 16000 / 60, 1), "rss_mb": round(rss_mb()),
                                  "peak_mb": round(peak_mb()), "segments": len(live._segments),
                                  "stream_segments_kept": len(live._stream.result.segments),
                                  "wall_min": round((time.perf_counter() - t0) / 60, 2)}), flush=True)
    segments = live.finish()
    print(json.dumps({"summary": True, "audio_minutes": round(total / 16000 / 60, 1), "block_s": args.block,
                      "baseline_rss_mb": round(start_rss), "end_rss_mb": round(rss_mb()), "peak_mb": round(peak_mb()),
                      "growth_mb": round(rss_mb() - start_rss), "segments": len(segments),
                      "committed_chars": len(live.committed), "wall_min": round((time.perf_counter() - t0) / 60, 2)}),
          flush=True)


if __name__ == "__main__":
    main()
