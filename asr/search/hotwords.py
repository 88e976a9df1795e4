"""Hotword (contextual) biasing: names and terms the user expects get a bonus while a hypothesis spells them.

A token trie of the hotwords (icefall's ``ContextGraph`` idea, without failure arcs): a hypothesis earns
``boost`` per token while its latest tokens follow a hotword from that word's first piece; if the path
breaks before the hotword is complete, what it earned on the path is taken back, so a partial match
leaves no trace; a completed hotword keeps its bonus. It is a prefix bonus (``score`` / ``final_score``
/ ``forget``), like :class:`asr.search.fusion.WordFusion`, so it works in the CTC prefix search (batch and
streaming partials); :class:`HotwordScorer` makes it a full scorer of the AR / joint search.

Hotword file: one phrase per line, optionally followed by a TAB or spaces and its boost (log-probability
bonus per token; default 1.5); ``#`` starts a comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from asr.errors import UserError
from asr.search.prefix_bonus import PrefixStates, SumBonus
from asr.text import normalize_text

DEFAULT_BOOST = 1.5  # per token; chosen on 100 dev utterances (see the README)


class HotwordError(UserError):
    """A hotword file that cannot be used (the message names the file and line)."""


def parse_hotwords(text: str, source: str = "<hotwords>", default_boost: float = DEFAULT_BOOST) -> tuple[tuple[str, float], ...]:
    """``"PHRASE [BOOST]"`` lines -> ``((normalised phrase, boost), ...)``."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace("\t", " ").split()
        boost = default_boost
        if len(parts) > 1:
            try:
                boost = float(parts[-1])
                parts = parts[:-1]
            except ValueError:
                pass
        if boost != boost or abs(boost) == float("inf"):
            raise HotwordError(f"{source}:{n}: the boost must be a finite number, not {parts[-1]!r}")
        phrase = normalize_text(" ".join(parts))
        if not phrase:
            raise HotwordError(f"{source}:{n}: no word left after normalisation: {line!r}")
        out.append((phrase, boost))
    return tuple(out)


def load_hotwords(path: str | Path, default_boost: float = DEFAULT_BOOST) -> tuple[tuple[str, float], ...]:
    """Read a hotword file (see the module doc); a missing, unreadable or empty file is a one-line error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HotwordError(f"{p}: cannot read the hotword file ({e.__class__.__name__}: {e})") from None
    words = parse_hotwords(text, str(p), default_boost)
    if not words:
        raise HotwordError(f"{p}: no hotwords in the file")
    return words


@dataclass
class _Node:
    children: dict = field(default_factory=dict)  # token -> _Node
    boost: float = 0.0  # bonus for arriving here
    end: bool = False  # a hotword ends here


class HotwordBias(PrefixStates):
    """``hotwords ((phrase, boost), ...)`` spelled with ``tokenizer.spellings`` (each way the tokenizer may write
    it: one for SentencePiece's upper-case words, cased variants for Whisper's); a prefix's bonus is
    ``sum of boosts on completed hotwords + on the one it is inside``. A prefix's state is (trie node, bonus
    earned on the running match, total bonus)."""

    def __init__(self, hotwords, tokenizer):
        self.root = _Node()
        spellings = getattr(tokenizer, "spellings", None) or (lambda p: [tokenizer.encode(p)])
        for phrase, boost in hotwords:
            for spelling in spellings(phrase):
                node = self.root
                for tok in spelling:
                    node = node.children.setdefault(tok, _Node(boost=boost))
                    node.boost = max(node.boost, boost)
                node.end = True
        self._states: dict[tuple[int, ...], tuple[_Node, float, float]] = {}

    def _initial(self) -> tuple[_Node, float, float]:
        return self.root, 0.0, 0.0

    def _step(self, parent, prefix: tuple[int, ...]) -> tuple[_Node, float, float]:
        return self.advance(parent, prefix[-1])

    def advance(self, st, tok: int) -> tuple[_Node, float, float]:
        """The state after token ``tok`` from state ``st``."""
        node, pending, total = st
        child = node.children.get(tok)
        if child is None:  # the running match breaks: take its bonus back, try a new match from here
            total -= pending
            node, pending = self.root, 0.0
            child = node.children.get(tok)
            if child is None:
                return self.root, 0.0, total
        pending += child.boost
        total += child.boost
        if child.end:  # complete: the bonus stays (a longer hotword may go on from here)
            pending = 0.0
            if not child.children:
                return self.root, 0.0, total
        return child, pending, total

    def score(self, prefix: tuple[int, ...]) -> float:
        return self.state(prefix)[2]

    def final_score(self, prefix: tuple[int, ...]) -> float:
        _, pending, total = self.state(prefix)
        return total - pending  # an unfinished hotword at the end earns nothing


class HotwordScorer:
    """Hotwords as a *full* scorer of the AR / joint search (:mod:`asr.search.scorers`): the exact bonus
    increment of every next token, so a hotword's tokens join the candidates even where the decoder alone
    would not have proposed them (a partial scorer can only re-rank what the decoder proposes)."""

    full = True

    def __init__(self, bias: HotwordBias, vocab: int, eos: int):
        self.bias, self.vocab, self.eos = bias, vocab, eos
        self.starts = frozenset(bias.root.children)  # tokens that can begin a hotword

    def init_state(self):
        return None

    def score(self, state, prefix, cand=None):
        rows = torch.empty((prefix.size(0), self.vocab))
        for i, p in enumerate(prefix.tolist()):
            st = self.bias.state(tuple(p))
            node, pending, total = st
            rows[i].fill_(-pending)  # any other token breaks the running match
            for tok in self.starts.union(node.children):
                if tok < self.vocab:
                    rows[i, tok] = self.bias.advance(st, tok)[2] - total
            rows[i, self.eos] = -pending
        return rows.to(prefix.device), None

    def select(self, state, aux, parent, col, tokens):
        return None


__all__ = ["HotwordBias", "HotwordScorer", "HotwordError", "SumBonus", "load_hotwords", "parse_hotwords", "DEFAULT_BOOST"]
