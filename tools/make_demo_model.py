"""Bundle a trained experiment as the package's demo model and measure its model card.

    .venv/bin/python tools/make_demo_model.py EXP [--manifests DIR] [--real ../shared/real/manifest.tsv]
    .venv/bin/python tools/make_demo_model.py --model MODEL_DIR ...   # a model exported elsewhere (a GPU machine)

Exports EXP (the 4 checkpoints with the lowest dev CER averaged, fp16 weights) into asr/pretrained/demo, or copies
an exported model directory there, then
scores every decoder on the synthetic test subset (and CTC greedy per test voice), on recorded subsets
(``--recorded real_test``) and on the real clips and writes the tables into MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import torch

    from asr.data.prepare import load_cuts
    from asr.evaluation.evaluate import evaluate_cuts
    from asr.evaluation.scoring import (
        breakdown_table,
        evaluate_and_report,
        load_refs_tsv,
        speaker_labels,
        spread_subset,
    )
    from asr.inference.model_dir import BUNDLED, load_model, write_card_section
    from asr.search.methods import available_methods
    from asr.search.options import DecodeOptions
    from asr.train.export import export_model

    ap = argparse.ArgumentParser()
    ap.add_argument("exp", type=Path, nargs="?", help="experiment folder to export from")
    ap.add_argument("--model", type=Path, help="an exported model directory instead of EXP (its card keeps its training log)")
    ap.add_argument("--manifests", type=Path, default=REPO / "data/work/manifests_synthetic")
    ap.add_argument("--real", type=Path, default=REPO.parent / "shared/real/manifest.tsv")
    ap.add_argument("--recorded", action="append", default=[], metavar="SUBSET",
                    help="also score every decoder on this subset of --manifests (recorded speech imported with "
                         "`asr data import`, e.g. real_test: speechocean762's test speakers); repeatable")
    ap.add_argument("--average", type=int, default=4)
    ap.add_argument("--select", choices=("best", "last"), default="best", help="checkpoints by dev CER or newest")
    ap.add_argument("--limit", type=int, default=0, help="score N evenly spaced test utterances with every decoder "
                    "(CTC greedy per voice always scores all of them)")
    ap.add_argument("--out", type=Path, default=BUNDLED / "demo")
    ap.add_argument("--recipe", default="bash recipes/librispeech/run.sh", help="the command that trained EXP (for the card)")
    a = ap.parse_args()
    if (a.exp is None) == (a.model is None):
        ap.error("give EXP or --model DIR, not both")
    torch.set_num_threads(2)
    if a.model is not None:
        out = copy_model_dir(a.model, a.out)
    else:
        out = export_model(a.exp, a.out, average_last=a.average, half=True, select=a.select)
    details = (a.exp if a.exp is not None else REPO / "data" / "work") / "decode_demo"  # never inside the package
    loaded = load_model(out)
    methods = available_methods(loaded.model)
    opts = DecodeOptions()
    cuts = load_cuts(a.manifests, "test").to_eager()
    all_cuts = cuts
    cuts = spread_subset(cuts, a.limit)  # evenly spaced over the whole test subset
    t0 = time.time()
    table = evaluate_and_report(loaded, cuts, "synthetic-test", methods, opts, details, echo=print)
    body = [f"Decoded {len(cuts)} utterances of the synthetic test subset (voices never heard in training"
            f"{', evenly spaced over its ' + str(len(all_cuts)) if len(cuts) < len(all_cuts) else ''}) "
            f"with every decoder; beam {opts.beam}, joint CTC weight {opts.ctc_weight}, Mask-CTC threshold "
            f"{opts.mask_threshold} / {opts.mask_iterations} iterations; real-time factor of the whole decode "
            f"on 2 CPU threads (fbank + encoder + search), full context.", "", table, ""]
    greedy = evaluate_cuts(loaded, all_cuts, "ctc_greedy", opts)
    body += [f"CTC greedy per test voice (all {len(all_cuts)} test utterances; every voice unseen in training; "
             f"overall WER {100 * greedy.wer.rate:.2f}%, CER {100 * greedy.cer.rate:.2f}%), worst first:", "",
             breakdown_table(greedy, speaker_labels(all_cuts), "voice"), ""]
    for sub in a.recorded:
        rec_cuts = load_cuts(a.manifests, sub).to_eager()
        hours = sum(c.duration for c in rec_cuts) / 3600
        rec = evaluate_and_report(loaded, rec_cuts, sub, methods, opts, details, echo=print)
        body += [f"Recorded speech, subset `{sub}` ({len(rec_cuts)} utterances, {hours:.2f} h; speakers never heard "
                 "in training):", "", rec, ""]
    if a.real.is_file():
        real_cuts, errors = load_refs_tsv(a.real)
        real = evaluate_and_report(loaded, real_cuts, "shared-real", methods, opts, details, echo=print)
        body += [f"Real recorded speech ({len(real_cuts)} clips from ../shared/real: LibriSpeech, LJ Speech and "
                 "others; human voices, none like the synthetic training data):", "", real, ""]
    body += [f"Reproduce: `{a.recipe}` (trains this model), then "
             f"`.venv/bin/python tools/make_demo_model.py {'--model ' + str(a.model) if a.model else (a.exp.relative_to(REPO) if a.exp.is_relative_to(REPO) else a.exp)}`"
             f" (took {time.time() - t0:.0f} s here)."]
    write_card_section(out, "Measured WER per decoder", "\n".join(body))
    print((out / "MODEL_CARD.md").read_text())


def copy_model_dir(src: Path, out: Path) -> Path:
    """Replace ``out`` with a copy of the model directory ``src``'s files (atomically)."""
    import shutil

    from asr.files import atomic_model_dir
    from asr.inference.model_dir import FILES, load_model

    load_model(src)  # refuse a directory that does not load, before touching out
    with atomic_model_dir(out) as tmp:
        for name in FILES:
            shutil.copyfile(src / name, tmp / name)
    return out


if __name__ == "__main__":
    main()
