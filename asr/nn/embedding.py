"""Sinusoidal position encodings: absolute (decoders) and relative (encoder self-attention)."""

from __future__ import annotations

import math

import torch
from torch import nn

from asr.errors import UserError


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``positions (N,)`` (any real values, may be negative) -> ``(N, dim)`` sin/cos table."""
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) * (-math.log(10000.0) / dim))
    ang = positions.float().unsqueeze(1) * inv  # (N, dim/2)
    pe = torch.zeros(positions.numel(), dim, device=positions.device)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang)
    return pe


class AbsolutePositionalEncoding(nn.Module):
    """``x * sqrt(d) + PE[offset : offset + T]`` then dropout (decoders)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.dim, self.scale = dim, math.sqrt(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x (B, T, D)`` -> ``(B, T, D)``."""
        pos = torch.arange(offset, offset + x.size(1), device=x.device)
        return self.dropout(x * self.scale + sinusoid(pos, self.dim).to(x.dtype))


class LearnedPositionalEncoding(nn.Module):
    """``x + P[offset : offset + T]`` then dropout, ``P (max_len, D)`` learned (Whisper's decoder; its token
    embeddings are not scaled)."""

    def __init__(self, max_len: int, dim: int, dropout: float):
        super().__init__()
        if max_len <= 0:
            raise UserError("learned positions need max_positions > 0")
        self.weight = nn.Parameter(torch.zeros(max_len, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x (B, T, D)`` -> ``(B, T, D)``."""
        end = offset + x.size(1)
        if end > self.weight.size(0):
            raise UserError(f"the decoder has {self.weight.size(0)} positions; {end} asked")
        return self.dropout(x + self.weight[offset:end].to(x.dtype))


class RelativePositionalEncoding(nn.Module):
    """Applies dropout to the input (no sqrt(d) scaling: with pre-norm layers it did not help here, and
    torchaudio's Conformer has none) and returns the embeddings of the relative distances
    ``Tk-1, Tk-2, ..., -(Tq-1)`` (query minus key) that :class:`RelPositionAttention` needs."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.dim, self.scale = dim, math.sqrt(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x)

    def rel_embeddings(self, q_len: int, k_len: int, device=None, dtype=torch.float32, legacy_len: int = 0) -> torch.Tensor:
        """``(Tk + Tq - 1, D)`` embeddings for distances from ``Tk - 1`` down to ``-(Tq - 1)``. ``legacy_len > 0``:
        ESPnet's legacy layout, ``(Tk, D)``: the first ``Tk`` rows of its table of positions ``L - 1 .. 0`` with
        ``L = max(legacy_len, Tk)`` (the table it builds once at ``max_pos_emb_len`` rows)."""
        if legacy_len > 0:
            top = max(legacy_len, k_len) - 1
            d = torch.arange(top, top - k_len, -1, device=device)
        else:
            d = torch.arange(k_len - 1, -q_len, -1, device=device)
        return self.dropout(sinusoid(d, self.dim).to(dtype))
