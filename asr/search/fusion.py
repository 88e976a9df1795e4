"""Word n-gram shallow fusion for CTC prefix beam search (the pyctcdecode / Hannun et al. way).

A prefix's LM score changes only when one of its words is complete: when a word-start piece follows it
(SentencePiece's U+2581 marks the start of a word), and, for ranking the final n-best, at the end of the
utterance (the last word and ``</s>``). The fused score is ``CTC + weight * log P_LM(words) + word_score *
words`` (natural logarithms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asr.search.prefix_bonus import PrefixStates
from asr.text import normalize_text


@dataclass
class WordFusion(PrefixStates):
    lm: object  # asr.lm.ngram.ArpaLM: score(history, word) -> natural-log probability
    tokenizer: object  # decode(ids) -> str, is_word_start(id) -> bool
    weight: float = 0.5
    word_score: float = 0.0
    _states: dict = field(default_factory=dict)  # prefix -> (completed words, start of the running word, score)

    def _initial(self) -> tuple[tuple[str, ...], int, float]:
        return (), 0, 0.0

    def _step(self, parent, prefix: tuple[int, ...]) -> tuple[tuple[str, ...], int, float]:
        words, start, score = parent
        if not self.tokenizer.is_word_start(prefix[-1]):
            return words, start, score
        word = normalize_text(self.tokenizer.decode(prefix[start:-1]))  # the word the new piece closes, as the LM
        # writes words (a cased tokenizer's "Hello," is HELLO)
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
        last = normalize_text(self.tokenizer.decode(prefix[start:]))
        hist = ("<s>",) + words
        if last:
            score += self.weight * self.lm.score(hist, last) + self.word_score
            hist = hist + (last,)
        return score + self.weight * self.lm.score(hist, "</s>")


__all__ = ["WordFusion"]
