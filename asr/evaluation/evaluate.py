"""Decode a lhotse cut set with a loaded model and score it (WER, CER, real-time factor).

The real-time factor covers the whole decode: fbank, encoder and search (audio loading excluded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from asr.data.batching import fbank_batch, make_sampler
from asr.data.prepare import load_cuts
from asr.errors import UserError
from asr.evaluation.metrics import ErrorRate, cer, wer
from asr.features import features
from asr.inference.decode import decode_features
from asr.inference.model_dir import LoadedModel, load_model, write_card_section
from asr.lm import update_card
from asr.search.ctc import ctc_greedy
from asr.search.options import DecodeOptions
from asr.text import normalize_text


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


def evaluate_cuts(loaded: "LoadedModel", cuts, method: str = "ctc_greedy", opts: DecodeOptions = DecodeOptions(),
                  max_duration: float = 120.0, device: str = "cpu") -> EvalResult:
    """Decode every cut (full context) with ``method`` and score against its supervision text."""
    opts = DecodeOptions(**{**opts.__dict__, "timestamps": False})
    rows, audio, spent = [], 0.0, 0.0
    with torch.inference_mode():
        for batch_cuts in make_sampler(cuts, max_duration, 1, False, 0):
            wavs = [c.load_audio()[0] for c in batch_cuts]
            t0 = time.perf_counter()
            padded, lens = fbank_batch([features(w, loaded.model.cfg.frontend) for w in wavs])
            hyps = decode_features(loaded.model, loaded.tokenizer, padded.to(device), lens.to(device), method, opts)
            spent += time.perf_counter() - t0
            audio += sum(c.duration for c in batch_cuts)
            rows += [(c.id, normalize_text(" ".join(s.text for s in c.supervisions)), h.text)
                     for c, h in zip(batch_cuts, hyps)]
    refs, hyps = [r for _, r, _ in rows], [normalize_text(h) for _, _, h in rows]
    return EvalResult(method, wer(refs, hyps), cer(refs, hyps), len(rows), audio, spent, tuple(rows))


def measure_into_card(model_path, manifests, subsets, log=print) -> str:
    """CTC-greedy WER / CER / RTF of an exported model on ``subsets`` of ``manifests``, written as a table
    into its model card (``asr export-model --manifests``). Returns the table."""
    loaded = load_model(model_path)
    lines = ["| subset | decoder | utterances | hours | WER | CER | model RTF (2 threads) |", "|---|---|---|---|---|---|---|"]
    for s in subsets:
        r = evaluate_cuts(loaded, load_cuts(manifests, s))
        lines.append(f"| {s} | ctc_greedy | {r.utterances} | {r.audio_seconds / 3600:.3f} | {100 * r.wer.rate:.2f}% | "
                     f"{100 * r.cer.rate:.2f}% | {r.rtf:.4f} |")
        log(f"{s}: WER {r.wer}  CER {r.cer}  RTF {r.rtf:.4f}")
    table = "\n".join(lines)
    write_card_section(model_path, "Measured (asr export-model --manifests ...)", table)
    return table


def tune_lm(loaded: "LoadedModel", lm_dir, cuts, lm_weights, word_scores, lm_beam: int, subset: str = "dev",
            log=print) -> tuple[float, float, float]:
    """Grid over ``lm_weights`` x ``word_scores`` with ``ctc_lm`` on dev ``cuts``; the best (lowest WER) is
    written into the LM directory's card, where ``--lm`` / ``lm_dir=`` without explicit weights finds it.
    Returns ``(wer, lm_weight, word_score)``."""
    if subset == "test":
        raise UserError("tune on dev, never on test")
    best = None
    for w in lm_weights:
        for ws in word_scores:
            opts = DecodeOptions(lm=str(lm_dir), lm_weight=w, word_score=ws, lm_beam=lm_beam, timestamps=False)
            r = evaluate_cuts(loaded, cuts, "ctc_lm", opts)
            log(f"lm_weight {w:4.2f} word_score {ws:5.2f}: WER {100 * r.wer.rate:6.2f}%  CER {100 * r.cer.rate:6.2f}%")
            if best is None or r.wer.rate < best[0]:
                best = (r.wer.rate, w, ws)
    update_card(lm_dir, lm_weight=best[1], word_score=best[2],
                tuned_on={"subset": subset, "utterances": len(cuts), "wer": round(best[0], 4), "model": str(loaded.path)})
    return best
