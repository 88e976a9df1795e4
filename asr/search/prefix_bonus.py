"""Prefix bonuses: scores a CTC prefix search or an AR search adds to a hypothesis from its tokens alone.

A bonus object has ``score(prefix)`` (while the prefix runs), ``final_score(prefix)`` (as a whole utterance)
and ``forget(keep)`` (drop cached states the beam no longer holds). :class:`PrefixStates` is the shared
mechanism: each prefix's state is computed from its parent's and cached, so extending a beam by one token
costs one step. Users: :class:`asr.search.fusion.WordFusion` (word n-gram) and
:class:`asr.search.hotwords.HotwordBias` (hotwords); :class:`SumBonus` adds several.
"""

from __future__ import annotations


class PrefixStates:
    """Cached per-prefix states: subclasses give ``_initial()`` (the empty prefix's state) and
    ``_step(parent_state, prefix)`` (the state of ``prefix`` from that of ``prefix[:-1]``)."""

    _states: dict

    def state(self, prefix: tuple[int, ...]):
        st = self._states.get(prefix)
        if st is None:
            st = self._initial() if not prefix else self._step(self.state(prefix[:-1]), prefix)
            self._states[prefix] = st
        return st

    def _initial(self):
        raise NotImplementedError

    def _step(self, parent, prefix: tuple[int, ...]):
        raise NotImplementedError

    def forget(self, keep: set) -> None:
        """Drop the states of prefixes no longer in the beam (their ancestors are recomputed on demand)."""
        if len(self._states) > 50 * max(1, len(keep)):
            self._states = {p: s for p, s in self._states.items() if p in keep}


class SumBonus:
    """Several prefix bonuses as one (word n-gram fusion + hotwords)."""

    def __init__(self, parts):
        self.parts = list(parts)

    def score(self, prefix):
        return sum(p.score(prefix) for p in self.parts)

    def final_score(self, prefix):
        return sum(p.final_score(prefix) for p in self.parts)

    def forget(self, keep):
        for p in self.parts:
            p.forget(keep)


__all__ = ["PrefixStates", "SumBonus"]
