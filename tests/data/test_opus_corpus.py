"""tools/opus_corpus.py: a corpus packed into Opus streams comes back as the same files with the same lengths."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("opus_corpus", REPO / "tools" / "opus_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _has_libopus() -> bool:
    if shutil.which("ffmpeg") is None:
        return False
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return "libopus" in out


@pytest.mark.skipif(not _has_libopus(), reason="ffmpeg with libopus not installed (tools/setup.sh installs it)")
def test_pack_unpack_round_trip(tmp_path):
    tool = _tool()
    corpus = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    lengths = {}
    for i, (sub, spk) in enumerate([("train", "1"), ("train", "2"), ("train", "2"), ("dev", "3")]):
        d = corpus / sub / spk / "10"
        d.mkdir(parents=True, exist_ok=True)
        n = 8000 + 3217 * i  # lengths that are no multiple of an Opus frame
        x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t[:n]) + 0.01 * rng.standard_normal(n)
        path = d / f"{spk}-10-{i:04d}.flac"
        sf.write(path, x.astype(np.float32), 16000)
        (d / f"{spk}-10.trans.txt").open("a").write(f"{spk}-10-{i:04d} WORDS {i}\n")
        lengths[str(path.relative_to(corpus))] = (n, x)
    (corpus / "SPEAKERS.TXT").write_text("1 | M | train | a\n")

    tool.main(["pack", str(corpus), str(tmp_path / "pack"), "--subsets", "train", "dev", "--shards", "2"])
    assert sorted(p.name for p in (tmp_path / "pack").glob("*.opus")) == ["dev.0.opus", "train.0.opus", "train.1.opus"]  # 1 dev file: 1 stream
    out = tmp_path / "out"
    tool.main(["unpack", str(tmp_path / "pack"), "--out", str(out), "--jobs", "1"])
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*.flac"))
    assert got == sorted(lengths)
    for rel, (n, x) in lengths.items():
        y, sr = sf.read(out / rel, dtype="float32")
        assert sr == 16000 and len(y) == n
        assert np.corrcoef(x, y)[0, 1] > 0.9  # lossy, but the same signal in the same place
    assert (out / "SPEAKERS.TXT").read_text() == "1 | M | train | a\n"
    assert (out / "train/2/10/2-10.trans.txt").read_text() == "2-10-0001 WORDS 1\n2-10-0002 WORDS 2\n"
