"""Export for sherpa-onnx (``asr export-sherpa MODEL OUT``): the CTC head of a model in the layout and metadata of
sherpa-onnx's WeNet CTC models, so that its runtimes (C++, Python, Android, iOS, WASM, Raspberry Pi) run it::

    model.onnx            full context: fbank x (N, T, 80), x_lens (N,) -> log_probs (N, T', V), log_probs_lens (N,)
    model-streaming.onnx  one chunk: x (1, W, 80), offset (1,), required_cache_size (1,), attn_cache (L, H, R, 2 d_k),
                          conv_cache (L, 1, D, K-1), attn_mask (1, 1, R + C) bool -> log_probs (1, C, V),
                          next_att_cache (L, H, R, 2 d_k), next_conv_cache (L, 1, D, K-1)
    tokens.txt            "piece id" per line (id 0 the CTC blank)

    import sherpa_onnx
    offline = sherpa_onnx.OfflineRecognizer.from_wenet_ctc(model="OUT/model.onnx", tokens="OUT/tokens.txt")
    online = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(model="OUT/model-streaming.onnx", tokens="OUT/tokens.txt",
                                                         chunk_size=16, num_left_chunks=4)

Global CMVN is inside both graphs (sherpa passes raw fbank of int16-scale samples, as our features are). The
streaming graph keeps a fixed-size attention cache of R = chunk_size x num_left_chunks frames whose unfilled part
``attn_mask`` hides, as WeNet's does; any chunk size and left context work (the model was trained with dynamic
chunks). sherpa-onnx's front end differs from ours in two details it does not let a caller change: mel filters up to
7600 Hz (ours: 8000 Hz) and centred frames (``snip_edges=False``); the CER figures in ``sherpa.json`` and the test
measure what that costs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.errors import UserError
from asr.export.onnx import OPSET, _export
from asr.files import write_atomic
from asr.inference.model_dir import ModelError, load_model


class _Offline(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x, x_lens):
        enc, lens = self.m.encode(x, x_lens)
        return self.m.ctc_log_probs(enc), lens


class _Streaming(nn.Module):
    """WeNet's ``forward_chunk`` signature over our encoder layers."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x, offset, required_cache_size, attn_cache, conv_cache, attn_mask):
        enc = self.m.encoder
        x = (x - self.m.cmvn_mean) / self.m.cmvn_std
        x = x + (offset.sum() * 0).to(x.dtype)  # WeNet's graph takes the offset; relative positions need none
        lens = torch.full((x.size(0),), x.size(1), dtype=torch.long)
        x, _ = enc.subsampling(x, lens)
        x = enc.pos(x)
        C, R = x.size(1), attn_cache.size(2)
        pos = enc.pos.rel_embeddings(C, R + C, x.device, x.dtype)
        mask = attn_mask.expand(x.size(0), C, R + C)  # (1, C, R + C): the cache's unfilled frames are hidden
        new_att, new_conv = [], []
        for i, layer in enumerate(enc.layers):
            x, a, c = layer(x, pos, mask, None, attn_cache[i].unsqueeze(0), conv_cache[i])
            new_att.append(a[0, :, a.size(2) - required_cache_size[0]:])  # the last R frames
            new_conv.append(c)
        return self.m.ctc_log_probs(x), torch.stack(new_att), torch.stack(new_conv)


def _add_metadata(path: Path, meta: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=str(v))
    tmp = path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def tokens_txt(tokenizer, vocab_size: int) -> str:
    """sherpa-onnx's token table: ``piece id`` per line, every id of the model's output."""
    return "".join(f"{tokenizer.id_to_piece(i)} {i}\n" for i in range(vocab_size))


