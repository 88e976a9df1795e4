"""Decode a lhotse cut set with a loaded model and score it (WER, CER, real-time factor).

The real-time factor covers the whole decode: fbank, encoder and search (audio loading excluded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from asr.data.batching import fbank_batch, make_sampler
from asr.inference.decode import DecodeOptions, decode_features
from asr.features import fbank
from asr.evaluation.metrics import ErrorRate, cer, wer
from asr.search.ctc import ctc_greedy
from asr.text import normalize_text

if TYPE_CHECKING:
    from asr.inference.model_dir import LoadedModel


@dataclass(frozen=True)
class EvalResult:
    method: str
    wer: ErrorRate
    cer: ErrorRate
    utterances: int
    audio_seconds: float
    decode_seconds: float  # fbank + encoder + search, wall clock
    rows: tuple[tuple[str, str, str], ...]  # (cut id, reference, hypothesis)

    @property
    def rtf(self) -> float:
        return self.decode_seconds / self.audio_seconds if self.audio_seconds else float("nan")


def ctc_greedy_texts(model, tokenizer, feats: torch.Tensor, feat_lens: torch.Tensor) -> list[str]:
    """Full-context encode and CTC-greedy decode a padded batch ``(B, T, F)``; one text per utterance."""
    enc, lens = model.encode(feats, feat_lens)
    return [tokenizer.decode(nb[0].tokens) for nb in ctc_greedy(model.ctc_log_probs(enc), lens)]


def evaluate_cuts(lm: "LoadedModel", cuts, method: str = "ctc_greedy", opts: DecodeOptions = DecodeOptions(),
                  max_duration: float = 120.0, device: str = "cpu") -> EvalResult:
    """Decode every cut (full context) with ``method`` and score against its supervision text."""
    opts = DecodeOptions(**{**opts.__dict__, "timestamps": False})
    rows, audio, spent = [], 0.0, 0.0
    with torch.inference_mode():
        for batch_cuts in make_sampler(cuts, max_duration, 1, False, 0):
            wavs = [c.load_audio()[0] for c in batch_cuts]
            t0 = time.perf_counter()
            padded, lens = fbank_batch([fbank(w) for w in wavs])
            hyps = decode_features(lm.model, lm.tokenizer, padded.to(device), lens.to(device), method, opts)
            spent += time.perf_counter() - t0
            audio += sum(c.duration for c in batch_cuts)
            rows += [(c.id, normalize_text(" ".join(s.text for s in c.supervisions)), h.text)
                     for c, h in zip(batch_cuts, hyps)]
    refs, hyps = [r for _, r, _ in rows], [normalize_text(h) for _, _, h in rows]
    return EvalResult(method, wer(refs, hyps), cer(refs, hyps), len(rows), audio, spent, tuple(rows))
