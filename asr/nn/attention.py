"""Multi-head attention: plain (decoders) and with relative positions (Conformer encoder).

Both take an optional key/value cache and return the new one, never keeping state on the module.
Cache layout: ``(B, H, T_cache, 2 * d_k)``, keys and values concatenated on the last axis (WeNet's).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from asr.errors import UserError


def mask_to_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Bool mask ``(B, Tq, Tk)`` (True = attend) -> additive bias ``(B, 1, Tq, Tk)``; a bias (a float tensor, made
    once by a caller that runs many layers with one mask) is returned as it is."""
    if mask is None or mask.is_floating_point():
        return mask
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~mask, float("-inf")).unsqueeze(1)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise UserError(f"attention: d_model {d_model} must be a multiple of num_heads {num_heads}")
        self.h, self.d_k = num_heads, d_model // num_heads
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, d_k)
        return x.view(x.size(0), -1, self.h, self.d_k).transpose(1, 2)

    def project_kv(self, kv: torch.Tensor) -> torch.Tensor:
        """``kv (B, T, D)`` -> cache-layout keys/values ``(B, H, T, 2 d_k)`` (for static cross-attention memory)."""
        return torch.cat([self._heads(self.k(kv)), self._heads(self.v(kv))], dim=-1)

    def scores(self, query: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """Scaled attention scores before the softmax: ``query (B, Tq, D)``, ``kv (B, Tk, D)`` -> ``(B, H, Tq, Tk)``
        (what Whisper's word timing reads from its cross-attention)."""
        k, _ = self.project_kv(kv).split(self.d_k, dim=-1)
        return torch.matmul(self._heads(self.q(query)), k.transpose(-2, -1)) / math.sqrt(self.d_k)

    def forward(self, query: torch.Tensor, kv: torch.Tensor | None, mask: torch.Tensor | None,
                cache: torch.Tensor | None = None, static_kv: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``query (B, Tq, D)``, ``kv (B, Tk, D)`` (None with ``static_kv``), ``mask (B, Tq, Tk_total)`` bool.

        ``cache``: earlier keys/values ``(B, H, Tc, 2 d_k)`` prepended to this call's (self-attention), or,
        with ``static_kv``, the complete projected memory. Returns ``(out (B, Tq, D), new_cache)``.
        """
        q = self._heads(self.q(query))
        if static_kv:
            kvc = cache if cache is not None else self.project_kv(kv)
        else:
            new = self.project_kv(kv)
            kvc = new if cache is None else torch.cat([cache, new], dim=2)
        k, v = kvc.split(self.d_k, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask_to_bias(mask, q.dtype),
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(query.size(0), -1, self.h * self.d_k)
        return self.out(out), kvc


def rel_shift(x: torch.Tensor, k_len: int) -> torch.Tensor:
    """``x (B, H, Tq, Tk + Tq - 1)`` with columns for distances ``Tk-1 .. -(Tq-1)`` -> ``(B, H, Tq, Tk)``
    where ``out[..., i, j]`` is the score for distance ``(Tk - Tq + i) - j`` (queries are the last Tq keys)."""
    B, H, Tq, P = x.shape
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        # the same result from pad + reshape (ONNX has no as_strided): after one zero column on the left,
        # the flat rows shifted by Tq put x[i, Tq - 1 - i + j] at [i, j]
        return F.pad(x, (1, 0)).reshape(B, H, -1)[:, :, Tq:].reshape(B, H, Tq, P)[..., :k_len]
    x = x.contiguous()
    s = x.stride()
    # out[i, j] = x[i, (Tq - 1 - i) + j]  ->  flat offset i * (P - 1) + (Tq - 1) + j
    return x.as_strided((B, H, Tq, k_len), (s[0], s[1], P - 1, 1), x.storage_offset() + Tq - 1)


def legacy_rel_shift(x: torch.Tensor) -> torch.Tensor:
    """ESPnet's legacy relative shift (Transformer-XL's, on embeddings of positions ``0..T-1``): ``x (B, H, T, T)``
    -> ``(B, H, T, T)``, a zero column prepended and the rows re-cut (its upper triangle wraps around; kept as is)."""
    B, H, T1, T2 = x.shape
    padded = torch.cat([x.new_zeros(B, H, T1, 1), x], dim=-1).view(B, H, T2 + 1, T1)
    return padded[:, :, 1:].reshape(B, H, T1, T2)


class RelPositionAttention(MultiHeadAttention):
    """Self-attention with relative positions (Transformer-XL / Conformer): scores are
    ``(q + u) k^T + (q + v) p^T`` with ``p`` the projected embedding of each query-key distance."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, legacy: bool = False):
        super().__init__(d_model, num_heads, dropout)
        self.legacy = legacy  # pos_emb holds positions 0..T-1 (ESPnet's legacy layout; full context only)
        self.pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, mask: torch.Tensor | None,
                cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, T, D)``; ``pos_emb (Tc + 2T - 1, D)`` from RelativePositionalEncoding.rel_embeddings;
        ``mask (B, T, Tc + T)`` bool; ``cache (B, H, Tc, 2 d_k)``. Returns ``(out (B, T, D), new_cache)``."""
        B, T, _ = x.shape
        q = self._heads(self.q(x))  # (B, H, T, d_k)
        new = self.project_kv(x)
        kvc = new if cache is None else torch.cat([cache, new], dim=2)  # (B, H, Tk, 2 d_k)
        k, v = kvc.split(self.d_k, dim=-1)
        Tk = k.size(2)
        p = self.pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)  # (1, H, Tk + T - 1, d_k)
        bd = torch.matmul(q + self.pos_bias_v.unsqueeze(1), p.transpose(-2, -1))  # (B, H, T, Tk + T - 1)
        bias = (legacy_rel_shift(bd) if self.legacy else rel_shift(bd, Tk)) / math.sqrt(self.d_k)  # (B, H, T, Tk)
        if mask is not None:
            bias = bias.masked_fill(~mask.unsqueeze(1), float("-inf"))
        out = F.scaled_dot_product_attention(q + self.pos_bias_u.unsqueeze(1), k, v, attn_mask=bias,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(B, T, self.h * self.d_k)
        return self.out(out), kvc
