"""Autoregressive beam search with the attention decoder, batched over utterances x beam.

One function serves two methods: ``attention_beam`` (decoder scores only) and ``joint_ctc_attention``
(ESPnet's hybrid one-pass search: each extension is scored ``(1 - w) * decoder + w * CTC prefix``).
Every term of the score is a weighted :class:`asr.search.scorers.Scorer` (decoder, CTC prefix, and any
``extra_scorers``: word n-gram, neural LM, hotwords, length bonus), so adding one never edits the search.
The decoder's per-layer key/value cache (:class:`asr.models.state.DecoderCache`) is reordered with
``select`` after every step, so a step costs one new position per hypothesis.

Why the length rules of :func:`beam_search` (``eos_threshold``, ``ctc_length_window``)?
Measured on the demo model, first 100 synthetic dev utterances): its 2-layer attention
decoder loses the alignment past ~80 characters and puts most of its mass on the end token there
(teacher-forced P(eos) rises from <0.01 to 0.4-0.9 inside long references), so beam search ended
hypotheses early: 424 deletions against CTC greedy's 145. The stopping rule, the eos-in-beam rule and
length normalisation were not the cause (changing them left the output the same or moved WER by <0.7
points); the two rules take deletions to 353 and CER from 41.4% to 38.6%, and on silence the decoder
alone hallucinated a word where CTC hears nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from asr.errors import UserError
from asr.results import Hypothesis
from asr.search.beam_rules import NEG_INF, beam_rules
from asr.search.ctc import ctc_greedy
from asr.search.options import DEFAULTS
from asr.search.scorers import CTCScorer, DecoderScorer, Weighted
from asr.text import BLANK_ID


@torch.inference_mode()
def beam_search(model, enc: torch.Tensor, enc_lens: torch.Tensor, beam: int = DEFAULTS.beam, ctc_weight: float = 0.0,
                length_norm: float = DEFAULTS.length_norm, max_len_ratio: float = 1.0, use_cache: bool = True,
                eos_threshold: float = DEFAULTS.eos_threshold,
                ctc_length_window: tuple[float, float] = DEFAULTS.ctc_length_window,
                ctc_log_probs: torch.Tensor | None = None, extra_scorers: Sequence[Weighted] = (),
                rules: str = DEFAULTS.beam_rules, ctc_scorer=None) -> list[list[Hypothesis]]:
    """Beam search over ``enc (B, T, D)``, ``enc_lens (B,)``; returns up to ``beam`` hypotheses per
    utterance, best first by ``score / len ** length_norm`` (len counts the end token).

    * the output is at most ``max_len_ratio * enc_len`` tokens (a CTC-trained encoder cannot emit more
      tokens than frames); a hypothesis still running then is ended there;
    * ``ctc_weight > 0`` adds the CTC prefix score (joint decoding); candidates are pre-selected as the
      ``1.5 * beam`` best decoder tokens, as ESPnet does;
    * ``use_cache=False`` recomputes the whole prefix every step (the reference the cache is measured against);
    * ``eos_threshold > 0``: a hypothesis may end only where the decoder's end probability is at least
      that fraction of its most probable other token (wav2letter's rule);
    * ``ctc_log_probs (B, T, V)``: the CTC head's output when the caller has it (computed here otherwise);
    * ``extra_scorers``: more weighted terms of the score (:mod:`asr.search.scorers`: a word n-gram, a neural
      LM, hotwords, a length bonus); the decoder (weight ``1 - ctc_weight``) and the CTC prefix score (weight
      ``ctc_weight``) are scorers too, and the candidates are the best of the weighted full scorers' sum;
    * ``ctc_length_window = (lo, hi)``: the output has between ``lo * L`` and ``ceil(hi * L) + 2`` tokens,
      where L is the CTC greedy transcript's length (no output when L <= 1: silence); ``(0, 0)`` turns it off
      (why these length rules: the module docstring);
    * ``rules``: how candidates are picked, endings ranked and the search stopped (:mod:`asr.search.beam_rules`):
      ``auto`` (the model's own), ``asr`` (the rules above), ``whisper`` (faster-whisper's) or ``espnet``;
    * ``ctc_scorer``: the joint CTC term when not the model's own head (asr.search.cross_ctc: a companion's)."""
    decoder = model.decoder
    if decoder is None:
        raise UserError("this model has no attention decoder (model.decoder.num_layers = 0)")
    rules = beam_rules(model, rules)
    eos_threshold, ctc_length_window = rules.options(eos_threshold, ctc_length_window)
    device, (B, _, _), V, N = enc.device, enc.shape, decoder.out.out_features, enc.size(0) * beam
    specials = model.specials
    eos = specials.eos
    ctc_log_probs, ctc_length_window = _ctc_terms(model, enc, ctc_log_probs, ctc_weight, ctc_length_window,
                                                  ctc_scorer is not None)
    min_len, max_len = _length_limits(enc_lens, max_len_ratio, ctc_length_window, ctc_log_probs, decoder.max_positions)
    log_thr = math.log(eos_threshold) if eos_threshold > 0 else None
    steps = int(max_len.max()) + 1  # the last step can only end hypotheses

    scorers = _scorers(decoder, enc, enc_lens, ctc_log_probs, model.prompt, eos, beam, ctc_weight, use_cache,
                       extra_scorers, ctc_scorer)
    full = [s for s in scorers if s.scorer.full]
    partial = [s for s in scorers if not s.scorer.full]
    states = {s.name: s.scorer.init_state() for s in scorers}
    n_cand = rules.n_candidates(beam, V, bool(partial))

    # Only the first hypothesis of each utterance is alive at the start.
    scores = torch.full((B, beam), NEG_INF, device=device)
    scores[:, 0] = 0.0
    scores = scores.view(N)
    prefix = torch.empty((N, 0), dtype=torch.long, device=device)
    finished: list[list[tuple[float, tuple[int, ...], float]]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    # the tokenizer's suppressed tokens (blank, mask; Whisper's non-speech tokens); ESPnet's decoder may choose blank
    # (its CTC prefix scorer, in joint search, may not)
    banned = [i for i in specials.suppress
              if 0 <= i < V and not (rules.blank_without_ctc and ctc_weight == 0 and i == BLANK_ID)]
    banned_begin = [i for i in specials.suppress_begin if 0 <= i < V]
    base = (torch.arange(B, device=device) * beam).repeat_interleave(beam)  # (N,) first row of each utterance
    eos_col = torch.tensor([eos], device=device)

    for t in range(steps):
        aux = {}
        lp, dec_lp = _full_scores(full, states, prefix, aux)
        # candidates come from the weighted full scores (the decoder's own when its weight is 0: CTC alone)
        pre = lp if scorers[0].weight > 0 else None
        lp[:, banned] = NEG_INF
        if t == 0 and banned_begin:
            lp[:, banned_begin] = NEG_INF
        at_limit = _end_rules(lp, dec_lp, t, min_len, max_len, beam, eos_col, log_thr)
        # the best tokens other than eos, then eos itself: every hypothesis can always end
        if pre is None:  # the decoder ranks, under the same bans as the weighted scores
            pre = (lp + dec_lp).masked_fill(~torch.isfinite(lp), NEG_INF)
        cand, void = rules.candidates(pre, eos, n_cand, bool(partial))
        step_scores = torch.gather(lp, 1, cand)
        for s in partial:
            inc, aux[s.name] = s.scorer.score(states[s.name], prefix, cand)
            step_scores = step_scores + s.weight * inc
        C = cand.size(1)
        is_eos = cand == eos
        step_scores = rules.limit(step_scores, is_eos, at_limit, void)
        best, flat = rules.choose(scores.unsqueeze(1) + step_scores, is_eos, finished, done, prefix, beam, length_norm)
        parent = (flat // C + (torch.arange(B, device=device) * beam).unsqueeze(1)).view(N)
        col = (flat % C).view(N)
        new_tok = cand[parent, col]
        scores = best.view(N)
        done |= rules.finished(finished, best, t, beam)
        if bool(done.all()):
            break
        scores = scores.masked_fill(done.repeat_interleave(beam), NEG_INF)
        # keep the running hypotheses alive even when done (their scores are -inf and are ignored)
        parent = torch.where(torch.isfinite(scores), parent, base)
        prefix = torch.cat([prefix[parent], new_tok.unsqueeze(1)], dim=1)
        for s in scorers:
            states[s.name] = s.scorer.select(states[s.name], aux[s.name], parent,
                                             new_tok if s.scorer.full else col, new_tok)
    return [[Hypothesis(rules.output(seq), norm)
             for _, seq, norm in sorted(f, key=lambda x: x[2], reverse=True)[:beam]]
            or [Hypothesis((), NEG_INF)] for f in finished]


def _scorers(decoder, enc, enc_lens, ctc_log_probs, prompt: tuple[int, ...], eos: int, beam: int, ctc_weight: float,
             use_cache: bool, extra_scorers: Sequence[Weighted], ctc_scorer=None) -> list[Weighted]:
    """The weighted terms of the score: the decoder (``1 - ctc_weight``), the CTC prefix score (``ctc_scorer`` or
    the model's own head), the extras."""
    scorers = [Weighted("decoder", 1.0 - ctc_weight, DecoderScorer(decoder, enc, enc_lens, prompt, beam, use_cache))]
    if ctc_weight > 0:
        scorers.append(Weighted("ctc", ctc_weight,
                                ctc_scorer if ctc_scorer is not None else CTCScorer(ctc_log_probs, enc_lens, beam, eos)))
    scorers += [s for s in extra_scorers if s.weight != 0]
    if len({s.name for s in scorers}) != len(scorers):
        raise UserError(f"scorer names must be unique: {[s.name for s in scorers]}")
    return scorers


def _full_scores(full: list[Weighted], states: dict, prefix: torch.Tensor, aux: dict):
    """The weighted sum of the full scorers' ``(N, V)`` increments, and the decoder's own (fills ``aux``)."""
    lp = dec_lp = None
    for s in full:
        inc, aux[s.name] = s.scorer.score(states[s.name], prefix, None)
        if s.name == "decoder":
            dec_lp = inc
        lp = s.weight * inc if lp is None else lp + s.weight * inc
    return lp, dec_lp


def _end_rules(lp: torch.Tensor, dec_lp: torch.Tensor, t: int, min_len: torch.Tensor, max_len: torch.Tensor,
               beam: int, eos_col: torch.Tensor, log_thr: float | None) -> torch.Tensor:
    """Keep the end token out of ``lp (N, V)`` where a hypothesis is too short or the decoder's own end rule
    says no; returns ``at_limit (N,)``: the hypotheses whose next token must be the end."""
    eos = int(eos_col)
    at_limit = (t >= max_len).repeat_interleave(beam)
    no_end = (t < min_len).repeat_interleave(beam)
    if log_thr is not None:
        other = dec_lp.index_fill(1, eos_col, NEG_INF).max(-1).values
        no_end |= dec_lp[:, eos] < other + log_thr
    lp[no_end & ~at_limit, eos] = NEG_INF
    return at_limit


def _ctc_terms(model, enc: torch.Tensor, ctc_log_probs: torch.Tensor | None, ctc_weight: float,
               ctc_length_window: tuple[float, float], companion: bool = False):
    """The CTC log-probabilities the search needs (the caller usually has them) and the length window that
    applies: none for a model without a CTC head (where joint scoring is refused unless a ``companion`` CTC scores)."""
    if ctc_log_probs is None and (ctc_weight > 0 or ctc_length_window[1] > 0):
        ctc_log_probs = model.ctc_log_probs(enc)
    if ctc_log_probs is None:
        if ctc_weight > 0 and not companion:
            raise UserError("joint CTC/attention decoding needs a CTC head, and this model has none")
        ctc_length_window = (0.0, 0.0)
    return ctc_log_probs, ctc_length_window


def _length_limits(enc_lens: torch.Tensor, max_len_ratio: float, ctc_length_window: tuple[float, float],
                   ctc_log_probs: torch.Tensor | None, max_positions: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(min_len, max_len)`` per utterance ``(B,)``: at most ``max_len_ratio`` x the encoder frames (and half of a
    decoder's ``max_positions`` learned positions, as Whisper's ``sample_len``), and with a CTC length window
    ``(lo, hi)`` between ``lo * L`` and ``ceil(hi * L) + 2`` tokens (L: CTC greedy length)."""
    lo, hi = ctc_length_window
    max_len = (enc_lens.float() * max_len_ratio).long().clamp_min(1)  # (B,)
    if max_positions:
        max_len = max_len.clamp_max(max_positions // 2)
    min_len = torch.zeros_like(max_len)
    if hi > 0:
        ctc_len = torch.tensor([len(nb[0].tokens) for nb in ctc_greedy(ctc_log_probs, enc_lens)],
                               device=enc_lens.device)
        # a CTC transcript of at most one token (silence, or a lone word boundary) allows no output at all
        window = torch.where(ctc_len > 1, (ctc_len.float() * hi).ceil().long() + 2, torch.zeros_like(ctc_len))
        max_len = torch.minimum(max_len, window)
        min_len = torch.minimum((ctc_len.float() * lo).floor().long(), max_len)
    return min_len, max_len


def attention_beam(model, enc, enc_lens, beam: int = DEFAULTS.beam, **kw) -> list[list[Hypothesis]]:
    """AR decoder beam search alone (see :func:`beam_search`)."""
    return beam_search(model, enc, enc_lens, beam, ctc_weight=0.0, **kw)


def joint_ctc_attention(model, enc, enc_lens, beam: int = DEFAULTS.beam, ctc_weight: float = DEFAULTS.ctc_weight, **kw) -> list[list[Hypothesis]]:
    """One-pass hybrid CTC/attention beam search (see :func:`beam_search`)."""
    if not 0 < ctc_weight <= 1:
        raise UserError("ctc_weight must be in (0, 1]")
    return beam_search(model, enc, enc_lens, beam, ctc_weight=ctc_weight, **kw)