def export_sherpa(model_dir: str | os.PathLike, out: str | os.PathLike, chunk: int = 16, left_chunks: int = 4) -> dict:
    """Write ``model.onnx``, ``model-streaming.onnx`` (when the model streams) and ``tokens.txt`` into ``out``;
    check each graph once in onnxruntime against PyTorch (largest log-prob difference, in ``sherpa.json``)."""
    import onnxruntime as ort

    loaded = load_model(model_dir)
    if loaded.config.model.frontend.kind != "fbank":
        raise ModelError(f"{loaded.path}: sherpa-onnx computes Kaldi fbank; this model was trained on "
                         f"{loaded.config.model.frontend.kind} features")
    m = loaded.model.float().eval()
    c = loaded.config.model.encoder
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    V = m.ctc.proj.out_features
    L, H, D = c.num_layers, c.num_heads, c.d_model
    rate, right = m.encoder.rate, m.encoder.receptive_field - 1
    meta = {"model_type": "wenet_ctc", "version": "1", "model_author": "asr", "comment": f"asr export-sherpa of {loaded.path.name}",
            "vocab_size": V, "subsampling_factor": rate, "head": H, "num_blocks": L, "output_size": D,
            "cnn_module_kernel": c.kernel_size, "right_context": right, "chunk_size": chunk, "left_chunks": left_chunks}
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 300, c.input_dim, generator=g) * 3 + 8
    lens = torch.tensor([300, 220])
    report = {"model": str(loaded.path), "vocab_size": V, "graphs": []}
    with torch.inference_mode(False), torch.no_grad():
        _export(_Offline(m), (feats, lens), out / "model.onnx", ["x", "x_lens"], ["log_probs", "log_probs_lens"],
                {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "log_probs": {0: "N", 1: "T_out"}, "log_probs_lens": {0: "N"}})
        _add_metadata(out / "model.onnx", {**meta, "comment": meta["comment"] + " (full context)"})
        report["graphs"].append("model.onnx")
        sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        f2, l2 = feats[:, :250], torch.tensor([250, 180])
        ref, ref_lens = _Offline(m)(f2, l2)
        got, got_lens = sess.run(None, {"x": f2.numpy(), "x_lens": l2.numpy()})
        valid = torch.arange(ref.size(1)).unsqueeze(0) < ref_lens.unsqueeze(1)
        report["max_abs_diff_offline"] = float((torch.from_numpy(got) - ref)[valid].abs().max())
        if c.causal_conv:
            report["max_abs_diff_streaming"] = _export_streaming(m, out, meta, chunk, left_chunks, feats[:1])
            report["graphs"].append("model-streaming.onnx")
    write_atomic(out / "tokens.txt", tokens_txt(loaded.tokenizer, V))
    report.update(chunk_size=chunk, num_left_chunks=left_chunks, opset=OPSET)
    write_atomic(out / "sherpa.json", json.dumps(report, indent=2) + "\n")
    return report


def streaming_inputs(m, feats: torch.Tensor, chunk: int, left_chunks: int):
    """The chunks of ``feats (1, T, 80)`` as sherpa-onnx feeds a WeNet model: full windows, the cache of R frames
    and its mask. Yields ``(x, offset, required_cache_size, attn_mask)`` per chunk (the caches are the caller's)."""
    window, stride = m.encoder.chunk_window(chunk)
    R = chunk * left_chunks
    offset = R
    for start in range(0, feats.size(1) - window + 1, stride):
        idx = offset // chunk - left_chunks  # chunks decoded so far
        mask = torch.ones(1, 1, R + chunk, dtype=torch.bool)
        if idx < left_chunks:
            mask[..., : R - idx * chunk] = False
        yield feats[:, start:start + window], torch.tensor([offset]), torch.tensor([R]), mask
        offset += chunk


