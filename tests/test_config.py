"""Config: presets load, YAML round trip, overrides, unknown keys rejected."""

from __future__ import annotations

import dataclasses

import pytest

from asr.config import Config, load_config, save_config
from asr.models.asr_model import ASRModel, count_parameters


@pytest.mark.parametrize("preset", ["tiny", "small", "base", "large"])
def test_presets_build(preset):
    cfg = load_config(preset)
    if preset in ("tiny", "small"):
        m = ASRModel(dataclasses.replace(cfg.model, vocab_size=259))
        n = count_parameters(m)["total"]
        assert (3e6 < n < 10e6) if preset == "tiny" else (15e6 < n < 30e6)
    else:  # the big ones: check the shape without allocating 100M+ parameters twice
        assert cfg.model.encoder.d_model == (256 if preset == "base" else 512)


def test_round_trip_and_overrides(tmp_path):
    cfg = load_config("tiny", ["train.lr=0.0005", "model.encoder.num_layers=3", "train.amp=none"])
    assert cfg.train.lr == 0.0005 and cfg.model.encoder.num_layers == 3 and cfg.train.amp == "none"
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert isinstance(load_config(tmp_path / "c.yaml"), Config)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown config key.*lrr"):
        load_config("tiny", ["train.lrr=1"])
    with pytest.raises(ValueError, match="train.amp: expected str, got bool False.*quote"):
        load_config("tiny", ["train.amp=off"])
    with pytest.raises(ValueError, match="model.encoder.num_layers: expected int"):
        load_config("tiny", ["model.encoder.num_layers=many"])
    with pytest.raises(FileNotFoundError, match="presets"):
        load_config("nonexistent-preset")
    with pytest.raises(ValueError, match="section.key=value"):
        load_config("tiny", ["train.lr"])


def test_bundled_demo_is_the_small_preset():
    """The README and the card say the demo model is `small`: its model section is the preset's (vocabulary aside)."""
    from asr.inference.model_dir import resolve_model_path

    demo = load_config(resolve_model_path("demo") / "config.yaml")
    small = load_config("small")
    assert dataclasses.replace(demo.model, vocab_size=small.model.vocab_size) == small.model
