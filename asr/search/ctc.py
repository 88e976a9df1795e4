"""CTC decoding: greedy (batched, vectorised) and prefix beam search (n-best)."""

from __future__ import annotations

import heapq
import math

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
        beams, frames, prune, lae = self.beams, self.frames, self.prune, _logaddexp
        bonus = self.fusion.score if self.fusion is not None else None
        for dt in range(lp.size(0)):
            t = self.t + dt
            vb = blank_col[dt]
            # tokens below the pruning threshold are not tried; blank always is
            cands = [(v, i) for v, i in zip(top_v[dt], top_i[dt]) if v > prune and i != BLANK_ID]
            if not cands:  # only blank: every prefix ends in blank, the ranking is unchanged (exact)
                beams = {p: [lae(pb, pnb) + vb, NEG_INF] for p, (pb, pnb) in beams.items()}
                continue
            nxt: dict[tuple[int, ...], list[float]] = {}
            # token frames of each prefix come from its most probable incoming transition (as WeNet keeps the
            # Viterbi path's times), so they do not depend on the order the beam is visited in (ties: the first)
            best_in: dict[tuple[int, ...], float] = {}
            nframes: dict[tuple[int, ...], tuple[int, ...]] = {}
            for prefix, (pb, pnb) in beams.items():
                total = lae(pb, pnb)
                fr = frames[prefix]
                last = prefix[-1] if prefix else None
                for v, tok in cands:
                    new = prefix + (tok,)
                    e = nxt.get(new)
                    if e is None:
                        e = nxt[new] = [NEG_INF, NEG_INF]
                    if tok == last:
                        sc = pb + v  # repeat after a blank: a new token
                        e[1] = lae(e[1], sc)
                        if new not in nframes or sc > best_in[new]:
                            best_in[new], nframes[new] = sc, fr + (t,)
                        same = nxt.get(prefix)  # repeat without blank: the same token continues
                        if same is None:
                            same = nxt[prefix] = [NEG_INF, NEG_INF]
                        sc = pnb + v
                        same[1] = lae(same[1], sc)
                        if prefix not in nframes or sc > best_in[prefix]:
                            best_in[prefix], nframes[prefix] = sc, fr
                    else:
                        sc = total + v
                        e[1] = lae(e[1], sc)
                        if new not in nframes or sc > best_in[new]:
                            best_in[new], nframes[new] = sc, fr + (t,)
                e = nxt.get(prefix)
                if e is None:
                    e = nxt[prefix] = [NEG_INF, NEG_INF]
                sc = total + vb
                e[0] = lae(e[0], sc)
                if prefix not in nframes or sc > best_in[prefix]:
                    best_in[prefix], nframes[prefix] = sc, fr
            if bonus is None:
                ranked = heapq.nlargest(self.beam, nxt.items(), key=lambda kv: lae(kv[1][0], kv[1][1]))
            else:
                ranked = heapq.nlargest(self.beam, nxt.items(), key=lambda kv: lae(kv[1][0], kv[1][1]) + bonus(kv[0]))
            beams = dict(ranked)
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
