"""`asr import espnet`: ESPnet's own models (tests/fixtures/espnet, written by tools/espnet_fixture.py under ESPnet
202511) become asr model directories whose outputs match ESPnet's: features exactly, CTC log-probabilities and
decoder scores within 1e-4, and the same text from every decoder both toolkits have. ESPnet is not needed here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import asr
from asr.apps.cli import app
from asr.importers.espnet import ImportRefused, import_espnet, parity

FIXTURES = Path(__file__).parent / "fixtures" / "espnet"
runner = CliRunner()


@pytest.fixture(scope="module", params=["joint", "maskctc"])
def imported(request, tmp_path_factory):
    src = FIXTURES / request.param
    out = import_espnet(src / "config.yaml", src / "model.pth", tmp_path_factory.mktemp("imp") / request.param)
    return src, out


def test_an_imported_espnet_model_computes_what_espnet_computes(imported):
    src, out = imported
    report = parity(out, src)
    assert report["diff"]["features"] < 1e-4, report
    assert report["diff"]["ctc_log_probs"] < 1e-4, report
    scores = "decoder_log_probs" if report["kind"] == "joint" else "mlm_logits"
    assert report["diff"][scores] < 1e-4, report
    expected = {"joint": {"ctc_greedy", "attention_beam", "joint_ctc_attention"}, "maskctc": {"ctc_greedy", "mask_ctc"}}
    assert set(report["texts"]) == expected[report["kind"]]
    for method, t in report["texts"].items():
        assert t["same"], (method, t)


def test_the_import_command_then_transcribe_gives_espnets_text(tmp_path):
    src = FIXTURES / "joint"
    r = runner.invoke(app, ["import", "espnet", str(src / "config.yaml"), str(src / "model.pth"), str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "imported" in r.output and "joint_ctc_attention" in r.output
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "Imported from ESPnet" in card and "config.yaml" in card
    r = runner.invoke(app, ["transcribe", "--model", str(tmp_path / "m"), "--decoder", "joint_ctc_attention",
                            "--no-vad", "--no-punctuate", str(src / "speech.wav")])
    assert r.exit_code == 0, r.output
    espnet_text = yaml.safe_load((src / "reference.json").read_text())["texts"]["joint_ctc_attention"]
    assert r.stdout.strip().splitlines()[0] == espnet_text
    # the Python API decodes the same
    model = asr.load_model(tmp_path / "m")
    assert model.transcribe(src / "speech.wav", "joint_ctc_attention", vad=False, punctuate=False).raw_text == espnet_text


def test_a_config_that_lists_the_mask_token_imports_the_same(tmp_path):
    src = FIXTURES / "maskctc"
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    cfg["token_list"] = cfg["token_list"] + ["<mask>"]  # as a config saved after MaskCTCModel was built lists it
    cfg["bpemodel"] = str(src / "bpe.model")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    a = import_espnet(src / "config.yaml", src / "model.pth", tmp_path / "a")
    b = import_espnet(tmp_path / "config.yaml", src / "model.pth", tmp_path / "b")
    wa, wb = asr.load_model(a).model.state_dict(), asr.load_model(b).model.state_dict()
    assert all((wa[k] == wb[k]).all() for k in wa)


@pytest.mark.parametrize("section,key,value,named", [
    ("encoder_conf", "rel_pos_type", "newest", "rel_pos_type"),
    ("encoder_conf", "pos_enc_layer_type", "abs_pos", "pos_enc_layer_type"),
    ("encoder_conf", "macaron_style", False, "macaron_style"),
    ("encoder_conf", "input_layer", "vgg2l", "input_layer"),
    ("encoder_conf", "no_such_option", 1, "no_such_option"),
    ("frontend_conf", "window", "hamming", "window"),
    ("decoder_conf", "normalize_before", False, "normalize_before"),
    (None, "encoder", "transformer", "encoder"),
    (None, "token_type", "char", "token_type"),
    (None, "frontend", "s3prl", "frontend"),
])
def test_a_model_this_toolkit_cannot_compute_is_refused_with_one_line(tmp_path, section, key, value, named):
    src = FIXTURES / "joint"
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    cfg["bpemodel"] = str(src / "bpe.model")
    if section:
        cfg[section] = {**(cfg.get(section) or {}), key: value}
    else:
        cfg[key] = value
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ImportRefused, match=named) as e:
        import_espnet(tmp_path / "config.yaml", src / "model.pth", tmp_path / "out")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
    r = runner.invoke(app, ["import", "espnet", str(tmp_path / "config.yaml"), str(src / "model.pth"),
                            str(tmp_path / "out")])
    assert r.exit_code == 1 and named in r.output and "Traceback" not in r.output


def test_weights_of_another_shape_are_refused_naming_the_weight(tmp_path):
    import torch

    src = FIXTURES / "joint"
    state = torch.load(src / "model.pth", weights_only=True)
    state["encoder.encoders.0.feed_forward.w_1.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ImportRefused, match="encoder.encoders.0.feed_forward.w_1.weight"):
        import_espnet(src / "config.yaml", tmp_path / "bad.pth", tmp_path / "out")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ImportRefused, match="junk.pth"):
        import_espnet(src / "config.yaml", tmp_path / "junk.pth", tmp_path / "out")


def test_an_imported_full_context_model_is_refused_by_streaming_with_one_line(imported):
    from asr.inference.streaming import Recognizer

    _, out = imported
    with pytest.raises(ValueError, match="causal convolution") as e:
        Recognizer(str(out))
    assert "\n" not in str(e.value)


def test_word_times_follow_the_models_frame_shift(imported):
    """The Mask-CTC fixture's front end hops 128 samples (8 ms), the joint one's 160: times must use each model's."""
    import soundfile as sf

    src, out = imported
    hop = yaml.safe_load((src / "config.yaml").read_text())["frontend_conf"]["hop_length"]
    model = asr.load_model(out)
    assert model.config.model.frontend.frame_seconds == hop / 16000
    duration = sf.info(src / "speech.wav").duration
    result = model.transcribe(src / "speech.wav", "ctc_greedy", vad=False, punctuate=False)
    assert abs(result.segments[-1].end - duration) < 0.05, (result.segments[-1].end, duration)
    assert result.words and all(0 <= w.start <= w.end <= duration + 0.05 for w in result.words)


def test_an_imported_model_exports_to_onnx_and_decodes_alike(tmp_path):
    """Legacy positions and the STFT front end survive ONNX export: the same text at the traced length and at 3x."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
    pytest.importorskip("onnx", reason="the onnx package is not installed (pip install 'asr[onnx]')")
    import numpy as np
    import soundfile as sf

    from asr.export.onnx import export_onnx
    from asr.export.onnx_runtime import load_onnx_model
    from asr.inference.api import transcribe

    src = FIXTURES / "maskctc"
    out = import_espnet(src / "config.yaml", src / "model.pth", tmp_path / "m")
    report = export_onnx(out, tmp_path / "onnx")
    assert max(report["max_abs_diff"].values()) < 1e-4, report
    torch_model, onnx_model = asr.load_model(out), load_onnx_model(tmp_path / "onnx")
    x, _ = sf.read(src / "speech.wav", dtype="float32")
    for audio in (x, np.concatenate([x, x, x])):
        want = torch_model.transcribe(audio, "ctc_greedy", vad=False, punctuate=False).raw_text
        got = transcribe(onnx_model, audio, "ctc_greedy", vad=False, punctuate=False).raw_text
        assert got == want and want
