"""CTC decoding: greedy (batched, vectorised) and prefix beam search (n-best)."""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from asr.search.result import Hypothesis
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


def _prefix_beam_one(lp: torch.Tensor, beam: int, nbest: int, prune: float) -> list[Hypothesis]:
    """``lp (T, V)`` log-probs of one utterance -> n-best by total prefix probability."""
    # Each prefix: (log P ending in blank, log P ending in its last token), and the frame where each
    # token was (last) emitted with the highest probability, for timing.
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG_INF]}
    frames: dict[tuple[int, ...], tuple[int, ...]] = {(): ()}
    T = lp.size(0)
    k = min(beam, lp.size(1))
    top_v, top_i = lp.topk(k, dim=-1)
    top_v, top_i = top_v.tolist(), top_i.tolist()
    blank_col = lp[:, BLANK_ID].tolist()
    for t in range(T):
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        nframes: dict[tuple[int, ...], tuple[int, ...]] = {}
        pb_blank = blank_col[t]
        # a frame that is almost surely blank extends every prefix with blank only (WeNet-style skip)
        cands = [(v, i) for v, i in zip(top_v[t], top_i[t]) if v > prune or i == BLANK_ID]
        if not any(i == BLANK_ID for _, i in cands):
            cands.append((pb_blank, BLANK_ID))
        for prefix, (pb, pnb) in beams.items():
            total = _logaddexp(pb, pnb)
            for v, tok in cands:
                if tok == BLANK_ID:
                    e = nxt[prefix]
                    e[0] = _logaddexp(e[0], total + v)
                    nframes.setdefault(prefix, frames[prefix])
                    continue
                last = prefix[-1] if prefix else None
                new = prefix + (tok,)
                e = nxt[new]
                if tok == last:
                    e[1] = _logaddexp(e[1], pb + v)  # repeat after a blank: a new token
                    same = nxt[prefix]  # repeat without blank: the same token continues
                    same[1] = _logaddexp(same[1], pnb + v)
                    nframes.setdefault(prefix, frames[prefix])
                else:
                    e[1] = _logaddexp(e[1], total + v)
                if new not in nframes:
                    nframes[new] = frames[prefix] + (t,)
        ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)[:beam]
        beams = {p: s for p, s in ranked}
        frames = {p: nframes[p] for p in beams}
    ranked = sorted(beams.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)[:nbest]
    return [Hypothesis(p, _logaddexp(*s), frames[p]) for p, s in ranked]


def ctc_prefix_beam(log_probs: torch.Tensor, lens: torch.Tensor, beam: int = 10, nbest: int | None = None,
                    prune: float = math.log(1e-4)) -> list[list[Hypothesis]]:
    """CTC prefix beam search (Hannun et al. 2014). ``log_probs (B, T, V)``, ``lens (B,)``.

    Keeps ``beam`` prefixes per frame, extending each with the ``beam`` most likely tokens of the frame
    whose log-probability exceeds ``prune``. Returns, per utterance, up to ``nbest`` (default ``beam``)
    hypotheses, best first, scored by their total CTC prefix log-probability. ``beam=1`` is greedy decoding.
    """
    nbest = beam if nbest is None else nbest
    if beam == 1:
        return ctc_greedy(log_probs, lens)
    lp = log_probs.float().cpu()
    return [_prefix_beam_one(lp[b, : int(lens[b])], beam, nbest, prune) for b in range(lp.size(0))]
