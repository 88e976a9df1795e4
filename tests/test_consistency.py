"""One decoding core, seen from every door: streaming commits what offline decoding gives the same audio
with the same options (LM and hotwords included), the Python API and the CLI agree for every decoder, an LM
directory's tuned weights apply everywhere, streams live on the model's device, and a live server's
bookkeeping does not grow with the session."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import asr
from asr.apps.cli import app
from asr.apps.serve import CaptionServer, _Source
from asr.inference.streaming import EndpointConfig, EndpointRule, Recognizer, StreamingOptions
from asr.lm import train_lm, update_card
from asr.search.methods import available_methods
from asr.search.options import decode_options

runner = CliRunner()
NO_ENDPOINT = EndpointConfig(EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0))
SENTENCES = ["THE BIRCH CANOE SLID ON THE SMOOTH PLANKS", "GLUE THE SHEET TO THE DARK BLUE BACKGROUND",
             "IT IS EASY TO TELL THE DEPTH OF A WELL", "THESE DAYS A CHICKEN LEG IS A RARE DISH",
             "RICE IS OFTEN SERVED IN ROUND BOWLS", "THE JUICE OF LEMONS MAKES FINE PUNCH",
             "THE BOX WAS THROWN BESIDE THE PARKED TRUCK", "FOUR HOURS OF STEADY WORK FACED US"]
HOTWORDS = [("ZEBRA", 6.0)]


@pytest.fixture(scope="module")
def clip(speech_clips) -> np.ndarray:
    audio, rate = sf.read(speech_clips[0].path, dtype="float32")
    assert rate == 16000
    return audio[: 16000 * 4]


@pytest.fixture(scope="module")
def lm_dir(demo, tmp_path_factory):
    """A word bigram whose card holds tuned weights far from the defaults (as `asr lm tune` writes them)."""
    d = tmp_path_factory.mktemp("lm")
    text = d / "text.txt"
    text.write_text("\n".join(SENTENCES * 3) + "\n")
    train_lm([str(text)], d / "lm", order=2, tokenizer=demo.tokenizer)
    update_card(d / "lm", lm_weight=4.0, word_score=3.0)
    return d / "lm"


def _stream_whole(loaded, audio: np.ndarray, final: str, opts) -> str:
    """Committed text of one stream whose single chunk holds the whole recording (so its encoder output is
    the full-context one) and whose second pass is ``final``."""
    rec = Recognizer(loaded, StreamingOptions(chunk=256, left_chunks=-1, endpoint=NO_ENDPOINT, final=final, decode=opts))
    s = rec.create_stream()
    s.accept_waveform(audio, 16000)
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    rec.finalize(s)
    return s.result.committed


@pytest.mark.parametrize("method", ["attention_rescoring", "ctc_prefix_beam", "joint_ctc_attention", "ctc_lm"])
def test_streaming_commits_the_offline_decode_of_the_segment_with_lm_and_hotwords(demo, clip, lm_dir, method):
    opts = decode_options(lm_dir, HOTWORDS)
    plain = {"vad": False, "punctuate": False}  # the decode alone, over the same audio
    offline = demo.transcribe(clip, method, lm_dir=lm_dir, hotwords=HOTWORDS, **plain).text
    assert _stream_whole(demo, clip, method, opts) == offline
    if method != "ctc_lm":  # the options matter: without them this method decodes otherwise
        assert demo.transcribe(clip, method, **plain).text != offline


def test_a_second_pass_the_model_cannot_run_is_refused_not_replaced():
    loaded = asr.load_model("demo")
    loaded.model.decoder = None
    with pytest.raises(ValueError, match="cannot run the second pass 'attention_rescoring'"):
        Recognizer(loaded, StreamingOptions(final="attention_rescoring"))
    assert Recognizer(loaded, StreamingOptions()).options.final == "mask_ctc"  # "auto" picks what it has


def test_lm_card_weights_apply_in_the_api_as_in_the_cli(demo, clip, lm_dir, tmp_path):
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip, 16000)
    api = demo.transcribe(wav, "ctc_lm", lm_dir=lm_dir).text
    r = runner.invoke(app, ["transcribe", str(wav), "--decoder", "ctc_lm", "--lm", str(lm_dir), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == api
    defaults = demo.transcribe(wav, "ctc_lm", lm_dir=lm_dir, lm_weight=1.5, word_score=-1.0).text
    assert api != defaults  # the card's weights were used, not the defaults


def test_api_equals_cli_for_every_decoder_with_an_lm_and_hotwords(demo, clip, lm_dir, tmp_path):
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip, 16000)
    (tmp_path / "hot.txt").write_text("ZEBRA 6\n")
    for method in available_methods(demo.model, with_lm=True):
        api = demo.transcribe(wav, method, lm_dir=lm_dir, hotwords=tmp_path / "hot.txt").text
        r = runner.invoke(app, ["transcribe", str(wav), "--decoder", method, "--lm", str(lm_dir), "--hotwords",
                                str(tmp_path / "hot.txt"), "--no-progress"])
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == api, method


def test_streams_live_on_the_model_device():
    loaded = asr.load_model("demo")
    rec = Recognizer(loaded)
    assert rec.device == torch.device("cpu") and rec.create_stream().state.att_cache.device.type == "cpu"
    loaded.model.to("meta")  # a device this machine has besides the CPU: nothing computes there, tensors live there
    rec = Recognizer(loaded)
    assert rec.device == torch.device("meta")
    s = rec.create_stream()
    assert s.state.att_cache.device.type == "meta" and s.state.conv_cache.device.type == "meta"


def test_the_caption_servers_per_stream_bookkeeping_does_not_grow(demo, clip):
    rec = Recognizer(demo, StreamingOptions())
    srv = CaptionServer(rec)
    client = _Source(rec.create_stream())
    srv.clients.add(client)
    pause = np.zeros(16000, np.float32)
    sizes = []
    for _ in range(3):
        for block in np.split(np.concatenate([clip, pause]), 50):
            client.put(block, 16000)
        while client.inbox or rec.is_ready(client.stream):
            srv.step()
        s = client.stream
        sizes.append(len(s.newly_shown) + len(s.shown_frames) + len(client.inbox) + len(s.result.segments))
    assert client.stream.result.segments, "the session committed nothing"
    assert sizes[-1] <= max(sizes[0], 50), sizes
