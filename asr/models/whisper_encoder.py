"""Whisper's audio encoder (Radford et al. 2022) in the toolkit's building blocks.

A stem of two 1-D convolutions (kernel 3, strides 1 and 2, GELU) halves the 100 frames a second to 50; absolute
sinusoidal positions are added (Whisper's table: sin and cos halves, up to ``max_positions``); pre-LN Transformer
blocks (self-attention, GELU feed-forward; no convolution module, no macaron half-step) and a final LayerNorm.

Inputs shorter than Whisper's 30-s window: with ``pad_to`` (3000 feature frames, the imported model's setting) the
features are padded with zeros to 30 s and every one of the 1500 positions is encoded and attended to, as
openai-whisper's and faster-whisper's ``transcribe`` do (their decoders were trained on that); with ``pad_to: 0`` the
encoder runs at the real length (a model fine-tuned for it; the imported decoder loops there).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asr.config import EncoderConfig
from asr.errors import UserError
from asr.models.encoder import FeedForward
from asr.models.state import EncoderState
from asr.nn.attention import MultiHeadAttention, mask_to_bias
from asr.nn.masks import chunk_mask, lengths_to_mask


def whisper_sinusoids(length: int, dim: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """openai-whisper's ``sinusoids``: ``(length, dim)``, the sines in the first half of each row, cosines in the
    second (not interleaved), timescales from 1 to ``max_timescale``."""
    inc = np.log(max_timescale) / (dim // 2 - 1)
    inv = torch.exp(-inc * torch.arange(dim // 2, device="cpu"))  # a table, on the CPU (also under a meta device)
    t = torch.arange(length, device="cpu")[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class WhisperStem(nn.Module):
    """``(B, T, F)`` features -> ``(B, ceil(T / 2), D)``: conv(k3, s1) -> GELU -> conv(k3, s2) -> GELU, zero-padded
    by one frame at each side; frames past an utterance's length are zeroed before each convolution, so a batch
    computes what each utterance alone computes."""

    rate = 2
    receptive_field = 5  # feature frames one output frame sees (two before it, two after)

    def __init__(self, in_dim: int, d_model: int):
        super().__init__()
        self.conv1 = nn.Conv1d(in_dim, d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, 3, stride=2, padding=1)

    @staticmethod
    def out_length(lens: torch.Tensor) -> torch.Tensor:
        return torch.div(lens + 1, 2, rounding_mode="floor")

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = lengths_to_mask(x_lens, x.size(1)).unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = F.gelu(self.conv1(x.transpose(1, 2) * valid)) * valid  # (B, D, T)
        h = F.gelu(self.conv2(h))  # (B, D, T')
        return h.transpose(1, 2), self.out_length(x_lens)


class WhisperLayer(nn.Module):
    """Pre-LN Transformer block: ``x + MHSA(LN(x))``, then ``x + FFN(LN(x))`` with a GELU feed-forward."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.d_model
        self.norm_attn, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, cfg.num_heads, cfg.attention_dropout)
        self.ff = FeedForward(d, cfg.ffn_dim, cfg.dropout, "gelu")
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, cache: torch.Tensor | None = None):
        """``x (B, T, D)``, ``bias (B, 1, T, Tc + T)`` additive or None, ``cache (B, H, Tc, 2 d_k)`` ->
        ``(x (B, T, D), new_cache (B, H, Tc + T, 2 d_k))``."""
        h = self.norm_attn(x)
        a, new_cache = self.attn(h, h, bias, cache)
        x = x + self.dropout(a)
        return x + self.dropout(self.ff(self.norm_ff(x))), new_cache


