"""Shared fixtures: a tiny synthetic corpus (made once per test session) and its manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = REPO.parent / "shared" / "real"  # 37 real clips beside the checkout (not in git)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """About 4 minutes of speech from every installed voice, LibriSpeech layout."""
    from asr.data.synth import SynthConfig, synth_corpus

    out = tmp_path_factory.mktemp("corpus")
    summary = synth_corpus(SynthConfig(out_dir=out, hours=0.06, seed=3, speakers_per_voice=1, augment=0.5), progress=False)
    assert summary["num_failed"] <= 2, summary["failed"]
    return out


@pytest.fixture(scope="session")
def tiny_manifests(tiny_corpus, tmp_path_factory) -> Path:
    from asr.data.prepare import prepare_corpus

    out = tmp_path_factory.mktemp("manifests")
    prepare_corpus(tiny_corpus, out)
    return out


@pytest.fixture
def tone() -> np.ndarray:
    """1.5 s of a 440 Hz tone with a little noise, 16 kHz float32."""
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def small_experiment(e: Path, cmvn_mean: float = 10.0, cmvn_std: float = 6.0):
    """A tiny char tokenizer, a 1-layer config and CMVN stats in experiment folder ``e``; returns the config."""
    import dataclasses

    import torch

    from asr.config import load_config, save_config
    from asr.features import GlobalCMVN
    from asr.text import train_tokenizer

    tok = train_tokenizer(["HELLO WORLD", "THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG"] * 3, e, vocab_size=30,
                          model_type="char")
    cfg = load_config("tiny", ["model.encoder.d_model=32", "model.encoder.num_layers=1", "model.encoder.ffn_dim=64",
                               "model.decoder.num_layers=1", "model.mlm.num_layers=1"])
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=tok.vocab_size))
    save_config(cfg, e / "config.yaml")
    GlobalCMVN(torch.full((80,), cmvn_mean), torch.full((80,), cmvn_std), 100).save(e / "cmvn.json")
    return cfg


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """A small exported model with random weights (every head), for command-line and format tests."""
    import torch

    from asr.features import GlobalCMVN
    from asr.model_dir import export_model
    from asr.models.asr_model import ASRModel
    from asr.train.checkpoint import save_checkpoint

    e = tmp_path_factory.mktemp("random_exp")
    cfg = small_experiment(e)
    torch.manual_seed(0)
    m = ASRModel(cfg.model)
    with torch.no_grad():
        m.ctc.proj.bias[0] = -3.0  # fewer blanks than a fresh init: random models then emit words
    m.set_cmvn(GlobalCMVN.load(e / "cmvn.json"))
    save_checkpoint(e, 1, {"model": m.state_dict()}, keep_last=1)
    return export_model(e, tmp_path_factory.mktemp("random_model") / "model")
