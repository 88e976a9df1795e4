"""Word n-gram language models: an interpolated Kneser-Ney builder that writes ARPA, and an ARPA scorer.

KenLM's ``lmplz`` builds the model when it is on the PATH (modified Kneser-Ney, the field's standard);
otherwise :func:`build_kneser_ney` does it in pure Python (interpolated Kneser-Ney with one absolute
discount per order, ``D = n1 / (n1 + 2 n2)``, Chen & Goodman 1998), which is exact for the ARPA backoff
form: for a seen n-gram the ARPA probability is the interpolated one, and a context's backoff weight is its
interpolation weight ``D * N1+(h .) / c(h)``. Both write the same ARPA format, which torchaudio's
flashlight-text decoder (KenLM inside) and :class:`ArpaLM` read.

Sentences are lists of words; ``<s>`` and ``</s>`` are added here. Log-probabilities in ARPA are base 10.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from asr.errors import UserError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG10 = math.log(10)


class LMError(UserError):
    """A language model that cannot be built or read. ``str(err)`` is one line."""


def _discount(counts: Counter) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0:
        return 0.5
    return min(0.95, max(0.05, n1 / (n1 + 2 * n2))) if n2 else 0.5


def build_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> str:
    """Interpolated Kneser-Ney over ``sentences`` (lists of words) -> ARPA text."""
    if order < 1:
        raise LMError(f"order must be at least 1, not {order}")
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[n]: n-gram counts (predicted word last)
    vocab: set[str] = set()
    for words in sentences:
        vocab.update(words)
        seq = [BOS, *words, EOS]
        for i in range(1, len(seq)):
            for n in range(1, min(order, i + 1) + 1):
                raw[n][tuple(seq[i - n + 1: i + 1])] += 1
    if not vocab:
        raise LMError("no text to build a language model from")
    # Kneser-Ney counts: raw at the top order; below it the number of distinct words seen before the n-gram
    # (continuation counts), except for n-grams that begin with <s>, which nothing can precede
    counts: list[Counter] = [Counter() for _ in range(order + 1)]
    counts[order] = raw[order]
    for n in range(order - 1, 0, -1):
        for g in raw[n + 1]:
            counts[n][g[1:]] += 1
        for g, c in raw[n].items():
            if g[0] == BOS:
                counts[n][g] = c
    discounts = [0.0] + [_discount(counts[n]) for n in range(1, order + 1)]
    ctx_total: list[dict] = [{} for _ in range(order + 1)]
    ctx_types: list[dict] = [{} for _ in range(order + 1)]
    for n in range(1, order + 1):
        tot: dict = defaultdict(int)
        typ: dict = defaultdict(int)
        for g, c in counts[n].items():
            tot[g[:-1]] += c
            typ[g[:-1]] += 1
        ctx_total[n], ctx_types[n] = dict(tot), dict(typ)

    def gamma(ctx: tuple) -> float:
        """Interpolation (= ARPA backoff) weight of context ``ctx``."""
        n = len(ctx) + 1
        t = ctx_total[n].get(ctx)
        return discounts[n] * ctx_types[n][ctx] / t if t else 1.0

    words = sorted(vocab) + [EOS]
    V = len(words) + 1  # and <unk>
    probs: list[dict] = [{} for _ in range(order + 1)]
    t1, g1 = ctx_total[1][()], gamma(())
    for w in words:
        probs[1][(w,)] = max(counts[1].get((w,), 0) - discounts[1], 0.0) / t1 + g1 / V
    probs[1][(UNK,)] = g1 / V

    def interpolated(g: tuple) -> float:
        if g in probs[len(g)]:
            return probs[len(g)][g]
        if len(g) == 1:
            return probs[1][(UNK,)]
        return gamma(g[:-1]) * interpolated(g[1:])

    for n in range(2, order + 1):
        D = discounts[n]
        for g, c in counts[n].items():
            ctx = g[:-1]
            probs[n][g] = max(c - D, 0.0) / ctx_total[n][ctx] + gamma(ctx) * interpolated(g[1:])

    out = ["", "\\data\\"] + [f"ngram {n}={len(probs[n]) + (n == 1)}" for n in range(1, order + 1)] + [""]
    for n in range(1, order + 1):
        out.append(f"\\{n}-grams:")
        entries = sorted(probs[n].items())
        if n == 1:
            entries.insert(0, ((BOS,), None))
        for g, p in entries:
            lp = "-99" if p is None else f"{math.log10(max(p, 1e-99)):.6f}"
            bo = f"\t{math.log10(gamma(g)):.6f}" if n < order and g in ctx_total[n + 1] else ""
            out.append(f"{lp}\t{' '.join(g)}{bo}")
        out.append("")
    out.append("\\end\\")
    return "\n".join(out) + "\n"


def build_with_kenlm(text_file: Path, arpa: Path, order: int) -> bool:
    """Build with KenLM's ``lmplz`` when it is installed; returns False when it is not."""
    lmplz = shutil.which("lmplz")
    if lmplz is None:
        return False
    with open(text_file, "rb") as src, open(arpa, "wb") as dst:
        r = subprocess.run([lmplz, "-o", str(order), "--discount_fallback", "-S", "20%"], stdin=src, stdout=dst,
                           stderr=subprocess.PIPE, timeout=3600)
    if r.returncode != 0:
        raise LMError(f"lmplz failed: {r.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return True


class ArpaLM:
    """A word n-gram model read from ARPA, for scoring: ``score(history, word)`` is log P (natural log)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.prob: dict[tuple[str, ...], float] = {}
        self.bow: dict[tuple[str, ...], float] = {}
        self.order = 0
        section = 0
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    if line.startswith("\\") and line.endswith("-grams:"):
                        section = int(line[1:].split("-")[0])
                        self.order = max(self.order, section)
                        continue
                    if line.startswith("\\") or line.startswith("ngram ") or section == 0:
                        continue
                    parts = line.split("\t")
                    if len(parts) == 1:
                        parts = line.split()
                        p, g, b = float(parts[0]), tuple(parts[1: 1 + section]), (
                            float(parts[1 + section]) if len(parts) > 1 + section else 0.0)
                    else:
                        p, g = float(parts[0]), tuple(parts[1].split())
                        b = float(parts[2]) if len(parts) > 2 else 0.0
                    self.prob[g] = p * LOG10
                    if b:
                        self.bow[g] = b * LOG10
        except (OSError, ValueError, IndexError) as e:
            raise LMError(f"{self.path}: not a readable ARPA file ({e})") from None
        if not self.prob:
            raise LMError(f"{self.path}: no n-grams in this ARPA file")
        self.unk = self.prob.get((UNK,), -100.0)

    def score(self, history: Sequence[str], word: str) -> float:
        """Natural-log probability of ``word`` after ``history`` (backing off as ARPA prescribes)."""
        h = tuple(history[-(self.order - 1):]) if self.order > 1 else ()
        total = 0.0
        while True:
            g = h + (word,)
            if g in self.prob:
                return total + self.prob[g]
            if not h:
                return total + self.unk
            total += self.bow.get(h, 0.0)
            h = h[1:]

    def sentence_logprob(self, words: Sequence[str]) -> float:
        hist = [BOS]
        total = 0.0
        for w in list(words) + [EOS]:
            total += self.score(hist, w)
            hist.append(w)
        return total

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        lp, n = 0.0, 0
        for s in sentences:
            lp += self.sentence_logprob(s)
            n += len(s) + 1
        return math.exp(-lp / n) if n else float("nan")


def cached_arpa(path: str) -> ArpaLM:
    """One :class:`ArpaLM` per file for the process (reading an ARPA of ~700k n-grams takes about 1 s)."""
    key = str(Path(path).resolve())
    if key not in _CACHE:
        _CACHE.clear()  # one LM at a time is what decoding uses
        _CACHE[key] = ArpaLM(key)
    return _CACHE[key]


_CACHE: dict[str, ArpaLM] = {}

__all__ = ["build_kneser_ney", "build_with_kenlm", "ArpaLM", "cached_arpa", "LMError", "BOS", "EOS", "UNK"]
