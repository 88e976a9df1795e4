"""Run an exported ONNX model directory (:mod:`asr.export.onnx`) with onnxruntime behind the same narrow
interface the searches and the streaming recognizer use on a PyTorch :class:`asr.models.asr_model.ASRModel`:
``encode``, ``ctc_log_probs``, ``decoder.init_cache / step``, ``encoder.init_state / chunk_window /
forward_chunk``. Tensors stay torch tensors at the boundary (converted to and from numpy per call).

Not exported (so not available with ``--backend onnx``): the right-to-left decoder and the Mask-CTC decoder,
and the full-sequence decoder pass that ``attention_rescoring`` uses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from asr.config import load_config
from asr.errors import UserError, first_line
from asr.inference.model_dir import LoadedModel, ModelError
from asr.models.encoder import chunk_window, initial_state
from asr.models.state import DecoderCache, EncoderState
from asr.text import SpecialTokens, Tokenizer

ONNX_METHODS = ("ctc_greedy", "ctc_prefix_beam", "attention_beam", "joint_ctc_attention", "ctc_lm")


def _session(path: Path, threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class OnnxDecoder:
    max_positions = 0  # sinusoidal positions: any length

    def __init__(self, init, step, vocab: int, layers: int, heads: int, d_k: int):
        self._init, self._step = init, step
        self.out = SimpleNamespace(out_features=vocab)
        self.layers, self.heads, self.d_k = layers, heads, d_k

    def init_cache(self, memory: torch.Tensor, group: int = 1) -> DecoderCache:
        """``memory (B, T, D)`` encoder output; ``group`` hypotheses per utterance."""
        mem = torch.from_numpy(self._init.run(None, {"enc": _np(memory.float())})[0])  # (L, B, H, T, 2 d_k)
        n = memory.size(0) * group
        return DecoderCache(torch.zeros(self.layers, n, self.heads, 0, 2 * self.d_k), mem, group)

    def step(self, tokens: torch.Tensor, memory_mask: torch.Tensor, cache: DecoderCache):
        """``tokens (N,)``, ``memory_mask (B, T)`` -> ``(log-probs (N, V), new cache)``."""
        lp, new = self._step.run(None, {"tokens": _np(tokens.long()), "memory_mask": _np(memory_mask.bool()),
                                        "self_kv": _np(cache.self_kv), "memory_kv": _np(cache.memory_kv)})
        return torch.from_numpy(lp), DecoderCache(torch.from_numpy(new), cache.memory_kv, cache.group)


class OnnxEncoder:
    """Streaming side of the encoder: ``forward_chunk`` on raw (not normalised) features: CMVN is inside
    the graph, so :class:`OnnxModel` exposes an identity ``cmvn_mean`` / ``cmvn_std``."""

    def __init__(self, chunk_session, cfg, rate: int, receptive_field: int):
        self._chunk, self.cfg = chunk_session, cfg
        self.rate, self.receptive_field = rate, receptive_field
        self.streaming = chunk_session is not None

    def init_state(self, batch_size: int = 1, device="cpu", dtype=torch.float32) -> EncoderState:
        return initial_state(self.cfg, batch_size, "cpu", torch.float32)

    def chunk_window(self, chunk: int) -> tuple[int, int]:
        return chunk_window(chunk, self.rate, self.receptive_field)

    left_pad = 0
    ragged_batches = False  # the graph takes no key mask: a batch's streams must have equal cache lengths

    def forward_chunk(self, x: torch.Tensor, state: EncoderState, left_frames: int = -1, last: bool = False):
        if self._chunk is None:
            raise RuntimeError("this ONNX export has no streaming encoder (the model is not causal)")
        y, att, conv = self._chunk.run(None, {"feats": _np(x.float()), "att_cache": _np(state.att_cache),
                                              "conv_cache": _np(state.conv_cache)})
        y, att = torch.from_numpy(y), torch.from_numpy(att)
        if left_frames >= 0:
            att = att[:, :, :, max(0, att.size(3) - left_frames):]
        return y, EncoderState(att, torch.from_numpy(conv), state.offset + y.size(1))


class OnnxModel:
    """An exported directory as a model object for :func:`asr.inference.decode.search` and :mod:`asr.inference.streaming`."""

    r2l_decoder = None
    mlm = None
    methods = ONNX_METHODS  # decoders it can run (asr.inference.decode.available_methods reads this)
    second_passes = ("ctc_lm", "none")  # streaming second passes it can run

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        d = Path(path)
        info_path = d / "onnx.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{d}: not an ONNX export (no onnx.json; make one with `asr export-onnx`)")
        self.info = json.loads(info_path.read_text(encoding="utf-8"))
        cfg = load_config(d / "config.yaml").model
        self.cfg = cfg
        V = cfg.vocab_size
        self.specials = SpecialTokens.sentencepiece(V)  # the export takes SentencePiece models (asr export-onnx)
        self.mask_id, self.sos, self.eos, self.prompt = (self.specials.mask, self.specials.sos, self.specials.eos,
                                                         self.specials.prompt)
        self.cmvn_mean, self.cmvn_std = torch.zeros(()), torch.ones(())  # CMVN is inside the graphs
        self._enc = _session(d / "encoder.onnx", threads)
        self._ctc = _session(d / "ctc.onnx", threads)
        self.chunk_session = _session(d / "encoder_chunk.onnx", threads) if (d / "encoder_chunk.onnx").is_file() else None
        self.encoder = OnnxEncoder(self.chunk_session, cfg.encoder, self.info["subsampling_rate"],
                                   self.info["receptive_field"])
        self.decoder = None
        if (d / "decoder_step.onnx").is_file():
            e = cfg.encoder
            self.decoder = OnnxDecoder(_session(d / "decoder_init.onnx", threads), _session(d / "decoder_step.onnx", threads),
                                       V, cfg.decoder.num_layers, cfg.decoder.num_heads, e.d_model // cfg.decoder.num_heads)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor, chunk: int = 0, left_chunks: int = -1):
        """Raw fbank ``(B, T, F)`` -> ``(enc (B, T', D), lengths (B,))`` (full context only)."""
        if chunk:
            raise UserError("the ONNX encoder is full-context; stream with forward_chunk")
        enc, lens = self._enc.run(None, {"feats": _np(feats.float()), "feat_lens": _np(feat_lens.long())})
        return torch.from_numpy(enc), torch.from_numpy(lens)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._ctc.run(None, {"enc": _np(enc.float())})[0])

    # what callers of a torch module may do
    def eval(self):
        return self

    def float(self):
        return self


def load_onnx_model(path: str | os.PathLike, threads: int = 0):
    """An ``asr export-onnx`` directory -> :class:`asr.inference.model_dir.LoadedModel` whose model is an
    :class:`OnnxModel`; a missing or damaged export is a one-line :class:`asr.inference.model_dir.ModelError`."""

    d = Path(path)
    try:
        model = OnnxModel(d, threads)
        tok = Tokenizer(d / "tokenizer.model")
        cfg = load_config(d / "config.yaml")
    except FileNotFoundError as e:
        raise ModelError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - onnxruntime / protobuf errors on a damaged file: one line
        raise ModelError(f"{d}: cannot load the ONNX export ({e.__class__.__name__}: {first_line(e, 200)})") from None
    return LoadedModel(model, tok, cfg, d)


__all__ = ["load_onnx_model", "OnnxModel", "OnnxDecoder", "OnnxEncoder", "ONNX_METHODS"]
