"""The one family of result types, from a search's tokens to a recording's transcript.

    Hypothesis  tokens and score of one search path (every search method returns n-best lists of these)
    Word        a word with its start / end in seconds and a confidence
    Segment     a stretch of audio with its text, words, tokens and score (offline decode, streaming commit)
    Result      a recording: its text, segments, words and duration (API, batch transcription, writers)
    Captions    a live stream's text: committed segments (never revised) and the tentative tail

Offline decoding, streaming, the Python API and the output writers all use these; nothing else holds text.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # token ids (no blank, sos/eos or mask)
    score: float  # log-probability (method-specific, comparable within one method)
    token_frames: tuple[int, ...] = field(default=())  # encoder frame where each token fires, when known


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the audio
    end: float
    confidence: float  # 0..1
    display: str = ""  # the word as shown, cased and with its mark ("Hello,"), when punctuation ran

    @property
    def shown(self) -> str:
        return self.display or self.word

    def as_dict(self) -> dict:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3),
                "confidence": round(self.confidence, 3), **({"display": self.display} if self.display else {})}


@dataclass(frozen=True)
class Segment:
    text: str
    start: float  # seconds from the start of the audio (or of the stream)
    end: float
    words: tuple[Word, ...] = ()
    tokens: tuple[int, ...] = ()
    score: float = 0.0
    raw_text: str = ""  # the recognizer's own words when ``text`` was punctuated and cased ("" otherwise)

    @property
    def raw(self) -> str:
        return self.raw_text or self.text

    def as_dict(self) -> dict:
        return {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3),
                "words": [w.as_dict() for w in self.words]}


@dataclass(frozen=True)
class Result:
    text: str
    segments: tuple[Segment, ...]
    words: tuple[Word, ...]
    duration: float  # seconds of audio
    id: str = ""  # batch transcription: the input's id (the output file stem)
    path: Path | None = None  # the file it came from (None for samples)

    @classmethod
    def join(cls, segments, duration: float, id: str = "", path: Path | None = None) -> "Result":
        """A recording's result from its segments in order (empty ones left out)."""
        segs = tuple(s for s in segments if s.text.strip())
        return cls(" ".join(s.text for s in segs), segs, tuple(w for s in segs for w in s.words), duration, id, path)

    @property
    def raw_text(self) -> str:
        """The recognizer's own words (what WER scores), whatever punctuation did to ``text``."""
        return " ".join(s.raw for s in self.segments)

    def as_dict(self, extra: dict | None = None) -> dict:
        head = {"id": self.id, "path": str(self.path) if self.path else None} if self.id else {}
        raw = {"raw_text": self.raw_text} if self.raw_text != self.text else {}
        return {**head, "text": self.text, **raw, "duration": round(self.duration, 3),
                "segments": [{"text": s.text, "start": round(s.start, 3), "end": round(s.end, 3)} for s in self.segments],
                "words": [w.as_dict() for w in self.words], **(extra or {})}


@dataclass
class Captions:
    """What a stream shows: committed text (never changes once shown) and the running segment's partial.

    Bounded however long the stream runs: ``segments`` holds the last ``history`` committed segments (with their
    words); ``committed`` is the text of all of them (about 50 KB per hour of speech). A consumer that sends
    captions somewhere keeps ``count`` and asks :meth:`since` for what is new, instead of resending the history."""

    committed: str = ""  # text of finished segments: never changes once shown
    tentative: str = ""  # the partial text of the segments not committed yet: may change
    segments: collections.deque = field(default_factory=collections.deque)  # the last asr.results.Segment's
    count: int = 0  # segments committed since the stream began

    @property
    def text(self) -> str:
        return " ".join(t for t in (self.committed, self.tentative) if t)

    def since(self, count: int) -> list[Segment]:
        """The segments committed after the first ``count`` (those still kept)."""
        new = self.count - count
        return list(self.segments)[-new:] if new > 0 else []

    def add(self, seg: Segment) -> None:
        self.segments.append(seg)
        self.count += 1
        self.committed = f"{self.committed} {seg.text}" if self.committed else seg.text


__all__ = ["Hypothesis", "Word", "Segment", "Result", "Captions"]
