"""CTC decoding."""

from __future__ import annotations

import torch

from asr.search.result import Hypothesis
from asr.text import BLANK_ID


def ctc_greedy(log_probs: torch.Tensor, lens: torch.Tensor) -> list[Hypothesis]:
    """Best path: argmax per frame, merge repeats, drop blanks. ``log_probs (B, T, V)``, ``lens (B,)``."""
    best, idx = log_probs.max(-1)  # (B, T)
    B, T = idx.shape
    valid = torch.arange(T, device=idx.device).unsqueeze(0) < lens.unsqueeze(1)
    prev = torch.cat([idx.new_full((B, 1), -1), idx[:, :-1]], dim=1)
    keep = valid & (idx != BLANK_ID) & (idx != prev)
    scores = (best * valid).sum(1)
    out = []
    for b in range(B):
        frames = keep[b].nonzero().squeeze(1)
        out.append(Hypothesis(tuple(idx[b, frames].tolist()), float(scores[b]), tuple(frames.tolist())))
    return out
