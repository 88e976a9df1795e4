"""Pictures: WER against real-time factor per decoder, and a recording's spectrogram with word
boundaries and CTC spikes. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, load_audio
from asr.features import features
from asr.files import atomic_path
from asr.inference.decode import decode_features
from asr.search.align import encoder_frame_seconds
from asr.search.methods import AUTOREGRESSIVE
from asr.search.options import DecodeOptions


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def plot_wer_vs_rtf(results, out: str | os.PathLike, title: str = "") -> Path:
    """One point per decoder: x = real-time factor (log scale), y = WER %; AR and NAR coloured apart."""

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in results:
        ar = r.method in AUTOREGRESSIVE
        ax.scatter(r.rtf, 100 * r.wer.rate, s=60, marker="o" if ar else "s", color="tab:red" if ar else "tab:blue")
        ax.annotate(r.method, (r.rtf, 100 * r.wer.rate), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("real-time factor (whole decode, lower is faster)")
    ax.set_ylabel("WER %")
    ax.set_title(title or "WER vs speed")
    ax.scatter([], [], marker="o", color="tab:red", label="autoregressive")
    ax.scatter([], [], marker="s", color="tab:blue", label="non-autoregressive")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    out = Path(out)
    _save(fig, out)
    plt.close(fig)
    return out


def plot_alignment(loaded, audio_path: str | os.PathLike, out: str | os.PathLike, max_seconds: float = 30.0) -> Path:
    """The model's own log-mel features (80-dim fbank) of the first ``max_seconds``, the CTC-greedy words at
    their aligned times, and the per-frame probability of non-blank tokens (the CTC spikes) below it."""
    plt = _plt()
    audio = load_audio(audio_path)[: int(max_seconds * SAMPLE_RATE)]
    feats = features(audio, loaded.model.cfg.frontend)
    lens = torch.tensor([feats.shape[0]])
    with torch.inference_mode():
        tr = decode_features(loaded.model, loaded.tokenizer, feats.unsqueeze(0), lens, "ctc_greedy", DecodeOptions())[0]
        enc, el = loaded.model.encode(feats.unsqueeze(0), lens)
        probs = loaded.model.ctc_log_probs(enc)[0].exp()
    fs = encoder_frame_seconds(loaded.model.encoder.rate, loaded.model.cfg.frontend.frame_seconds)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a1.imshow(feats.T.numpy(), origin="lower", aspect="auto", cmap="magma",
              extent=(0.0, feats.shape[0] * loaded.model.cfg.frontend.frame_seconds, 0, feats.shape[1]))
    a1.set_ylabel("mel bin")
    for w in tr.words:
        a1.axvline(w.start, color="white", lw=0.8, alpha=0.8)
        a1.text(w.start, 0.95, w.word, transform=a1.get_xaxis_transform(), color="white", fontsize=8, va="top")
    a1.set_title(f"{Path(audio_path).name}: {tr.text[:120]}")
    a1.set_xlabel("")
    t = np.arange(probs.size(0)) * fs
    a2.plot(t, (1 - probs[:, 0]).numpy(), color="tab:orange", lw=1)
    a2.set_ylabel("P(non-blank)")
    a2.set_xlabel("seconds")
    a2.set_ylim(0, 1.05)
    out = Path(out)
    _save(fig, out)
    plt.close(fig)
    return out
