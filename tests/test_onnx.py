"""ONNX export: every graph matches PyTorch (1e-4), and the onnx backend decodes and streams like torch."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from asr.apps.cli import app

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
runner = CliRunner()


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "demo"
    r = runner.invoke(app, ["export-onnx", "demo", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_every_graph_matches_pytorch(onnx_dir):
    info = json.loads((onnx_dir / "onnx.json").read_text())
    assert set(info["graphs"]) == {"encoder.onnx", "ctc.onnx", "encoder_chunk.onnx", "decoder_init.onnx",
                                   "decoder_step.onnx"}
    assert set(info["max_abs_diff"]) == {"encoder", "ctc", "encoder_chunk", "decoder_step"}
    assert max(info["max_abs_diff"].values()) < 1e-4, info["max_abs_diff"]


def test_onnx_backend_transcribes_like_torch(onnx_dir, speech_clips):
    clips = [str(c.path) for c in speech_clips[:2]]
    for decoder in ("ctc_prefix_beam", "joint_ctc_attention"):
        a = runner.invoke(app, ["transcribe", *clips, "--decoder", decoder, "--no-progress"])
        b = runner.invoke(app, ["transcribe", *clips, "--model", str(onnx_dir), "--backend", "onnx", "--decoder", decoder,
                                "--no-progress"])
        assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
        lines = [[x for x in r.output.splitlines() if "\t" in x] for r in (a, b)]  # id<TAB>text (not the timing)
        assert lines[0] == lines[1] and len(lines[0]) == 2
    r = runner.invoke(app, ["transcribe", clips[0], "--model", str(onnx_dir), "--backend", "onnx", "--decoder",
                            "attention_rescoring", "--no-progress"])
    assert r.exit_code == 1 and "not available" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["transcribe", clips[0], "--backend", "onnx", "--no-progress"])  # demo is not an export
    assert r.exit_code == 1 and "not an ONNX export" in r.output and "Traceback" not in r.output


def test_onnx_streaming_partials_equal_torch(onnx_dir, speech_clips):
    from asr.export.onnx_runtime import load_onnx_model
    from asr.inference.model_dir import load_model
    from asr.inference.streaming import Recognizer, StreamingOptions

    audio = sf.read(speech_clips[0].path, dtype="float32")[0][: 16000 * 6]
    texts = []
    for loaded in (load_model("demo"), load_onnx_model(onnx_dir)):
        rec = Recognizer(loaded, StreamingOptions(final="none"))
        s = rec.create_stream()
        s.accept_waveform(audio, 16000)
        s.input_finished()
        with torch.inference_mode():
            while rec.is_ready(s):
                rec.decode([s])
        seg = rec.finalize(s)
        texts.append(seg.text if seg else "")
    assert texts[0] == texts[1] and texts[0]
    r = runner.invoke(app, ["live", "--model", str(onnx_dir), "--backend", "onnx", "--input", str(speech_clips[0].path),
                            "--fast"])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
