"""Choose WiSE-FT's interpolation weight on dev: export a fine-tuning run mixed with the model it started from at
several weights, and score each on dev subsets (CTC greedy), so the gain on the new data and what the model forgot
on the old are read side by side.

    .venv/bin/python tools/interpolation_sweep.py --exp EXP --base demo --manifests M \\
        --subset real_dev --subset dev --alpha 0 0.5 0.7 0.85 1 [--limit 600]

Prints one row per weight (alpha 1: the run alone; 0: the base model) with WER / CER per subset; export the chosen
weight with `asr export-model --exp EXP --interpolate BASE --alpha A`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from asr.data.prepare import load_cuts
    from asr.evaluation.evaluate import evaluate_cuts
    from asr.evaluation.scoring import spread_subset
    from asr.inference.model_dir import load_model
    from asr.train.export import export_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp", type=Path, required=True)
    ap.add_argument("--base", required=True, help="the model the run started from (a model directory or demo)")
    ap.add_argument("--manifests", type=Path, required=True)
    ap.add_argument("--subset", action="append", required=True, help="dev subsets to score (repeatable)")
    ap.add_argument("--alpha", type=float, nargs="+", default=[0.0, 0.5, 0.7, 0.85, 1.0])
    ap.add_argument("--average", type=int, default=4)
    ap.add_argument("--limit", type=int, default=0, help="score N utterances spread over each subset (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    subsets = {s: load_cuts(a.manifests, s).to_eager() for s in a.subset}
    if a.limit:
        subsets = {s: spread_subset(c, a.limit) for s, c in subsets.items()}
    head = " | ".join(f"{s} WER | {s} CER" for s in subsets)
    print(f"| alpha | {head} |\n|---|" + "---|---|" * len(subsets), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for alpha in a.alpha:
            out = export_model(a.exp, Path(tmp) / f"a{alpha}", a.average, select="best", interpolate=a.base,
                               alpha=alpha)
            model = load_model(out)
            cells = []
            for cuts in subsets.values():
                r = evaluate_cuts(model, cuts, "ctc_greedy")
                cells += [f"{100 * r.wer.rate:.2f}%", f"{100 * r.cer.rate:.2f}%"]
            print(f"| {alpha:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
