"""The scorer interface of the AR / joint search, the neural token LM scorer, and hotword biasing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asr.lm.neural import TokenLM
from asr.search.attention import beam_search
from asr.search.hotwords import HotwordBias, HotwordError, HotwordScorer, load_hotwords, parse_hotwords
from asr.search.scorers import LengthBonus, PrefixBonusScorer, TokenLMScorer, Weighted
from tests.search.conftest import V


class TokenBoost:
    """A scorer written outside the search: +boost for ``token``; partial (scores the pre-selected
    candidates) or full (scores the whole vocabulary, so it also steers the pre-selection)."""

    def __init__(self, token: int, boost: float, full: bool = False):
        self.token, self.boost, self.full = token, boost, full

    def init_state(self):
        return 0

    def score(self, state, prefix, cand):
        if self.full:
            row = torch.zeros(prefix.size(0), V)
            row[:, self.token] = self.boost
            return row, None
        return (cand == self.token).float() * self.boost, None

    def select(self, state, aux, parent, col, tokens):
        return state + 1


def _encode(model, batch):
    feats, lens = batch
    with torch.inference_mode():
        return model.encode(feats, lens)


def test_a_new_scorer_changes_the_search_without_editing_it(model, batch):
    enc, lens = _encode(model, batch)
    kw = dict(beam=3, ctc_weight=0.0, ctc_length_window=(0.0, 0.0), max_len_ratio=0.1)
    plain = beam_search(model, enc, lens, **kw)
    zero = beam_search(model, enc, lens, extra_scorers=[Weighted("boost", 1.0, TokenBoost(5, 0.0))], **kw)
    assert [h[0].tokens for h in zero] == [h[0].tokens for h in plain]
    had = [7 in h[0].tokens for h in plain]
    assert any(had)
    banned = beam_search(model, enc, lens, extra_scorers=[Weighted("ban", 1.0, TokenBoost(7, -30.0))], **kw)
    assert not any(7 in h[0].tokens for h in banned)  # a partial scorer re-ranks the candidates
    boosted = beam_search(model, enc, lens, extra_scorers=[Weighted("boost", 1.0, TokenBoost(5, 30.0, full=True))],
                          **kw)
    for p, b in zip(plain, boosted):
        assert b[0].tokens.count(5) > p[0].tokens.count(5)  # a full one also chooses them
    with pytest.raises(ValueError, match="unique"):
        beam_search(model, enc, lens, extra_scorers=[Weighted("decoder", 1.0, TokenBoost(5, 1.0))], **kw)


def test_length_bonus_lengthens_the_output(model, batch):
    enc, lens = _encode(model, batch)
    kw = dict(beam=3, ctc_length_window=(0.0, 0.0), eos_threshold=0.0, max_len_ratio=0.2)
    short = beam_search(model, enc, lens, extra_scorers=[Weighted("lb", -5.0, LengthBonus(V, model.sos))], **kw)
    long = beam_search(model, enc, lens, extra_scorers=[Weighted("lb", 5.0, LengthBonus(V, model.sos))], **kw)
    assert sum(len(h[0].tokens) for h in long) > sum(len(h[0].tokens) for h in short)


def test_neural_lm_scorer_batched_equals_single_and_steps_match_the_sentence_score(model, batch):
    torch.manual_seed(0)
    nlm = TokenLM(V, dim=32).eval()
    seq = [3, 7, 7, 2, 9]
    state = nlm.init_state(1)
    total, last = 0.0, torch.tensor([nlm.sos])
    for t in seq + [nlm.eos]:
        lp, state = nlm.step(last, state)
        total += float(lp[0, t])
        last = torch.tensor([t])
    assert total == pytest.approx(nlm.sentence_log_prob([seq])[0], abs=1e-4)  # incremental == whole sentence

    feats, lens = batch
    beam = 3
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        scorer = [Weighted("nlm", 0.5, TokenLMScorer(nlm, enc.size(0) * beam))]
        batched = beam_search(model, enc, enc_lens, beam=beam, ctc_weight=0.3, extra_scorers=scorer)
        for b in range(len(lens)):
            e1, l1 = model.encode(feats[b:b + 1, : lens[b]], lens[b:b + 1])
            single = beam_search(model, e1, l1, beam=beam, ctc_weight=0.3,
                                 extra_scorers=[Weighted("nlm", 0.5, TokenLMScorer(nlm, beam))])
            assert single[0][0].tokens == batched[b][0].tokens
            assert math.isclose(single[0][0].score, batched[b][0].score, rel_tol=1e-3, abs_tol=1e-3)


class _WordCount:
    """A prefix bonus: +1 per token 4 (a stand-in for a word n-gram), +10 at the end."""

    def score(self, p):
        return float(p.count(4))

    def final_score(self, p):
        return self.score(p) + 10.0


def test_prefix_bonus_scorer_gives_increments_and_the_end_bonus():
    s = PrefixBonusScorer(_WordCount(), eos=V - 1)
    prefix = torch.tensor([[4, 1], [2, 3]])
    cand = torch.tensor([[4, 5, V - 1], [4, 4, V - 1]])
    inc, _ = s.score(None, prefix, cand)
    assert inc.tolist() == [[1.0, 0.0, 10.0], [1.0, 1.0, 10.0]]


def test_hotword_files_parse_and_bad_ones_are_one_line(tmp_path):
    assert parse_hotwords("# names\nNew York 3.5\nmarie\tcurie\n\nO'Brien 1\n") == (
        ("NEW YORK", 3.5), ("MARIE CURIE", 1.5), ("O'BRIEN", 1.0))
    f = tmp_path / "hot.txt"
    f.write_text("good 2\nbad inf\n")
    with pytest.raises(HotwordError, match=r"hot.txt:2: the boost"):
        load_hotwords(f)
    f.write_text("# nothing\n")
    with pytest.raises(HotwordError, match="no hotwords"):
        load_hotwords(f)
    with pytest.raises(HotwordError, match="cannot read"):
        load_hotwords(tmp_path / "missing.txt")


class _CharTok:
    """Characters as tokens; a space starts a word (like a character SentencePiece model's U+2581)."""

    def encode(self, text):
        return [ord(c) for c in " " + text]


def test_hotword_bias_keeps_completed_words_and_takes_back_broken_matches():
    tok = _CharTok()
    hb = HotwordBias((("CAT", 2.0), ("CATALOG", 1.0)), tok)
    p = tuple(tok.encode("CA"))  # " CA": 3 tokens on the path
    assert hb.score(p) == pytest.approx(6.0)
    assert hb.final_score(p) == 0.0  # unfinished at the end: nothing
    cat = tuple(tok.encode("CAT"))
    assert hb.final_score(cat) == pytest.approx(8.0)  # complete: kept
    assert hb.score(tuple(tok.encode("COT"))) == 0.0  # broke after " C": taken back
    assert hb.score(cat + tuple(tok.encode("S"))) == pytest.approx(8.0)  # " CAT" stays earned after a break
    assert hb.final_score(tuple(tok.encode("DOG CAT"))) == pytest.approx(8.0)  # from a later word start
    assert hb.score(tuple(tok.encode("SCAT"))) == 0.0  # only from a word's start


def _emissions(ids, V, ambiguous: dict[int, tuple[int, float]] | None = None):
    """CTC log-probs spelling ``ids`` (blank, token, blank per token); ``ambiguous[k] = (other, p)``: token k's
    frame gives ``p`` to ``other`` instead."""
    rows = []
    for k, i in enumerate(ids):
        for f in range(3):
            p = np.full(V, 1e-3)
            if f == 1:
                if ambiguous and k in ambiguous:
                    other, q = ambiguous[k]
                    p[other], p[i] = q, 1 - q
                else:
                    p[i] = 1.0
            else:
                p[0] = 1.0
            rows.append(p / p.sum())
    return torch.tensor(np.log(np.stack(rows)), dtype=torch.float32)


def test_hotwords_bias_the_ctc_prefix_search_and_the_ar_search(model, batch):
    from asr.search.ctc import PrefixBeam

    # tokens 1..20 of a toy vocabulary; "word" = token 1 (word start) followed by letters
    fox, fax = (1, 6, 15, 24 - 5), (1, 6, 2, 24 - 5)
    lp = _emissions(fox, V, ambiguous={2: (2, 0.4)})  # the vowel: 0.6 "O" (15), 0.4 "A" (2)

    class Tok:
        def encode(self, text):
            return list({"FAX": fax}[text])

    plain = PrefixBeam(4)
    plain.advance(lp)
    assert plain.nbest(1)[0].tokens == fox
    biased = PrefixBeam(4, fusion=HotwordBias((("FAX", 2.0),), Tok()))
    biased.advance(lp)
    assert biased.nbest(1)[0].tokens == fax

    # its full-scorer form gives the exact increment of every token
    hs = HotwordScorer(HotwordBias((("FAX", 2.0),), Tok()), V, V - 1)
    prefix = torch.tensor([list(fax[:2]), [3, 4]])
    inc, _ = hs.score(None, prefix, None)
    for i, p in enumerate(prefix.tolist()):
        for tok in range(V - 1):
            assert inc[i, tok] == pytest.approx(hs.bias.score(tuple(p) + (tok,)) - hs.bias.score(tuple(p)))
        assert inc[i, V - 1] == pytest.approx(hs.bias.final_score(tuple(p)) - hs.bias.score(tuple(p)))

    # the AR / joint search: a hotword of the toy model's tokens appears once boosted
    enc, lens = _encode(model, batch)
    hb = HotwordBias((("FAX", 8.0),), Tok())
    out = beam_search(model, enc, lens, beam=3, ctc_weight=0.0, ctc_length_window=(0.0, 0.0),
                      extra_scorers=[Weighted("hotwords", 1.0, HotwordScorer(hb, V, model.sos))])
    for nb in out:
        toks = nb[0].tokens
        assert any(toks[i: i + 4] == fax for i in range(len(toks))), toks


def test_hotword_options_build_the_prefix_bonus_and_the_ar_scorer(model):
    from asr.search.methods import ar_scorers, word_fusion_factory
    from asr.search.options import DecodeOptions

    class Tok:
        def encode(self, text):
            return [1, 2, 3]

    opts = DecodeOptions(hotwords=(("ABC", 3.0),))
    bonus = word_fusion_factory(opts, Tok())()  # what the prefix searches use (tests/test_consistency.py: for real)
    assert isinstance(bonus, HotwordBias) and bonus.final_score((1, 2, 3)) == pytest.approx(9.0)
    names = [s.name for s in ar_scorers(model, opts, Tok(), 6, "cpu")]
    assert names == ["hotwords"]
    assert word_fusion_factory(DecodeOptions(), Tok()) is None and ar_scorers(model, DecodeOptions(), Tok(), 6, "cpu") == []
    with pytest.raises(ValueError, match="pairs"):
        DecodeOptions(hotwords=("ABC",))
