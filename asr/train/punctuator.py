"""Train and measure the punctuation and casing model (:mod:`asr.models.punctuator`) on written text.

Text: public-domain sources (:data:`asr.data.text_source.TEXTS`) or text files, split into sentences in their
order; sentences of given manifests' subsets (dev / test transcripts) are left out, as for LMs. Every 50th block
of 200 sentences is dev (checkpoint choice), the next one test (figures). Training windows are runs of consecutive
words cut anywhere (as recognized segments are), lower-cased and stripped of marks; the labels are each word's case
and the mark after it. A cosine schedule over a wall-time budget; the best dev checkpoint is kept.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import sentencepiece as spm
import torch
import torch.nn.functional as F

from asr.data.text_source import TEXTS, TextSourceError, split_sentences
from asr.models.punctuator import (
    CASES,
    MARKS,
    Punctuator,
    PunctuatorConfig,
    PunctuatorModel,
    save_punctuator,
    word_labels,
)
from asr.text import normalize_text

IGNORE = -100
Doc = list[tuple[str, int, int]]  # (lower-case word, mark id, case id) in text order


def read_text(sources, exclude: set[str] = frozenset()) -> dict[str, list[str]]:
    """Source name (or file path) -> its sentences in order, without those whose normalised form is excluded."""
    out = {}
    for src in sources:
        if src in TEXTS:
            raw = TEXTS[src]()
        else:
            p = Path(src)
            if not p.is_file():
                raise TextSourceError(f"{src}: no such text file")
            raw = p.read_text(encoding="utf-8", errors="replace")
        sents = [s for s in split_sentences(raw) if "Node:" not in s and "\x7f" not in s]
        out[src] = [s for s in sents if normalize_text(s) not in exclude]
    return out


def labelled(sentences: list[str]) -> Doc:
    return [lab for s in sentences for tok in s.split() for lab in word_labels(tok)]


def split_blocks(sentences: list[str], block: int = 200) -> tuple[list[str], list[str], list[str]]:
    """Train / dev / test sentences: blocks of ``block`` consecutive sentences, every 50th to dev, the next to test."""
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    for i in range(0, len(sentences), block):
        k = (i // block) % 50
        parts[1 if k == 0 else 2 if k == 1 else 0].extend(sentences[i:i + block])
    return parts


def windows(doc: Doc, size: int = 40) -> list[Doc]:
    """Non-overlapping runs of ``size`` words (what a recognized segment looks like), for evaluation."""
    return [doc[i:i + size] for i in range(0, len(doc), size) if doc[i:i + size]]


def scores(pairs) -> dict:
    """``pairs``: ``(reference (mark, case), predicted (mark, case))`` per word -> precision / recall / F1 per mark,
    their mean, and case accuracy."""
    pairs = list(pairs)
    out: dict = {"words": len(pairs)}
    f1s = []
    for m in range(1, len(MARKS)):
        tp = sum(1 for r, h in pairs if r[0] == m and h[0] == m)
        fp = sum(1 for r, h in pairs if r[0] != m and h[0] == m)
        fn = sum(1 for r, h in pairs if r[0] == m and h[0] != m)
        p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
        f1 = 2 * p * r / max(1e-9, p + r)
        out[MARKS[m]] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "count": tp + fn}
        f1s.append(f1)
    out["mark_f1_mean"] = round(sum(f1s) / len(f1s), 4)
    out["case_accuracy"] = round(sum(1 for r, h in pairs if r[1] == h[1]) / max(1, len(pairs)), 4)
    return out


def evaluate_text(punctuator: Punctuator, doc: Doc, size: int = 40) -> dict:
    """Marks and case restored on held-out text cut into ``size``-word segments."""
    pairs = []
    for w in windows(doc, size):
        pred = punctuator.predict([x[0] for x in w])
        pairs += [((m, c), p) for (_, m, c), p in zip(w, pred)]
    return scores(pairs)


def _tokenizer(words: list[str], out: Path, vocab: int) -> Path:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for i in range(0, len(words), 20):
            f.write(" ".join(words[i:i + 20]) + "\n")
    prefix = out / "tokenizer"
    spm.SentencePieceTrainer.train(input=f.name, model_prefix=str(prefix), vocab_size=vocab, model_type="unigram",
                                   character_coverage=1.0, input_sentence_size=2_000_000, shuffle_input_sentence=True,
                                   minloglevel=2)
    Path(f.name).unlink()
    return prefix.with_suffix(".model")


class _Encoded:
    """A document as pieces with each word's first and last piece (labels sit there)."""

    def __init__(self, doc: Doc, sp: spm.SentencePieceProcessor):
        cache: dict[str, list[int]] = {}
        self.ids, self.marks, self.cases, self.word_start = [], [], [], []
        for w, m, c in doc:
            p = cache.get(w)
            if p is None:
                p = cache[w] = sp.encode(w) or [sp.unk_id()]
            self.word_start.append(len(self.ids))
            self.marks += [IGNORE] * (len(p) - 1) + [m]
            self.cases += [c] + [IGNORE] * (len(p) - 1)
            self.ids += p

    def batch(self, rng: random.Random, n: int, length: int):
        """``n`` windows of ``length`` pieces starting at random words."""
        x, ym, yc = [], [], []
        for _ in range(n):
            s = self.word_start[rng.randrange(len(self.word_start))]
            s = min(s, max(0, len(self.ids) - length))
            ids, marks, cases = self.ids[s:s + length], self.marks[s:s + length], self.cases[s:s + length]
            pad = length - len(ids)
            x.append(ids + [0] * pad)
            ym.append(marks + [IGNORE] * pad)
            yc.append(cases + [IGNORE] * pad)
        return torch.tensor(x), torch.tensor(ym), torch.tensor(yc)


