"""CTC decoding: greedy (batched, vectorised) and prefix beam search (n-best)."""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from asr.results import Hypothesis
from asr.search.options import DEFAULTS
from asr.text import BLANK_ID

NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def ctc_greedy(log_probs: torch.Tensor, lens: torch.Tensor) -> list[list[Hypothesis]]:
    """Best path: argmax per frame, merge repeats, drop blanks. ``log_probs (B, T, V)``, ``lens (B,)``.
    Returns a one-entry n-best list per utterance; the score is the best path's log-probability."""
    best, idx = log_probs.max(-1)  # (B, T)
    B, T = idx.shape
    valid = torch.arange(T, device=idx.device).unsqueeze(0) < lens.unsqueeze(1)
    prev = torch.cat([idx.new_full((B, 1), -1), idx[:, :-1]], dim=1)
    keep = valid & (idx != BLANK_ID) & (idx != prev)
    scores = (best * valid).sum(1)
    out = []
    for b in range(B):
        frames = keep[b].nonzero().squeeze(1)
        out.append([Hypothesis(tuple(idx[b, frames].tolist()), float(scores[b]), tuple(frames.tolist()))])
    return out


def _no_bonus(prefix: tuple[int, ...]) -> float:
    return 0.0


class PrefixBeam:
    """CTC prefix beam search state that can be advanced chunk by chunk (streaming partial results).

    Each prefix keeps (log P ending in blank, log P ending in its last token) and the frame where each
    of its tokens was first emitted."""

    def __init__(self, beam: int, prune: float = math.log(1e-4), fusion=None):
        self.beam, self.prune = beam, prune
        self.fusion = fusion  # optional asr.search.fusion.WordFusion: word n-gram scores join the ranking
        self.beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG_INF]}
        self.frames: dict[tuple[int, ...], tuple[int, ...]] = {(): ()}
        self.t = 0  # frames consumed

    def advance(self, lp: torch.Tensor) -> None:
        """Consume ``lp (T, V)``: the log-probs of the next T frames."""
        k = min(self.beam, lp.size(1))
        top_v, top_i = lp.topk(k, dim=-1)
        top_v, top_i = top_v.tolist(), top_i.tolist()
        blank_col = lp[:, BLANK_ID].tolist()
        beams, frames = self.beams, self.frames
        for dt in range(lp.size(0)):
            t = self.t + dt
            if top_v[dt][0] <= self.prune or (top_i[dt][0] == BLANK_ID and (k == 1 or top_v[dt][1] <= self.prune)):
                # only blank is tried at this frame: every prefix ends in blank, the order is unchanged (exact)
                vb = blank_col[dt]
                beams = {p: [_logaddexp(pb, pnb) + vb, NEG_INF] for p, (pb, pnb) in beams.items()}
                continue
            nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
            # token frames of each prefix come from its most probable incoming transition (as WeNet keeps the
            # Viterbi path's times), so they do not depend on the order the beam is visited in
            nframes: dict[tuple[int, ...], tuple[int, ...]] = {}
            best_in: dict[tuple[int, ...], float] = {}

            def arrive(key: tuple[int, ...], score: float, fr: tuple[int, ...]) -> None:
                if score > best_in.get(key, NEG_INF) or key not in nframes:
                    best_in[key] = score
                    nframes[key] = fr

            # tokens below the pruning threshold are not tried; blank always is
            cands = [(v, i) for v, i in zip(top_v[dt], top_i[dt]) if v > self.prune and i != BLANK_ID]
            cands.append((blank_col[dt], BLANK_ID))
            for prefix, (pb, pnb) in beams.items():
                total = _logaddexp(pb, pnb)
                for v, tok in cands:
                    if tok == BLANK_ID:
                        e = nxt[prefix]
                        e[0] = _logaddexp(e[0], total + v)
                        arrive(prefix, total + v, frames[prefix])
                        continue
                    last = prefix[-1] if prefix else None
                    new = prefix + (tok,)
                    e = nxt[new]
                    if tok == last:
                        e[1] = _logaddexp(e[1], pb + v)  # repeat after a blank: a new token
                        arrive(new, pb + v, frames[prefix] + (t,))
                        same = nxt[prefix]  # repeat without blank: the same token continues
                        same[1] = _logaddexp(same[1], pnb + v)
                        arrive(prefix, pnb + v, frames[prefix])
                    else:
                        e[1] = _logaddexp(e[1], total + v)
                        arrive(new, total + v, frames[prefix] + (t,))
            bonus = self.fusion.score if self.fusion is not None else _no_bonus
            ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(*kv[1]) + bonus(kv[0]), reverse=True)[: self.beam]
            beams = {p: sc for p, sc in ranked}
            frames = {p: nframes[p] for p in beams}
        if self.fusion is not None:
            self.fusion.forget(set(beams))
        self.beams, self.frames = beams, frames
        self.t += lp.size(0)

    def nbest(self, n: int | None = None) -> list[Hypothesis]:
        """Best first; with fusion, scored as whole utterances (last word and sentence end included)."""
        bonus = self.fusion.final_score if self.fusion is not None else _no_bonus
        total = {p: _logaddexp(*sc) + bonus(p) for p, sc in self.beams.items()}
        ranked = sorted(total.items(), key=lambda kv: kv[1], reverse=True)[: n or self.beam]
        return [Hypothesis(p, sc, self.frames[p]) for p, sc in ranked]


def ctc_prefix_beam(log_probs: torch.Tensor, lens: torch.Tensor, beam: int = DEFAULTS.beam, nbest: int | None = None,
                    prune: float = math.log(1e-4), fusion_factory=None) -> list[list[Hypothesis]]:
    """CTC prefix beam search (Hannun et al. 2014). ``log_probs (B, T, V)``, ``lens (B,)``.

    Keeps ``beam`` prefixes per frame, extending each with the ``beam`` most likely tokens of the frame
    whose log-probability exceeds ``prune``. Returns, per utterance, up to ``nbest`` (default ``beam``)
    hypotheses, best first, scored by their total CTC prefix log-probability. ``beam=1`` is greedy decoding.
    ``fusion_factory()``: a fresh :class:`asr.search.fusion.WordFusion` per utterance (word n-gram shallow
    fusion; the scores then include the LM).
    """
    nbest = beam if nbest is None else nbest
    lp = log_probs.float().cpu()
    out = []
    for b in range(lp.size(0)):
        pb = PrefixBeam(beam, prune, fusion_factory() if fusion_factory else None)
        pb.advance(lp[b, : int(lens[b])])
        out.append(pb.nbest(nbest))
    return out
