"""Export an experiment as a self-describing model directory (see :mod:`asr.inference.model_dir`), with averaging."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from asr.config import load_config, to_dict
from asr.errors import UserError
from asr.files import atomic_model_dir
from asr.inference.model_dir import load_model
from asr.models.asr_model import ASRModel, count_parameters
from asr.tokenizers import load_tokenizer
from asr.train.checkpoint import (
    average_checkpoints,
    best_checkpoints,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    load_scores,
    model_weights,
)


def averaged_weights(exp: Path, last: int = 1, checkpoints: list[Path] | None = None,
                     select: str = "last") -> tuple[dict, list[Path]]:
    """Model weights averaged over N checkpoints of ``exp`` (or the given ones): the ``last`` N, or with
    ``select="best"`` the N with the lowest dev CER recorded during training (the last N when none was)."""
    if select not in ("best", "last"):
        raise UserError(f"select must be best or last, not {select!r}")
    paths = checkpoints or (best_checkpoints(exp, last) if select == "best" else list_checkpoints(exp)[-last:])
    if not paths:
        raise FileNotFoundError(f"{exp}: no checkpoints (step-N.pt)")
    if len(paths) == 1:
        return model_weights(load_checkpoint(paths[0])), paths
    return average_checkpoints(paths), paths


def interpolate_weights(tuned: dict, base: dict, alpha: float) -> dict:
    """``alpha * tuned + (1 - alpha) * base`` for every floating-point tensor (integer ones, such as BatchNorm's
    step counter, are ``tuned``'s): WiSE-FT's weight-space interpolation between a fine-tuned model and the
    model it started from, which trades what fine-tuning gained against what it forgot with one number."""
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"interpolation weight must be in [0, 1], not {alpha}")
    missing = sorted(set(tuned) ^ set(base))
    bad = [k for k in tuned if k in base and tuned[k].shape != base[k].shape]
    if missing or bad:
        raise UserError(f"cannot interpolate models of different shapes ({(missing + bad)[:3]} differ)")
    return {k: (alpha * v.float() + (1.0 - alpha) * base[k].float()) if v.is_floating_point() else v
            for k, v in tuned.items()}


def export_model(exp: str | os.PathLike, out: str | os.PathLike, average_last: int = 1, card_extra: str = "",
                 half: bool = False, select: str = "best", interpolate: str | None = None,
                 alpha: float = 1.0) -> Path:
    """Write a model directory from experiment ``exp`` (atomically: a temp folder renamed into place), averaging
    ``average_last`` checkpoints chosen by ``select`` (``best``: lowest dev CER; ``last``: newest).
    ``half``: store weights in float16 (half the size; loaded back into float32). ``interpolate``: a model
    directory (e.g. the ``--init`` model, or ``demo``) mixed in with weight ``1 - alpha`` (:func:`interpolate_weights`)."""

    exp, out = Path(exp), Path(out)
    cfg = load_config(exp / "config.yaml")
    weights, used = averaged_weights(exp, average_last, select=select)
    scores = load_scores(exp)
    tokenizer = load_tokenizer(exp)
    model = ASRModel(cfg.model, tokenizer.specials)
    model.load_state_dict(weights)  # validates the weights against the config
    if interpolate is not None:
        base = load_model(interpolate).model.state_dict()
        model.load_state_dict(interpolate_weights(model.state_dict(), base, alpha))
    with atomic_model_dir(out) as tmp:
        def keep(k: str, v: torch.Tensor) -> torch.Tensor:  # fp16 for weights; statistics stay fp32
            if half and v.is_floating_point() and "running_" not in k and "cmvn" not in k:
                return v.half().contiguous()
            return v.contiguous()

        save_file({k: keep(k, v) for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        shutil.copyfile(exp / "config.yaml", tmp / "config.yaml")
        shutil.copyfile(tokenizer.model_path, tmp / tokenizer.model_path.name)
        if (exp / "cmvn.json").is_file():
            shutil.copyfile(exp / "cmvn.json", tmp / "cmvn.json")
        summary = {}
        if (exp / "train_summary.json").is_file():
            summary = json.loads((exp / "train_summary.json").read_text())
        params = count_parameters(model)
        card = [f"# {out.name}", "", "Conformer encoder with CTC, attention and Mask-CTC heads, trained with `asr train`.", "",
                "## Shape", "", "```yaml", json.dumps(to_dict(cfg.model), indent=1), "```", "",
                "Parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()), "",
                "## Training", "", f"Averaged checkpoints ({select} by dev CER): " + ", ".join(
                    p.name + (f" (dev CER {100 * scores[checkpoint_step(p)]:.1f}%)"
                              if checkpoint_step(p) in scores else "") for p in used)
                + (f"; their EMA weights (decay {cfg.train.ema_decay})" if cfg.train.ema_decay else "")
                + (f"; interpolated with `{interpolate}`: {alpha:g} x these + {1 - alpha:g} x its weights (WiSE-FT)"
                   if interpolate is not None else ""), ""]
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


__all__ = ["export_model", "atomic_model_dir", "averaged_weights", "learning_curve_table"]
