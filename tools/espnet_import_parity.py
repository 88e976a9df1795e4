"""Import parity at full size: ESPnet builds its LibriSpeech conformer models (random weights), `asr import espnet`
imports them, and this prints how far our outputs are from ESPnet's.

    .venv/bin/python tools/espnet_import_parity.py --espnet-python /tmp/espnet_venv/bin/python

For each kind (joint CTC/attention, Mask-CTC) it runs ``tools/espnet_fixture.py --shape librispeech`` under
ESPnet's interpreter into a temporary folder, imports the result with :func:`asr.importers.espnet.import_espnet`
and compares with :func:`asr.importers.espnet.parity`: the largest absolute difference of the features, the CTC
log-probabilities and the decoder log-probabilities (MLM: logits), and each decoder's text from both toolkits.
``--train-steps N`` first fits the model to the fixture utterance (decoders that end), as the test fixture does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--espnet-python", required=True)
    ap.add_argument("--shape", default="librispeech", choices=("librispeech", "tiny"))
    ap.add_argument("--train-steps", type=int, default=0)
    ap.add_argument("--kinds", nargs="+", default=["joint", "maskctc"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="ESPnet's random initialisation seeds")
    ap.add_argument("--rel-pos-type", default="latest", choices=("latest", "legacy"))
    ap.add_argument("--hop-length", type=int, default=160)
    a = ap.parse_args()

    from asr.importers.espnet import import_espnet, parity

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, seed in ((k, s) for k in a.kinds for s in a.seeds):
            src = Path(tmp) / f"{kind}{seed}"
            t0 = time.perf_counter()
            subprocess.run([a.espnet_python, str(REPO / "tools" / "espnet_fixture.py"), str(src), "--kind", kind,
                            "--shape", a.shape, "--train-steps", str(a.train_steps), "--seed", str(seed),
                            "--rel-pos-type", a.rel_pos_type, "--hop-length", str(a.hop_length)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t1 = time.perf_counter()
            out = import_espnet(src / "config.yaml", src / "model.pth", Path(tmp) / f"{kind}{seed}_asr")
            t2 = time.perf_counter()
            report = parity(out, src)
            report["seed"] = seed
            report["seconds"] = {"espnet_build_and_decode": round(t1 - t0, 1), "import": round(t2 - t1, 1)}
            rows.append(report)
            print(json.dumps(report, indent=1), flush=True)
    print()
    print("| model | seed | features | CTC log-probs | decoder | texts the same |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        dec = r["diff"].get("decoder_log_probs", r["diff"].get("mlm_logits"))
        same = ", ".join(f"{m} {'yes' if t['same'] else 'NO'}" for m, t in r["texts"].items())
        print(f"| {r['kind']} ({r['shape']}, {a.rel_pos_type}, hop {a.hop_length}) | {r['seed']} | {r['diff']['features']:.1e} | {r['diff']['ctc_log_probs']:.1e} | "
              f"{dec:.1e} | {same} |")


if __name__ == "__main__":
    main()
