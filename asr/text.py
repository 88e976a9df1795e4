"""Text: normalisation (for transcripts and for scoring), the tokenizer protocol and the SentencePiece tokenizer.

A tokenizer owns its model's special ids (:class:`SpecialTokens`): the models, the searches and the ONNX runtime
read them from it. Two tokenizers implement the protocol (:class:`TokenizerProtocol`): SentencePiece (here) and
Whisper's byte-level BPE (:mod:`asr.whisper_text`); :func:`asr.tokenizers.load_tokenizer` picks one by file.
In both, model id 0 is the CTC blank and model id = piece id + 1. SentencePiece model vocabulary layout::
    0            <blank>   CTC blank
    1 .. N       SentencePiece pieces (piece id p -> model id p + 1; <unk> is piece 0 -> id 1)
    N + 1        <mask>    Mask-CTC's masked-token symbol
    N + 2        <sos/eos> start and end of sentence for the attention decoders

so ``vocab_size == N + 3`` where N is the SentencePiece vocabulary size.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from asr.errors import UserError

BLANK_ID = 0


def special_ids(vocab_size: int) -> tuple[int, int, int]:
    """``(blank, mask, sos/eos)`` of a SentencePiece model vocabulary of ``vocab_size`` ids (the layout above)."""
    return BLANK_ID, vocab_size - 2, vocab_size - 1


@dataclass(frozen=True)
class SpecialTokens:
    """The ids a model's heads and searches treat specially, owned by its tokenizer (model ids)."""

    blank: int  # CTC blank (0 in every layout here)
    mask: int  # Mask-CTC's masked-token symbol
    sos: int  # what the attention decoder is fed first (the last token of ``prompt``)
    eos: int  # the attention decoder's end token
    prompt: tuple[int, ...]  # the decoder's prompt: (sos,) or Whisper's <|startoftranscript|> <|notimestamps|>
    suppress: tuple[int, ...] = ()  # never emitted by the AR search (blank, mask; Whisper's non-speech tokens)
    suppress_begin: tuple[int, ...] = ()  # not emitted as the first token (Whisper: a lone space, the end)

    @classmethod
    def sentencepiece(cls, vocab_size: int) -> "SpecialTokens":
        """The SentencePiece layout of the module docstring (sos and eos share one id)."""
        blank, mask, sos = special_ids(vocab_size)
        return cls(blank, mask, sos, sos, (sos,), (blank, mask))


class TokenizerProtocol(Protocol):
    """What search, alignment, fusion, hotwords, training and the API ask of a tokenizer (model ids)."""

    model_path: Path  # the file it was read from (LM directories record it)
    vocab_size: int  # model ids 0 .. vocab_size - 1
    specials: SpecialTokens
    blank_id: int
    unk_id: int  # -1 where none (byte-level BPE spells everything)
    cased: bool  # its text is cased and punctuated (Whisper's): no punctuator runs after it

    def encode(self, text: str) -> list[int]: ...  # normalised text -> ids (no specials)
    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...
    def spellings(self, phrase: str) -> list[list[int]]: ...  # every id sequence the model may write it as
    def target_text(self, text: str) -> str: ...  # a transcript as the model writes it (training targets)
    def decode(self, ids: Iterable[int]) -> str: ...  # specials dropped
    def id_to_piece(self, i: int) -> str: ...
    def piece_to_id(self, piece: str) -> int | None: ...
    def is_word_start(self, i: int) -> bool: ...
    def same_as(self, other) -> bool: ...
_PIECE_OFFSET = 1  # model id = sentencepiece id + 1

# ---------------------------------------------------------------------------- normalisation

