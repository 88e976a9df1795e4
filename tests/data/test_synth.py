"""Synthetic corpus: layout, disjoint voices, no repeated sentences, determinism, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data import synth as synth_mod
from asr.data.synth import CorpusError, SynthConfig, assign_voices, plan, synth_corpus
from asr.data.text_source import clean_sentences, load_sentences, split_sentences
from asr.data.tts import Voice, installed_voices

UTT = re.compile(r"^(\d+)-(\d+)-(\d{4})$")


def _voices(n_per_engine=3):
    return [Voice(e, f"v{i}") for e in ("espeak-ng", "flite", "festival", "rhvoice") for i in range(n_per_engine)]


def test_assign_voices_disjoint_and_spread():
    groups = assign_voices(_voices(6), (3, 5), np.random.default_rng(0))
    keys = {k: {v.key for v in vs} for k, vs in groups.items()}
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["dev"]) and not (keys["dev"] & keys["test"])
    assert len(keys["test"]) == 5 and len(keys["dev"]) == 3 and len(keys["train"]) == 16
    assert {v.engine for v in groups["test"]} == {"espeak-ng", "flite", "festival", "rhvoice"}  # spread
    small = assign_voices(_voices(3), (3, 5), np.random.default_rng(0))  # 12 voices: 60% stay in train
    assert len(small["train"]) >= 8 and len(small["test"]) >= 1 and len(small["dev"]) >= 1
    assert {v.engine for v in groups["train"]} == {"espeak-ng", "flite", "festival", "rhvoice"}  # every engine trains


def test_assign_voices_few():
    groups = assign_voices([Voice("espeak-ng", n) for n in "abc"], (3, 5), np.random.default_rng(0))
    assert [len(groups[s]) for s in ("train", "dev", "test")] == [1, 1, 1]
    with pytest.raises(CorpusError, match="at least 3"):
        assign_voices([Voice("espeak-ng", "a")], (3, 5), np.random.default_rng(0))


def test_plan_deterministic_and_sentences_unique(tmp_path):
    sentences = [f"{a} AND {b} WENT HOME TOGETHER" for a in "ABCDEFGHIJKLMNOP" for b in "QRSTUVWXYZ"]
    cfg = SynthConfig(out_dir=tmp_path, hours=0.05, seed=7)
    a, b = plan(cfg, _voices(), sentences), plan(cfg, _voices(), sentences)
    assert a == b
    c = plan(SynthConfig(out_dir=tmp_path, hours=0.05, seed=8), _voices(), sentences)
    assert a != c
    used = [u.text for t in a for u in t.utterances]
    assert len(used) == len(set(used))  # no sentence twice, so none across subsets
    assert all(not u.augment and u.snr_db is None for t in a if t.speaker.subset != "train" for u in t.utterances)


def test_plan_runs_out_of_text(tmp_path):
    with pytest.raises(CorpusError, match="usable sentences"):
        plan(SynthConfig(out_dir=tmp_path, hours=1.0), _voices(), ["ONLY ONE SHORT SENTENCE HERE"])


def test_text_cleaning():
    raw = split_sentences("In the beginning God created the heaven. It had 12 gates; Who knows? "
                          "short one. This sentence has <symbols> in it today.")
    assert clean_sentences(raw) == ["IN THE BEGINNING GOD CREATED THE HEAVEN"]
    assert len(load_sentences("default")) > 20000


def test_no_tts_engine_message(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_mod, "installed_voices", lambda *a, **k: [])
    with pytest.raises(CorpusError, match="no text-to-speech engine is installed.*apt-get install espeak-ng"):
        synth_corpus(SynthConfig(out_dir=tmp_path), progress=False)


def test_installed_engines():
    """tools/setup.sh installs all six engines; the corpus should use them all."""
    assert {v.engine for v in installed_voices()} == {"espeak-ng", "mbrola", "flite", "festival", "pico", "rhvoice"}


def test_tiny_corpus_layout(tiny_corpus: Path):
    summary = json.loads((tiny_corpus / "synth.json").read_text())
    assert set(summary["subsets"]) == {"train", "dev", "test"}
    voices = {k: set(v["voices"]) for k, v in summary["subsets"].items()}
    assert not voices["test"] & voices["train"] and not voices["dev"] & voices["train"]
    texts: dict[str, set[str]] = {}
    n_flac = 0
    for subset in ("train", "dev", "test"):
        for trans in (tiny_corpus / subset).glob("*/*/*.trans.txt"):
            spk, chap = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{spk}-{chap}.trans.txt"
            for line in trans.read_text().splitlines():
                uid, text = line.split(" ", 1)
                m = UTT.match(uid)
                assert m and m.group(1) == spk and m.group(2) == chap
                assert text == text.upper() and re.fullmatch(r"[A-Z' ]+", text)
                flac = trans.parent / f"{uid}.flac"
                info = sf.info(str(flac))
                assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
                assert 0.5 < info.duration < 20
                texts.setdefault(subset, set()).add(text)
                n_flac += 1
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]
    assert n_flac == sum(v["utterances"] for v in summary["subsets"].values())
    # every engine was used somewhere
    engines = {v.split(":")[0] for v in summary["voices"]}
    assert len(engines) == 6


def test_rerun_skips_existing(tiny_corpus: Path):
    before = {p: p.stat().st_mtime_ns for p in tiny_corpus.rglob("*.flac")}
    summary = synth_corpus(SynthConfig(out_dir=tiny_corpus, hours=0.06, seed=3, speakers_per_voice=1, augment=0.5),
                           progress=False)
    assert summary["synthesized_seconds"] == 0
    assert {p: p.stat().st_mtime_ns for p in tiny_corpus.rglob("*.flac")} == before


def test_single_subset_equals_the_full_run(tiny_corpus, tmp_path):
    """`--subset test` renders exactly the test subset a full run makes (same files, same audio)."""
    import soundfile as sf

    from asr.data.synth import SynthConfig, synth_corpus

    out = tmp_path / "only_test"
    synth_corpus(SynthConfig(out_dir=out, hours=0.06, seed=3, speakers_per_voice=1, augment=0.5, subsets=("test",)),
                 progress=False)
    assert not (out / "train").exists() and not (out / "dev").exists()
    assert set(json.loads((out / "synth.json").read_text())["subsets"]) == {"test"}
    mine = sorted(p.relative_to(out) for p in (out / "test").rglob("*") if p.is_file())
    full = sorted(p.relative_to(tiny_corpus) for p in (tiny_corpus / "test").rglob("*") if p.is_file())
    assert mine == full and mine
    for rel in mine:
        if rel.suffix == ".flac":
            a, b = sf.read(out / rel)[0], sf.read(tiny_corpus / rel)[0]
            assert a.shape == b.shape and abs(a - b).max() < 1e-4, rel
        else:
            assert (out / rel).read_text() == (tiny_corpus / rel).read_text()


def test_plan_rate_range(tmp_path):
    sentences = [f"{a} AND {b} WENT HOME TOGETHER" for a in "ABCDEFGHIJKLMNOP" for b in "QRSTUVWXYZ"]
    slow = plan(SynthConfig(out_dir=tmp_path, hours=0.05, seed=7, rate_range=(0.7, 0.8)), _voices(), sentences)
    assert all(0.7 <= t.speaker.rate <= 0.8 for t in slow)
    fast = plan(SynthConfig(out_dir=tmp_path, hours=0.05, seed=7, rate_range=(1.1, 1.2)), _voices(), sentences)
    n = lambda tasks: sum(len(t.utterances) for t in tasks)  # noqa: E731
    assert n(fast) > n(slow)  # the same hours hold more sentences when spoken faster
    with pytest.raises(CorpusError, match="rate range"):
        synth_corpus(SynthConfig(out_dir=tmp_path, rate_range=(1.2, 0.8)), progress=False)


def test_rerun_with_other_options_is_refused(tiny_corpus: Path):
    """Re-running skips existing files, so a folder must never mix two corpora under the same ids."""
    before = {p: p.stat().st_mtime_ns for p in tiny_corpus.rglob("*.flac")}
    with pytest.raises(CorpusError, match=r"other options \(rate_range\)"):
        synth_corpus(SynthConfig(out_dir=tiny_corpus, hours=0.06, seed=3, speakers_per_voice=1, augment=0.5,
                                 rate_range=(1.0, 1.2)), progress=False)
    assert {p: p.stat().st_mtime_ns for p in tiny_corpus.rglob("*.flac")} == before


def test_speaking_rate_near_librispeech(tiny_corpus: Path):
    """The default rates read at about LibriSpeech's 2.7 words/s (the first corpora: 3.3)."""
    words = seconds = 0.0
    for trans in (tiny_corpus / "train").glob("*/*/*.trans.txt"):
        for line in trans.read_text().splitlines():
            uid, text = line.split(" ", 1)
            words += len(text.split())
            seconds += sf.info(str(trans.parent / f"{uid}.flac")).duration
    assert 2.0 < words / seconds < 3.1


