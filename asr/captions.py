"""Caption files: cue grouping and the SRT / WebVTT text of cues (the one home of both formats).

Used by ``asr transcribe`` (whole files, cues grouped from word timestamps) and ``asr live`` (one cue per
committed segment, appended as it ends).
"""

from __future__ import annotations

from typing import Sequence

from asr.search.align import Word

Cue = tuple[float, float, str]  # (start seconds, end seconds, text)
VTT_HEADER = "WEBVTT\n\n"


def timestamp(seconds: float, sep: str) -> str:
    """``HH:MM:SS<sep>mmm`` (sep ',' for SRT, '.' for WebVTT)."""
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def caption_cues(words: Sequence[Word], max_chars: int = 42, max_seconds: float = 5.0, gap: float = 1.0) -> list[Cue]:
    """Group words into caption cues: a new cue when the line would pass ``max_chars`` or ``max_seconds``,
    or after a pause longer than ``gap``."""
    cues: list[Cue] = []
    cur: list[Word] = []
    for w in words:
        if cur and (len(" ".join(x.word for x in cur + [w])) > max_chars or w.end - cur[0].start > max_seconds
                    or w.start - cur[-1].end > gap):
            cues.append((cur[0].start, cur[-1].end, " ".join(x.word for x in cur)))
            cur = []
        cur.append(w)
    if cur:
        cues.append((cur[0].start, cur[-1].end, " ".join(x.word for x in cur)))
    return cues


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


__all__ = ["Cue", "timestamp", "caption_cues", "srt_cue", "vtt_cue", "srt", "vtt", "VTT_HEADER"]
