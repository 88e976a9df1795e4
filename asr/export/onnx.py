"""ONNX export of a model directory, for onnxruntime inference (``asr export-onnx MODEL OUT``).

Graphs written to OUT (all with dynamic batch / time axes, traced with ``torch.onnx.export``)::
    encoder.onnx          raw fbank (B, T, 80), lengths (B,) -> encoder output (B, T', D), lengths (B,)
                          (global CMVN inside; full context)
    encoder_chunk.onnx    one streaming chunk: raw fbank window (1, W, 80), attention cache (L, 1, H, Tc, 2 d_k),
                          convolution cache (L, 1, D, K-1) -> output (1, C, D), new caches (attention: Tc + C
                          frames; the caller keeps the last ``left_frames``)
    ctc.onnx              encoder output (B, T', D) -> CTC log-probs (B, T', V)
    decoder_init.onnx     encoder output (B, T', D) -> projected memory of every decoder layer (L, B, H, T', 2 d_k)
    decoder_step.onnx     newest tokens (N,), memory mask (B, T'), self-attention cache (L, N, H, t, 2 d_k),
                          memory (L, B, H, T', 2 d_k) -> next-token log-probs (N, V), new self cache (L, N, H, t+1, 2 d_k)
                          (N = B x beam: each utterance's hypotheses share its memory row)

plus the model directory's ``config.yaml``, ``tokenizer.model`` and model card, and ``onnx.json`` (what was
exported, opset, parity figures measured at export). :mod:`asr.export.onnx_runtime` runs them.

A Whisper-encoder model with a CTC head (``whisper-tiny-en-ctc``) exports ``encoder.onnx`` (its log-mel front end
stays in Python, as ``config.yaml`` names it) and ``ctc.onnx``: batch decoding. Its streaming step keeps Python
branches on the stream's position (the first window's padding, the last one's) that a traced graph would freeze, so
it has no ``encoder_chunk.onnx`` and streams with PyTorch. An imported Whisper without a CTC head is refused: its
search is Whisper's own decoder, which the export does not hold.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from asr.errors import UserError
from asr.export.onnx_runtime import OnnxModel
from asr.files import atomic_path, write_atomic
from asr.inference.model_dir import load_model
from asr.models.state import DecoderCache, EncoderState

OPSET = 17


class _Encoder(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, feats, feat_lens):
        return self.m.encode(feats, feat_lens)


class _ChunkEncoder(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, feats, att_cache, conv_cache):
        x = (feats - self.m.cmvn_mean) / self.m.cmvn_std
        y, st = self.m.encoder.forward_chunk(x, EncoderState(att_cache, conv_cache, 0))
        return y, st.att_cache, st.conv_cache


class _CTC(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, enc):
        return self.m.ctc_log_probs(enc)


class _DecoderInit(nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, enc):
        return torch.stack(self.dec.init_cache(enc).memory_kv)


class _DecoderStep(nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, tokens, memory_mask, self_kv, memory_kv):
        lp, cache = self.dec.step(tokens, memory_mask, DecoderCache(tuple(self_kv.unbind(0)), tuple(memory_kv.unbind(0))))
        return lp, torch.stack(cache.self_kv)


def _export(module, args, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    # export restores the wrapper's training flag afterwards, recursively: a wrapper left in training mode
    # would put the model in training mode, and the next forward would update BatchNorm's statistics
    module.eval()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints: the graphs are checked below
        torch.onnx.export(module, args, str(tmp), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)


def export_onnx(model_dir: str | os.PathLike, out: str | os.PathLike, check: bool = True) -> dict:
    """Export every graph of the model (see the module doc) into ``out``; with ``check``, run each once
    in onnxruntime on inputs of other shapes than the traced ones and record the largest difference to
    PyTorch in ``onnx.json``."""

    loaded = load_model(model_dir)
    m = loaded.model.float().eval()
    kind = loaded.config.model.encoder.kind
    if m.ctc is None:
        raise UserError(f"{loaded.path}: asr export-onnx exports models with a CTC head (its runtime decodes from CTC); "
                         f"this {kind} model has no CTC head" + (" (its search is Whisper's own decoder: run it with PyTorch)"
                                                          if kind == "whisper" else ""))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = loaded.config.model.encoder
    L, H, dk, D = c.num_layers, c.num_heads, c.d_model // c.num_heads, c.d_model
    K = c.kernel_size - 1
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 200, c.input_dim, generator=g) * 3 + 8
    lens = torch.tensor([200, 150])
    graphs = []
    with torch.inference_mode(False), torch.no_grad():
        _export(_Encoder(m), (feats, lens), out / "encoder.onnx", ["feats", "feat_lens"], ["enc", "enc_lens"],
                {"feats": {0: "B", 1: "T"}, "feat_lens": {0: "B"}, "enc": {0: "B", 1: "T_enc"}, "enc_lens": {0: "B"}})
        graphs.append("encoder.onnx")
        enc, _ = m.encode(feats, lens)
        _export(_CTC(m), (enc,), out / "ctc.onnx", ["enc"], ["log_probs"],
                {"enc": {0: "B", 1: "T_enc"}, "log_probs": {0: "B", 1: "T_enc"}})
        graphs.append("ctc.onnx")
        if c.causal_conv and kind == "conformer":
            window, _ = m.encoder.chunk_window(16)
            args = (feats[:1, :window], torch.randn(L, 1, H, 32, 2 * dk, generator=g), torch.randn(L, 1, D, K, generator=g))
            _export(_ChunkEncoder(m), args, out / "encoder_chunk.onnx", ["feats", "att_cache", "conv_cache"],
                    ["out", "new_att_cache", "new_conv_cache"],
                    {"feats": {0: "B", 1: "W"}, "att_cache": {1: "B", 3: "T_cache"}, "conv_cache": {1: "B"},
                     "out": {0: "B", 1: "C"}, "new_att_cache": {1: "B", 3: "T_cache_new"}, "new_conv_cache": {1: "B"}})
            graphs.append("encoder_chunk.onnx")
        if m.decoder is not None:
            dec = m.decoder
            nl = len(dec.layers)
            _export(_DecoderInit(dec), (enc,), out / "decoder_init.onnx", ["enc"], ["memory_kv"],
                    {"enc": {0: "B", 1: "T_enc"}, "memory_kv": {1: "B", 2: "T_enc"}})
            mem = torch.stack(dec.init_cache(enc).memory_kv)
            self_kv = torch.randn(nl, 6, H, 3, 2 * dk, generator=g)  # 2 utterances x beam 3
            mask = torch.ones(2, enc.size(1), dtype=torch.bool)
            _export(_DecoderStep(dec), (torch.tensor([3, 4, 5, 6, 7, 8]), mask, self_kv, mem), out / "decoder_step.onnx",
                    ["tokens", "memory_mask", "self_kv", "memory_kv"], ["log_probs", "new_self_kv"],
                    {"tokens": {0: "N"}, "memory_mask": {0: "B", 1: "T_enc"}, "self_kv": {1: "N", 3: "t"},
                     "memory_kv": {1: "B", 3: "T_enc"}, "log_probs": {0: "N"}, "new_self_kv": {1: "N", 3: "t_new"}})
            graphs.append("decoder_init.onnx")
            graphs.append("decoder_step.onnx")
    for f in ("config.yaml", "tokenizer.model", "MODEL_CARD.md"):
        if (loaded.path / f).is_file():
            shutil.copyfile(loaded.path / f, out / f)
    info = {"source": str(loaded.path), "opset": OPSET, "graphs": graphs, "torch": torch.__version__,
            "subsampling_rate": m.encoder.rate, "receptive_field": m.encoder.receptive_field}

    write_atomic(out / "onnx.json", json.dumps(info, indent=2) + "\n")
    if check:
        info["max_abs_diff"] = parity(loaded, out)
    write_atomic(out / "onnx.json", json.dumps(info, indent=2) + "\n")
    return info


def parity(loaded, onnx_dir: str | os.PathLike, seed: int = 1) -> dict:
    """Largest absolute difference between PyTorch and onnxruntime for every graph, on inputs of other
    shapes than the traced ones (3 utterances, other lengths, another cache size)."""

    om = OnnxModel(onnx_dir)
    m = loaded.model.float().eval()
    c = loaded.config.model.encoder
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(3, 317, c.input_dim, generator=g) * 3 + 8
    lens = torch.tensor([317, 240, 101])
    out = {}
    with torch.inference_mode():
        enc, el = m.encode(feats, lens)
        enc2, el2 = om.encode(feats, lens)
        valid = (torch.arange(enc.size(1)).unsqueeze(0) < el.unsqueeze(1)).unsqueeze(-1)
        out["encoder"] = float(((enc - enc2).abs() * valid).max())
        assert torch.equal(el, el2)
        out["ctc"] = float(((m.ctc_log_probs(enc) - om.ctc_log_probs(enc)).abs() * valid).max())
        if om.chunk_session is not None:
            st_t, st_o = m.encoder.init_state(), om.encoder.init_state()
            window, stride = m.encoder.chunk_window(8)
            x = (feats[:1] - m.cmvn_mean) / m.cmvn_std
            worst = 0.0
            for k in range(3):
                w = feats[:1, k * stride: k * stride + window]
                y_t, st_t = m.encoder.forward_chunk(x[:, k * stride: k * stride + window], st_t, 24)
                y_o, st_o = om.encoder.forward_chunk(w, st_o, 24)
                worst = max(worst, float((y_t - y_o).abs().max()))
            out["encoder_chunk"] = worst
        if m.decoder is not None:
            beam = 2
            cache_t = m.decoder.init_cache(enc, beam)
            cache_o = om.decoder.init_cache(enc, beam)
            mask = torch.arange(enc.size(1)).unsqueeze(0) < el.unsqueeze(1)
            worst = 0.0
            for t in range(4):
                toks = torch.randint(1, loaded.config.model.vocab_size - 2, (3 * beam,), generator=g)
                a, cache_t = m.decoder.step(toks, mask, cache_t)
                b, cache_o = om.decoder.step(toks, mask, cache_o)
                worst = max(worst, float((a - b).abs().max()))
                parent = torch.tensor([1, 0, 2, 2, 5, 4])
                cache_t, cache_o = cache_t.select(parent), cache_o.select(parent)
            out["decoder_step"] = worst
    return {k: round(v, 8) for k, v in out.items()}


__all__ = ["export_onnx", "parity", "OPSET"]
