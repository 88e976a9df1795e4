"""Sentences for the synthetic corpus (and running text for the punctuator): public-domain English text that
Debian packages install.

Sources: the King James Bible (package bible-kjv, read through its ``bible`` command), the
``fortunes`` databases, Ambrose Bierce's *The Devil's Dictionary* (dict-devil) and the Jargon File (jargon),
or any UTF-8 text file given with ``--text``. Text is split into sentences,
normalised as LibriSpeech writes transcripts, and filtered to lengths a TTS voice speaks in roughly
2 to 12 seconds. Sentences with digits are dropped (spoken numbers would not match their digits).
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

from asr.errors import UserError
from asr.text import normalize_text

MIN_WORDS, MAX_WORDS = 4, 24
FORTUNE_DIRS = ("/usr/share/games/fortunes", "/usr/share/fortunes")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_BAD_CHARS = re.compile(r"[0-9@#$%^&*<>=+\[\]{}|\\~]")


class TextSourceError(UserError, RuntimeError):
    pass


def split_sentences(text: str) -> list[str]:
    """Split running text into raw sentences (at . ! ? ; : followed by space)."""
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def clean_sentences(raw: list[str]) -> list[str]:
    """Drop sentences with digits or symbols, normalise, keep MIN_WORDS..MAX_WORDS words, dedupe (order kept)."""
    out, seen = [], set()
    for s in raw:
        if _BAD_CHARS.search(s):
            continue
        t = normalize_text(s)
        n = len(t.split())
        if MIN_WORDS <= n <= MAX_WORDS and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def bible_text() -> str:
    if shutil.which("bible") is None:
        raise TextSourceError("the 'bible' command is missing (apt-get install bible-kjv)")
    r = subprocess.run(["bible", "-l", "100000", "Genesis 1:1-Revelation 22:21"], capture_output=True,
                       text=True, timeout=120)
    lines = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*\d+\s+(.*)", line)  # "  12 And God said ..." ; chapter headings have no leading number
        if m:
            lines.append(m.group(1))
    if not lines:
        raise TextSourceError("'bible' printed no verses (is bible-kjv-text installed?)")
    return "\n".join(lines)


def fortunes_text() -> str:
    chunks = []
    for d in FORTUNE_DIRS:
        p = Path(d)
        if not p.is_dir():
            continue
        for f in sorted(p.iterdir()):
            if f.is_file() and not f.suffix and not f.name.startswith("."):
                try:
                    chunks.extend(f.read_text(encoding="utf-8", errors="ignore").split("\n%\n"))
                except OSError:
                    continue
    if not chunks:
        raise TextSourceError("no fortunes databases found (apt-get install fortunes)")
    # A fortune is one paragraph; attribution lines ("-- Someone") are not speech.
    return "\n".join(re.sub(r"\n\s*--.*", "", c) for c in chunks)


DEVIL_DICT = "/usr/share/dictd/devil.dict.dz"
JARGON_INFO = "/usr/share/info/jargon.info.gz"


def _read_gz(path: str, package: str) -> str:
    try:
        return gzip.open(path, "rt", encoding="utf-8", errors="ignore").read()
    except OSError:
        raise TextSourceError(f"{path}: missing (apt-get install {package})") from None


def devil_text() -> str:
    """The Devil's Dictionary (1911, public domain): its definitions and verse, headwords and dictd headers
    left out."""
    raw = _read_gz(DEVIL_DICT, "dict-devil")
    keep = []
    for line in raw.splitlines():
        s = line.strip()
        if not s or s.startswith("00-database") or (s.isupper() and len(s.split()) <= 4) or s.startswith("_"):
            keep.append("")  # a paragraph break
            continue
        keep.append(re.sub(r"^[A-Z][A-Z' -]+, [a-z.]+\s*", "", s))  # "ABSURDITY, n. A statement..." -> the definition
    return "\n".join(keep)


def jargon_text() -> str:
    """The Jargon File (public domain): entry bodies with the info markup removed ({cross references},
    `quotes', /pronunciations/, node headers)."""
    raw = _read_gz(JARGON_INFO, "jargon")
    out = []
    for line in raw.splitlines():
        if line.startswith(("File:", "\x1f", "*", "=")):
            out.append("")
            continue
        s = re.sub(r"^:[^:]+:\s*", "", line.strip())  # ":blue goo: /n./ Term" -> "/n./ Term"
        s = re.sub(r"/[^/ ]+/\s*", "", s)  # pronunciations and /n./ /adj./
        s = re.sub(r"\[[^\]]*\]\s*", "", s)  # [IBM], [UK]
        s = s.replace("{", "").replace("}", "").replace("`", "'")
        out.append(s)
    return "\n".join(out)


TEXTS = {"bible": bible_text, "fortunes": fortunes_text, "devil": devil_text, "jargon": jargon_text}


def load_sentences(source: str = "default") -> list[str]:
    """Normalised, de-duplicated sentences from ``source``: ``default`` (bible + fortunes, whichever
    are installed), ``bible``, ``fortunes``, or a path to a UTF-8 text file."""
    raw: list[str] = []
    if source in ("default", "bible", "fortunes"):
        errors = []
        for name, fn in (("bible", bible_text), ("fortunes", fortunes_text)):
            if source in ("default", name):
                try:
                    raw += split_sentences(fn())
                except TextSourceError as e:
                    errors.append(str(e))
        if not raw:
            raise TextSourceError("no default text installed: " + "; ".join(errors) + "; or pass --text FILE")
    else:
        p = Path(source)
        if not p.is_file():
            raise TextSourceError(f"{source}: no such text file")
        raw = split_sentences(p.read_text(encoding="utf-8", errors="replace"))
    sentences = clean_sentences(raw)
    if not sentences:
        raise TextSourceError(f"{source}: no usable sentences ({MIN_WORDS}-{MAX_WORDS} words, no digits)")
    return sentences
