"""Self-describing model directories: export from an experiment, load without unpickling.

A model directory holds::

    config.yaml        the model config (vocabulary size filled in)
    model.safetensors  weights (CMVN statistics included as buffers)
    tokenizer.model    SentencePiece model
    cmvn.json          the global CMVN statistics (also inside the weights)
    MODEL_CARD.md      what it is, how it was trained, measured figures
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


from asr.config import Config, from_dict, load_config, to_dict
from asr.models.asr_model import ASRModel, count_parameters
from asr.text import Tokenizer
from asr.train.checkpoint import average_checkpoints, list_checkpoints, load_checkpoint

FILES = ("config.yaml", "model.safetensors", "tokenizer.model", "cmvn.json", "MODEL_CARD.md")


@dataclass(frozen=True)
class LoadedModel:
    model: ASRModel  # in eval mode
    tokenizer: Tokenizer
    config: Config
    path: Path


def averaged_weights(exp: Path, last: int = 1, checkpoints: list[Path] | None = None) -> tuple[dict, list[Path]]:
    """Model weights averaged over the ``last`` N checkpoints of ``exp`` (or the given ones)."""
    paths = checkpoints or list_checkpoints(exp)[-last:]
    if not paths:
        raise FileNotFoundError(f"{exp}: no checkpoints (step-N.pt)")
    if len(paths) == 1:
        return load_checkpoint(paths[0])["model"], paths
    return average_checkpoints(paths), paths


def export_model(exp: str | os.PathLike, out: str | os.PathLike, average_last: int = 1, card_extra: str = "",
                 half: bool = False) -> Path:
    """Write a model directory from experiment ``exp`` (atomically: a temp folder renamed into place).
    ``half``: store weights in float16 (half the size; loaded back into float32)."""
    import torch
    from safetensors.torch import save_file

    exp, out = Path(exp), Path(out)
    cfg = load_config(exp / "config.yaml")
    weights, used = averaged_weights(exp, average_last)
    model = ASRModel(cfg.model)
    model.load_state_dict(weights)  # validates the weights against the config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model directory is meant to be shared
    try:
        def keep(k: str, v: torch.Tensor) -> torch.Tensor:  # fp16 for weights; statistics stay fp32
            if half and v.is_floating_point() and "running_" not in k and "cmvn" not in k:
                return v.half().contiguous()
            return v.contiguous()

        save_file({k: keep(k, v) for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        shutil.copyfile(exp / "config.yaml", tmp / "config.yaml")
        for name in ("tokenizer.model", "cmvn.json"):
            shutil.copyfile(exp / name, tmp / name)
        summary = {}
        if (exp / "train_summary.json").is_file():
            summary = json.loads((exp / "train_summary.json").read_text())
        params = count_parameters(model)
        card = [f"# {out.name}", "", "Conformer encoder with CTC, attention and Mask-CTC heads, trained with `asr train`.", "",
                "## Shape", "", "```yaml", json.dumps(to_dict(cfg.model), indent=1), "```", "",
                "Parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()), "",
                "## Training", "", f"Averaged checkpoints: {', '.join(p.name for p in used)}", ""]
        if summary:
            card += ["| figure | value |", "|---|---|"] + [f"| {k} | {round(v, 4) if isinstance(v, float) else v} |"
                                                         for k, v in summary.items()
                                                         if not isinstance(v, (list, dict))] + [""]
        curve = learning_curve_table(exp / "train_log.jsonl")
        if curve:
            card += ["Learning curve (CTC greedy on the validation utterances the trainer scores; minutes of "
                     "training, validation excluded):", "", curve, ""]
        if card_extra:
            card += [card_extra, ""]
        (tmp / "MODEL_CARD.md").write_text("\n".join(card))
        if out.exists():
            backup = out.with_name(f".{out.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(out, backup)
            os.replace(tmp, out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def learning_curve_table(train_log: str | os.PathLike) -> str:
    """Markdown table of the validation rows of a ``train_log.jsonl`` (step, minutes, WER/CER per
    scored subset); empty when there are none."""
    path = Path(train_log)
    if not path.is_file():
        return ""
    rows = [r for r in map(json.loads, path.read_text().splitlines()) if "valid_wer" in r]
    if not rows:
        return ""
    extra = sorted({k[:-4] for r in rows for k in r if k.endswith("_wer") and k != "valid_wer"})  # --curve-subset
    head = "| step | minutes | valid WER | valid CER |" + "".join(f" {n} WER | {n} CER |" for n in extra)
    lines = [head, "|" + "---|" * (4 + 2 * len(extra))]
    pct = lambda r, k: f"{100 * r[k]:.1f}%" if k in r else ""  # noqa: E731
    for r in rows:
        cells = [str(r["step"]), f"{r['wall_min']:.1f}", pct(r, "valid_wer"), pct(r, "valid_cer")]
        cells += [pct(r, f"{n}_{m}") for n in extra for m in ("wer", "cer")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_card_section(model_dir: str | os.PathLike, title: str, body: str) -> None:
    """Append (or replace) a ``## title`` section of MODEL_CARD.md, atomically."""
    card = Path(model_dir) / "MODEL_CARD.md"
    text = card.read_text() if card.is_file() else ""
    head = f"## {title}"
    if head in text:
        before, _, after = text.partition(head)
        rest = after.split("\n## ", 1)
        text = before + (("## " + rest[1]) if len(rest) > 1 else "")
    text = text.rstrip() + f"\n\n{head}\n\n{body}\n"
    tmp = card.with_name(".MODEL_CARD.md.tmp")
    tmp.write_text(text)
    os.replace(tmp, card)


BUNDLED = Path(__file__).parent / "pretrained"


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A model directory, or the name of a model bundled with the package (``demo``)."""
    d = Path(path)
    if d.is_dir():
        return d
    if (BUNDLED / str(path)).is_dir():
        return BUNDLED / str(path)
    raise FileNotFoundError(f"{path}: no such model directory (bundled models: "
                            f"{', '.join(sorted(p.name for p in BUNDLED.iterdir() if p.is_dir())) if BUNDLED.is_dir() else 'none'})")


def load_model(path: str | os.PathLike, device: str = "cpu") -> LoadedModel:
    """Load a model directory (or a bundled model by name, e.g. ``demo``): config, safetensors weights and
    tokenizer. Nothing is unpickled."""
    from safetensors.torch import load_file

    import yaml

    d = resolve_model_path(path)
    missing = [f for f in FILES[:3] if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: not a model directory (missing {', '.join(missing)})")
    cfg = from_dict(Config, yaml.safe_load((d / "config.yaml").read_text()))
    tok = Tokenizer(d / "tokenizer.model")
    if tok.vocab_size != cfg.model.vocab_size:
        raise ValueError(f"{d}: tokenizer has {tok.vocab_size} ids but the model expects {cfg.model.vocab_size}")
    model = ASRModel(cfg.model)
    model.load_state_dict(load_file(str(d / "model.safetensors"), device="cpu"))
    return LoadedModel(model.to(device).eval(), tok, cfg, d)


__all__ = ["LoadedModel", "export_model", "load_model", "averaged_weights", "resolve_model_path", "BUNDLED"]
