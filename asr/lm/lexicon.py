"""Lexicons: each word spelled in a model's tokens, for lexicon-constrained CTC decoding.

The word boundary piece (SentencePiece's U+2581, a token of its own in character models) is the decoder's
silence token between words, so a word's spelling leaves a standalone boundary piece out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from asr.files import write_atomic
from asr.text import Tokenizer

BOUNDARY = "\u2581"


def model_tokens(tokenizer: Tokenizer) -> list[str]:
    """The model's output symbols in id order (blank, pieces, mask, sos/eos): the emission columns."""
    return [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]


def spell(tokenizer: Tokenizer, word: str, ids: list[int] | None = None) -> list[str] | None:
    """The pieces of ``word`` (or of its spelling ``ids``; a standalone leading boundary piece dropped); None when a
    piece is unknown."""
    ids = tokenizer.encode(word) if ids is None else ids
    if not ids or any(i == tokenizer.unk_id for i in ids):
        return None
    pieces = [tokenizer.id_to_piece(i) for i in ids]
    if pieces and pieces[0] == BOUNDARY:
        pieces = pieces[1:]
    return pieces or None


def write_lexicon(words: Iterable[str], tokenizer: Tokenizer, path: str | os.PathLike) -> tuple[int, int]:
    """``WORD<TAB>piece piece ...`` per line, one line per way the model may write the word (a cased tokenizer's
    ``spellings``: "Paris", "paris", ...); returns (words written, words without a spelling)."""

    lines, skipped = [], 0
    spellings = getattr(tokenizer, "spellings", None) or (lambda w: [tokenizer.encode(w)])
    for w in sorted(set(words)):
        sps = [sp for sp in (spell(tokenizer, w, ids) for ids in spellings(w)) if sp is not None]
        if not sps:
            skipped += 1
        for sp in dict.fromkeys(" ".join(x) for x in sps):
            lines.append(f"{w}\t{sp}")
    write_atomic(Path(path), "\n".join(lines) + "\n")
    return len(lines), skipped


__all__ = ["model_tokens", "spell", "write_lexicon", "BOUNDARY"]
