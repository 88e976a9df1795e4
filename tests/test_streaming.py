"""Streaming Recognizer/Stream: parity with the chunk-masked full forward, batching, endpoints, bounded state."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from asr import config
from asr.features import fbank
from asr.inference.model_dir import load_model
from asr.inference.streaming import EndpointConfig, EndpointRule, Recognizer, StreamingOptions

NO_ENDPOINT = EndpointConfig(EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0))


@pytest.fixture(scope="module")
def clip(speech_clips):
    """``clip(i)``: the samples of speech clip i (16 kHz float32)."""
    return lambda i=0: sf.read(speech_clips[i].path, dtype="float32")[0]


def _feed(rec, stream, audio, rng, rate=16000):
    i = 0
    while i < len(audio):
        n = int(rng.integers(1, 4000))
        stream.accept_waveform(audio[i:i + n], rate)
        i += n
        while rec.is_ready(stream):
            rec.decode([stream])


@pytest.mark.parametrize("chunk,left", [(16, 4), (8, -1)])
def test_stream_equals_chunk_masked_forward(random_model_dir, clip, chunk, left):
    loaded = load_model(random_model_dir)
    rec = Recognizer(loaded, StreamingOptions(chunk=chunk, left_chunks=left, endpoint=NO_ENDPOINT))
    audio = clip()[: 16000 * 6]
    s = rec.create_stream()
    _feed(rec, s, audio, np.random.default_rng(0))
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    streamed = torch.cat(s.lp_chunks)
    f = fbank(audio).unsqueeze(0)
    with torch.inference_mode():
        enc, _ = loaded.model.encode(f, torch.tensor([f.size(1)]), chunk=chunk, left_chunks=left)
        full = loaded.model.ctc_log_probs(enc)[0]
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() < 1e-4
    if left >= 0:
        assert s.state.cache_frames <= left * chunk  # memory bounded


@pytest.mark.parametrize("late,left", [(0, 2), (3, 2), (3, -1)])
def test_batched_streams_equal_single(random_model_dir, clip, late, left):
    loaded = load_model(random_model_dir)
    rec = Recognizer(loaded, StreamingOptions(chunk=8, left_chunks=left, endpoint=NO_ENDPOINT))
    a, b = clip(0)[: 16000 * 4], clip(1)[: 16000 * 3]
    singles = []
    for x in (a, b):
        s = rec.create_stream()
        s.accept_waveform(x, 16000)
        while rec.is_ready(s):
            rec.decode([s])
        singles.append(torch.cat(s.lp_chunks))
    streams = [rec.create_stream(), rec.create_stream()]
    for s, x in zip(streams, (a, b)):
        s.accept_waveform(x, 16000)
    for _ in range(late):  # the first stream alone for a while: then one batch of streams at different places
        rec.decode(streams[:1])
    while any(rec.is_ready(s) for s in streams):
        rec.decode(streams)
    for s, ref in zip(streams, singles):
        assert torch.allclose(torch.cat(s.lp_chunks), ref, atol=1e-4)


def test_resampled_input_is_accepted(random_model_dir, clip):
    import soxr

    rec = Recognizer(load_model(random_model_dir), StreamingOptions(endpoint=NO_ENDPOINT))
    audio = soxr.resample(clip()[: 16000 * 3], 16000, 44100)
    s = rec.create_stream()
    _feed(rec, s, audio, np.random.default_rng(1), rate=44100)
    s.input_finished()
    assert abs(s.seconds - 3.0) < 0.02


def test_endpoint_rules():
    ep = EndpointConfig()
    assert not ep.fires(False, 1.0, 1.0)
    assert ep.fires(False, 2.5, 2.5)  # rule 1: long silence, nothing said
    assert not ep.fires(True, 0.3, 3.0)
    assert ep.fires(True, 0.6, 3.0)  # rule 2: pause after speech (0.5 s)
    assert ep.fires(True, 0.0, 20.0)  # rule 3: maximum length
    assert not NO_ENDPOINT.fires(True, 100.0, 100.0)


def test_speech_silence_speech_gives_two_segments_with_demo_model(clip):
    """The bundled model: two utterances separated by 1.5 s of silence become two committed segments,
    and committed text is never revised."""
    loaded = load_model("demo")
    rec = Recognizer(loaded, StreamingOptions())
    a, b = clip(0), clip(1)
    audio = np.concatenate([a, np.zeros(24000, np.float32), b, np.zeros(16000, np.float32)])
    s = rec.create_stream()
    segments = []
    committed = []
    for i in range(0, len(audio) + 1600, 1600):
        if i < len(audio):
            s.accept_waveform(audio[i:i + 1600], 16000)
        else:
            s.input_finished()
        while rec.is_ready(s) or (s.finished and not s.ended):  # the live loop: Recognizer.step's rounds
            segments += [seg for _, seg in rec.step([s]).ended if seg is not None]
            committed.append(s.result.committed)
    assert s.ended and rec.step([s]).ended == []  # a stream that has ended commits nothing more
    assert len(segments) >= 2
    gap = len(a) / 16000
    assert segments[0].end <= gap + 0.5 and segments[-1].start >= gap
    assert all(y.startswith(x) for x, y in zip(committed, committed[1:]))  # never revised
    starts = [w.start for seg in segments for w in seg.words]
    assert starts == sorted(starts)


def test_mask_ctc_partials_refine_only_the_tentative_text(speech_clips):
    """partial='mask_ctc' changes what is shown while a segment runs, never what is committed."""
    import soundfile as sf

    from asr.inference.model_dir import load_model
    from asr.inference.streaming import Recognizer, StreamingOptions

    loaded = load_model("demo")
    audio = sf.read(speech_clips[0].path, dtype="float32")[0][: 16000 * 6]
    seen, committed = {}, {}
    for partial in ("ctc", "mask_ctc"):
        rec = Recognizer(loaded, StreamingOptions(partial=partial))
        s = rec.create_stream()
        tentative = []
        for i in range(0, len(audio), 1600):
            s.accept_waveform(audio[i:i + 1600], 16000)
            while rec.is_ready(s):
                rec.decode([s])
                tentative.append(s.result.tentative)
        s.input_finished()
        while rec.is_ready(s):
            rec.decode([s])
        rec.finalize(s)
        seen[partial], committed[partial] = tentative, s.result.committed
    assert committed["ctc"] == committed["mask_ctc"] and committed["ctc"]
    assert any(seen["mask_ctc"]) and len(seen["ctc"]) == len(seen["mask_ctc"])
    with pytest.raises(ValueError, match="partial must be"):
        StreamingOptions(partial="greedy")


def test_streams_started_at_different_times_decode_together_as_each_alone(random_model_dir, clip):
    """A server's streams join at different times: decoded in the same rounds (batches grouped by cache length),
    each gives the CTC log-probs it gives alone."""
    loaded = load_model(random_model_dir)
    rec = Recognizer(loaded, StreamingOptions(chunk=8, left_chunks=2, endpoint=NO_ENDPOINT))
    audio = [clip(0)[: 16000 * 4], clip(1)[: 16000 * 3], clip(2)[: 16000 * 3]]
    singles = []
    for x in audio:
        s = rec.create_stream()
        s.accept_waveform(x, 16000)
        while rec.is_ready(s):
            rec.decode([s])
        singles.append(torch.cat(s.lp_chunks))
    streams = [rec.create_stream() for _ in audio]
    block = 1280  # 80 ms
    for r in range(200):
        for i, (s, x) in enumerate(zip(streams, audio)):
            start = r - 5 * i  # stream i joins 5 blocks after stream i - 1
            if 0 <= start and start * block < len(x):
                s.accept_waveform(x[start * block:(start + 1) * block], 16000)
        ready = [s for s in streams if rec.is_ready(s)]
        if ready:
            rec.decode(ready)
    for s, ref in zip(streams, singles):
        assert torch.allclose(torch.cat(s.lp_chunks), ref, atol=1e-4)


def test_second_passes_batched_over_streams_commit_what_each_commits_alone(clip, monkeypatch):
    """Streams reaching an endpoint in the same round have their second passes in one padded batch
    (Recognizer.finalize_many): the same text and word times as one at a time."""
    monkeypatch.setattr(config, "SECOND_PASS_BATCH", 3)  # 1 by default on CPU (docs/serving.md)
    rec = Recognizer(load_model("demo"), StreamingOptions(endpoint=NO_ENDPOINT, final="attention_rescoring"))

    def fed(i, seconds):
        s = rec.create_stream()
        s.accept_waveform(clip(i)[: int(16000 * seconds)], 16000)
        s.input_finished()
        while rec.is_ready(s):
            rec.decode([s])
        return s

    lengths = [(0, 4.0), (1, 2.5), (2, 3.2)]
    alone = [rec.finalize(fed(i, sec)) for i, sec in lengths]
    together = rec.finalize_many([fed(i, sec) for i, sec in lengths])
    assert [a.text for a in alone] == [b.text for b in together]
    assert all(a.text for a in alone)
    for a, b in zip(alone, together):
        assert [(w.word, round(w.start, 2), round(w.end, 2)) for w in a.words] == \
               [(w.word, round(w.start, 2), round(w.end, 2)) for w in b.words]


def test_a_light_commit_is_the_partial_without_a_second_pass(clip):
    """finalize_many(light=True), what a server that is behind does: the segment commits what its partial showed
    (no second pass run), word times included; the stream goes on as after any commit."""
    rec = Recognizer(load_model("demo"), StreamingOptions(endpoint=NO_ENDPOINT, final="attention_rescoring"))
    s = rec.create_stream()
    s.accept_waveform(clip(0), 16000)
    while rec.is_ready(s):
        rec.decode([s])
    shown = s.result.tentative
    seg = rec.finalize_many([s], light=True)[0]
    assert shown and seg.text == shown and seg.words and s.result.committed == shown
    assert s.result.tentative == "" and not s.lp_chunks and s.seg_start == seg.end or s.seg_start >= seg.end
