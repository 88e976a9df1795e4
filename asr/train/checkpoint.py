"""Checkpoints: atomic save, keep the last K, resume, averaging, and loading without unpickling objects."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import torch

from asr.errors import UserError
from asr.files import atomic_path, stale_temp_files, write_atomic

_CKPT = re.compile(r"^step-(\d+)\.pt$")
SCORES = "valid_scores.json"  # {step: dev CER at that checkpoint}: what --select best ranks by


def atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict:
    """Every RNG the training loop draws from, as plain tensors and lists (weights_only-loadable); the CUDA
    generators too when CUDA is initialised."""
    py = random.getstate()
    npst = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": [py[0], list(py[1]), py[2]],
             "numpy": [npst[0], torch.from_numpy(npst[1].astype(np.int64)), npst[2], npst[3], npst[4]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"][: torch.cuda.device_count()])


def checkpoint_step(path: Path) -> int:
    """N of ``step-N.pt``."""
    return int(_CKPT.match(Path(path).name).group(1))


def list_checkpoints(exp_dir: Path) -> list[Path]:
    """``exp_dir/step-N.pt`` sorted by N."""
    found = [(int(m.group(1)), p) for p in Path(exp_dir).glob("step-*.pt") if (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def load_scores(exp_dir: Path) -> dict[int, float]:
    """Dev CER of each checkpoint step that had a validation (empty for older experiments)."""

    p = Path(exp_dir) / SCORES
    if not p.is_file():
        return {}
    try:
        return {int(k): float(v) for k, v in json.loads(p.read_text()).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def record_score(exp_dir: Path, step: int, score: float) -> None:

    scores = load_scores(exp_dir)
    scores[step] = float(score)
    write_atomic(Path(exp_dir) / SCORES, json.dumps({str(k): v for k, v in sorted(scores.items())}, indent=1) + "\n")


def best_checkpoints(exp_dir: Path, n: int) -> list[Path]:
    """The ``n`` checkpoints with the lowest recorded dev CER (WeNet's ``--val_best``), oldest first; the last
    ``n`` when no scores were recorded."""
    scores = load_scores(exp_dir)
    paths = list_checkpoints(exp_dir)
    scored = [p for p in paths if checkpoint_step(p) in scores]
    if not scored:
        return paths[-n:]
    best = sorted(scored, key=lambda p: (scores[checkpoint_step(p)], -paths.index(p)))[:n]
    return [p for p in paths if p in best]


def save_checkpoint(exp_dir: Path, step: int, state: dict, keep_last: int, keep_best: int = 0) -> Path:
    """Save atomically; delete all but the newest ``keep_last`` and the ``keep_best`` best-scored ones."""
    path = Path(exp_dir) / f"step-{step}.pt"
    atomic_torch_save(state, path)
    keep = set(best_checkpoints(exp_dir, keep_best)) if keep_best > 0 and load_scores(exp_dir) else set()
    for old in list_checkpoints(exp_dir)[:-keep_last] if keep_last > 0 else []:
        if old not in keep:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_latest_checkpoint(exp_dir: Path, warn=None) -> tuple[dict, Path] | None:
    """The newest readable checkpoint of ``exp_dir`` and its path (None when there is none). A newer
    checkpoint that cannot be read (a crash mid-copy, a full disk) is renamed ``step-N.pt.corrupt`` so it
    is kept for inspection but no longer counted, and ``warn`` is told; stale temporary files of killed
    saves are removed."""
    for tmp in stale_temp_files(exp_dir, "step-*.pt"):
        tmp.unlink(missing_ok=True)
    for path in reversed(list_checkpoints(exp_dir)):
        try:
            state = load_checkpoint(path)
            if not isinstance(state, dict) or "model" not in state:
                raise UserError("no model weights in it")
            return state, path
        except Exception as e:  # noqa: BLE001 - zip, pickle and shape errors alike mean "unreadable"
            bad = path.with_name(path.name + ".corrupt")
            path.replace(bad)
            if warn:
                cause = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                warn(f"{path}: unreadable checkpoint ({cause}); kept as {bad.name}, falling back to the previous one")
    return None


def model_weights(state: dict) -> dict[str, torch.Tensor]:
    """The weights a checkpoint stands for: the EMA of the weights when the run kept one (``train.ema_decay``)
    and it has been updated, else the raw ``model`` weights (which resume always uses)."""
    return state["ema"] if state.get("ema_updates", 0) > 0 and "ema" in state else state["model"]


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the weights (:func:`model_weights`) of several checkpoints (integer buffers from the
    last)."""
    if not paths:
        raise UserError("no checkpoints to average")
    avg: dict[str, torch.Tensor] = {}
    for p in paths:
        sd = model_weights(load_checkpoint(p))
        for k, v in sd.items():
            if v.is_floating_point():
                avg[k] = avg[k] + v.double() if k in avg else v.double().clone()
            else:
                avg[k] = v.clone()
    return {k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in avg.items()}
