"""Scorers of the autoregressive / joint beam search (ESPnet's ``init_state / score / select_state`` idea).

The search score of a hypothesis is ``sum_k weight_k * score_k``; every term is a :class:`Scorer`, so a new
knowledge source (an LM, hotwords, a length bonus) is a new scorer, never an edit of
:func:`asr.search.attention.beam_search`. Hypotheses are laid out utterance-major, ``N = B x beam`` rows;
the search keeps their token prefixes ``(N, t)`` and hands them to every scorer.

Two kinds, as in ESPnet:

* **full** scorers give the log-probability increment of *every* next token, ``(N, V)`` (the attention
  decoder, a neural token LM, the length bonus); their weighted sum pre-selects the candidates;
* **partial** scorers score only those candidates, ``(N, C)`` (the CTC prefix score, the word n-gram, hotwords),
  since scoring the whole vocabulary would cost too much.

After each step the search keeps, for every new row ``i``, candidate ``col[i]`` of parent row ``parent[i]``;
:meth:`Scorer.select` builds the scorers' states for the new rows from that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from asr.nn.masks import lengths_to_mask
from asr.search.ctc_prefix_score import CTCPrefixScorer


class Scorer(Protocol):
    full: bool  # True: score() gives (N, V) for every token; False: (N, C) for the candidates only

    def init_state(self) -> Any:
        """State of the N start hypotheses (empty prefixes)."""

    def score(self, state: Any, prefix: torch.Tensor, cand: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """``prefix (N, t)`` tokens so far; ``cand (N, C)`` candidates (None for full scorers) ->
        ``(log-prob increments (N, V) or (N, C), whatever select() needs)``. The end token ``eos`` scores
        the prefix as a whole utterance."""

    def select(self, state: Any, aux: Any, parent: torch.Tensor, col: torch.Tensor, tokens: torch.Tensor) -> Any:
        """State of the kept hypotheses: row ``i`` extends ``parent[i]`` with candidate ``col[i]`` = ``tokens[i]``
        (``col`` indexes the candidates for partial scorers, and is the token itself for full scorers)."""


@dataclass(frozen=True)
class Weighted:
    name: str
    weight: float
    scorer: Scorer


class DecoderScorer:
    """The attention decoder, incremental (per-layer key/value cache, one position per step; the encoder
    memory is projected once per utterance and shared by its ``beam`` hypotheses) or, with
    ``use_cache=False``, recomputing the whole prefix over a per-hypothesis copy of the memory (the
    reference the cache is tested against). ``memory (B, T, D)``, ``memory_lens (B,)``."""

    full = True

    def __init__(self, decoder, memory: torch.Tensor, memory_lens: torch.Tensor, prompt: tuple[int, ...] | int,
                 beam: int, use_cache: bool = True):
        self.decoder, self.beam, self.use_cache = decoder, beam, use_cache
        self.prompt = (prompt,) if isinstance(prompt, int) else tuple(prompt)  # fed before the first token
        if use_cache:
            self.memory, self.memory_lens = memory, memory_lens
        else:
            self.memory, self.memory_lens = memory.repeat_interleave(beam, 0), memory_lens.repeat_interleave(beam)
        self.mask = lengths_to_mask(self.memory_lens, memory.size(1))  # (B, T), (N, T) uncached

    def init_state(self):
        if not self.use_cache:
            return None
        cache = self.decoder.init_cache(self.memory, self.beam)
        if len(self.prompt) > 1:  # all but the prompt's last token, which the first score() feeds
            N = self.memory.size(0) * self.beam
            head = torch.tensor(self.prompt[:-1], device=self.memory.device).expand(N, -1)
            _, cache = self.decoder.step(head, self.mask, cache)
        return cache

    def score(self, state, prefix, cand=None):
        N = prefix.size(0)
        if self.use_cache:
            last = prefix[:, -1] if prefix.size(1) else torch.full((N,), self.prompt[-1], dtype=torch.long,
                                                                    device=prefix.device)
            lp, cache = self.decoder.step(last, self.mask, state)
            return lp.float(), cache
        ys = torch.cat([torch.tensor(self.prompt, device=prefix.device).expand(N, -1), prefix], 1)
        lens = torch.full((N,), ys.size(1), dtype=torch.long, device=prefix.device)
        return self.decoder(self.memory, self.memory_lens, ys, lens)[:, -1].log_softmax(-1).float(), None

    def select(self, state, aux, parent, col, tokens):
        return aux.select(parent) if self.use_cache else None


class CTCScorer:
    """CTC prefix score (Watanabe et al. 2017): the increment ``log P_ctc(prefix + c ...) - log P_ctc(prefix ...)``.
    ``log_probs (B, T, V)``, ``lens (B,)``, ``beam`` hypotheses per utterance."""

    full = False

    def __init__(self, log_probs: torch.Tensor, lens: torch.Tensor, beam: int, eos: int):
        self.prefix_scorer = CTCPrefixScorer(log_probs, lens, beam, eos)

    def init_state(self):
        return self.prefix_scorer.init_state()

    def score(self, state, prefix, cand):
        scores, r = self.prefix_scorer.score(state, cand)
        return scores - state.score.unsqueeze(1), (scores, r)

    def select(self, state, aux, parent, col, tokens):
        scores, r = aux
        return state.advance(parent, col, tokens, scores, r)


class LengthBonus:
    """+1 per token (ESPnet's ``length_bonus``); with a positive weight it counters the search's bias to short
    outputs. The end token scores 0."""

    full = True

    def __init__(self, vocab: int, eos: int, device: torch.device | str = "cpu"):
        self.row = torch.ones(vocab, device=device)
        self.row[eos] = 0.0

    def init_state(self):
        return None

    def score(self, state, prefix, cand=None):
        return self.row.expand(prefix.size(0), -1), None

    def select(self, state, aux, parent, col, tokens):
        return None


class PrefixBonusScorer:
    """Any prefix bonus with ``score(prefix) -> float`` (for a running prefix) and ``final_score(prefix)``
    (for a finished one), such as :class:`asr.search.fusion.WordFusion` (word n-gram shallow fusion) or
    :class:`asr.search.hotwords.HotwordBias`: the increment of that bonus per candidate. Stateless here:
    the bonus object caches its per-prefix states."""

    full = False

    def __init__(self, bonus, eos: int):
        self.bonus, self.eos = bonus, eos

    def init_state(self):
        return None

    def score(self, state, prefix, cand):
        rows, cands = prefix.tolist(), cand.tolist()
        out = []
        for p, cs in zip(rows, cands):
            p = tuple(p)
            base = self.bonus.score(p)
            out.append([(self.bonus.final_score(p) if c == self.eos else self.bonus.score(p + (c,))) - base
                        for c in cs])
        return torch.tensor(out, dtype=torch.float32, device=cand.device), None

    def select(self, state, aux, parent, col, tokens):
        return None


class TokenLMScorer:
    """A neural token LM (:class:`asr.lm.neural.TokenLM`) over the model's own tokens: its log-probability of
    every next token, ``(N, V)``; the end token is its sentence end."""

    full = True

    def __init__(self, lm, n: int, device: torch.device | str = "cpu"):
        self.lm, self.n, self.device = lm, n, device

    def init_state(self):
        return self.lm.init_state(self.n, self.device)

    def score(self, state, prefix, cand=None):
        N = prefix.size(0)
        last = prefix[:, -1] if prefix.size(1) else torch.full((N,), self.lm.sos, dtype=torch.long,
                                                                device=prefix.device)
        lp, new_state = self.lm.step(last, state)
        return lp.float(), new_state

    def select(self, state, aux, parent, col, tokens):
        return self.lm.select_state(aux, parent)


__all__ = ["Scorer", "Weighted", "DecoderScorer", "CTCScorer", "LengthBonus", "PrefixBonusScorer", "TokenLMScorer"]
