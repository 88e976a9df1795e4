"""Punctuation and casing of recognized results (:mod:`asr.models.punctuator`), in one place for batch
transcription, the Python API and live captions. The recognizer's own words stay beside the display text
(``Word.word``, ``Segment.raw_text``): WER is always scored on them."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from asr.models.punctuator import Punctuator, load_punctuator
from asr.results import Result, Segment

CONTEXT_WORDS = 30  # words said before a live segment that its punctuation reads


@lru_cache(maxsize=4)
def cached_punctuator(path: str | None = None) -> Punctuator:
    """A punctuator directory (default: the bundled one), loaded once per process."""
    return load_punctuator(path)


def punctuate_segments(segments: list[Segment], punctuator: Punctuator, context: list[str] = (),
                       ends_sentence: bool = True, starts_sentence: bool | None = None) -> list[Segment]:
    """Punctuate consecutive segments together (a sentence may run over a cut); ``context``: raw words said
    just before them. ``ends_sentence``: the speech stopped after them (the end of a recording, a pause in a live
    stream), so the last word gets a full stop when the model, which sees nothing after it, gave it none.
    ``starts_sentence`` (default: when there is no context): the first word begins a sentence."""
    raws = [s.raw.split() for s in segments]
    shown = punctuator.restore([w for r in raws for w in r], list(context)[-CONTEXT_WORDS:])
    if ends_sentence and shown and not shown[-1].endswith((".", "?")):
        shown[-1] = shown[-1].rstrip(",") + "."
    for i, w in enumerate(shown):  # a sentence starts with a capital: the recording's first word, and after . or ?
        if (i == 0 and (not context if starts_sentence is None else starts_sentence)) or \
                (i > 0 and shown[i - 1].endswith((".", "?"))):
            shown[i] = w[:1].upper() + w[1:]
    out, k = [], 0
    for s, r in zip(segments, raws):
        mine, k = shown[k:k + len(r)], k + len(r)
        words = s.words
        if len(words) == len(r):
            words = tuple(replace(w, display=d) for w, d in zip(words, mine))
        out.append(replace(s, text=" ".join(mine), words=words, raw_text=s.raw) if r else s)
    return out


def punctuate_result(result: Result, punctuator: Punctuator) -> Result:
    segs = punctuate_segments(list(result.segments), punctuator)
    return replace(result, text=" ".join(s.text for s in segs if s.text), segments=tuple(segs),
                   words=tuple(w for s in segs for w in s.words))


__all__ = ["cached_punctuator", "punctuate_segments", "punctuate_result", "CONTEXT_WORDS"]
