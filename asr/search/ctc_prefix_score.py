"""Vectorised CTC prefix scorer for one-pass joint CTC/attention beam search (Watanabe et al. 2017).

For N running hypotheses (utterance x beam) and C candidate tokens each, it gives the CTC prefix
log-probability ``log P(prefix + c ...)`` of every extension in one pass over time, as ESPnet's
``CTCPrefixScoreTH`` does; the state per hypothesis is the forward variables of its prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asr.text import BLANK_ID

NEG = -1e10  # "log 0" that stays finite in sums


@dataclass(frozen=True)
class CTCPrefixState:
    r: torch.Tensor  # (T, 2, N) forward log-probs of each prefix ending at t in a token [0] or a blank [1]
    score: torch.Tensor  # (N,) prefix log-probability of each hypothesis so far
    last: torch.Tensor  # (N,) last token of each prefix (-1 when empty)
    length: int  # tokens in each prefix (all hypotheses advance together)

    def advance(self, parent: torch.Tensor, column: torch.Tensor, tokens: torch.Tensor, scores: torch.Tensor,
                r: torch.Tensor) -> "CTCPrefixState":
        """State after extending hypothesis ``parent[i]`` by its candidate ``column[i]`` (token ``tokens[i]``);
        ``scores (N, C)`` and ``r (T, 2, N, C)`` come from :meth:`CTCPrefixScorer.score`."""
        return CTCPrefixState(r[:, :, parent, column], scores[parent, column], tokens, self.length + 1)


def _forward(r0: torch.Tensor, r1: torch.Tensor, phi: torch.Tensor, x: torch.Tensor, blank: torch.Tensor):
    """The prefix forward recursion over frames ``t = 1..S`` without a loop over time:

        r0[t] = logaddexp(r0[t-1], phi[t-1]) + x[t]      (the prefix ends in its last token at t)
        r1[t] = logaddexp(r0[t-1], r1[t-1]) + blank[t]   (it ends in a blank at t)

    Both are first-order linear recurrences in probability space, so with ``A = cumsum(x)`` the first is
    ``r0[t] = A[t] + logsumexp(r0[0], phi[s-1] - A[s-1] for s <= t)`` (a ``logcumsumexp``), and the second
    the same over ``r0``. Sums run in float64 (``A`` reaches -1e4 over a long utterance).
    ``r0, r1 (N, C)`` at frame 0; ``phi (S, N, C)`` frames 0..S-1; ``x (S, N, C)``, ``blank (S, N, 1)`` frames
    1..S. Returns ``r0, r1`` of frames 1..S, ``(S, N, C)`` each."""
    dt = x.dtype
    r0, r1, phi, x, blank = (t.double() for t in (r0, r1, phi, x, blank))
    A = torch.cumsum(x, 0)  # A[k] = x[1] + .. x[k+1]
    A_prev = torch.cat([torch.zeros_like(A[:1]), A[:-1]])  # A at frame t-1
    q = torch.logaddexp(r0.unsqueeze(0), torch.logcumsumexp(phi - A_prev, 0))
    out0 = A + q
    Bc = torch.cumsum(blank.expand_as(x), 0)
    B_prev = torch.cat([torch.zeros_like(Bc[:1]), Bc[:-1]])
    r0_prev = torch.cat([r0.unsqueeze(0), out0[:-1]])  # r0 at frame t-1
    p = torch.logaddexp(r1.unsqueeze(0), torch.logcumsumexp(r0_prev - B_prev, 0))
    out1 = Bc + p
    return out0.to(dt).clamp_min(NEG), out1.to(dt).clamp_min(NEG)


class CTCPrefixScorer:
    """``log_probs (B, T, V)``, ``lens (B,)``; hypotheses are laid out utterance-major, ``beam`` each."""

    def __init__(self, log_probs: torch.Tensor, lens: torch.Tensor, beam: int, eos: int):
        B, T, V = log_probs.shape
        x = log_probs.float().clamp_min(NEG)
        # Frames past an utterance's end: blank with probability 1, so prefix scores stop changing there.
        past = torch.arange(T, device=x.device).unsqueeze(0) >= lens.unsqueeze(1)  # (B, T)
        x = x.masked_fill(past.unsqueeze(-1), NEG)
        x[..., BLANK_ID] = x[..., BLANK_ID].masked_fill(past, 0.0)
        self.x = x.repeat_interleave(beam, 0).transpose(0, 1).contiguous()  # (T, N, V)
        self.lens = lens.repeat_interleave(beam)  # (N,)
        self.eos, self.T = eos, T

    def init_state(self) -> CTCPrefixState:
        N = self.x.size(1)
        r = torch.full((self.T, 2, N), NEG, device=self.x.device)
        r[:, 1] = torch.cumsum(self.x[:, :, BLANK_ID], dim=0)
        return CTCPrefixState(r, torch.zeros(N, device=self.x.device),
                              torch.full((N,), -1, dtype=torch.long, device=self.x.device), 0)

    def score(self, state: CTCPrefixState, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cand (N, C)`` candidate tokens -> ``(prefix scores (N, C), forward variables (T, 2, N, C))``.
        The score of ``eos`` is the probability that the whole utterance is exactly the prefix."""
        T, N, C = self.T, cand.size(0), cand.size(1)
        xs = torch.gather(self.x, 2, cand.unsqueeze(0).expand(T, N, C))  # (T, N, C)
        r_prev = state.r  # (T, 2, N)
        r_sum = torch.logaddexp(r_prev[:, 0], r_prev[:, 1])  # (T, N)
        log_phi = r_sum.unsqueeze(-1).expand(T, N, C).clone()
        same = cand == state.last.unsqueeze(1)  # (N, C): repeating the last token needs a blank between
        if same.any():
            log_phi = torch.where(same.unsqueeze(0), r_prev[:, 1].unsqueeze(-1).expand(T, N, C), log_phi)
        r = torch.full((T, 2, N, C), NEG, device=xs.device)
        start = max(state.length, 1)
        if state.length == 0:
            r[0, 0] = xs[0]
        log_psi = r[start - 1, 0].clone()  # (N, C)
        blank = self.x[:, :, BLANK_ID].unsqueeze(-1)  # (T, N, 1)
        emit = log_phi[:-1] + xs[1:]  # (T-1, N, C): phi[t-1] + x[t] for all t at once
        if start < T:
            r[start:, 0], r[start:, 1] = _forward(r[start - 1, 0], r[start - 1, 1], log_phi[start - 1:-1], xs[start:],
                                                  blank[start:])
            log_psi = torch.logaddexp(log_psi, torch.logsumexp(emit[start - 1:], dim=0))
        is_eos = cand == self.eos
        if is_eos.any():
            end = r_sum[self.lens - 1, torch.arange(N, device=xs.device)]  # (N,)
            log_psi = torch.where(is_eos, end.unsqueeze(1).expand(N, C), log_psi)
        return log_psi, r
