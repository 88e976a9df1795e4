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
from asr.search.ctc import ctc_greedy
from asr.search.options import DEFAULTS
from asr.search.scorers import CTCScorer, DecoderScorer, Weighted
from asr.text import BLANK_ID

NEG_INF = float("-inf")


@torch.inference_mode()
def beam_search(model, enc: torch.Tensor, enc_lens: torch.Tensor, beam: int = DEFAULTS.beam, ctc_weight: float = 0.0,
                length_norm: float = DEFAULTS.length_norm, max_len_ratio: float = 1.0, use_cache: bool = True,
                eos_threshold: float = DEFAULTS.eos_threshold,
                ctc_length_window: tuple[float, float] = DEFAULTS.ctc_length_window,
                ctc_log_probs: torch.Tensor | None = None, extra_scorers: Sequence[Weighted] = (),
                rules: str = DEFAULTS.beam_rules) -> list[list[Hypothesis]]:
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
    * ``rules``: ``auto`` (the model's own), ``asr`` (the rules above), ``whisper`` (see :func:`_rules`), or
      ``espnet``: ESPnet's BatchBeamSearch: blank may be chosen without CTC (and is dropped from the
      output), joint candidates are the 1.5 x beam best tokens by the full scores (eos always), only the
      non-ending extensions among the beam best run on (the beam shrinks as hypotheses end), a search stops
      when none runs or by ESPnet's ``end_detect``, and at the length limit eos is appended unscored."""
    decoder = model.decoder
    if decoder is None:
        raise UserError("this model has no attention decoder (model.decoder.num_layers = 0)")
    espnet, end_len, eos_threshold, ctc_length_window = _rules(model, rules, eos_threshold, ctc_length_window)
    device, (B, _, _), V, N = enc.device, enc.shape, decoder.out.out_features, enc.size(0) * beam
    specials = model.specials
    eos = specials.eos
    ctc_log_probs, ctc_length_window = _ctc_terms(model, enc, ctc_log_probs, ctc_weight, ctc_length_window)
    min_len, max_len = _length_limits(enc_lens, max_len_ratio, ctc_length_window, ctc_log_probs, decoder.max_positions)
    log_thr = math.log(eos_threshold) if eos_threshold > 0 else None
    steps = int(max_len.max()) + 1  # the last step can only end hypotheses

    scorers = _scorers(decoder, enc, enc_lens, ctc_log_probs, model.prompt, eos, beam, ctc_weight, use_cache,
                       extra_scorers)
    full = [s for s in scorers if s.scorer.full]
    partial = [s for s in scorers if not s.scorer.full]
    states = {s.name: s.scorer.init_state() for s in scorers}
    n_cand = min(V, int(1.5 * beam) + (0 if espnet else 1)) if partial else beam  # ESPnet's pre-beam (partial scorers)

    # Only the first hypothesis of each utterance is alive at the start.
    scores = torch.full((B, beam), NEG_INF, device=device)
    scores[:, 0] = 0.0
    scores = scores.view(N)
    prefix = torch.empty((N, 0), dtype=torch.long, device=device)
    finished: list[list[tuple[float, tuple[int, ...], float]]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    # the tokenizer's suppressed tokens (blank, mask; Whisper's non-speech tokens); ESPnet's decoder may choose blank
    # (its CTC prefix scorer, in joint search, may not)
    banned = [i for i in specials.suppress if 0 <= i < V and not (espnet and ctc_weight == 0 and i == BLANK_ID)]
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
        cand, void = _candidates(pre, eos, n_cand, espnet and bool(partial))
        step_scores = torch.gather(lp, 1, cand)
        for s in partial:
            inc, aux[s.name] = s.scorer.score(states[s.name], prefix, cand)
            step_scores = step_scores + s.weight * inc
        C = cand.size(1)
        is_eos = cand == eos
        step_scores = _limit_scores(step_scores, is_eos, at_limit, void, espnet)
        best, flat = _choose(scores.unsqueeze(1) + step_scores, is_eos, finished, done, prefix, beam,
                             (length_norm, end_len), espnet)
        parent = (flat // C + (torch.arange(B, device=device) * beam).unsqueeze(1)).view(N)
        col = (flat % C).view(N)
        new_tok = cand[parent, col]
        scores = best.view(N)
        done |= _finished(finished, best, t, beam, espnet)
        if bool(done.all()):
            break
        scores = scores.masked_fill(done.repeat_interleave(beam), NEG_INF)
        # keep the running hypotheses alive even when done (their scores are -inf and are ignored)
        parent = torch.where(torch.isfinite(scores), parent, base)
        prefix = torch.cat([prefix[parent], new_tok.unsqueeze(1)], dim=1)
        for s in scorers:
            states[s.name] = s.scorer.select(states[s.name], aux[s.name], parent,
                                             new_tok if s.scorer.full else col, new_tok)
    return [[Hypothesis(tuple(i for i in seq if i != BLANK_ID) if espnet else seq, norm)
             for _, seq, norm in sorted(f, key=lambda x: x[2], reverse=True)[:beam]]
            or [Hypothesis((), NEG_INF)] for f in finished]


def _choose(total: torch.Tensor, is_eos: torch.Tensor, finished: list, done: torch.Tensor, prefix: torch.Tensor,
            beam: int, length_norm: tuple[float, int], espnet: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's choice from ``total (N, C)`` (running score + extension): endings among an utterance's ``beam``
    best extensions are recorded (fairseq; ESPnet alike); the running beam is refilled from the best non-eos
    extensions (ESPnet: only those among the beam best, so its beam shrinks). Returns ``(best, flat)`` ``(B, beam)``."""
    N, C = total.shape
    B = N // beam
    top_val, top_idx = total.view(B, beam * C).topk(beam, dim=-1)
    top_eos = is_eos.view(B, beam * C).gather(1, top_idx) & torch.isfinite(top_val)
    if bool(top_eos.any()):
        _collect_endings(finished, done, top_eos, top_idx, top_val, prefix, beam, C, length_norm)
    running = total.masked_fill(is_eos, NEG_INF).view(B, beam * C)
    if espnet:
        running = running.masked_fill(~torch.zeros_like(running, dtype=torch.bool).scatter_(1, top_idx, True), NEG_INF)
    return running.topk(beam, dim=-1)


def _finished(finished: list, best: torch.Tensor, t: int, beam: int, espnet: bool) -> torch.Tensor:
    """``(B,)`` utterances done after step ``t``: once ``beam`` hypotheses have ended (fairseq's rule; comparing raw
    scores instead would stop at an early short hypothesis, since running scores only fall with length); ESPnet:
    by its ``end_detect``, or when nothing runs on."""
    if not espnet:
        return torch.tensor([len(f) >= beam for f in finished], device=best.device)
    return torch.tensor([_espnet_end(f, t) for f in finished], device=best.device) | ~torch.isfinite(best).any(1)


def _candidates(pre: torch.Tensor, eos: int, n_cand: int, espnet_pre_beam: bool):
    """The ``n_cand`` best tokens of each hypothesis by ``pre (N, V)`` other than eos, then eos: ``(N, n_cand + 1)``.
    ``espnet_pre_beam``: the best ``n_cand`` of all tokens (eos included) then eos (ESPnet's CTC prefix scorer scores
    eos whatever its pre-beam holds), and a mask ``(N, n_cand + 1)`` of the pre-beam's own eos columns (eos has the
    last column; those would count it twice)."""
    N = pre.size(0)
    eos_column = torch.full((N, 1), eos, device=pre.device, dtype=torch.long)
    if not espnet_pre_beam:
        _, cand = pre.index_fill(1, torch.tensor([eos], device=pre.device), NEG_INF).topk(n_cand, dim=-1)
        return torch.cat([cand, eos_column], 1), None
    _, cand = pre.topk(n_cand, dim=-1)
    own_eos = cand == eos
    void = torch.cat([own_eos, torch.zeros_like(own_eos[:, :1])], 1)
    return torch.cat([torch.where(own_eos, cand[:, :1], cand), eos_column], 1), void


def _limit_scores(step_scores: torch.Tensor, is_eos: torch.Tensor, at_limit: torch.Tensor, void: torch.Tensor | None,
                  espnet: bool) -> torch.Tensor:
    """``step_scores (N, C)`` under the length limit (only eos there; ESPnet: eos appended with no score) and, with
    ESPnet's pre-beam, without the columns ``void`` marks (but eos at the limit)."""
    lim = at_limit.unsqueeze(1)
    if void is not None:
        step_scores = step_scores.masked_fill(void & ~(lim & is_eos), NEG_INF)
    step_scores = step_scores.masked_fill(lim & ~is_eos, NEG_INF)
    if espnet:
        step_scores = torch.where(lim & is_eos, torch.zeros_like(step_scores), step_scores)
    return step_scores


def _espnet_end(finished: list, t: int, m: int = 3, d_end: float = math.log(1e-10)) -> bool:
    """ESPnet's ``end_detect`` after step ``t``: for each of the last ``m`` lengths some hypothesis ended, and the
    best of each is worse than the best overall by more than ``-d_end`` (its lengths count sos and eos)."""
    if not finished:
        return False
    best = max(f[0] for f in finished)
    count = 0
    for k in range(m):
        same = [f[0] for f in finished if len(f[1]) + 2 == t - k]
        if same and max(same) - best < d_end:
            count += 1
    return count == m


def _scorers(decoder, enc, enc_lens, ctc_log_probs, prompt: tuple[int, ...], eos: int, beam: int, ctc_weight: float,
             use_cache: bool, extra_scorers: Sequence[Weighted]) -> list[Weighted]:
    """The weighted terms of the score: the decoder (``1 - ctc_weight``), the CTC prefix score, the extras."""
    scorers = [Weighted("decoder", 1.0 - ctc_weight, DecoderScorer(decoder, enc, enc_lens, prompt, beam, use_cache))]
    if ctc_weight > 0:
        scorers.append(Weighted("ctc", ctc_weight, CTCScorer(ctc_log_probs, enc_lens, beam, eos)))
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


def _rules(model, rules: str, eos_threshold: float, ctc_length_window: tuple[float, float]):
    """``(espnet, end_len, eos_threshold, ctc_length_window)`` under ``rules`` (``auto``: the model's own): Whisper's
    have no end threshold or CTC window, and a finished hypothesis' length leaves its end token out (end_len 0)."""
    rules = getattr(model, "beam_rules", "asr") if rules == "auto" else rules
    if rules not in ("asr", "espnet", "whisper"):
        raise UserError(f"beam rules must be asr, espnet or whisper, not {rules!r}")
    if rules == "whisper":
        return False, 0, 0.0, (0.0, 0.0)
    return rules == "espnet", 1, eos_threshold, ctc_length_window


def _ctc_terms(model, enc: torch.Tensor, ctc_log_probs: torch.Tensor | None, ctc_weight: float,
               ctc_length_window: tuple[float, float]):
    """The CTC log-probabilities the search needs (the caller usually has them) and the length window that
    applies: none for a model without a CTC head (where joint scoring is refused)."""
    if ctc_log_probs is None and (ctc_weight > 0 or ctc_length_window[1] > 0):
        ctc_log_probs = model.ctc_log_probs(enc)
    if ctc_log_probs is None:
        if ctc_weight > 0:
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


def _collect_endings(finished: list, done: torch.Tensor, top_eos: torch.Tensor, top_idx: torch.Tensor,
                     top_val: torch.Tensor, prefix: torch.Tensor, beam: int, C: int,
                     length_norm: tuple[float, int]) -> None:
    """Record the hypotheses that end at this step (eos among an utterance's ``beam`` best extensions):
    ``(score, tokens, score / (len + e) ** norm)`` per utterance not yet done, ``length_norm = (norm, e)``
    (e = 1: the end token counts)."""
    norm, end_len = length_norm
    for b, k in top_eos.nonzero().tolist():
        if not done[b]:
            flat = int(top_idx[b, k])
            seq = tuple(prefix[b * beam + flat // C].tolist())
            sc = float(top_val[b, k])
            finished[b].append((sc, seq, sc / max(1, len(seq) + end_len) ** norm))


def attention_beam(model, enc, enc_lens, beam: int = DEFAULTS.beam, **kw) -> list[list[Hypothesis]]:
    """AR decoder beam search alone (see :func:`beam_search`)."""
    return beam_search(model, enc, enc_lens, beam, ctc_weight=0.0, **kw)


def joint_ctc_attention(model, enc, enc_lens, beam: int = DEFAULTS.beam, ctc_weight: float = DEFAULTS.ctc_weight, **kw) -> list[list[Hypothesis]]:
    """One-pass hybrid CTC/attention beam search (see :func:`beam_search`)."""
    if not 0 < ctc_weight <= 1:
        raise UserError("ctc_weight must be in (0, 1]")
    return beam_search(model, enc, enc_lens, beam, ctc_weight=ctc_weight, **kw)
