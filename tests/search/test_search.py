"""Search methods: exactness against brute force, batched == one at a time, cached == uncached, beam 1 == greedy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from asr.evaluation.bench import forced_length_search
from asr.inference.decode import decode_features
from asr.search.attention import beam_search
from asr.search.ctc import ctc_greedy, ctc_prefix_beam
from asr.search.ctc_prefix_score import CTCPrefixScorer
from asr.search.mask_ctc import mask_ctc
from asr.search.methods import METHODS, search
from asr.search.options import DecodeOptions


def _peaky(B, T, V, seed=0):  # noqa: N803
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 4
    return logits.log_softmax(-1)


def test_prefix_beam_1_equals_greedy():
    lp = _peaky(4, 60, 9)
    lens = torch.tensor([60, 41, 17, 3])
    for g, p in zip(ctc_greedy(lp, lens), ctc_prefix_beam(lp, lens, beam=1, prune=-1e9)):
        assert g[0].tokens == p[0].tokens


def test_prefix_beam_score_is_exact_ctc_probability():
    # a tiny problem: a wide beam keeps every prefix, so scores equal the summed CTC alignment probability
    lp = _peaky(1, 7, 3, seed=3)
    nb = ctc_prefix_beam(lp, torch.tensor([7]), beam=200, prune=-1e9)[0]
    for h in nb[:5]:
        exact = -F.ctc_loss(lp[0], torch.tensor(h.tokens), torch.tensor([7]), torch.tensor([len(h.tokens)]),
                            reduction="sum") if h.tokens else lp[0, :, 0].sum()
        assert math.isclose(h.score, float(exact), rel_tol=1e-4, abs_tol=1e-4)
    # and the best prefix is the most probable label sequence of all (brute force over short sequences)
    best = max((seq for n in range(0, 8) for seq in itertools.product([1, 2], repeat=n)),
               key=lambda s: float(-F.ctc_loss(lp[0], torch.tensor(s), torch.tensor([7]), torch.tensor([len(s)]),
                                               reduction="sum")) if s else float(lp[0, :, 0].sum()))
    assert nb[0].tokens == tuple(best)


def test_ctc_prefix_scorer_matches_ctc_loss():
    lp = _peaky(2, 30, 7, seed=5)
    lens = torch.tensor([30, 22])
    eos = 6
    seqs = [[1, 2, 2, 3], [4, 1, 5]]
    scorer = CTCPrefixScorer(lp, lens, beam=1, eos=eos)
    st = scorer.init_state()
    for t in range(4):
        tok = torch.tensor([seqs[0][t] if t < 4 else 1, seqs[1][t] if t < 3 else eos])
        scores, r = scorer.score(st, torch.stack([tok, torch.full((2,), eos)], 1))
        if t == 3:
            break
        st = st.advance(torch.arange(2), torch.zeros(2, dtype=torch.long), tok, scores, r)
    # after 3 tokens, utterance 1's eos column is log P(whole = seq1)
    want1 = -F.ctc_loss(lp[1, :22], torch.tensor(seqs[1]), torch.tensor([22]), torch.tensor([3]), reduction="sum")
    assert math.isclose(float(scores[1, 1]), float(want1), rel_tol=1e-4)
    st = st.advance(torch.arange(2), torch.zeros(2, dtype=torch.long), tok, scores, r)
    scores, _ = scorer.score(st, torch.full((2, 1), eos))
    want0 = -F.ctc_loss(lp[0], torch.tensor(seqs[0]), torch.tensor([30]), torch.tensor([4]), reduction="sum")
    assert math.isclose(float(scores[0, 0]), float(want0), rel_tol=1e-4)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "ctc_lm"])  # ctc_lm: tests/test_lm.py
def test_batched_equals_one_at_a_time(model, batch, method):
    feats, lens = batch
    opts = DecodeOptions(beam=4, timestamps=False)
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        batched = search(model, enc, enc_lens, method, opts)
        for b in range(len(lens)):
            e1, l1 = model.encode(feats[b:b + 1, : lens[b]], lens[b:b + 1])
            single = search(model, e1, l1, method, opts)
            assert single[0][0].tokens == batched[b][0].tokens, (method, b)
            assert math.isclose(single[0][0].score, batched[b][0].score, rel_tol=1e-3, abs_tol=1e-3)


def test_cached_beam_equals_uncached(model, batch):
    feats, lens = batch
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        a = forced_length_search(model, enc, enc_lens, 'attention_beam', DecodeOptions(beam=3), 12, model.ctc_log_probs(enc), use_cache=True)
        b = forced_length_search(model, enc, enc_lens, 'attention_beam', DecodeOptions(beam=3), 12, model.ctc_log_probs(enc), use_cache=False)
    for x, y in zip(a, b):
        assert [h.tokens for h in x] == [h.tokens for h in y]
        assert len(x[0].tokens) == 12


def test_beam_output_is_bounded_by_encoder_length(model, batch):
    feats, lens = batch
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        for nb, n in zip(beam_search(model, enc, enc_lens, beam=3), enc_lens.tolist()):
            assert 1 <= len(nb) <= 3
            assert all(len(h.tokens) <= n for h in nb)
            assert all(a.score >= b.score for a, b in zip(nb, nb[1:]))  # best first


def test_mask_ctc_without_masks_is_ctc_greedy(model, batch):
    feats, lens = batch
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        greedy = ctc_greedy(model.ctc_log_probs(enc), enc_lens)
        m = mask_ctc(model, enc, enc_lens, threshold=0.0)
        assert [g[0].tokens for g in greedy] == [x[0].tokens for x in m]
        filled = mask_ctc(model, enc, enc_lens, threshold=1.01, iterations=3)  # everything re-predicted
        for g, f in zip(greedy, filled):
            assert len(f[0].tokens) == len(g[0].tokens)
            assert model.mask_id not in f[0].tokens


@pytest.mark.parametrize("method", ["ctc_greedy", "attention_beam", "mask_ctc"])
def test_word_timestamps_monotonic_and_inside_audio(model, batch, method):
    from asr.text import Tokenizer

    class Tok:  # a stand-in tokenizer: every id is a word "wN"
        def is_word_start(self, i):
            return True

        def decode(self, ids):
            return " ".join(f"w{i}" for i in ids)

    feats, lens = batch
    out = decode_features(model, Tok(), feats, lens, method, DecodeOptions(beam=3))
    for tr, n in zip(out, lens.tolist()):
        assert len(tr.words) == len(tr.tokens)
        dur = n / 100
        prev_end = 0.0
        for w in tr.words:
            assert 0 <= w.start < w.end <= dur + 0.08
            assert w.start >= prev_end - 1e-9
            assert 0.0 <= w.confidence <= 1.0
            prev_end = w.end
    _ = Tokenizer


@pytest.mark.parametrize("method", ["attention_beam", "joint_ctc_attention", "mask_ctc"])
def test_espnet_rules_batched_equal_one_at_a_time(model, batch, method):
    from asr.search.options import decode_options

    feats, lens = batch
    opts = decode_options(espnet_rules=True, beam=4, timestamps=False, mask_threshold=1.0)
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        batched = search(model, enc, enc_lens, method, opts)
        for b in range(len(lens)):
            e1, l1 = model.encode(feats[b:b + 1, : lens[b]], lens[b:b + 1])
            assert search(model, e1, l1, method, opts)[0][0].tokens == batched[b][0].tokens, (method, b)


def test_espnet_mask_schedule_is_espnets_loop(model, batch):
    """The batched schedule against ESPnet's MaskCTCInference loop written out for one utterance: min(K, n)
    passes, each filling floor(n / passes) positions by raw logit (any token), the last pass the rest."""
    from asr.search.mask_ctc import greedy_tokens_with_confidence

    feats, lens = batch
    K = 3
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        got = mask_ctc(model, enc, enc_lens, threshold=1.01, iterations=K, schedule="espnet")
        toks, _, _ = greedy_tokens_with_confidence(model.ctc_log_probs(enc), enc_lens)
        for b in range(len(lens)):
            e = enc[b:b + 1, : enc_lens[b]]
            y = torch.full((1, len(toks[b])), model.mask_id)
            n = y.size(1)
            if n:
                passes = min(K, n)
                idx = torch.arange(n)
                for _ in range(passes - 1):
                    pred = model.mlm(e, enc_lens[b:b + 1], y, torch.tensor([n]))[0]
                    score, best = pred[idx].max(-1)
                    pick = torch.topk(score, n // passes)[1]
                    y[0, idx[pick]] = best[pick]
                    idx = (y[0] == model.mask_id).nonzero().squeeze(1)
                pred = model.mlm(e, enc_lens[b:b + 1], y, torch.tensor([n]))[0]
                y[0, idx] = pred[idx].argmax(-1)
            want = [t for t in y[0].tolist() if t not in (0, model.mask_id, model.eos)]
            assert list(got[b][0].tokens) == want, b
