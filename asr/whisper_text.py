"""Whisper's byte-level BPE tokenizer, read from a Hugging Face ``tokenizer.json`` with the ``tokenizers`` library.

It implements :class:`asr.text.TokenizerProtocol` in the toolkit's id layout: model id = BPE id + 1, so id 0 stays
the CTC blank everywhere (a Whisper decoder never emits it: its output bias there is -1e4). The special ids are
Whisper's own (model ids, +1):

* the decoder's prompt: ``<|startoftranscript|>`` (``<|en|> <|transcribe|>`` for multilingual models) then
  ``<|notimestamps|>``; the end is ``<|endoftext|>``;
* suppressed in search as openai-whisper's ``suppress_tokens="-1"`` does: its non-speech symbols and the task
  tokens; at the first step also a lone space and the end (``suppress_blank``);
* Mask-CTC's mask is ``<|startoflm|>`` (unused by transcription).

Text is Whisper's: cased, punctuated, digits as digits. ``encode`` takes text as written (a leading space added, as
Whisper's transcripts begin); scoring normalises both sides with :func:`asr.text.normalize_text`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer as HFTokenizer

from asr.errors import UserError
from asr.text import BLANK_ID, SpecialTokens

OFFSET = 1  # model id = BPE id + 1
TIMESTAMPS = 1501
WORD_START = "\u0120"  # byte-level BPE's mark of a leading space ("Ġ")

# openai-whisper tokenizer.py, Tokenizer.non_speech_tokens: symbols that are not speech
_SYMBOLS = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + \
    "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
_MISC = "♩♪♫♬♭♮♯"


class WhisperTokenizer:
    """Whisper's tokenizer in model ids (see the module docstring).

    >>> tok = WhisperTokenizer("whisper-tiny-en/tokenizer.json")   # doctest: +SKIP
    >>> tok.decode(tok.encode("Hello world."))                      # doctest: +SKIP
    'Hello world.'
    """

    def __init__(self, path: str | os.PathLike):
        self.model_path = Path(path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        self._tk = HFTokenizer.from_file(str(self.model_path))
        added = {t.content: i for i, t in self._tk.get_added_tokens_decoder().items()}
        need = ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|startoflm|>")
        missing = [n for n in need if n not in added]
        if missing:
            raise UserError(f"{path}: not a Whisper tokenizer (no {', '.join(missing)})")
        self._added = added
        # Whisper's vocabulary: the tokenizer's ids, then 1501 timestamp tokens after <|notimestamps|> (0.00 .. 30.00 s)
        n = added["<|notimestamps|>"] + 1 + TIMESTAMPS
        self.vocab_size = n + OFFSET
        self.eot = added["<|endoftext|>"]  # BPE ids below it are text
        self.num_pieces = self.eot
        self.multilingual = n >= 51865  # openai-whisper's rule (its English-only vocabularies have 51864)
        self.blank_id = BLANK_ID
        self.unk_id = -1  # byte-level BPE spells every text
        self.cased = True  # cased, punctuated text
        self.specials = self._specials()
        self.mask_id, self.sos_id, self.eos_id = self.specials.mask, self.specials.sos, self.specials.eos

    def _id(self, name: str) -> int:
        return self._added[name] + OFFSET

    def _specials(self) -> SpecialTokens:
        lang = (self._id("<|en|>"), self._id("<|transcribe|>")) if self.multilingual else ()
        prompt = (self._id("<|startoftranscript|>"),) + lang + (self._id("<|notimestamps|>"),)
        tasks = [self._id(n) for n in ("<|transcribe|>", "<|translate|>", "<|startoftranscript|>",
                                       "<|startofprev|>", "<|startoflm|>", "<|nospeech|>", "<|nocaptions|>")
                 if n in self._added]
        suppress = tuple(sorted({BLANK_ID, *tasks, *(i + OFFSET for i in self.non_speech_tokens)}))
        begin = (self._tk.encode(" ", add_special_tokens=False).ids[0] + OFFSET, self._id("<|endoftext|>"))
        return SpecialTokens(BLANK_ID, self._id("<|startoflm|>"), prompt[-1], self._id("<|endoftext|>"), prompt,
                             suppress, begin)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """openai-whisper's ``non_speech_tokens`` (BPE ids), computed the same way."""
        enc = lambda s: self._tk.encode(s, add_special_tokens=False).ids  # noqa: E731
        result = {enc(" -")[0], enc(" '")[0]}
        for symbol in _SYMBOLS + list(_MISC):
            for ids in (enc(symbol), enc(" " + symbol)):
                if len(ids) == 1 or symbol in _MISC:
                    result.add(ids[0])
        return tuple(sorted(result))

    # -- encoding
    def encode(self, text: str) -> list[int]:
        """Text as written -> model ids (a leading space added, as Whisper's transcripts begin; no specials)."""
        text = " ".join(text.split())
        return [i + OFFSET for i in self._tk.encode(" " + text, add_special_tokens=False).ids] if text else []

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def spellings(self, phrase: str) -> list[list[int]]:
        """The id sequences a cased model may write ``phrase`` as (hotwords are normalised to upper case): as given,
        Title Case, Capitalised, lower case."""
        variants = dict.fromkeys([phrase, phrase.title(), phrase.capitalize(), phrase.lower()])
        return [self.encode(v) for v in variants]

    def target_text(self, text: str) -> str:
        """A transcript as Whisper writes it (training targets): text as written stays; an upper-case reference
        (LibriSpeech style, as recorded corpora give them) becomes sentence case with a full stop
        ("WE CALL IT BEAR" -> "We call it bear.")."""
        t = " ".join(text.split())
        if t and t == t.upper() and any(c.isalpha() for c in t):
            t = re.sub(r"\bi\b", "I", t.lower())
            t = t[0].upper() + t[1:] + ("" if t[-1] in ".?!" else ".")
        return t

    # -- decoding
    def decode(self, ids: Iterable[int]) -> str:
        """Model ids -> text; blank and every special id dropped; one space between words."""
        return " ".join(self._tk.decode([i - OFFSET for i in ids if 1 <= i <= self.num_pieces]).split())

    def id_to_piece(self, i: int) -> str:
        if i == BLANK_ID:
            return "<blank>"
        return self._tk.id_to_token(i - OFFSET) or f"<{i}>"

    def piece_to_id(self, piece: str) -> int | None:
        i = self._tk.token_to_id(piece)
        return None if i is None else i + OFFSET

    def is_word_start(self, i: int) -> bool:
        """True if BPE token ``i`` begins with a space (a new word)."""
        return 1 <= i <= self.num_pieces and self.id_to_piece(i).startswith(WORD_START)

    def __len__(self) -> int:
        return self.vocab_size

    def same_as(self, other) -> bool:
        """The same vocabulary, merges and special tokens."""
        return isinstance(other, WhisperTokenizer) and self.fingerprint == other.fingerprint

    @cached_property
    def fingerprint(self) -> str:
        d = json.loads(self.model_path.read_text(encoding="utf-8"))
        key = json.dumps([d.get("model"), d.get("added_tokens")], sort_keys=True).encode()
        return hashlib.sha256(key).hexdigest()

    def __repr__(self) -> str:
        return f"WhisperTokenizer({str(self.model_path)!r}, vocab_size={self.vocab_size})"


__all__ = ["WhisperTokenizer", "OFFSET"]