def test_subset_runs_keep_each_others_totals(tmp_path):
    """Rendering dev after test into the same folder: synth.json and SPEAKERS.TXT describe both."""
    cfg = dict(out_dir=tmp_path / "c", hours=0.03, seed=3, speakers_per_voice=1, augment=0.5)
    voices = tuple(installed_voices()[:6])
    first = synth_corpus(SynthConfig(**cfg, voices=voices, subsets=("test",)), progress=False)
    second = synth_corpus(SynthConfig(**cfg, voices=voices, subsets=("dev",)), progress=False)
    assert set(first["subsets"]) == {"test"} and set(second["subsets"]) == {"dev", "test"}
    assert second["subsets"]["test"] == first["subsets"]["test"]
    listed = {line.split("|")[1].strip() for line in (tmp_path / "c" / "SPEAKERS.TXT").read_text().splitlines()[1:]}
    assert listed == {"dev", "test"}


def test_a_small_corpus_is_as_long_as_asked(tiny_corpus: Path):
    """Sentences are planned until each subset's share is reached, not one per speaker over it (0.05 h asked gave
    0.091 h when every speaker got at least one)."""
    summary = json.loads((tiny_corpus / "synth.json").read_text())
    asked = summary["config"]["hours"]
    made = sum(v["hours"] for v in summary["subsets"].values())
    assert 0.75 * asked < made < 1.25 * asked, (asked, made)


def test_a_corpus_holds_out_the_dev_and_test_sentences_of_another(tiny_corpus: Path, tmp_path):
    """A train-only corpus added to a mix must not read the sentences the mix's dev and test score."""
    held = synth_mod.held_out_sentences(tiny_corpus)
    scored = {line.split(" ", 1)[1] for s in ("dev", "test") for f in (tiny_corpus / s).rglob("*.trans.txt")
              for line in f.read_text().splitlines()}
    assert held == scored and held
    every = load_sentences("default")
    kept = synth_mod.corpus_sentences(SynthConfig(out_dir=tmp_path, hold_out=(str(tiny_corpus),)))
    assert not held & set(kept) and len(kept) == len(every) - len(held & set(every)) and len(held & set(every))
    with pytest.raises(CorpusError, match=f"{tmp_path}: no dev or test transcripts"):
        synth_mod.corpus_sentences(SynthConfig(out_dir=tmp_path, hold_out=(str(tmp_path),)))
