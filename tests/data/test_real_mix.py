"""Recorded speech from a TSV manifest, weighted training mixes, and the neural TTS engines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from asr.data.batching import FeatureCache
from asr.data.prepare import PrepareError, load_cuts, mix_subsets
from asr.data.tsv_corpus import import_tsv
from asr.data.tts import NEURAL_ENGINES, Voice, installed_voices, voice_available

HEADER = "id\tpath\tduration\ttext\ttext_norm\tspeaker\tsource\tsplit\tkind\n"


def _tone(path, seconds, fmt=None, subtype=None):
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format=fmt, subtype=subtype)


def _corpus(tmp_path):
    (tmp_path / "a").mkdir(exist_ok=True)
    _tone(tmp_path / "a" / "s1.wav", 1.0)
    _tone(tmp_path / "a" / "s2.flac", 2.0)
    _tone(tmp_path / "a" / "w1.wav", 0.5)
    _tone(tmp_path / "a" / "d1.wav", 1.5)
    rows = ["s1\ta/s1.wav\t1.0\tHello, world!\tHELLO WORLD\tspk1\tsrcA\ttrain\tsentence",
            "s2\ta/s2.flac\t2.0\tgood day\tGOOD DAY\tspk2\tsrcA\ttrain\tsentence",
            "w1\ta/w1.wav\t0.5\tyes\tYES\tspk3\tsrcB\ttrain\tword",
            "d1\ta/d1.wav\t1.5\tdev one\tDEV ONE\tspk4\tsrcA\tdev\tsentence",
            "gone\ta/missing.wav\t1.0\tlost\tLOST\tspk5\tsrcA\ttrain\tsentence",
            "short\ta/s1.wav\t1.0"]
    tsv = tmp_path / "manifest.tsv"
    tsv.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return tsv


def test_import_tsv_writes_splits_and_kinds_and_reports_bad_rows(tmp_path):
    tsv = _corpus(tmp_path)
    paths, errors = import_tsv(tsv, tmp_path / "m", name="real")
    assert set(paths) == {"real_train", "real_dev", "real_train_sentence", "real_train_word"}
    train = load_cuts(tmp_path / "m", "real_train").to_eager()
    assert sorted(c.id for c in train) == ["s1", "s2", "w1"]
    by_id = {c.id: c for c in train}
    assert by_id["s1"].supervisions[0].text == "HELLO WORLD" and by_id["s1"].supervisions[0].speaker == "spk1"
    assert abs(by_id["s2"].duration - 2.0) < 1e-6 and by_id["s2"].load_audio().shape == (1, 32000)
    assert [c.id for c in load_cuts(tmp_path / "m", "real_train_word")] == ["w1"]
    assert len(errors) == 2  # the missing file and the short row, each one line naming where
    assert any("missing.wav" in e and "line 6" in e for e in errors)
    assert any("manifest.tsv:7" in e and "columns" in e for e in errors)


def test_import_tsv_reads_opus(tmp_path):
    try:
        _tone(tmp_path / "x.ogg", 1.0, fmt="OGG", subtype="OPUS")
    except (sf.LibsndfileError, ValueError, TypeError) as e:
        pytest.skip(f"this libsndfile cannot write Opus: {e}")
    (tmp_path / "m.tsv").write_text("id\tpath\ttext\nx\tx.ogg\tone\n", encoding="utf-8")
    paths, errors = import_tsv(tmp_path / "m.tsv", tmp_path / "out", name="o")
    assert not errors and list(paths) == ["o_train"]
    cut = next(iter(load_cuts(tmp_path / "out", "o_train")))
    assert cut.load_audio().shape[1] == cut.num_samples and abs(cut.duration - 1.0) < 0.02


def test_import_tsv_without_usable_rows_is_one_error(tmp_path):
    (tmp_path / "m.tsv").write_text("id\tpath\ttext\nx\tnope.wav\tone\n", encoding="utf-8")
    with pytest.raises(PrepareError, match="no usable rows"):
        import_tsv(tmp_path / "m.tsv", tmp_path / "out")
    (tmp_path / "h.tsv").write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(PrepareError, match="header needs a path column"):
        import_tsv(tmp_path / "h.tsv", tmp_path / "out")


def test_mix_repeats_and_samples_by_weight_with_unique_ids(tmp_path):
    import_tsv(_corpus(tmp_path), tmp_path / "m", name="real")
    import_tsv(_corpus(tmp_path), tmp_path / "other", name="real")  # the same ids in another folder
    summary = mix_subsets(tmp_path / "m", "mixed", [("real_train_sentence", 3), ("real_train_word", 1),
                                                    (f"{tmp_path / 'other'}:real_train_sentence", 0.5)])
    mixed = load_cuts(tmp_path / "m", "mixed").to_eager()
    ids = [c.id for c in mixed]
    assert len(ids) == len(set(ids)) == 2 * 3 + 1 + 1
    assert summary["real_train_sentence"]["cuts"] == 6 and summary["total"]["cuts"] == 8
    assert {"s1", "s1_rep1", "s1_rep2", "w1"} <= set(ids)
    # copies read the same audio, so they share one cached feature file
    cache = FeatureCache(tmp_path / "cache")
    by_id = {c.id: c for c in mixed}
    assert cache._key(by_id["s1"]) == cache._key(by_id["s1_rep2"])
    assert cache._key(by_id["s1"]) != cache._key(by_id["s2"])
    with pytest.raises(PrepareError, match="every weight is 0"):
        mix_subsets(tmp_path / "m", "none", [("real_train", 0)])


def test_mix_cli_writes_the_subset(tmp_path):
    from typer.testing import CliRunner

    from asr.apps.cli import app

    import_tsv(_corpus(tmp_path), tmp_path / "m", name="real")
    r = CliRunner().invoke(app, ["data", "mix", "real_train=2", "real_dev=1", "--manifests", str(tmp_path / "m"),
                                 "--out", "mix2"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["total"]["cuts"] == 7
    bad = CliRunner().invoke(app, ["data", "mix", "real_train=lots", "--manifests", str(tmp_path / "m")])
    assert bad.exit_code == 1 and "WEIGHT" in bad.output


def test_neural_engines_are_used_only_when_named():
    """Installing the neural voices must not change the classic corpus's plan (its voices, hence its test set)."""
    default = installed_voices()
    assert not any(v.engine in NEURAL_ENGINES for v in default)
    named = installed_voices(["hibari", "kokoro"])
    assert all(v.engine in ("hibari", "kokoro") for v in named)