def train_punctuator(sources, out: str | Path, minutes: float = 25.0, exclude: set[str] = frozenset(),
                     cfg: PunctuatorConfig = PunctuatorConfig(), batch: int = 32, length: int = 128,
                     lr: float = 1.5e-3, seed: int = 0, log=print, eval_every: int = 500) -> dict:
    """Train a punctuator directory at ``out`` within ``minutes`` of wall time; returns its card (sources,
    sizes, dev / test figures, wall time), also written into ``out/config.json``."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    text = read_text(sources, exclude)
    train_s, dev_s, test_s = [], [], []
    for sents in text.values():
        a, b, c = split_blocks(sents)
        train_s, dev_s, test_s = train_s + a, dev_s + b, test_s + c
    train_doc, dev_doc, test_doc = labelled(train_s), labelled(dev_s), labelled(test_s)
    tok_path = _tokenizer([w for w, _, _ in train_doc], out, cfg.vocab_size)
    sp = spm.SentencePieceProcessor(model_file=str(tok_path))
    cfg = replace(cfg, vocab_size=sp.get_piece_size(), max_len=max(cfg.max_len, length))
    data = _Encoded(train_doc, sp)
    model = PunctuatorModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    budget, warmup = minutes * 60, 300
    step, best, best_state, curve = 0, -1.0, None, []
    dev_eval = dev_doc[:20000]
    t_train = time.perf_counter()
    while True:
        spent = time.perf_counter() - t_train
        if spent >= budget:
            break
        frac = spent / budget
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
        model.train()
        x, ym, yc = data.batch(rng, batch, length)
        mark_logits, case_logits = model(x)
        loss = F.cross_entropy(mark_logits.reshape(-1, len(MARKS)), ym.reshape(-1), ignore_index=IGNORE) + \
            F.cross_entropy(case_logits.reshape(-1, len(CASES)), yc.reshape(-1), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % eval_every == 0 or time.perf_counter() - t_train >= budget:
            model.eval()
            dev = evaluate_text(Punctuator(out, model, sp), dev_eval)
            score = (dev["mark_f1_mean"] + dev["case_accuracy"]) / 2
            curve.append({"step": step, "minutes": round((time.perf_counter() - t_train) / 60, 2),
                          "loss": round(loss.item(), 4), "dev_mark_f1": dev["mark_f1_mean"],
                          "dev_case_accuracy": dev["case_accuracy"]})
            log(json.dumps(curve[-1]))
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    punct = Punctuator(out, model, sp)
    card = {"sources": {k: len(v) for k, v in text.items()}, "excluded_sentences": len(exclude),
            "train_words": len(train_doc), "dev_words": len(dev_doc), "test_words": len(test_doc),
            "parameters": sum(p.numel() for p in model.parameters()), "steps": step, "batch": batch,
            "window_pieces": length, "minutes": round((time.perf_counter() - t0) / 60, 1), "curve": curve,
            "dev": evaluate_text(punct, dev_doc), "test": evaluate_text(punct, test_doc)}
    save_punctuator(model, tok_path, out, card)
    for f in (out / "tokenizer.vocab",):
        f.unlink(missing_ok=True)
    return card


__all__ = ["train_punctuator", "evaluate_text", "scores", "read_text", "labelled", "split_blocks", "windows"]
