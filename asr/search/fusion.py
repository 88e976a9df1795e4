"""Word n-gram shallow fusion for CTC prefix beam search (the pyctcdecode / Hannun et al. way).

A prefix's LM score changes only when one of its words is complete: when a word-start piece follows it
(SentencePiece's U+2581 marks the start of a word), and, for ranking the final n-best, at the end of the
utterance (the last word and ``</s>``). The fused score is ``CTC + weight * log P_LM(words) + word_score *
words`` (natural logarithms).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WordFusion:
    lm: object  # asr.lm.ngram.ArpaLM: score(history, word) -> natural-log probability
    tokenizer: object  # decode(ids) -> str, is_word_start(id) -> bool
    weight: float = 0.5
    word_score: float = 0.0
    _states: dict = field(default_factory=dict)  # prefix -> (completed words, start of the running word, score)

    def state(self, prefix: tuple[int, ...]) -> tuple[tuple[str, ...], int, float]:
        if prefix not in self._states:
            self._states[prefix] = self._extend(prefix)
        return self._states[prefix]

    def _extend(self, prefix: tuple[int, ...]) -> tuple[tuple[str, ...], int, float]:
        if not prefix:
            return (), 0, 0.0
        words, start, score = self.state(prefix[:-1])
        tok = prefix[-1]
        if not self.tokenizer.is_word_start(tok):
            return words, start, score
        word = self.tokenizer.decode(prefix[start:-1]).strip()  # the word the new piece closes
        if word:
            score += self.weight * self.lm.score(("<s>",) + words, word) + self.word_score
            words = words + (word,)
        return words, len(prefix) - 1, score

    def score(self, prefix: tuple[int, ...]) -> float:
        """LM bonus of ``prefix`` while it runs (complete words only)."""
        return self.state(prefix)[2]

    def final_score(self, prefix: tuple[int, ...]) -> float:
        """LM bonus of ``prefix`` as a whole utterance: its last word and the sentence end included."""
        words, start, score = self.state(prefix)
        last = self.tokenizer.decode(prefix[start:]).strip()
        hist = ("<s>",) + words
        if last:
            score += self.weight * self.lm.score(hist, last) + self.word_score
            hist = hist + (last,)
        return score + self.weight * self.lm.score(hist, "</s>")

    def forget(self, keep: set) -> None:
        """Drop the states of prefixes no longer in the beam (their ancestors are recomputed on demand)."""
        if len(self._states) > 50 * max(1, len(keep)):
            self._states = {p: s for p, s in self._states.items() if p in keep}


__all__ = ["WordFusion"]