@pytest.mark.skipif(not voice_available(Voice("hibari", "heart")), reason="hibari-tts is not installed (tools/setup.sh installs it)")
def test_hibari_train_only_corpus_round_trip(tmp_path):
    from asr.data.prepare import prepare_corpus
    from asr.data.synth import SynthConfig, synth_corpus

    cfg = SynthConfig(out_dir=tmp_path / "c", hours=0.004, seed=3, voices=(Voice("hibari", "heart"),),
                      speakers_per_voice=2, held_out_voices=(0, 0), split=(1.0, 0.0, 0.0), jobs=1, augment=0.0)
    summary = synth_corpus(cfg, progress=False)
    assert summary["num_failed"] == 0 and set(summary["subsets"]) == {"train"}
    pitches = [float(l.split("|")[4]) for l in (tmp_path / "c" / "SPEAKERS.TXT").read_text().splitlines()[1:]]
    assert len(pitches) == 2
    paths = prepare_corpus(tmp_path / "c", tmp_path / "m")
    cuts = load_cuts(tmp_path / "m", "train").to_eager()
    assert list(paths) == ["train"] and len(cuts) >= 2
    audio = cuts[0].load_audio()
    assert cuts[0].sampling_rate == 16000 and audio.shape[1] > 8000 and float(np.abs(audio).max()) > 0.05
