"""A small neural LM over the ASR model's own tokens (an LSTM), trained on text only, for shallow fusion in the
AR / joint beam search (:class:`asr.search.scorers.TokenLMScorer`) and for n-best rescoring.

Its vocabulary is the model's output layer: token ids ``0..V-1`` with ``sos = eos = V - 1`` (the attention
decoder's convention); blank and the Mask-CTC mask never occur in text. Files in the LM directory::
    nlm.safetensors   weights
    nlm.json          {"vocab", "dim", "layers", "tokenizer_sha256", training figures}
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from asr.errors import first_line
from asr.files import atomic_path, write_atomic
from asr.lm.ngram import LMError
from asr.text import special_ids

NLM_WEIGHTS, NLM_CONFIG = "nlm.safetensors", "nlm.json"


class TokenLM(nn.Module):
    """``ys (B, L)`` token ids -> logits ``(B, L, V)`` of the next token at every position."""

    def __init__(self, vocab: int, dim: int = 256, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.vocab, self.dim, self.layers = vocab, dim, layers
        self.sos = self.eos = special_ids(vocab)[2]
        self.embed = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(dim, dim, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(dim, vocab)
        self.out.weight = self.embed.weight  # tied input / output embeddings

    def forward(self, ys: torch.Tensor, state=None):
        h, state = self.rnn(self.drop(self.embed(ys)), state)
        return self.out(self.drop(h)), state

    def init_state(self, n: int, device="cpu"):
        z = torch.zeros(self.layers, n, self.dim, device=device)
        return z, z.clone()

    @torch.inference_mode()
    def step(self, last: torch.Tensor, state):
        """``last (N,)`` tokens, state ``(h, c)`` each ``(layers, N, dim)`` -> ``(log-probs (N, V), state)``."""
        logits, state = self.forward(last.unsqueeze(1), state)
        return logits[:, -1].log_softmax(-1), state

    @staticmethod
    def select_state(state, parent: torch.Tensor):
        h, c = state
        return h[:, parent], c[:, parent]

    @torch.inference_mode()
    def sentence_log_prob(self, seqs: list[list[int]]) -> list[float]:
        """Natural-log probability of each token sequence, its end included (n-best rescoring)."""
        if not seqs:
            return []
        ys, tgt = _tensors(seqs, self.sos)  # inputs after sos; targets with the end, -100 past it
        lp = self.forward(ys)[0].log_softmax(-1)
        got = lp.gather(2, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1) * (tgt >= 0)
        return got.sum(1).tolist()


def _sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _batches(seqs: list[list[int]], max_tokens: int, rng: random.Random):
    """Length-sorted batches of about ``max_tokens`` tokens, in random order."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    batches, cur, longest = [], [], 0
    for i in order:
        longest = max(longest, len(seqs[i]) + 1)
        if cur and longest * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, longest = [], len(seqs[i]) + 1
        cur.append(i)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def _tensors(seqs: list[list[int]], sos: int):
    """Token sequences -> ``(inputs (B, L+1): sos then tokens, targets (B, L+1): tokens then eos (= sos), -100
    after)``."""
    L = max(len(s) for s in seqs) + 1
    x = torch.full((len(seqs), L), sos, dtype=torch.long)
    y = torch.full((len(seqs), L), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        t = torch.tensor(s, dtype=torch.long)
        x[i, 1: len(s) + 1] = t
        y[i, : len(s)] = t
        y[i, len(s)] = sos  # eos
    return x, y


def _eval_nll(lm: TokenLM, seqs: list[list[int]], max_tokens: int = 8000) -> float:
    """Mean negative log-likelihood per token (end tokens included) of ``seqs``."""
    lm.eval()
    tot, n = 0.0, 0
    with torch.inference_mode():
        for b in _batches(seqs, max_tokens, random.Random(0)):
            x, y = _tensors([seqs[i] for i in b], lm.sos)
            loss = nn.functional.cross_entropy(lm(x)[0].transpose(1, 2), y, ignore_index=-100, reduction="sum")
            tot += float(loss)
            n += int((y != -100).sum())
    return tot / max(1, n)


def train_neural_lm(sentences: list[str], tokenizer, vocab: int, out: str | os.PathLike, dim: int = 256,
                    layers: int = 1, minutes: float = 5.0, max_tokens: int = 6000, lr: float = 3e-3,
                    heldout: float = 0.02, seed: int = 0, log=print) -> dict:
    """Train a :class:`TokenLM` on normalised ``sentences`` spelled by ``tokenizer`` for ``minutes`` of wall
    time (or until 1 epoch past the best held-out loss); writes the best held-out checkpoint into ``out``
    atomically and returns its config (with the held-out token perplexity)."""

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    seqs = [s for s in tokenizer.encode_batch(sentences) if s]
    if len(seqs) < 10:
        raise LMError(f"only {len(seqs)} sentences to train a neural LM on")
    too_big = [t for s in seqs for t in s if t >= vocab - 2]  # V-2 is <mask>, V-1 <sos/eos>
    if too_big:
        raise LMError(f"the tokenizer makes token {too_big[0]} but the model's vocabulary is {vocab}")
    rng.shuffle(seqs)
    n_held = max(5, int(len(seqs) * heldout))
    held, train = seqs[:n_held], seqs[n_held:]
    lm = TokenLM(vocab, dim, layers)
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    deadline = t0 + 60 * minutes
    best, best_state, steps, epoch, history = math.inf, None, 0, 0, []
    while time.perf_counter() < deadline:
        epoch += 1
        lm.train()
        batches = _batches(train, max_tokens, rng)
        for b in batches:
            x, y = _tensors([train[i] for i in b], lm.sos)
            loss = nn.functional.cross_entropy(lm(x)[0].transpose(1, 2), y, ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            opt.step()
            steps += 1
            if time.perf_counter() >= deadline:
                break
        nll = _eval_nll(lm, held)
        history.append({"epoch": epoch, "steps": steps, "minutes": round((time.perf_counter() - t0) / 60, 2),
                        "heldout_token_perplexity": round(math.exp(nll), 3)})
        log(f"neural LM epoch {epoch}: {steps} steps, held-out token perplexity {math.exp(nll):.3f}")
        if nll < best:
            best, best_state = nll, {k: v.detach().clone() for k, v in lm.state_dict().items()}
        elif len(history) >= 2:
            break  # held-out loss rose: stop
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in best_state.items() if k != "out.weight"}  # tied to embed.weight
    with atomic_path(out / NLM_WEIGHTS) as tmp:
        save_file(state, str(tmp))
    cfg = {"vocab": vocab, "dim": dim, "layers": layers, "tokenizer_sha256": _sha256(tokenizer.model_path),
           "train_sentences": len(train), "heldout_sentences": len(held),
           "heldout_token_perplexity": round(math.exp(best), 3), "epochs": history,
           "train_minutes": round((time.perf_counter() - t0) / 60, 2)}
    write_atomic(out / NLM_CONFIG, json.dumps(cfg, indent=2) + "\n")
    return cfg


def has_neural_lm(lm_dir: str | os.PathLike) -> bool:
    """Whether an LM directory holds a neural LM (``asr lm train --neural``)."""
    d = Path(lm_dir)
    return (d / NLM_CONFIG).is_file() and (d / NLM_WEIGHTS).is_file()


_CACHE: dict = {}


def load_neural_lm(lm_dir: str | os.PathLike, tokenizer=None, vocab: int | None = None) -> TokenLM:
    """The neural LM of an LM directory (cached); one-line :class:`LMError` when it is missing, broken, or was
    trained on another tokenizer / vocabulary than the decoding model's."""
    d = Path(lm_dir)
    cfg_path, w_path = d / NLM_CONFIG, d / NLM_WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise LMError(f"{d}: no neural LM (make one with `asr lm train --neural`)")
    key = (str(d.resolve()), w_path.stat().st_mtime_ns)
    if key not in _CACHE:
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            lm = TokenLM(int(cfg["vocab"]), int(cfg["dim"]), int(cfg["layers"]))
            state = load_file(str(w_path))
            state["out.weight"] = state["embed.weight"]
            lm.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - any broken file is one line
            raise LMError(f"{d}: cannot load the neural LM ({e.__class__.__name__}: {first_line(e, 200)})") from None
        lm.eval()
        _CACHE[key] = (lm, cfg)
    lm, cfg = _CACHE[key]
    if vocab is not None and lm.vocab != vocab:
        raise LMError(f"{d}: the neural LM has {lm.vocab} tokens, the model {vocab}: train it for this model")
    if tokenizer is not None and cfg.get("tokenizer_sha256") not in (None, _sha256(tokenizer.model_path)):
        raise LMError(f"{d}: the neural LM was trained with another tokenizer than this model's")
    return lm


__all__ = ["TokenLM", "train_neural_lm", "load_neural_lm", "has_neural_lm", "NLM_WEIGHTS", "NLM_CONFIG"]
