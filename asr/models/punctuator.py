"""Punctuation and casing for recognized text: a small bidirectional LSTM over SentencePiece pieces of lower-cased
words that predicts, per word, its case (lower, Capitalised, UPPER) and the mark after it (none , . ?).

A punctuator directory holds ``config.json``, ``model.safetensors`` (fp16) and ``tokenizer.model``;
:func:`load_punctuator` loads one (the bundled one by default), :meth:`Punctuator.restore` applies it.
Training: :mod:`asr.train.punctuator`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from asr.errors import UserError, first_line
from asr.files import write_atomic
from asr.text import normalize_text

MARKS = ("", ",", ".", "?")  # the mark after a word
CASES = ("lower", "title", "upper")
_WORD_BREAK = re.compile(r"[-\u2010-\u2015/]+")  # where normalize_text splits a token into words
BUNDLED_PUNCTUATOR = Path(__file__).parents[1] / "pretrained" / "punctuator"


@dataclass(frozen=True)
class PunctuatorConfig:
    vocab_size: int = 4000
    dim: int = 256
    heads: int = 4  # transformer only
    layers: int = 2
    ff: int = 768  # transformer only
    max_len: int = 256  # pieces per window
    dropout: float = 0.25
    arch: str = "lstm"  # a bidirectional LSTM, `dim` wide over both directions; or "transformer" (it learned ~2x
    # slower per step and plateaued at dev mark F1 0.17 in 19 minutes where the LSTM passed 0.3: docs/captions.md)


class PunctuatorModel(nn.Module):
    """``pieces (B, L)`` -> ``(mark logits (B, L, 4), case logits (B, L, 3))``; a word's mark is read at its last
    piece and its case at its first."""

    def __init__(self, cfg: PunctuatorConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        pe = torch.zeros(cfg.max_len, cfg.dim)
        pos = torch.arange(cfg.max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, cfg.dim, 2) * (-math.log(10000.0) / cfg.dim))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe, persistent=False)
        if cfg.arch == "lstm":
            self.encoder = nn.LSTM(cfg.dim, cfg.dim // 2, cfg.layers, batch_first=True, bidirectional=True,
                                   dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        else:
            layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.marks = nn.Linear(cfg.dim, len(MARKS))
        self.cases = nn.Linear(cfg.dim, len(CASES))

    def forward(self, pieces: torch.Tensor, pad_mask: torch.Tensor | None = None):
        if self.cfg.arch == "lstm":
            h = self.drop(self.norm(self.encoder(self.drop(self.embed(pieces)))[0]))
        else:
            x = self.embed(pieces) * math.sqrt(self.cfg.dim) + self.pe[: pieces.size(1)]
            h = self.norm(self.encoder(x, src_key_padding_mask=pad_mask))
        return self.marks(h), self.cases(h)


def word_labels(token: str) -> list[tuple[str, int, int]]:
    """One whitespace token of written text -> ``[(normalised lower-case word, mark id, case id)]`` (a token may
    hold several words, e.g. ``well-known``, or none, e.g. ``--``): the mark after the token goes on its last
    word."""
    words = normalize_text(token).split()
    if not words:
        return []
    tail = token.rstrip("\"')]}*_")
    mark = 3 if "?" in tail[-2:] else 2 if tail[-1:] in ".!" else 1 if tail[-1:] in ",;:" else 0
    parts = [p for p in _WORD_BREAK.split(token) if normalize_text(p)]
    out = []
    for i, w in enumerate(words):
        letters = "".join(c for c in (parts[i] if len(parts) == len(words) else token) if c.isalpha())
        case = 2 if len(letters) > 1 and letters.isupper() else 1 if letters[:1].isupper() else 0
        out.append((w.lower(), mark if i == len(words) - 1 else 0, case))
    return out


def display(word: str, mark: int, case: int) -> str:
    """A recognized word with the predicted case and mark."""
    w = word.lower()
    w = w.upper() if case == 2 else (w[:1].upper() + w[1:]) if case == 1 else w
    return w + MARKS[mark]


class Punctuator:
    """A loaded punctuator: :meth:`restore` turns recognized words into cased words with marks."""

    def __init__(self, path: str | os.PathLike, model: PunctuatorModel, sp: spm.SentencePieceProcessor):
        self.path, self.model, self.sp = Path(path), model.eval(), sp

    def _pieces(self, words: list[str]) -> tuple[list[int], list[int], list[int]]:
        ids, first, last = [], [], []
        for w in words:
            p = self.sp.encode(w.lower()) or [self.sp.unk_id()]
            first.append(len(ids))
            ids += p
            last.append(len(ids) - 1)
        return ids, first, last

    @torch.inference_mode()
    def predict(self, words: list[str], context: list[str] = ()) -> list[tuple[int, int]]:
        """``(mark, case)`` per word; ``context``: words said just before (read, not labelled). Long inputs go
        in overlapping windows (each word labelled from the window where it has the most context)."""
        words = list(context) + list(words)
        if not words:
            return []
        ids, first, last = self._pieces(words)
        n = self.model.cfg.max_len
        out: list[tuple[int, int]] = [(0, 0)] * len(words)
        step = n // 2
        starts = list(range(0, max(1, len(ids) - n + step), step)) if len(ids) > n else [0]
        best = [-1] * len(words)
        for s in starts:
            window = torch.tensor([ids[s:s + n]])
            mark, case = self.model(window)
            mark, case = mark[0].argmax(-1).tolist(), case[0].argmax(-1).tolist()
            for i, (a, b) in enumerate(zip(first, last)):
                if s <= a and b < s + n:
                    margin = min(a - s, s + n - 1 - b) if len(starts) > 1 else 0
                    if margin > best[i]:
                        best[i] = margin
                        out[i] = (mark[b - s], case[a - s])
        return out[len(context):]

    def restore(self, words: list[str], context: list[str] = ()) -> list[str]:
        """Recognized words (any case, no marks) -> display words: ``["hello", "world"]`` -> ``["Hello", "world."]``."""
        return [display(w, m, c) for w, (m, c) in zip(words, self.predict(words, context))]


def save_punctuator(model: PunctuatorModel, tokenizer_path: Path, out: Path, card: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "tokenizer.model").write_bytes(Path(tokenizer_path).read_bytes())
    write_atomic(out / "config.json", json.dumps({"model": asdict(model.cfg), **card}, indent=2) + "\n")


def load_punctuator(path: str | os.PathLike | None = None) -> Punctuator:
    """A punctuator directory (default: the bundled one). A missing or broken one is one ValueError line."""
    d = Path(path) if path else BUNDLED_PUNCTUATOR
    try:
        cfg = PunctuatorConfig(**json.loads((d / "config.json").read_text())["model"])
        model = PunctuatorModel(cfg)
        model.load_state_dict({k: v.float() for k, v in load_file(str(d / "model.safetensors")).items()})
        sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    except Exception as e:  # noqa: BLE001 - safetensors and sentencepiece raise their own types for a broken file
        raise UserError(f"{d}: not a punctuator directory ({type(e).__name__}: {first_line(e, 160)})") from None
    return Punctuator(d, model, sp)


__all__ = ["Punctuator", "PunctuatorModel", "PunctuatorConfig", "load_punctuator", "save_punctuator", "word_labels",
           "display", "MARKS", "CASES", "BUNDLED_PUNCTUATOR"]
