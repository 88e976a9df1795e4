"""Conformer encoder (Gulati et al. 2020) with dynamic-chunk attention for streaming (WeNet U2)."""

from __future__ import annotations

import math

import torch
from torch import nn

from asr.config import EncoderConfig
from asr.errors import UserError
from asr.models.state import EncoderState
from asr.nn.attention import RelPositionAttention
from asr.nn.convolution import ConvModule
from asr.nn.embedding import RelativePositionalEncoding
from asr.nn.masks import chunk_mask, lengths_to_mask
from asr.nn.subsampling import Conv2dSubsampling


def initial_state(cfg: EncoderConfig, batch_size: int = 1, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> EncoderState:
    """The empty streaming state of an encoder of shape ``cfg`` (no cached frames; zero convolution history)."""
    L, H, dk = cfg.num_layers, cfg.num_heads, cfg.d_model // cfg.num_heads
    k = cfg.kernel_size - 1 if cfg.causal_conv else 0
    return EncoderState(torch.zeros(L, batch_size, H, 0, 2 * dk, device=device, dtype=dtype),
                        torch.zeros(L, batch_size, cfg.d_model, k, device=device, dtype=dtype), 0)


def chunk_window(chunk: int, rate: int, receptive_field: int) -> tuple[int, int]:
    """``(window, stride)`` in feature frames for ``chunk`` encoder frames (see ConformerEncoder.chunk_window)."""
    return (chunk - 1) * rate + receptive_field, chunk * rate


ACTIVATIONS = {"swish": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float, activation: str = "swish"):
        if activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
        super().__init__(nn.Linear(d_model, ffn_dim), ACTIVATIONS[activation](), nn.Dropout(dropout),
                         nn.Linear(ffn_dim, d_model))


class ConformerLayer(nn.Module):
    """Macaron FFN (x0.5) -> relative-position MHSA -> convolution -> FFN (x0.5) -> LayerNorm; pre-norm residuals."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.d_model
        self.ff1, self.ff2 = FeedForward(d, cfg.ffn_dim, cfg.dropout), FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.attn = RelPositionAttention(d, cfg.num_heads, cfg.attention_dropout, legacy=cfg.rel_pos == "legacy")
        self.conv = ConvModule(d, cfg.kernel_size, cfg.causal_conv, cfg.dropout)
        self.norm_ff1, self.norm_attn, self.norm_conv, self.norm_ff2, self.norm_out = (nn.LayerNorm(d) for _ in range(5))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, att_mask: torch.Tensor | None, pad_mask: torch.Tensor | None,
                att_cache: torch.Tensor | None = None, conv_cache: torch.Tensor | None = None):
        """``x (B, T, D)`` -> ``(x (B, T, D), new_att_cache (B, H, Tc+T, 2 d_k), new_conv_cache (B, D, K-1))``."""
        x = x + 0.5 * self.dropout(self.ff1(self.norm_ff1(x)))
        a, new_att = self.attn(self.norm_attn(x), pos_emb, att_mask, att_cache)
        x = x + self.dropout(a)
        c, new_conv = self.conv(self.norm_conv(x), pad_mask, conv_cache)
        x = x + self.dropout(c)
        x = x + 0.5 * self.dropout(self.ff2(self.norm_ff2(x)))
        return self.norm_out(x), new_att, new_conv


class ConformerEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.rel_pos not in ("latest", "legacy"):
            raise UserError(f"encoder.rel_pos must be latest or legacy, not {cfg.rel_pos!r}")
        self.subsampling = Conv2dSubsampling(cfg.input_dim, cfg.d_model, cfg.subsampling,
                                             cfg.subsampling_channels)
        self.pos = RelativePositionalEncoding(cfg.d_model, cfg.dropout)
        self.layers = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.num_layers))
        self.input_scale = math.sqrt(cfg.d_model) if cfg.input_scale else 1.0  # ESPnet scales; WeNet-style does not
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.final_norm else None

    def _embed(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Subsample ``x (B, T, F)`` -> ``(B, T', D)`` and lengths; the input scale and dropout applied."""
        x, lens = self.subsampling(x.to(self.weight_dtype), x_lens)
        return self.pos(x * self.input_scale if self.input_scale != 1.0 else x), lens

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_norm(x) if self.final_norm is not None else x

    @property
    def rate(self) -> int:
        return self.subsampling.rate

    @property
    def receptive_field(self) -> int:
        return self.subsampling.receptive_field

    @property
    def streaming(self) -> bool:
        return self.cfg.causal_conv and self.cfg.rel_pos == "latest"

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, chunk: int = 0,
                left_chunks: int = -1, tap: int = 0):
        """``x (B, T, F)`` normalised features, ``x_lens (B,)`` -> ``(y (B, T', D), y_lens (B,))``.

        ``chunk > 0`` restricts attention to chunks of that many encoder frames with ``left_chunks``
        chunks of left context (all when < 0): the exact computation :meth:`forward_chunk` streams.
        ``tap > 0``: also return layer ``tap``'s output ``(B, T', D)`` (intermediate CTC): ``(y, y_lens, h)``.
        """
        x, lens = self._embed(x, x_lens)
        T = x.size(1)
        pad = lengths_to_mask(lens, T)  # (B, T)
        att = pad.unsqueeze(1)  # (B, 1, T): keys that exist
        if chunk > 0:
            att = att & chunk_mask(T, chunk, left_chunks, x.device).unsqueeze(0)  # (B, T, T)
        else:
            att = att.expand(-1, T, -1)
        pos = self.pos.rel_embeddings(T, T, x.device, x.dtype,
                                      legacy_len=self.cfg.legacy_max_len if self.cfg.rel_pos == "legacy" else 0)
        inter = None
        for i, layer in enumerate(self.layers, 1):
            x, _, _ = layer(x, pos, att, pad)
            if i == tap:
                inter = self._out(x)
        x = self._out(x)
        return (x, lens, inter) if tap > 0 else (x, lens)

    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype of the weights (float32, or bfloat16 / float16 for half-precision inference)."""
        return self.layers[0].norm_out.weight.dtype

    def init_state(self, batch_size: int = 1, device: torch.device | str = "cpu",
                   dtype: torch.dtype | None = None) -> EncoderState:
        return initial_state(self.cfg, batch_size, device, dtype or self.weight_dtype)

    def chunk_window(self, chunk: int) -> tuple[int, int]:
        """``(window, stride)`` in feature frames: a window of ``window`` frames yields ``chunk`` encoder
        frames, and consecutive windows start ``stride`` frames apart (they overlap by window - stride)."""
        return chunk_window(chunk, self.rate, self.receptive_field)

    left_pad = 0  # feature frames a stream puts before its first (none: the subsampling has no padding)

    def forward_chunk(self, x: torch.Tensor, state: EncoderState, left_frames: int = -1,
                      last: bool = False) -> tuple[torch.Tensor, EncoderState]:
        """Encode one chunk. ``x (B, W, F)``: a feature window (see :meth:`chunk_window`; the last one may
        be shorter; ``last`` changes nothing here). The chunk attends to itself and to the cached frames (each row's
        own, for a :func:`asr.models.state.batch_states` batch); the returned state keeps at most ``left_frames``
        frames of cache (all when < 0). Returns ``(y (B, C, D), new_state)``."""
        if not self.streaming:
            raise RuntimeError("streaming needs a model trained with causal_conv: true and rel_pos: latest")
        lens = torch.full((x.size(0),), x.size(1), dtype=torch.long, device=x.device)
        x, _ = self._embed(x, lens)
        C = x.size(1)
        if C == 0:
            return x, state
        Tc = state.cache_frames
        pos = self.pos.rel_embeddings(C, Tc + C, x.device, x.dtype)
        mask = state.key_mask(C)  # streams with fewer cached frames than others in the batch (batch_states)
        new_att, new_conv = [], []
        for i, layer in enumerate(self.layers):
            x, a, c = layer(x, pos, mask, None, state.att_cache[i], state.conv_cache[i])
            new_att.append(a if left_frames < 0 else a[:, :, max(0, a.size(2) - left_frames):])
            new_conv.append(c)
        return self._out(x), EncoderState(torch.stack(new_att), torch.stack(new_conv), state.offset + C)
