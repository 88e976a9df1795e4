"""Streaming tensors, and only here: the encoder's per-stream state.

State is passed into ``forward_chunk`` and a new one is returned; nothing is changed in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asr.errors import UserError


@dataclass(frozen=True)
class EncoderState:
    att_cache: torch.Tensor  # (L, B, H, Tc, 2 d_k) keys/values of the last Tc encoder frames, per layer
    conv_cache: torch.Tensor  # (L, B, D, K-1) last K-1 inputs of each causal depthwise convolution
    offset: int  # encoder frames (after subsampling) produced so far
    # a batch of streams started at different times (batch_states): each row's cached frames (the last cache_lens[b]
    # of Tc; the rest, on the left, is padding no query attends to) and its own offset; None: every row has Tc, offset
    cache_lens: torch.Tensor | None = None  # (B,)
    offsets: torch.Tensor | None = None  # (B,)

    def key_mask(self, chunk: int) -> torch.Tensor | None:
        """``(B, chunk, Tc + chunk)`` bool: the cached and new frames each row's queries may attend to (None: all)."""
        if self.cache_lens is None or bool((self.cache_lens == self.cache_frames).all()):
            return None
        Tc = self.cache_frames
        keys = torch.arange(Tc + chunk, device=self.cache_lens.device)
        return (keys.unsqueeze(0) >= (Tc - self.cache_lens).unsqueeze(1)).unsqueeze(1).expand(-1, chunk, -1)

    def row_offsets(self) -> torch.Tensor:
        """``(B,)`` each row's offset."""
        return self.offsets if self.offsets is not None else torch.full((self.att_cache.size(1),), self.offset)

    @property
    def cache_frames(self) -> int:
        return self.att_cache.size(3)

    def select(self, index: torch.Tensor) -> "EncoderState":
        """Keep batch entries ``index`` (e.g. to drop finished streams)."""
        return EncoderState(self.att_cache.index_select(1, index), self.conv_cache.index_select(1, index), self.offset)


def batch_states(states: list[EncoderState]) -> EncoderState:
    """Streams' states -> one batch for ``forward_chunk``, however many frames each has cached: the attention caches
    left-padded to the longest, with each row's cache length and offset (one encoder call per round for streams
    started at different times; :func:`row_state` takes each stream's state back out)."""
    T = max(s.cache_frames for s in states)
    att = torch.cat([torch.nn.functional.pad(s.att_cache, (0, 0, T - s.cache_frames, 0)) for s in states], 1)
    return EncoderState(att, torch.cat([s.conv_cache for s in states], 1), states[0].offset,
                        torch.tensor([s.cache_frames for s in states], device=att.device),
                        torch.tensor([s.offset for s in states], device=att.device))


def row_state(new: EncoderState, batch: EncoderState, i: int, frames: int, left_frames: int = -1) -> EncoderState:
    """Row ``i`` of the state ``forward_chunk`` returned (``new``) for ``batch`` (:func:`batch_states`) after encoding
    ``frames`` frames: its own cached frames only (at most ``left_frames``; all when < 0) and its offset."""
    valid = int(batch.cache_lens[i]) + frames
    valid = min(valid, left_frames) if left_frames >= 0 else valid
    att = new.att_cache[:, i:i + 1]
    return EncoderState(att[:, :, :, att.size(3) - valid:], new.conv_cache[:, i:i + 1], int(batch.offsets[i]) + frames)


@dataclass(frozen=True)
class DecoderCache:
    """Per-layer key/values of an autoregressive decoder, so each step computes one new position.

    ``self_kv``: keys/values of the t tokens decoded so far (self-attention), per layer ``(N, H, t, 2 d_k)``
    (the PyTorch decoder), or stacked over layers ``(L, N, H, t, 2 d_k)`` (the ONNX decoder graph's inputs);
    ``memory_kv``: the projected encoder memory (cross-attention), ``(B, H, T, 2 d_k)`` per layer or
    ``(L, B, H, T, 2 d_k)`` stacked, computed once per utterance. N = B x ``group`` hypotheses,
    utterance-major: rows ``b*group .. b*group+group-1`` share memory row b (a beam search's hypotheses of
    one utterance), so the memory is never copied per hypothesis.
    """

    self_kv: tuple[torch.Tensor, ...] | torch.Tensor
    memory_kv: tuple[torch.Tensor, ...] | torch.Tensor
    group: int = 1

    @property
    def stacked(self) -> bool:
        return isinstance(self.self_kv, torch.Tensor)

    @property
    def length(self) -> int:
        if self.stacked:
            return self.self_kv.size(3)
        return self.self_kv[0].size(2) if self.self_kv else 0

    @property
    def hypotheses(self) -> int:
        return self.self_kv.size(1) if self.stacked else self.self_kv[0].size(0)

    def _take(self, kv, index: torch.Tensor):
        if isinstance(kv, torch.Tensor):
            return kv.index_select(1, index)
        return tuple(x.index_select(0, index) for x in kv)

    def select(self, index: torch.Tensor) -> "DecoderCache":
        """Reorder/keep hypotheses: entry i of the result is entry ``index[i]`` of this cache. With ``group > 1``
        every entry must stay inside its utterance's group (``index[i] // group == i // group``), as a beam
        search's parents do; then only the self-attention keys/values move."""
        if self.group == 1:  # any reordering: memory rows move with their hypotheses
            return DecoderCache(self._take(self.self_kv, index), self._take(self.memory_kv, index))
        own = torch.arange(index.numel(), device=index.device) // self.group
        if index.numel() != self.hypotheses or bool((index // self.group != own).any()):
            raise UserError("DecoderCache.select with group > 1 must keep each hypothesis inside its utterance")
        return DecoderCache(self._take(self.self_kv, index), self.memory_kv, self.group)
