"""Which tokenizer a model directory (or a file) holds: ``tokenizer.model`` is SentencePiece
(:class:`asr.text.Tokenizer`), ``tokenizer.json`` Whisper's byte-level BPE (:class:`asr.whisper_text.WhisperTokenizer`).
Both implement :class:`asr.text.TokenizerProtocol`."""

from __future__ import annotations

import os
from pathlib import Path

from asr.text import Tokenizer, TokenizerProtocol
from asr.whisper_text import WhisperTokenizer

TOKENIZER_FILES = {"tokenizer.model": Tokenizer, "tokenizer.json": WhisperTokenizer}


def tokenizer_file(directory: str | os.PathLike) -> Path | None:
    """The tokenizer file of a model (or lang) directory, or None."""
    for name in TOKENIZER_FILES:
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    return None


def load_tokenizer(path: str | os.PathLike) -> TokenizerProtocol:
    """A tokenizer from its file (by name: ``*.json`` is Whisper's, anything else SentencePiece) or from a directory
    holding one of :data:`TOKENIZER_FILES`."""
    p = Path(path)
    if p.is_dir():
        f = tokenizer_file(p)
        if f is None:
            raise FileNotFoundError(f"{p}: no tokenizer ({' or '.join(TOKENIZER_FILES)})")
        p = f
    return WhisperTokenizer(p) if p.suffix == ".json" else Tokenizer(p)


__all__ = ["load_tokenizer", "tokenizer_file", "TOKENIZER_FILES"]
