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
