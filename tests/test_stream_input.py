"""Audio given to a stream is checked and converted as batch input is (one function, asr.audio.as_samples), and a
stream whose input ended commits its last words however little audio was left."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from asr.apps.serve import CaptionServer, _Source
from asr.audio import AudioError
from asr.inference.streaming import EndpointConfig, EndpointRule, Recognizer, StreamingOptions

NO_ENDPOINT = EndpointConfig(EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0))


@pytest.fixture(scope="module")
def clip(speech_clips) -> np.ndarray:
    return sf.read(speech_clips[0].path, dtype="float32")[0][: 16000 * 4]


def _committed(rec, audio, rate=16000, block=1600) -> str:
    s = rec.create_stream()
    step = block if audio.ndim == 1 or audio.shape[0] > audio.shape[-1] else None
    for i in range(0, audio.shape[0] if step else audio.shape[1], block):
        s.accept_waveform(audio[i:i + block] if step else audio[:, i:i + block], rate)
        while rec.is_ready(s):
            rec.decode([s])
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    rec.finalize(s)
    return s.result.committed


def test_integer_pcm_and_two_channels_give_the_same_text_as_float(demo, clip):
    rec = Recognizer(demo, StreamingOptions(endpoint=NO_ENDPOINT))
    pcm = np.round(clip * 32767).astype(np.int16)
    f = pcm.astype(np.float32) / 32768  # the same samples as float
    want = _committed(rec, f)
    assert want
    assert _committed(rec, pcm) == want
    assert _committed(rec, pcm.astype(np.int32) << 16) == want
    assert _committed(rec, np.stack([f, f], 1)) == want  # (N, 2)
    assert _committed(rec, np.stack([f, f], 0)) == want  # (2, N): not transcribed twice


def test_bad_stream_input_is_one_line_error_not_silence(demo, clip):
    s = Recognizer(demo).create_stream()
    bad = clip.copy()
    bad[1000] = np.nan
    with pytest.raises(AudioError, match="1 of .* samples are NaN or infinite"):
        s.accept_waveform(bad, 16000)
    for rate in (0, -1, 1e9, 16000.5, "16000"):
        with pytest.raises(AudioError, match="sample rate must be"):
            s.accept_waveform(clip, rate)
    with pytest.raises(AudioError, match="sample rate must be"):
        demo.transcribe(clip, sample_rate=0)
    s.accept_waveform(np.zeros(0, np.float32), 16000)  # an empty block is fine in a stream


def test_a_client_that_ends_gets_its_last_words_committed(demo, clip):
    rec = Recognizer(demo, StreamingOptions(endpoint=NO_ENDPOINT))
    probe = rec.create_stream()  # trim the clip so that 4 feature frames are left after its last full chunk
    probe.accept_waveform(clip, 16000)
    while rec.is_ready(probe):
        rec.decode([probe])
    audio = clip[: len(clip) - (probe.feature_frames() - 4) * 160]
    srv = CaptionServer(rec)
    client = _Source(rec.create_stream())
    srv.clients.add(client)
    client.put(audio, 16000)
    while client.inbox or rec.is_ready(client.stream):
        srv.step()
    assert client.stream.feature_frames() < demo.model.encoder.subsampling.receptive_field  # too little for a chunk
    assert client.stream.result.tentative  # words shown, not yet committed
    client.put(None)  # the client said "end"
    for _ in range(5):
        srv.step()
    s = client.stream
    assert s.result.tentative == "" and s.result.committed, (s.result.committed, s.result.tentative)
