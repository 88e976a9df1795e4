"""Decode a lhotse cut set with a loaded model and score it (WER, CER, real-time factor).

Only CTC greedy decoding for now; the decoding work adds the other methods behind the same call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from typing import TYPE_CHECKING

from asr.metrics import ErrorRate, cer, wer
from asr.search.ctc import ctc_greedy
from asr.text import normalize_text
from asr.train.dataset import CutDataset, make_sampler

if TYPE_CHECKING:
    from asr.model_dir import LoadedModel


@dataclass(frozen=True)
class EvalResult:
    wer: ErrorRate
    cer: ErrorRate
    utterances: int
    audio_seconds: float
    decode_seconds: float  # model time (features excluded), wall clock
    rows: tuple[tuple[str, str, str], ...]  # (cut id, reference, hypothesis)

    @property
    def rtf(self) -> float:
        return self.decode_seconds / self.audio_seconds if self.audio_seconds else float("nan")


def ctc_greedy_texts(model, tokenizer, feats: torch.Tensor, feat_lens: torch.Tensor) -> list[str]:
    """Full-context encode and CTC-greedy decode a padded batch ``(B, T, F)``; one text per utterance."""
    enc, lens = model.encode(feats, feat_lens)
    return [tokenizer.decode(h.tokens) for h in ctc_greedy(model.ctc_log_probs(enc), lens)]


def evaluate_cuts(lm: "LoadedModel", cuts, max_duration: float = 120.0, device: str = "cpu") -> EvalResult:
    """CTC-greedy decode every cut (full context) and score against its supervision text."""
    ds = CutDataset(str(lm.path / "tokenizer.model"))
    rows, audio, spent = [], 0.0, 0.0
    with torch.inference_mode():
        for batch_cuts in make_sampler(cuts, max_duration, 1, False, 0):
            b = ds[batch_cuts]
            t0 = time.perf_counter()
            hyps = ctc_greedy_texts(lm.model, lm.tokenizer, b.feats.to(device), b.feat_lens.to(device))
            spent += time.perf_counter() - t0
            audio += b.duration
            rows += list(zip(b.ids, b.texts, hyps))
    refs, hyps = [r for _, r, _ in rows], [normalize_text(h) for _, _, h in rows]
    return EvalResult(wer(refs, hyps), cer(refs, hyps), len(rows), audio, spent, tuple(rows))
