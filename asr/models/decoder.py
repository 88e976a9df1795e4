"""Transformer decoders over the encoder output.

* causal (the autoregressive attention decoder, left-to-right or right-to-left), with a KV-cached
  :meth:`TransformerDecoder.step` for search;
* non-causal (the Mask-CTC conditional masked language model: every position sees every other).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr.errors import UserError
from asr.models.encoder import FeedForward
from asr.models.state import DecoderCache
from asr.nn.attention import MultiHeadAttention, mask_to_bias
from asr.nn.embedding import AbsolutePositionalEncoding, LearnedPositionalEncoding
from asr.nn.masks import causal_mask, lengths_to_mask


class DecoderLayer(nn.Module):
    """Pre-norm: self-attention -> cross-attention over the encoder memory -> feed-forward."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float, activation: str = "swish"):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.src_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ff = FeedForward(d_model, ffn_dim, dropout, activation)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, self_mask, memory, memory_mask, self_cache=None, memory_cache=None, scores=None):
        """``x (N, L, D)``, ``self_mask (N, L, Lc+L)``, ``memory (B, T, D)`` or its projection ``memory_cache
        (B, H, T, 2 d_k)``, ``memory_mask (B, 1, T)``, N = B x G: the G hypotheses of an utterance attend to its
        memory as ``G x L`` queries of one row, so the memory is never repeated per hypothesis.
        Returns ``(x, new_self_cache, memory_cache)``."""
        h = self.norm1(x)
        a, new_self = self.self_attn(h, h, self_mask, self_cache)
        x = x + self.dropout(a)
        q = self.norm2(x)
        if scores is not None:  # the cross-attention scores of each head (one utterance per row): (N, H, L, T)
            scores.append(self.src_attn.scores(q, memory))
        N, L, D = q.shape
        B = (memory_cache if memory_cache is not None else memory).size(0)
        s, mem = self.src_attn(q.reshape(B, -1, D), memory, memory_mask, memory_cache, static_kv=memory_cache is not None)
        x = x + self.dropout(s.reshape(N, L, D))
        return x + self.dropout(self.ff(self.norm3(x))), new_self, mem