def _export_streaming(m, out: Path, meta: dict, chunk: int, left_chunks: int, feats: torch.Tensor) -> float:
    """Export ``model-streaming.onnx`` and return the largest log-prob difference between onnxruntime's chunks and
    PyTorch's own streaming encoder (``forward_chunk`` with ``left_chunks`` of context) over ``feats (1, T, 80)``."""
    import onnxruntime as ort

    c = m.encoder.cfg
    L, H, D, dk, R = c.num_layers, c.num_heads, c.d_model, c.d_model // c.num_heads, chunk * left_chunks
    att, conv = torch.zeros(L, H, R, 2 * dk), torch.zeros(L, 1, D, c.kernel_size - 1)
    x, offset, req, mask = next(streaming_inputs(m, feats, chunk, left_chunks))
    _export(_Streaming(m), (x, offset, req, att, conv, mask), out / "model-streaming.onnx",
            ["x", "offset", "required_cache_size", "attn_cache", "conv_cache", "attn_mask"],
            ["log_probs", "next_att_cache", "next_conv_cache"],
            {"x": {0: "N", 1: "T"}, "attn_cache": {2: "T_cache"}, "attn_mask": {2: "T_mask"}, "log_probs": {0: "N", 1: "C"},
             "next_att_cache": {2: "T_cache"}})
    _add_metadata(out / "model-streaming.onnx", {**meta, "comment": meta["comment"] + " (streaming)"})
    sess = ort.InferenceSession(str(out / "model-streaming.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if names != ["x", "offset", "required_cache_size", "attn_cache", "conv_cache", "attn_mask"]:
        raise RuntimeError(f"model-streaming.onnx lost inputs sherpa-onnx passes: it has {names}")
    state, worst = m.encoder.init_state(1), 0.0
    for x, offset, req, mask in streaming_inputs(m, feats, chunk, left_chunks):
        y, state = m.encoder.forward_chunk((x - m.cmvn_mean) / m.cmvn_std, state, R)
        ref = m.ctc_log_probs(y)
        lp, att, conv = sess.run(None, {"x": x.numpy(), "offset": offset.numpy(), "required_cache_size": req.numpy(),
                                        "attn_cache": att.numpy() if torch.is_tensor(att) else att,
                                        "conv_cache": conv.numpy() if torch.is_tensor(conv) else conv,
                                        "attn_mask": mask.numpy()})
        worst = max(worst, float((torch.from_numpy(lp) - ref).abs().max()))
    return worst


def sherpa_recognizer(out: str | os.PathLike, streaming: bool = False, front_end: str = "sherpa", num_threads: int = 1,
                      chunk_size: int = 16, num_left_chunks: int = 4):
    """sherpa-onnx's recognizer for an ``export-sherpa`` folder: ``OfflineRecognizer.from_wenet_ctc`` or
    ``OnlineRecognizer.from_wenet_ctc`` with sherpa-onnx's own front end (``front_end="sherpa"``), or the same with
    the filterbank this toolkit trains on (``"asr"``: mel filters up to 8 kHz, frames inside the signal), set
    through sherpa-onnx's public ``FeatureExtractorConfig``."""
    import sherpa_onnx

    out = Path(out)
    if front_end not in ("sherpa", "asr"):
        raise UserError(f"front_end must be sherpa or asr, not {front_end!r}")
    if streaming:
        rec = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(tokens=str(out / "tokens.txt"), model=str(out / "model-streaming.onnx"),
                                                          chunk_size=chunk_size, num_left_chunks=num_left_chunks,
                                                          num_threads=num_threads)
    else:
        rec = sherpa_onnx.OfflineRecognizer.from_wenet_ctc(model=str(out / "model.onnx"), tokens=str(out / "tokens.txt"),
                                                           num_threads=num_threads)
    if front_end == "asr":
        rec.config.feat_config = sherpa_onnx.FeatureExtractorConfig(sampling_rate=16000, feature_dim=80, high_freq=0,
                                                                    snip_edges=True)
        rec.recognizer = type(rec.recognizer)(rec.config)
    return rec


def sherpa_texts(rec, audios, streaming: bool = False) -> list[str]:
    """Text of each 16 kHz float recording, fed in 100-ms blocks when ``streaming`` (half a second of silence
    after each, so that the last window is decoded)."""
    texts = []
    for x in audios:
        s = rec.create_stream()
        if not streaming:
            s.accept_waveform(16000, x)
            rec.decode_stream(s)
            texts.append(s.result.text.strip())
            continue
        for i in range(0, len(x), 1600):
            s.accept_waveform(16000, x[i:i + 1600])
            while rec.is_ready(s):
                rec.decode_stream(s)
        s.accept_waveform(16000, np.zeros(8000, np.float32))
        s.input_finished()
        while rec.is_ready(s):
            rec.decode_stream(s)
        texts.append(rec.get_result(s).strip())
    return texts


__all__ = ["export_sherpa", "sherpa_recognizer", "sherpa_texts", "streaming_inputs", "tokens_txt"]
