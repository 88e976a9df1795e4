"""Data preparation on the synthetic corpus and on a fake tree in real LibriSpeech layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lhotse import load_manifest

from asr.data.prepare import (
    PrepareError,
    compute_stats,
    cut_transcripts,
    cuts_path,
    find_subsets,
    load_cuts,
    prepare_corpus,
    speed_perturb,
)
from asr.features import GlobalCMVN
from asr.text import Tokenizer


def test_prepare_synthetic(tiny_corpus, tiny_manifests):
    for subset in ("train", "dev", "test"):
        cuts = load_manifest(cuts_path(tiny_manifests, subset))
        n_trans = sum(len(p.read_text().splitlines()) for p in (tiny_corpus / subset).glob("*/*/*.trans.txt"))
        assert len(cuts) == n_trans > 0
        for c in cuts:
            assert c.sampling_rate == 16000 and len(c.supervisions) == 1 and c.supervisions[0].text
            assert abs(c.duration - c.supervisions[0].duration) < 1e-6


def test_prepare_rerun_is_noop(tiny_corpus, tiny_manifests):
    before = {p.name: p.stat().st_mtime_ns for p in tiny_manifests.glob("*.jsonl.gz")}
    prepare_corpus(tiny_corpus, tiny_manifests)
    assert {p.name: p.stat().st_mtime_ns for p in tiny_manifests.glob("*.jsonl.gz")} == before


def test_prepare_fake_real_librispeech(tiny_corpus, tmp_path):
    """Real LibriSpeech unpacks to LibriSpeech/dev-clean/SPK/CHAP/...; pass the parent folder."""
    root = tmp_path / "download"
    src_spk = next((tiny_corpus / "dev").iterdir())
    shutil.copytree(src_spk, root / "LibriSpeech" / "dev-clean" / src_spk.name)
    src_spk = next((tiny_corpus / "test").iterdir())
    shutil.copytree(src_spk, root / "LibriSpeech" / "test-clean" / src_spk.name)
    (root / "LibriSpeech" / "README.TXT").write_text("LibriSpeech ASR corpus\n")
    out = tmp_path / "manifests"
    paths = prepare_corpus(root, out)
    assert set(paths) == {"dev-clean", "test-clean"}
    assert len(load_manifest(paths["dev-clean"])) > 0
    assert (out / "librispeech_recordings_dev-clean.jsonl.gz").is_file()
    with pytest.raises(PrepareError, match="not found"):
        prepare_corpus(root, out, subsets=["train-clean-100"])


def test_prepare_errors(tmp_path):
    with pytest.raises(PrepareError, match="no such directory"):
        prepare_corpus(tmp_path / "nothing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="no subsets"):
        prepare_corpus(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(PrepareError, match="asr data prepare"):
        load_cuts(tmp_path / "out", "train")


def test_find_subsets(tiny_corpus):
    assert find_subsets(tiny_corpus) == ["dev", "test", "train"]


def test_speed_perturb(tiny_manifests):
    cuts = load_manifest(cuts_path(tiny_manifests, "dev")).subset(first=2)
    sp = speed_perturb(cuts, (0.9, 1.0, 1.1))
    by_id = {c.id: c for c in sp}
    assert len(by_id) == 6
    for c in cuts:
        slow, fast = by_id[f"{c.id}_sp0.9"], by_id[f"{c.id}_sp1.1"]
        assert slow.duration == pytest.approx(c.duration / 0.9, abs=0.01)
        assert fast.duration == pytest.approx(c.duration / 1.1, abs=0.01)
        assert slow.load_audio().shape[1] == slow.num_samples


def test_compute_stats(tiny_manifests, tmp_path):
    info = compute_stats(tiny_manifests, tmp_path / "lang", vocab_size=64)
    cmvn = GlobalCMVN.load(tmp_path / "lang" / "cmvn.json")
    assert cmvn.mean.shape == (80,) and (cmvn.std > 0).all() and cmvn.frames == info["cmvn_frames"] > 1000
    tok = Tokenizer(tmp_path / "lang" / "tokenizer.model")
    assert info["vocab_size"] == tok.vocab_size
    for text in cut_transcripts(load_cuts(tiny_manifests, "train")):
        assert tok.decode(tok.encode(text)) == text
    # re-running keeps the files
    mtime = (tmp_path / "lang" / "cmvn.json").stat().st_mtime_ns
    compute_stats(tiny_manifests, tmp_path / "lang", vocab_size=64)
    assert (tmp_path / "lang" / "cmvn.json").stat().st_mtime_ns == mtime


def test_feature_cache_returns_the_same_features_and_survives_damage(tiny_manifests, tmp_path):
    import torch

    from asr.data.batching import FeatureCache
    from asr.data.prepare import load_cuts
    from asr.features import fbank

    cut = next(iter(load_cuts(tiny_manifests, "dev")))
    cache = FeatureCache(tmp_path / "fc")
    direct = fbank(cut.load_audio()[0])
    first = cache.fbank(cut)  # computed and written
    files = list((tmp_path / "fc").rglob("*.npy"))
    assert len(files) == 1 and torch.equal(first, direct)
    assert torch.equal(cache.fbank(cut), direct)  # read back
    fast = cut.perturb_speed(1.1)
    assert cache._key(fast) != cache._key(cut) and cache.fbank(fast).shape[0] < direct.shape[0]
    files[0].write_bytes(b"not a numpy file")  # damaged: recomputed and rewritten
    assert torch.equal(cache.fbank(cut), direct)
    assert torch.equal(FeatureCache(tmp_path / "fc").fbank(cut), direct)


def test_manifests_work_from_another_folder_and_a_missing_file_is_one_line(tiny_corpus, tmp_path, monkeypatch):
    """Audio paths are stored absolute (they were relative to where `asr data prepare` ran, so `asr train` from
    another folder died in lhotse); a file missing at training time is one line naming it."""
    import shutil

    from typer.testing import CliRunner

    from asr.apps.cli import app
    from asr.data.batching import cut_fbank
    from asr.data.prepare import load_cuts

    work = tmp_path / "work"
    shutil.copytree(tiny_corpus, work / "corpus")
    monkeypatch.chdir(work)
    r = CliRunner().invoke(app, ["data", "prepare", "--corpus-dir", "corpus", "--out", "manifests"])
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path)
    cut = next(iter(load_cuts(work / "manifests", "dev")))
    assert Path(cut.recording.sources[0].source).is_absolute()
    assert cut_fbank(cut).shape[1] == 80  # readable from here
    Path(cut.recording.sources[0].source).unlink()
    from asr.audio import AudioError

    with pytest.raises(AudioError, match=cut.id):
        cut_fbank(cut)
