"""Measure hotword biasing: recall of the hotwords the audio contains, and WER, with and without ``--hotwords``.

    .venv/bin/python tools/hotword_check.py --manifests M --subset dev --words LM/words.txt \
        --boost 1.5 --decoder ctc_prefix_beam --decoder joint_ctc_attention

The list is every word of at least ``--min-letters`` letters in the first ``--limit`` references (the
targets) plus ``--distractors`` times as many other words of the same lengths drawn from ``--words`` (so
the biasing must pick the right entries out of a list, as a contact or product list would make it).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--manifests", type=Path, required=True)
    ap.add_argument("--subset", default="dev")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--words", type=Path, required=True, help="vocabulary to draw distractors from (an LM's words.txt)")
    ap.add_argument("--boost", type=float, default=1.5)
    ap.add_argument("--min-letters", type=int, default=8)
    ap.add_argument("--distractors", type=int, default=4)
    ap.add_argument("--decoder", action="append", default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import torch

    from asr.data.prepare import load_cuts
    from asr.evaluation.evaluate import evaluate_cuts
    from asr.inference.model_dir import load_model
    from asr.search.options import DecodeOptions
    from asr.text import normalize_text

    torch.set_num_threads(a.threads)
    loaded = load_model(a.model)
    cuts = load_cuts(a.manifests, a.subset).subset(first=a.limit).to_eager()
    refs = [normalize_text(" ".join(s.text for s in c.supervisions)) for c in cuts]
    targets = sorted({w for r in refs for w in r.split() if len(w) >= a.min_letters})
    pool = [w for w in a.words.read_text(encoding="utf-8").split() if len(w) >= a.min_letters and w not in targets]
    random.Random(0).shuffle(pool)
    distract = pool[: a.distractors * len(targets)]
    hot = tuple((w, a.boost) for w in targets + distract)
    print(f"{a.subset}, {len(cuts)} utterances: {len(targets)} target words, {len(distract)} distractors, "
          f"boost {a.boost}")
    for method in a.decoder or ["ctc_prefix_beam"]:
        for label, opts in (("plain", DecodeOptions(timestamps=False)),
                            ("hotwords", DecodeOptions(timestamps=False, hotwords=hot))):
            r = evaluate_cuts(loaded, cuts, method, opts)
            hit = tot = 0
            for _, ref, hyp in r.rows:
                said = set(normalize_text(hyp).split())
                for w in normalize_text(ref).split():
                    if w in targets:
                        tot += 1
                        hit += w in said
            print(f"{method} {label}: WER {100 * r.wer.rate:.2f}%  target-word recall {hit}/{tot} = "
                  f"{100 * hit / max(1, tot):.1f}%  RTF {r.rtf:.4f}", flush=True)


if __name__ == "__main__":
    main()
