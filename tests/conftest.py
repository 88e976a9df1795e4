"""Shared fixtures: a tiny synthetic corpus (made once per test session) and its manifests."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# The tests were written for the small bundled Conformer (`demo`): commands that name no model use it here (and in
# the subprocesses the tests start); the tests of the bundled default name it (tests/test_default_model.py).
os.environ["ASR_MODEL"] = "demo"

# One torch thread in the test process, as the suite always ran (importing silero-vad used to force it; asr.inference.vad
# no longer lets it): the test process's own servers run two decoding threads, and the subprocesses the tests start
# (servers, training runs interrupted with Ctrl-C) need the second core while the test waits for them.
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# 37 real recorded clips beside the checkout on the project's machines (not in git, not in a user's clone).
# ASR_TEST_REAL_DIR points elsewhere; set it to "" to test the fallback (speech made by TTS here).
REAL_DIR = Path(os.environ["ASR_TEST_REAL_DIR"]) if os.environ.get("ASR_TEST_REAL_DIR") else REPO.parent / "shared" / "real"
if os.environ.get("ASR_TEST_REAL_DIR") == "":
    REAL_DIR = None


@dataclass(frozen=True)
class Clip:
    path: Path  # 16 kHz mono speech, about 8-12 s
    text: str  # its reference transcript
    real: bool  # a human recording (../shared/real) rather than TTS made by the test session


# Public-domain sentences (a 1961 speech, LibriSpeech and LJ Speech transcripts), spoken by TTS voices when
# the real clips are absent.
FALLBACK_TEXTS = (
    "AND SO MY FELLOW AMERICANS ASK NOT WHAT YOUR COUNTRY CAN DO FOR YOU ASK WHAT YOU CAN DO FOR YOUR COUNTRY",
    "IT WAS THE FIRST GREAT SORROW OF HIS LIFE IT WAS NOT SO MUCH THE LOSS OF THE COTTON ITSELF BUT THE FANTASY "
    "THE HOPES THE DREAMS BUILT AROUND IT",
    "IF THE READER WILL EXCUSE ME I WILL SAY NOTHING OF MY ANTECEDENTS NOR OF THE CIRCUMSTANCES WHICH LED ME TO "
    "LEAVE MY NATIVE COUNTRY",
    "PRINTING IN THE ONLY SENSE WITH WHICH WE ARE AT PRESENT CONCERNED DIFFERS FROM MOST IF NOT FROM ALL THE ARTS "
    "AND CRAFTS REPRESENTED IN THE EXHIBITION",
    "THE NARRATIVE WOULD BE TEDIOUS TO HIM AND PAINFUL TO MYSELF SO I SHALL BEGIN WITH THE DAY I FIRST SAW THE SEA",
    "IN THE BEGINNING GOD CREATED THE HEAVEN AND THE EARTH AND THE EARTH WAS WITHOUT FORM AND VOID",
)
# Voices the demo model never heard in training first (its test voices), then any other.
_PREFERRED = ("pico:en-US", "rhvoice:slt", "espeak-ng:en-gb-x-gbclan+f1", "festival:en1_mbrola", "mbrola:en1")


def _real_clips() -> list[Clip] | None:
    if REAL_DIR is None or not (REAL_DIR / "manifest.tsv").is_file():
        return None
    with open(REAL_DIR / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [Clip(REAL_DIR / r["wav"], r["text"], True) for r in rows]


def _tts_clips(out: Path) -> list[Clip]:
    """Speak FALLBACK_TEXTS with the installed TTS voices (16 kHz, 0.3 s of silence either side)."""
    import soundfile as sf

    from asr.audio import load_audio
    from asr.data.tts import SynthesisError, installed_voices, synthesize

    voices = installed_voices()
    if not voices:
        pytest.skip("no real clips (../shared/real absent) and no text-to-speech voice installed to make speech: "
                    "run tools/setup.sh (espeak-ng)")
    by_key = {v.key: v for v in voices}
    ordered = [by_key[k] for k in _PREFERRED if k in by_key] + [v for v in voices if v.key not in _PREFERRED]
    clips = []
    pad = np.zeros(4800, np.float32)
    for i, text in enumerate(FALLBACK_TEXTS):
        for voice in ordered[i % len(ordered):] + ordered[: i % len(ordered)]:
            raw = out / f"raw{i}.wav"
            try:
                synthesize(voice, [(text.lower(), raw)], rate=0.9)
                audio = load_audio(raw)
            except (SynthesisError, ValueError):
                continue
            path = out / f"tts{i}.wav"
            sf.write(path, np.concatenate([pad, audio, pad]), 16000)
            clips.append(Clip(path, text, False))
            break
    if len(clips) < len(FALLBACK_TEXTS):
        pytest.skip("no real clips (../shared/real absent) and the installed TTS voices failed to speak")
    return clips


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory) -> list[Clip]:
    """At least six clips of English speech with references: the real recordings in ../shared/real when
    they are there, otherwise sentences spoken here by the installed TTS voices."""
    return _real_clips() or _tts_clips(tmp_path_factory.mktemp("tts_clips"))


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
def demo():
    """The bundled demo model, loaded once (tests that move or change a model load their own)."""
    import asr

    return asr.load_model("demo")


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """A small exported model with random weights (every head), for command-line and format tests."""
    import torch

    from asr.features import GlobalCMVN
    from asr.models.asr_model import ASRModel
    from asr.train.checkpoint import save_checkpoint
    from asr.train.export import export_model

    e = tmp_path_factory.mktemp("random_exp")
    cfg = small_experiment(e)
    torch.manual_seed(0)
    m = ASRModel(cfg.model)
    with torch.no_grad():
        m.ctc.proj.bias[0] = -3.0  # fewer blanks than a fresh init: random models then emit words
    m.set_cmvn(GlobalCMVN.load(e / "cmvn.json"))
    save_checkpoint(e, 1, {"model": m.state_dict()}, keep_last=1)
    return export_model(e, tmp_path_factory.mktemp("random_model") / "model")