class WhisperEncoder(nn.Module):
    """Whisper's encoder (see the module docstring); the :class:`asr.models.interface.EncoderInterface`."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.max_positions <= 0:
            raise UserError("encoder.max_positions must be set for the whisper encoder (1500: 30 s)")
        self.cfg = cfg
        self.stem = WhisperStem(cfg.input_dim, cfg.d_model)
        # saved with the weights: Whisper's checkpoints hold this table in float16, and their encoders add that
        self.register_buffer("positions", whisper_sinusoids(cfg.max_positions, cfg.d_model))
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(WhisperLayer(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model)

    rate = WhisperStem.rate
    receptive_field = 3  # stream frames one encoder frame needs: two of left context (see left_pad) and its own
    left_pad = 2  # zero feature frames a stream puts before its first frame: the stem's left context at the start

    @property
    def streaming(self) -> bool:
        """Trained for chunks (dynamic-chunk fine-tuning at the real length): the imported model, padded to
        Whisper's window, is not."""
        return self.cfg.pad_to == 0 and self.cfg.chunk_prob > 0

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.final_norm.weight.dtype

    def _pad(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whisper's window: features zeroed past each length and padded with zeros to ``pad_to`` frames, every
        frame then counted as real."""
        T, P = x.size(1), self.cfg.pad_to
        if T > P:
            raise UserError(f"input of {T} frames is longer than this model's window of {P} frames "
                             f"({P // 100} s): cut it into shorter segments")
        x = x * lengths_to_mask(x_lens, T).unsqueeze(-1).to(x.dtype)
        return F.pad(x, (0, 0, 0, P - T)), torch.full_like(x_lens, P)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, chunk: int = 0, left_chunks: int = -1, tap: int = 0):
        """``x (B, T, F)`` features, ``x_lens (B,)`` -> ``(y (B, T', D), y_lens (B,))`` (``T' = ceil(T / 2)``, or
        ``pad_to / 2`` with ``pad_to``). ``chunk > 0``: attention restricted to chunks of that many frames with
        ``left_chunks`` chunks of left context. ``tap > 0``: also layer ``tap``'s output (after the final norm)."""
        x = x.to(self.weight_dtype)
        if self.cfg.pad_to > 0:
            x, x_lens = self._pad(x, x_lens)
        x, lens = self.stem(x, x_lens)
        T = x.size(1)
        if T > self.cfg.max_positions:
            raise UserError(f"input of {T} encoder frames is longer than this model's {self.cfg.max_positions} "
                             "positions: cut it into shorter segments")
        x = self.dropout(x + self.positions[:T].to(x.dtype))
        mask = None
        if chunk > 0:
            mask = lengths_to_mask(lens, T).unsqueeze(1) & chunk_mask(T, chunk, left_chunks, x.device).unsqueeze(0)
        elif bool((lens < T).any()):
            mask = lengths_to_mask(lens, T).unsqueeze(1).expand(-1, T, -1)
        bias = mask_to_bias(mask, x.dtype)
        inter = None
        for i, layer in enumerate(self.layers, 1):
            x, _ = layer(x, bias)
            if i == tap:
                inter = self.final_norm(x)
        x = self.final_norm(x)
        return (x, lens, inter) if tap > 0 else (x, lens)

    def chunk_window(self, chunk: int) -> tuple[int, int]:
        """``(window, stride)``: ``chunk`` encoder frames j0 .. j0+C-1 read feature frames 2 j0 - 2 .. 2 j0 + 2C
        (the stem's kernel of 3, twice, centred): 2C + 3 frames, windows 2C apart (a stream's frames start with
        :attr:`left_pad` zeros, so the first window starts at frame -2)."""
        return 2 * chunk + 3, 2 * chunk

    def init_state(self, batch_size: int = 1, device: torch.device | str = "cpu",
                   dtype: torch.dtype | None = None) -> EncoderState:
        c = self.cfg
        return EncoderState(torch.zeros(c.num_layers, batch_size, c.num_heads, 0, 2 * (c.d_model // c.num_heads),
                                        device=device, dtype=dtype or self.weight_dtype),
                            torch.zeros(c.num_layers, batch_size, c.d_model, 0, device=device), 0)

    def forward_chunk(self, x: torch.Tensor, state: EncoderState, left_frames: int = -1,
                      last: bool = False) -> tuple[torch.Tensor, EncoderState]:
        """Encode one chunk: ``x (B, W, F)`` a window of :meth:`chunk_window` (two frames of left context first;
        ``last``: the stream's final, shorter window, zero-padded on the right as the whole input is). The chunk
        attends to itself and the cached frames (at most ``left_frames`` kept; all when < 0), at absolute positions
        from ``state.offset`` (each row's own cache and offset for a :func:`asr.models.state.batch_states` batch).
        Returns ``(y (B, C, D), new_state)``: what :meth:`forward` with the matching chunk mask computes for these
        frames."""
        if not self.streaming:
            raise RuntimeError("this Whisper encoder is full-context only (not fine-tuned for chunks)")
        x = x.to(self.weight_dtype).transpose(1, 2)  # (B, F, W)
        stem = self.stem
        if last:  # the convolution's zero padding after the input
            x = F.pad(x, (0, 1))
        h = F.gelu(F.conv1d(x, stem.conv1.weight, stem.conv1.bias))  # (B, D, W - 2): positions 2 j0 - 1 ..
        offsets = state.row_offsets().to(h.device)  # (B,)
        if bool((offsets == 0).any()):  # position -1 is the second convolution's zero padding, not a computed frame
            h = torch.cat([h[..., :1] * (offsets != 0).to(h.dtype)[:, None, None], h[..., 1:]], -1)
        if last:
            h = F.pad(h, (0, 1))
        if h.size(-1) < 3:
            return h.new_zeros(h.size(0), 0, h.size(1)), state
        y = F.gelu(F.conv1d(h, stem.conv2.weight, stem.conv2.bias, stride=2)).transpose(1, 2)  # (B, C, D)
        C = y.size(1)
        if int(offsets.max()) + C > self.cfg.max_positions:
            raise UserError(f"a stream segment longer than this model's {self.cfg.max_positions} positions")
        y = y + self.positions[offsets.unsqueeze(1) + torch.arange(C, device=y.device)].to(y.dtype)
        bias = mask_to_bias(state.key_mask(C), y.dtype)  # rows with fewer cached frames (batch_states)
        new_att = []
        for i, layer in enumerate(self.layers):
            y, a = layer(y, bias, state.att_cache[i])
            new_att.append(a if left_frames < 0 else a[:, :, max(0, a.size(2) - left_frames):])
        return self.final_norm(y), EncoderState(torch.stack(new_att), state.conv_cache, state.offset + C)
