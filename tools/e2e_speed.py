"""Whole-process speed of `asr transcribe` per decoder, side by side (issue 32, item 2): each run is a fresh
process (imports, model load, VAD, features, decoding, alignment for word times, punctuation, writing json), the
decoders alternate, and the median wall time of ``--runs`` runs is reported with the ratio to the first decoder.

    .venv/bin/python tools/e2e_speed.py --files 64 --audio-dir data/work/synthetic/test --decoder attention_beam --decoder mask_ctc

Extra arguments after ``--`` go to every `asr transcribe` call (e.g. ``-- --no-vad``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio-dir", required=True, help="folder searched for .flac / .wav files (sorted; the first --files)")
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--decoder", action="append", default=[])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="demo")
    args, extra = ap.parse_known_args()
    extra = [x for x in extra if x != "--"]
    files = sorted(p for p in Path(args.audio_dir).rglob("*") if p.suffix in (".flac", ".wav"))[: args.files]
    decoders = args.decoder or ["attention_beam", "mask_ctc"]
    asr_bin = str(Path(sys.executable).parent / "asr")
    times: dict[str, list[float]] = {d: [] for d in decoders}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs + 1):  # the first round warms the page cache and is not counted
            for d in decoders:
                out = Path(tmp) / f"{d}_{r}"
                t0 = time.perf_counter()
                subprocess.run([asr_bin, "transcribe", *map(str, files), "--model", args.model, "--decoder", d,
                                "--format", "json", "--output-dir", str(out), *extra], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r:
                    times[d].append(time.perf_counter() - t0)
    base = statistics.median(times[decoders[0]])
    for d in decoders:
        med = statistics.median(times[d])
        print(json.dumps({"decoder": d, "files": len(files), "median_wall_s": round(med, 2),
                          f"speedup_vs_{decoders[0]}": round(base / med, 2), "runs": [round(t, 2) for t in times[d]]}))


if __name__ == "__main__":
    main()
