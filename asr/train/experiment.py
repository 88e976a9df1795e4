"""An experiment folder's run: whether one is there, clearing it, checking a resume against it, and the
weights a new run starts from (``--init``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from asr.config import Config, load_config, to_dict
from asr.errors import UserError
from asr.inference.model_dir import load_model, weight_mismatches
from asr.models.asr_model import ASRModel
from asr.tokenizers import load_tokenizer
from asr.train.checkpoint import list_checkpoints


class ExperimentError(UserError):
    """An experiment folder that this run must not write into as asked. ``str(err)`` is one line."""


NEW_HEADS = ("ctc.", "mlm.")  # parameters an --init model may lack (heads the new config adds)
RUN_FILES = ("train_log.jsonl", "train_summary.json", "tensorboard", "valid_scores.json")  # with step-N.pt: one run's files


def _earlier_run(exp: Path) -> list[str]:
    """What an earlier run left in ``exp`` (checkpoints, logs), by name."""
    if not exp.is_dir():
        return []
    names = [p.name for p in list_checkpoints(exp)] + [p.name for p in sorted(exp.glob("step-*.pt.corrupt"))]
    return names + [n for n in RUN_FILES if (exp / n).exists()]


def _clear_run(exp: Path) -> None:
    for p in list(list_checkpoints(exp)) + sorted(exp.glob("step-*.pt.corrupt")):
        p.unlink()
    for n in RUN_FILES:
        if (exp / n).is_dir():
            shutil.rmtree(exp / n)
        elif (exp / n).exists():
            (exp / n).unlink()


def _check_resume(exp: Path, cfg: Config, lang: Path) -> None:
    """Refuse to continue an experiment with another model shape or tokenizer (before anything is written)."""
    if (exp / "config.yaml").is_file():
        try:
            old = load_config(exp / "config.yaml")
        except Exception as e:  # noqa: BLE001 - a damaged config cannot be compared
            raise ExperimentError(f"{exp / 'config.yaml'}: cannot be read to check the resume ({e})") from None
        a, b = to_dict(old.model), to_dict(cfg.model)
        diff = sorted(_flat_diff(a, b))
        if diff:
            raise ExperimentError(f"{exp}: its checkpoints have another model config ({', '.join(diff[:4])}"
                                  f"{'...' if len(diff) > 4 else ''}); resume with the same model, or use another --exp "
                                  f"(or --overwrite to start over)")
    for name in ("tokenizer.model", "tokenizer.json", "cmvn.json"):
        if (exp / name).is_file() and (lang / name).is_file() and not _same_file(name, exp / name, lang / name):
            raise ExperimentError(f"{exp / name}: differs from {lang / name}: the experiment was trained with another "
                                  f"{name.split('.')[0]}; use its lang folder, another --exp, or --overwrite")


def _same_file(name: str, a: Path, b: Path) -> bool:
    """Equal CMVN statistics, or tokenizers that encode alike (see :meth:`Tokenizer.same_as`)."""
    if a.read_bytes() == b.read_bytes():
        return True
    return name.startswith("tokenizer.") and load_tokenizer(a).same_as(load_tokenizer(b))


def _init_weights(init: str, cfg: Config, lang: Path) -> tuple[dict, Path]:
    """The weights of model directory ``init`` (or a bundled model's name) to start a run from, checked against
    this run's model and lang folder before anything is written: same parameter names and shapes, same tokenizer
    and CMVN statistics (a tokenizer with the same size but other pieces would silently relabel every output)."""
    try:
        loaded = load_model(init)
    except (FileNotFoundError, ValueError) as e:
        raise ExperimentError(f"--init {init}: {e}") from None
    d = loaded.path
    if loaded.config.model.frontend != cfg.model.frontend:
        raise ExperimentError(f"--init {init}: it was trained on other features ({loaded.config.model.frontend.kind}) "
                              f"than this config's ({cfg.model.frontend.kind})")
    for name in ("tokenizer.model", "tokenizer.json", "cmvn.json"):
        if (lang / name).is_file() and (d / name).is_file() and not _same_file(name, d / name, lang / name):
            raise ExperimentError(f"{lang / name}: differs from {d / name}: --init {init} was trained with another "
                                  f"{name.split('.')[0]}; pass --lang {d} (its own) or a model trained with this lang folder")
    weights = loaded.model.state_dict()
    missing, extra, shape = weight_mismatches(ASRModel(cfg.model, loaded.tokenizer.specials).state_dict(), weights)
    # heads this config adds (a CTC head, a Mask-CTC decoder) start fresh; anything else must match
    bad = [k for k in missing if not k.startswith(NEW_HEADS)] + extra + shape
    if bad:
        raise ExperimentError(f"--init {init}: its weights do not fit this config's model ({len(bad)} parameters missing, "
                              f"extra or of another shape, e.g. {bad[0]}); train with its config ({d / 'config.yaml'})")
    return weights, d


def _flat_diff(a: dict, b: dict, prefix: str = "model") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _flat_diff(x, y, f"{prefix}.{k}")
        elif x != y:
            out.append(f"{prefix}.{k}: {x} -> {y}")
    return out