_DASHES = re.compile(r"[\-\u2010-\u2015_/]+")  # hyphens, en/em dashes, underscores, slashes split words
_NOT_WORDCHAR = re.compile(r"[^A-Z0-9' ]+")
_EDGE_APOSTROPHES = re.compile(r"(?<![A-Z0-9])'|'(?![A-Z0-9])")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Normalise text the way LibriSpeech transcripts are written, for training and scoring.

    Upper case; accents folded to ASCII; curly quotes straightened; hyphens, dashes and slashes
    become word breaks; every other punctuation mark is removed; apostrophes inside words are kept
    ("DON'T", "JOHN'S"); digits are left as they are written (no number expansion, so "1961" and
    "NINETEEN SIXTY ONE" score as different words: the synthetic corpus contains no digits).

    >>> normalize_text("Ask not -- what your country can do for you, ask... 'what' you can do!")
    "ASK NOT WHAT YOUR COUNTRY CAN DO FOR YOU ASK WHAT YOU CAN DO"
    """
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.upper()
    text = _DASHES.sub(" ", text)
    text = _NOT_WORDCHAR.sub(" ", text)
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


# ---------------------------------------------------------------------------- tokenizer


class Tokenizer:
    """SentencePiece pieces plus the toolkit's special ids (see the module docstring).

    >>> tok = Tokenizer("data/lang/bpe.model")          # doctest: +SKIP
    >>> tok.decode(tok.encode("HELLO WORLD"))           # doctest: +SKIP
    'HELLO WORLD'
    """

    def __init__(self, model_path: str | os.PathLike):
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{model_path}: no such tokenizer model")
        self._sp = spm.SentencePieceProcessor(model_file=str(self.model_path))
        n = self._sp.get_piece_size()
        self.num_pieces = n
        self.blank_id = BLANK_ID
        self.unk_id = self._sp.unk_id() + _PIECE_OFFSET
        self.cased = False  # normalised upper-case words
        self.vocab_size = n + 3
        self.specials = SpecialTokens.sentencepiece(self.vocab_size)
        self.mask_id, self.sos_id, self.eos_id = self.specials.mask, self.specials.sos, self.specials.eos

    # -- encoding
    def encode(self, text: str) -> list[int]:
        """Normalised text -> model ids (no blank, sos or eos added)."""
        return [p + _PIECE_OFFSET for p in self._sp.encode(normalize_text(text))]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [[p + _PIECE_OFFSET for p in ids] for ids in self._sp.encode([normalize_text(t) for t in texts])]

    def spellings(self, phrase: str) -> list[list[int]]:
        """Every id sequence the model may write ``phrase`` as (hotwords): here one, its normalised spelling."""
        return [self.encode(phrase)]

    def target_text(self, text: str) -> str:
        """A transcript as this tokenizer's model writes it (training targets): normalised upper-case words."""
        return normalize_text(text)

    # -- decoding
    def decode(self, ids: Iterable[int]) -> str:
        """Model ids -> text; blank, mask and sos/eos are dropped; one space between words (a non-autoregressive
        decoder can emit word-start pieces back to back, which SentencePiece would keep as two or three spaces)."""
        return " ".join(self._sp.decode([i - _PIECE_OFFSET for i in ids if 1 <= i <= self.num_pieces]).split())

    def id_to_piece(self, i: int) -> str:
        if i == self.blank_id:
            return "<blank>"
        if i == self.mask_id:
            return "<mask>"
        if i == self.sos_id:
            return "<sos/eos>"
        return self._sp.id_to_piece(i - _PIECE_OFFSET)

    def piece_to_id(self, piece: str) -> int | None:
        """The model id of SentencePiece piece ``piece`` (``<unk>`` names the unknown piece); None if the model
        has no such piece."""
        p = self._sp.piece_to_id(piece)
        if p == self._sp.unk_id() and piece not in ("<unk>", self._sp.id_to_piece(p)):
            return None
        return p + _PIECE_OFFSET

    def is_word_start(self, i: int) -> bool:
        """True if piece ``i`` begins a new word (SentencePiece's U+2581 prefix)."""
        return 1 <= i <= self.num_pieces and self.id_to_piece(i).startswith("\u2581")

    def __len__(self) -> int:
        return self.vocab_size

    def same_as(self, other) -> bool:
        """True when both encode every text to the same ids: the same model with its training inputs' paths
        left out (two runs of the stats stage over the same corpus write byte-different, equivalent models)."""
        return isinstance(other, Tokenizer) and _encoding_spec(self.model_path) == _encoding_spec(other.model_path)

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.model_path)!r}, pieces={self.num_pieces}, vocab_size={self.vocab_size})"


def _encoding_spec(model_path: Path) -> bytes:
    """A SentencePiece model serialized without the trainer's input and output paths."""

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_path.read_bytes())
    del proto.trainer_spec.input[:]
    proto.trainer_spec.model_prefix = ""
    return proto.SerializeToString(deterministic=True)


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | os.PathLike,
    vocab_size: int = 256,
    model_type: str = "unigram",
    name: str = "tokenizer",
) -> Tokenizer:
    """Train a SentencePiece model on normalised ``texts``; write ``out_dir/NAME.model`` atomically.

    ``vocab_size`` counts SentencePiece pieces (the model vocabulary adds blank, mask and sos/eos).
    ``model_type`` is ``unigram``, ``bpe`` or ``char``. Deterministic for the same input.
    """

    if model_type not in ("unigram", "bpe", "char"):
        raise UserError(f"model_type must be unigram, bpe or char, not {model_type!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".spm-") as tmp:
        corpus = Path(tmp) / "text.txt"
        n = 0
        with corpus.open("w", encoding="utf-8") as f:
            for t in texts:
                t = normalize_text(t)
                if t:
                    f.write(t + "\n")
                    n += 1
        if n == 0:
            raise UserError("no text to train the tokenizer on")
        prefix = Path(tmp) / name
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            hard_vocab_limit=False,  # small corpora: fewer pieces rather than an error
            num_threads=max(1, os.cpu_count() or 1),
            minloglevel=2,
            shuffle_input_sentence=False,
        )
        for ext in (".model", ".vocab"):
            os.replace(f"{prefix}{ext}", out_dir / f"{name}{ext}")
    return Tokenizer(out_dir / f"{name}.model")
