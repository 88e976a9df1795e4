"""The bundled streaming CTC model on Whisper tiny.en's encoder (`tools/whisper_ctc_branch.py`): Whisper's own weights
below the tap, its trained layers and CTC head in the repository; it transcribes real speech, streams as its
chunk-masked forward computes, and shows the partials of live captions on the default model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.evaluation.metrics import cer, wer
from asr.features import StreamingLogMel
from asr.inference.model_dir import BUNDLED, load_model
from asr.inference.streaming import EndpointConfig, EndpointRule, Recognizer, StreamingOptions, live_recognizer
from asr.text import normalize_text
from tests.whisper_fixtures import stream_through

NAME = "whisper-tiny-en-ctc"
SAMPLES = Path(__file__).parents[1] / "data" / "samples"
NO_ENDPOINT = EndpointConfig(EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0))


@pytest.fixture(scope="module")
def ctc_model():
    return load_model(NAME)


def _samples() -> list[tuple[np.ndarray, str]]:
    with open(SAMPLES / "samples.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(sf.read(SAMPLES / r["path"], dtype="float32")[0], r["reference"]) for r in rows]


def test_the_whisper_ctc_model_takes_whisper_below_its_tap_and_holds_the_rest(ctc_model):
    d = BUNDLED / NAME
    assert (d / "base.json").is_file() and (d / "model.safetensors").stat().st_size < 25_000_000
    whisper = load_model("whisper-tiny-en").model.state_dict()
    own = ctc_model.model.state_dict()
    for k in ("encoder.stem.conv1.weight", "encoder.layers.0.attn.q.weight", "encoder.layers.0.ff.3.weight"):
        assert torch.equal(own[k], whisper[k]), k  # Whisper's, from the pinned package
    for i in (1, 3):
        assert not torch.equal(own[f"encoder.layers.{i}.attn.q.weight"], whisper[f"encoder.layers.{i}.attn.q.weight"])
    m = ctc_model.model
    assert m.decoder is None and m.ctc is not None and m.mlm is not None and m.encoder.streaming


@pytest.mark.parametrize("decoder", ["ctc_greedy", "mask_ctc"])
def test_the_whisper_ctc_model_transcribes_the_bundled_real_recordings(ctc_model, decoder):
    """Both NAR decoders on real speech: CTC greedy, and Mask-CTC (its MLM decoder re-predicts the characters the
    CTC is unsure of)."""
    import asr

    model = asr.load_model(NAME)
    refs, hyps = [], []
    for x, ref in _samples():
        hyps.append(normalize_text(model.transcribe(x, decoder=decoder, punctuate=False).text))
        refs.append(normalize_text(ref))
    # measured 52.7% / 17.5% CER (greedy) and 60.0% / 18.5% (Mask-CTC); its card: 57.9% / 18.7% on 37 real clips;
    # a broken model or MLM decoder writes ~100%
    assert wer(refs, hyps).rate < 0.75 and cer(refs, hyps).rate < 0.3, list(zip(refs, hyps))


def test_a_whisper_ctc_stream_equals_its_chunk_masked_forward(ctc_model):
    x = _samples()[0][0][: 16000 * 6]
    rec = Recognizer(ctc_model, StreamingOptions(chunk_ms=640, left_chunks=4, endpoint=NO_ENDPOINT, vad=False))
    s = stream_through(rec, x, np.random.default_rng(0))
    streamed = torch.cat(s.lp_chunks)
    feats = StreamingLogMel(ctc_model.config.model.frontend).accept(x)[None]  # the stream's own features
    with torch.inference_mode():
        enc, _ = ctc_model.model.encode(feats, torch.tensor([feats.size(1)]), chunk=32, left_chunks=4)
        full = ctc_model.model.ctc_log_probs(enc)[0]
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() < 1e-3  # float16 weights
    assert s.state.cache_frames <= 4 * 32


def test_live_captions_on_the_default_show_the_whisper_ctc_partials():
    rec = live_recognizer(load_model("whisper-tiny-en"))
    assert rec.loaded.path.name == NAME and rec.final.path.name == "whisper-tiny-en"


def test_the_whisper_ctc_model_exports_to_onnx_and_decodes_there_as_in_torch(ctc_model, tmp_path):
    """Encoder and CTC head in onnxruntime (full context; the stream stays in PyTorch): each graph within 1e-3 of
    PyTorch, and the onnx backend writes the same words as PyTorch on the bundled recordings."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
    import json

    from typer.testing import CliRunner

    from asr.apps.cli import app

    runner, out = CliRunner(), tmp_path / "onnx"
    r = runner.invoke(app, ["export-onnx", NAME, str(out)])
    assert r.exit_code == 0, r.output
    info = json.loads((out / "onnx.json").read_text())
    assert set(info["graphs"]) == {"encoder.onnx", "ctc.onnx"}
    assert max(info["max_abs_diff"].values()) < 1e-3, info["max_abs_diff"]
    clips = [str(SAMPLES / p) for p in ("LJ001-0001.flac", "LJ001-0004.flac")]
    texts = []
    for extra in ([], ["--backend", "onnx"]):
        model = str(out) if extra else NAME
        r = runner.invoke(app, ["transcribe", *clips, "--model", model, *extra, "--decoder", "ctc_greedy",
                                "--no-progress"])
        assert r.exit_code == 0, r.output
        texts.append([x for x in r.output.splitlines() if "\t" in x])
    assert texts[0] == texts[1] and len(texts[0]) == 2