class TiedOutput(nn.Module):
    """``logits = x @ E^T + b`` with ``E`` the decoder's token embedding (Whisper's output layer) and a bias of its
    own (Whisper has none: zeros, but -1e4 on ids its decoder never emits, such as the CTC blank). The embedding is
    referenced, not registered, so its weight is saved once."""

    def __init__(self, embed: nn.Embedding):
        super().__init__()
        self._embed = (embed,)
        self.bias = nn.Parameter(torch.zeros(embed.num_embeddings))

    @property
    def out_features(self) -> int:
        return self.bias.numel()

    @property
    def weight(self) -> torch.Tensor:
        return self._embed[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


class SharedEmbedding(nn.Module):
    """Another decoder's token embedding, referenced, not registered (saved once, with its owner)."""

    def __init__(self, embed: nn.Embedding):
        super().__init__()
        self._embed = (embed,)
        self.num_embeddings = embed.num_embeddings

    @property
    def weight(self) -> torch.Tensor:
        return self._embed[0].weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class TransformerDecoder(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, num_layers: int, num_heads: int, ffn_dim: int,
                 dropout: float, causal: bool = True, activation: str = "swish", positions: str = "sinusoid",
                 max_positions: int = 0, tie_output: bool = False, shared_embed: nn.Embedding | None = None):
        """``shared_embed``: read (and, tied, write) tokens through another decoder's embedding (the Mask-CTC decoder
        of a Whisper model shares the attention decoder's)."""
        super().__init__()
        if positions not in ("sinusoid", "learned"):
            raise UserError(f"decoder positions must be sinusoid or learned, not {positions!r}")
        self.causal = causal
        self.embed = nn.Embedding(vocab_size, d_model) if shared_embed is None else SharedEmbedding(shared_embed)
        self.pos = AbsolutePositionalEncoding(d_model, dropout) if positions == "sinusoid" else \
            LearnedPositionalEncoding(max_positions, d_model, dropout)
        self.max_positions = max_positions if positions == "learned" else 0  # 0: any length
        self.layers = nn.ModuleList(DecoderLayer(d_model, num_heads, ffn_dim, dropout, activation) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = TiedOutput(self.embed) if tie_output else nn.Linear(d_model, vocab_size)

    def forward(self, memory: torch.Tensor, memory_lens: torch.Tensor, tokens: torch.Tensor,
                token_lens: torch.Tensor, memory_kv: tuple[torch.Tensor, ...] | None = None,
                return_hidden: bool = False) -> torch.Tensor:
        """``memory (B, T, D)``, ``memory_lens (B,)``, ``tokens (B, L)``, ``token_lens (B,)`` -> logits ``(B, L, V)``.

        ``memory_kv``: the per-layer projected memory from :meth:`init_cache` (reused across calls, e.g. the
        Mask-CTC iterations); ``return_hidden``: return the final normalised states ``(B, L, D)`` instead of
        logits (project only the positions needed with ``self.out``)."""
        L, T = tokens.size(1), memory.size(1)
        if not self.causal and bool((token_lens == L).all()):
            self_mask = None  # nothing padded: no mask, so attention takes its fused path
        else:
            tmask = lengths_to_mask(token_lens, L).unsqueeze(1)  # (B, 1, L): keys that exist
            self_mask = tmask & causal_mask(L, tokens.device).unsqueeze(0) if self.causal else tmask.expand(-1, L, -1)
            # Padded query rows would have no key in a causal row 0.. keep every row attending to position 0.
            self_mask = self_mask | (torch.arange(L, device=tokens.device) == 0).view(1, 1, L)
        full = bool((memory_lens == T).all())
        mem_mask = None if full else lengths_to_mask(memory_lens, T).unsqueeze(1)  # (B, 1, T)
        x = self.pos(self.embed(tokens))
        self_mask, mem_mask = mask_to_bias(self_mask, x.dtype), mask_to_bias(mem_mask, x.dtype)  # once, not per layer
        for i, layer in enumerate(self.layers):
            x, _, _ = layer(x, self_mask, memory, mem_mask, None, memory_kv[i] if memory_kv is not None else None)
        return self.norm(x) if return_hidden else self.out(self.norm(x))

    def cross_attention(self, memory: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced over one utterance per row: ``memory (B, T, D)``, ``tokens (B, L)`` (no padding) ->
        ``(log-probs (B, L, V), cross-attention scores (layers, B, H, L, T))`` before the softmax."""
        B, L = tokens.shape
        x = self.pos(self.embed(tokens))
        self_mask = mask_to_bias(causal_mask(L, tokens.device).unsqueeze(0), x.dtype)
        scores: list[torch.Tensor] = []
        for layer in self.layers:
            x, _, _ = layer(x, self_mask, memory, None, scores=scores)
        return self.out(self.norm(x)).float().log_softmax(-1), torch.stack(scores)

    # -- incremental decoding (causal only)
    def init_cache(self, memory: torch.Tensor, group: int = 1) -> DecoderCache:
        """Project the encoder memory ``(B, T, D)`` once for every layer's cross-attention; ``group``
        hypotheses per utterance (a beam) share it."""
        n = memory.size(0) * group
        return DecoderCache(tuple(memory.new_zeros(n, l.self_attn.h, 0, 2 * l.self_attn.d_k) for l in self.layers),
                            tuple(l.src_attn.project_kv(memory) for l in self.layers), group)

    def step(self, tokens: torch.Tensor, memory_mask: torch.Tensor, cache: DecoderCache) -> tuple[torch.Tensor, DecoderCache]:
        """One position for N = B x group hypotheses. ``tokens (N,)`` the newest token of each (or ``(N, L)``: L
        positions at once, such as a prompt), ``memory_mask (B, T)`` bool (one row per utterance), ``cache`` from
        :meth:`init_cache` or the previous step. Returns log-probs ``(N, V)`` for the next token (after the last
        position) and the new cache (the old one is not modified)."""
        t = cache.length
        tokens = tokens.unsqueeze(1) if tokens.dim() == 1 else tokens
        L = tokens.size(1)
        x = self.pos(self.embed(tokens), offset=t)  # (N, L, D)
        self_mask = None
        if L > 1:  # (1, L, t + L): position i sees the cache and positions <= i
            self_mask = (torch.arange(t + L, device=x.device) <= t + torch.arange(L, device=x.device).unsqueeze(1)).unsqueeze(0)
        mm = memory_mask.unsqueeze(1)
        new_self = []
        for layer, sc, mc in zip(self.layers, cache.self_kv, cache.memory_kv):
            x, s, _ = layer(x, self_mask, None, mm, sc, mc)
            new_self.append(s)
        logits = self.out(self.norm(x[:, -1]))
        return logits.log_softmax(-1), DecoderCache(tuple(new_self), cache.memory_kv, cache.group)
