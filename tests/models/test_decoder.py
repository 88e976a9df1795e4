"""Decoders: KV-cached incremental steps equal the full (uncached) decoder; non-causal MLM sees both sides."""

from __future__ import annotations

import pytest
import torch

from asr.models.decoder import TransformerDecoder


def _dec(causal=True):
    torch.manual_seed(0)
    return TransformerDecoder(vocab_size=30, d_model=32, num_layers=3, num_heads=4, ffn_dim=64, dropout=0.1,
                              causal=causal).eval()


def test_cached_steps_equal_full_forward():
    dec = _dec()
    memory = torch.randn(3, 17, 32)
    mem_lens = torch.tensor([17, 11, 5])
    tokens = torch.randint(1, 29, (3, 9))
    full = dec(memory, mem_lens, tokens, torch.tensor([9, 9, 9])).log_softmax(-1)  # (3, 9, V)
    cache = dec.init_cache(memory)
    mem_mask = torch.arange(17).unsqueeze(0) < mem_lens.unsqueeze(1)
    for t in range(9):
        logp, cache = dec.step(tokens[:, t], mem_mask, cache)
        assert torch.allclose(logp, full[:, t], atol=1e-5), t
    assert cache.length == 9


def test_cache_select_reorders_hypotheses():
    dec = _dec()
    memory = torch.randn(2, 10, 32)
    mask = torch.ones(2, 10, dtype=torch.bool)
    cache = dec.init_cache(memory)
    _, cache = dec.step(torch.tensor([3, 4]), mask, cache)
    swapped = cache.select(torch.tensor([1, 0]))
    a, _ = dec.step(torch.tensor([5, 5]), mask[[1, 0]], swapped)
    cache_b = dec.init_cache(memory[[1, 0]])
    _, cache_b = dec.step(torch.tensor([4, 3]), mask, cache_b)
    b, _ = dec.step(torch.tensor([5, 5]), mask, cache_b)
    assert torch.allclose(a, b, atol=1e-5)
    assert cache.self_kv[0].size(0) == 2  # the original cache was not modified


def test_causal_ignores_future_noncausal_does_not():
    memory, ml = torch.randn(1, 8, 32), torch.tensor([8])
    toks = torch.tensor([[1, 2, 3, 4]])
    toks2 = torch.tensor([[1, 2, 3, 9]])
    for causal in (True, False):
        dec = _dec(causal)
        a = dec(memory, ml, toks, torch.tensor([4]))
        b = dec(memory, ml, toks2, torch.tensor([4]))
        same_prefix = torch.allclose(a[:, :3], b[:, :3], atol=1e-6)
        assert same_prefix == causal


def test_padded_tokens_do_not_change_valid_positions():
    dec = _dec()
    memory, ml = torch.randn(2, 8, 32), torch.tensor([8, 8])
    toks = torch.tensor([[1, 2, 3, 4], [1, 2, 0, 0]])
    a = dec(memory, ml, toks, torch.tensor([4, 2]))
    b = dec(memory[1:], ml[1:], toks[1:, :2], torch.tensor([2]))
    assert torch.allclose(a[1, :2], b[0], atol=1e-5)


def test_shared_memory_groups_equal_repeated_memory():
    """A beam's hypotheses share their utterance's projected memory (group = beam) instead of copies."""
    dec = _dec()
    memory = torch.randn(2, 13, 32)
    mem_lens = torch.tensor([13, 6])
    mask = torch.arange(13).unsqueeze(0) < mem_lens.unsqueeze(1)
    beam = 3
    shared = dec.init_cache(memory, group=beam)
    copies = dec.init_cache(memory.repeat_interleave(beam, 0))
    assert shared.memory_kv[0].size(0) == 2 and copies.memory_kv[0].size(0) == 6
    g = torch.Generator().manual_seed(0)
    for t in range(5):
        toks = torch.randint(1, 29, (6,), generator=g)
        a, shared = dec.step(toks, mask, shared)
        b, copies = dec.step(toks, mask.repeat_interleave(beam, 0), copies)
        assert torch.allclose(a, b, atol=1e-5), t
        parent = torch.tensor([2, 0, 0, 4, 5, 3])  # reorder inside each utterance's beam
        shared, copies = shared.select(parent), copies.select(parent)
    with pytest.raises(ValueError, match="inside its utterance"):
        shared.select(torch.tensor([3, 0, 0, 4, 5, 3]))  # row 0 would take utterance 1's hypothesis
