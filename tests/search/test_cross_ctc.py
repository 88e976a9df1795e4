"""Joint decoding with a companion CTC over other units (asr.search.cross_ctc): the unit prefix scores against the
CTC loss and the token prefix scorer, the search against the model's own CTC term, the text mapping."""

from __future__ import annotations

import math

import pytest
import torch

from asr.search.attention import beam_search
from asr.search.cross_ctc import CrossCTCScorer, UnitPrefixScores, text_units
from asr.search.ctc_prefix_score import CTCPrefixScorer


def test_unit_prefix_scores_equal_the_ctc_loss_and_the_token_prefix_scorer():
    g = torch.Generator().manual_seed(0)
    T, V = 40, 7
    lp = torch.randn(1, T, V, generator=g).log_softmax(-1)
    units = UnitPrefixScores(lp[0])
    seq = (2, 3, 3, 5, 1)  # a repeated unit needs a blank between
    loss = torch.nn.functional.ctc_loss(lp.transpose(0, 1), torch.tensor([seq]), torch.tensor([T]),
                                        torch.tensor([len(seq)]), reduction="sum")
    assert units.end(seq) == pytest.approx(-float(loss), abs=1e-4)
    ref = CTCPrefixScorer(lp, torch.tensor([T]), 1, eos=V - 1)
    state = ref.init_state()
    for k, c in enumerate(seq):
        scores, r = ref.score(state, torch.tensor([[c]]))
        state = state.advance(torch.tensor([0]), torch.tensor([0]), torch.tensor([c]), scores, r)
        assert units.prefix(seq[: k + 1]) == pytest.approx(float(scores[0, 0]), abs=1e-4)
    assert units.prefix(()) == 0.0


def test_a_companion_over_the_decoders_own_tokens_searches_as_the_ctc_head_does(model, batch):
    """With units = tokens, the cross-tokenizer scorer is ESPnet's prefix score: the same beams, the same scores."""
    feats, lens = batch
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        lp = model.ctc_log_probs(enc)
    kw = dict(beam=3, ctc_weight=0.5, ctc_length_window=(0.0, 0.0), eos_threshold=0.0, max_len_ratio=0.2,
              ctc_log_probs=lp)
    own = beam_search(model, enc, enc_lens, **kw)
    scorer = CrossCTCScorer(lp, enc_lens, 3, model.eos, tuple, end_floor=-math.inf)
    cross = beam_search(model, enc, enc_lens, ctc_scorer=scorer, **kw)
    assert [[h.tokens for h in nb] for nb in cross] == [[h.tokens for h in nb] for nb in own]
    for a, b in zip(own, cross):
        assert [h.score for h in b] == pytest.approx([h.score for h in a], abs=1e-3)


def test_text_units_skip_punctuation_and_spell_a_long_token_through_all_its_units():
    pieces = {1: " Hello", 2: ",", 3: " wor", 4: "ld", 5: " 1984"}
    letters = {c: i + 3 for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}

    def encode(text: str) -> list[int]:  # a character tokenizer: 2 a word start, 1 unknown
        return [u for w in text.split() for u in [2] + [letters.get(c, 1) for c in w]]

    units = text_units(lambda toks: "".join(pieces[t] for t in toks), encode)
    assert units((1,)) == tuple(encode("HELLO"))
    assert units((1, 2)) == units((1,))  # punctuation adds nothing
    assert units((1, 2, 3, 4)) == tuple(encode("HELLO WORLD"))  # a piece inside a word continues it
    assert units((1, 5)) == tuple(encode("HELLO")) + (2, 1, 1, 1, 1)  # digits the companion cannot spell
    assert units(()) == ()


def test_a_hypothesis_the_companion_cannot_spell_still_ends(model, batch):
    """Odd tokens spell nothing (punctuation) and the CTC is another utterance's: without a floor on the end's CTC
    cost, the cheapest way on is a unit-less token, and the hypotheses run to the length limit."""
    feats, lens = batch
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        other = model.ctc_log_probs(enc).flip(0)

    def units(tokens):
        return tuple(t for t in tokens if t % 2 == 0)

    kw = dict(beam=3, ctc_weight=0.5, ctc_length_window=(0.0, 0.0), eos_threshold=0.0, max_len_ratio=0.5)
    lengths = {}
    for floor in (-math.inf, 0.0):
        scorer = CrossCTCScorer(other, enc_lens.flip(0), 3, model.eos, units, end_floor=floor)
        lengths[floor] = [len(nb[0].tokens) for nb in beam_search(model, enc, enc_lens, ctc_scorer=scorer, **kw)]
    assert sum(lengths[0.0]) < sum(lengths[-math.inf])
