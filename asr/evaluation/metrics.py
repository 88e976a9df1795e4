"""Word and character error rates with substitution / deletion / insertion detail (jiwer underneath).

Both sides go through :func:`asr.text.normalize_text` first: the one normalisation for every WER here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jiwer

from asr.errors import UserError
from asr.text import normalize_text


@dataclass(frozen=True)
class ErrorRate:
    errors: int  # substitutions + deletions + insertions
    ref_len: int  # reference words (or characters)
    substitutions: int
    deletions: int
    insertions: int

    @property
    def rate(self) -> float:
        return self.errors / self.ref_len if self.ref_len else float(self.errors > 0)

    def __str__(self) -> str:
        return (f"{100 * self.rate:.2f}% ({self.errors}/{self.ref_len}: S={self.substitutions} "
                f"D={self.deletions} I={self.insertions})")


def _measure(refs: Sequence[str], hyps: Sequence[str], chars: bool) -> ErrorRate:
    if len(refs) != len(hyps):
        raise UserError(f"{len(refs)} references but {len(hyps)} hypotheses")
    r = [normalize_text(x) for x in refs]
    h = [normalize_text(x) for x in hyps]
    # jiwer refuses empty references; score those pairs by hand (every hypothesis word is an insertion).
    pairs = [(a, b) for a, b in zip(r, h) if a]
    extra_ins = sum(len(b if chars else b.split()) for a, b in zip(r, h) if not a)
    if not pairs:
        return ErrorRate(extra_ins, 0, 0, 0, extra_ins)
    fn = jiwer.process_characters if chars else jiwer.process_words
    o = fn([a for a, _ in pairs], [b for _, b in pairs])
    ref_len = o.hits + o.substitutions + o.deletions
    return ErrorRate(o.substitutions + o.deletions + o.insertions + extra_ins, ref_len, o.substitutions,
                     o.deletions, o.insertions + extra_ins)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRate:
    return _measure(refs, hyps, chars=False)


def cer(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRate:
    return _measure(refs, hyps, chars=True)
