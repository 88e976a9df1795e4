"""Peak memory of `asr transcribe` on a long recording against a short one (issue 42, item 3).

    .venv/bin/python tools/long_file_memory.py --speech ../shared/real/wav16k/jfk.wav --hours 3 --rate 8000

Writes two 8-kHz WAV files (the speech clip, then silence with a little noise, to 1 minute and to ``--hours``),
runs ``asr transcribe FILE --format txt`` on each in a fresh process (``/usr/bin/time``-free: the child's peak RSS
from ``resource.getrusage(RUSAGE_CHILDREN)``), and prints peak RSS and wall time of each and their difference.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def write_long(path: Path, speech: np.ndarray, seconds: float, rate: int) -> None:
    """``speech`` then quiet noise to ``seconds``, written in one-minute blocks (never held whole)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_16") as f:
        f.write(speech)
        left = int(seconds * rate) - len(speech)
        while left > 0:
            n = min(left, 60 * rate)
            f.write((rng.standard_normal(n) * 0.002).astype(np.float32))
            left -= n


def run(asr_bin: str, audio: Path, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run([asr_bin, "transcribe", str(audio), "--format", "txt", "--output-dir", str(out), "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"file": audio.name, "peak_rss_mb": round(max(peak, before) / 1024, 1), "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", type=Path, required=True)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=8000)
    a = ap.parse_args()
    import soxr

    x, sr = sf.read(a.speech, dtype="float32")
    speech = soxr.resample(x if x.ndim == 1 else x.mean(1), sr, a.rate)
    asr_bin = str(Path(sys.executable).parent / "asr")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        short, long = t / "one_minute.wav", t / f"{a.hours:g}_hours.wav"
        write_long(short, speech, 60, a.rate)
        write_long(long, speech, a.hours * 3600, a.rate)
        rows = [run(asr_bin, short, t / "out"), run(asr_bin, long, t / "out")]  # the short one first: the baseline
    for r in rows:
        print(json.dumps(r))
    print(json.dumps({"peak_rss_difference_mb": round(rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"], 1)}))


if __name__ == "__main__":
    main()
