"""Caption files: cue grouping and the SRT / WebVTT text of cues (the one home of both formats).

Used by ``asr transcribe`` (whole files) and ``asr live`` (each committed segment, appended as it ends): cues
are grouped from word timestamps, at most two lines of 42 characters and 7 seconds each.
"""

from __future__ import annotations

from typing import Sequence

from asr.results import Word

Cue = tuple[float, float, str]  # (start seconds, end seconds, text)
VTT_HEADER = "WEBVTT\n\n"


def timestamp(seconds: float, sep: str) -> str:
    """``HH:MM:SS<sep>mmm`` (sep ',' for SRT, '.' for WebVTT)."""
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


MAX_LINE_CHARS = 42  # the BBC / Netflix caption guidelines: two lines of at most 42 characters
MAX_LINES = 2
MAX_CUE_SECONDS = 7.0


def break_lines(words: Sequence[str], max_chars: int = MAX_LINE_CHARS) -> list[str] | None:
    """The words as one line, or as two balanced lines (the longer as short as possible), each at most
    ``max_chars``; None when they do not fit in two lines."""
    one = " ".join(words)
    if len(one) <= max_chars:
        return [one]
    best = None
    for k in range(1, len(words)):
        a, b = " ".join(words[:k]), " ".join(words[k:])
        if len(a) <= max_chars and len(b) <= max_chars and (best is None or max(len(a), len(b)) < best[0]):
            best = (max(len(a), len(b)), [a, b])
    return best[1] if best else None


SENTENCE_END = (".", "?", "!")


def caption_cues(words: Sequence[Word], max_chars: int = MAX_LINE_CHARS, max_seconds: float = MAX_CUE_SECONDS,
                 gap: float = 1.0) -> list[Cue]:
    """Group timed words into caption cues of at most two lines of ``max_chars`` and ``max_seconds``: a new cue
    when the next word would not fit, or after a pause longer than ``gap``. Cues prefer to end where a sentence
    does (punctuated words): a cue at least half full ends after a sentence, and a full one is cut after its last
    sentence end when that keeps half of it. A cue's text holds its line break (``\n``). A single word longer
    than a line gets a cue of its own."""
    cues: list[Cue] = []
    cur: list[Word] = []

    def close(ws: list[Word]) -> None:
        lines = break_lines([x.shown for x in ws], max_chars) or [" ".join(x.shown for x in ws)]
        cues.append((ws[0].start, ws[-1].end, "\n".join(lines)))

    def chars(ws: list[Word]) -> int:
        return sum(len(x.shown) + 1 for x in ws)

    for w in words:
        if cur and (break_lines([x.shown for x in cur + [w]], max_chars) is None
                    or w.end - cur[0].start > max_seconds or w.start - cur[-1].end > gap):
            ends = [i for i, x in enumerate(cur[:-1]) if x.shown.endswith(SENTENCE_END)]
            if ends and chars(cur[:ends[-1] + 1]) >= max_chars and w.start - cur[-1].end <= gap:
                close(cur[:ends[-1] + 1])
                cur = cur[ends[-1] + 1:]
            else:
                close(cur)
                cur = []
        cur.append(w)
        if w.shown.endswith(SENTENCE_END) and chars(cur) >= max_chars:
            close(cur)
            cur = []
    if cur:
        close(cur)
    return cues


class ScreenMetrics:
    """What a caption reader sees change: feed every tentative text shown and every committed segment.

    Word by word, a word still there or grown (``LIT`` -> ``LITTLE``) erases nothing; a word changed or gone
    erases its characters. ``erasure_rate``: erased characters of tentative text / characters of tentative text
    shown; ``flicker_per_word``: updates that erased something / committed words."""

    def __init__(self) -> None:
        self.shown = ""
        self.shown_chars = self.erased_chars = self.rewrites = self.committed_words = 0

    def _change(self, new: str, tentative: bool) -> None:
        old_w, new_w = self.shown.split(), new.split()
        erased = appeared = 0
        for i in range(max(len(old_w), len(new_w))):
            a = old_w[i] if i < len(old_w) else ""
            b = new_w[i] if i < len(new_w) else ""
            if b.startswith(a):
                appeared += len(b) - len(a)
            else:
                erased += len(a)
                appeared += len(b)
        if erased:
            self.erased_chars += erased
            self.rewrites += 1
        if tentative:
            self.shown_chars += appeared
        self.shown = new if tentative else ""

    def tentative(self, text: str) -> None:
        """The running segment's tentative text is now ``text``."""
        if text != self.shown:
            self._change(text, True)

    def commit(self, text: str, words: int) -> None:
        """The running segment ended with ``text`` (``words`` words; "" when nothing was committed)."""
        self._change(text, False)
        self.committed_words += words

    @property
    def erasure_rate(self) -> float:
        return self.erased_chars / max(1, self.shown_chars)

    @property
    def flicker_per_word(self) -> float:
        return self.rewrites / max(1, self.committed_words)


def srt_cue(index: int, cue: Cue) -> str:
    """One SRT block (``index`` counts from 1)."""
    a, b, text = cue
    return f"{index}\n{timestamp(a, ',')} --> {timestamp(b, ',')}\n{text}\n\n"


def vtt_cue(cue: Cue) -> str:
    """One WebVTT cue (the file starts with :data:`VTT_HEADER`)."""
    a, b, text = cue
    return f"{timestamp(a, '.')} --> {timestamp(b, '.')}\n{text}\n\n"


def srt(cues: Sequence[Cue]) -> str:
    return "".join(srt_cue(i, c) for i, c in enumerate(cues, 1))


def vtt(cues: Sequence[Cue]) -> str:
    return VTT_HEADER + "".join(vtt_cue(c) for c in cues)


__all__ = ["ScreenMetrics", "Cue", "timestamp", "caption_cues", "break_lines", "MAX_LINE_CHARS", "MAX_CUE_SECONDS", "srt_cue", "vtt_cue", "srt", "vtt", "VTT_HEADER"]
