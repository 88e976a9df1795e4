"""Captions that run all day: a stream's memory stays bounded (recent segments only, features decoded as they come,
VAD decisions dropped once their segment is done), the caption server sends what is new rather than the history,
refuses clients beyond its limit, drops a closed connection's work at once and keeps a fast client alive.
Memory and load figures are measured by tools/serve_load.py and tools/stream_memory.py, not here."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import numpy as np
import pytest
import soundfile as sf

import asr
from asr.apps.serve import CaptionServer, _Source, serve
from asr.inference.streaming import EndpointConfig, EndpointRule, Recognizer, StreamingOptions

SHORT_SEGMENTS = EndpointConfig(EndpointRule(False, 2.4, 0.0), EndpointRule(True, 0.5, 0.0), EndpointRule(False, 0.0, 3.0))


@pytest.fixture(scope="module")
def speech(speech_clips) -> np.ndarray:
    """About 40 s of speech: the clips one after another."""
    parts = [sf.read(c.path, dtype="float32")[0] for c in speech_clips]
    x = np.concatenate(parts)
    while x.size < 40 * 16000:
        x = np.concatenate([x, x])
    return x[: 40 * 16000]


def _run(rec, s, x, block) -> list:
    """Feed ``x`` in blocks, decoding what is ready; returns the segments committed (the last one included)."""
    out = []
    for i in range(0, x.size, block):
        s.accept_waveform(x[i:i + block], 16000)
        out += rec.decode_ready(s)
    s.input_finished()
    out += rec.decode_ready(s)  # to the end: the last segment too
    assert s.ended
    return out


def test_a_stream_keeps_its_recent_segments_and_all_committed_text(demo, speech):
    rec = Recognizer(demo, StreamingOptions(history=2, endpoint=SHORT_SEGMENTS, vad=False))
    s = rec.create_stream()
    committed = [seg.text for seg in _run(rec, s, speech, 1600)]
    assert s.result.count == len(committed) > 4
    assert len(s.result.segments) == 2 and [x.text for x in s.result.segments] == committed[-2:]
    assert s.result.committed == " ".join(committed)
    assert [x.text for x in s.result.since(len(committed) - 1)] == committed[-1:] and s.result.since(len(committed)) == []


def test_one_call_with_a_long_recording_commits_what_blocks_of_100_ms_commit(demo, speech):
    """Parity of input block sizes, with the VAD gate on: a stream given 80 s at once (features computed in blocks,
    VAD decisions kept until their segment is decoded, not for the last 60 s of input) commits the same text."""
    x = np.concatenate([speech, speech])
    texts = []
    for block in (1600, x.size):
        rec = Recognizer(demo, StreamingOptions(vad=True))
        s = rec.create_stream()
        _run(rec, s, x, block)
        texts.append(s.result.committed)
    assert len(texts[0].split()) > 20
    assert texts[1] == texts[0]


def test_a_long_feed_is_decoded_as_it_goes_not_held_as_features(demo, speech):
    """`LiveSession.feed` of a long recording decodes second by second: the stream never holds more than about a
    second of undecoded features (an hour in one call used to hold all of them: 6.4 GB peak)."""
    live = demo.stream(vad=False, punctuate=False)
    held = []
    real_decode = live._rec.decode

    def decode(streams):
        held.append(max(st.feats.size(0) for st in streams))
        real_decode(streams)

    live._rec.decode = decode
    text = live.feed(speech)
    assert text and len(held) > 10
    assert max(held) <= live._rec.window + 100 + 10  # one chunk's window + one second of features
    segments = live.finish()
    assert " ".join(seg.text for seg in segments) == live.committed


def test_the_server_sends_new_commits_not_the_history(demo, speech):
    rec = Recognizer(demo, StreamingOptions(endpoint=SHORT_SEGMENTS, vad=False))
    srv = CaptionServer(rec)
    sent = []
    srv._send = lambda send, text: sent.append(json.loads(text)) if send is not None else None
    client = _Source(rec.create_stream(), send=object())
    srv.clients.add(client)
    for i in range(0, speech.size, 6400):
        client.put(speech[i:i + 6400], 16000)
        while client.inbox:
            srv.step()
    client.put(None)
    for _ in range(10):
        srv.step()
    commits = [m["commit"] for m in sent if m["commit"]]
    assert len(commits) > 4 and " ".join(commits) == client.stream.result.committed
    assert max(len(c) for c in commits) < len(client.stream.result.committed) / 2
    assert sent[-1]["tentative"] == "" and sent[-1]["final"] is True and not any(m.get("final") for m in sent[:-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(rec, **serve_kw):
    port = _free_port()
    ready, stop = threading.Event(), threading.Event()
    srv = CaptionServer(rec, max_streams=serve_kw.pop("max_streams", 10))
    t = threading.Thread(target=lambda: asyncio.run(serve(rec, None, "127.0.0.1", port, ready, stop, server=srv,
                                                          **serve_kw)), daemon=True)
    t.start()
    assert ready.wait(30)
    return port, stop, t, srv


def test_a_client_beyond_the_limit_is_refused_at_once(random_model_dir):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    port, stop, t, srv = _start(Recognizer(asr.load_model(random_model_dir)), max_streams=1)
    try:
        with connect(f"ws://127.0.0.1:{port}/ws/audio") as first:
            first.send(json.dumps({"sample_rate": 16000}))
            first.send(np.zeros(3200, "<i2").tobytes())
            deadline = time.time() + 5
            while not srv.clients and time.time() < deadline:
                time.sleep(0.05)
            with connect(f"ws://127.0.0.1:{port}/ws/audio") as second:
                t0 = time.perf_counter()
                with pytest.raises(ConnectionClosed) as e:
                    second.recv(timeout=10)
                assert e.value.rcvd.code == 1013 and "max-streams" in e.value.rcvd.reason
                assert time.perf_counter() - t0 < 2
        deadline = time.time() + 5
        while srv.clients and time.time() < deadline:
            time.sleep(0.05)
        with connect(f"ws://127.0.0.1:{port}/ws/audio") as third:  # a place is free again
            third.send(json.dumps({"sample_rate": 16000}))
            third.send(np.zeros(3200, "<i2").tobytes())
            time.sleep(0.5)
            assert len(srv.clients) == 1
    finally:
        stop.set()
        t.join(10)
    assert srv.stats["refused"] == 1


def test_a_closed_connection_leaves_the_decoder_at_once_and_a_fast_client_is_not_pinged_out(random_model_dir,
                                                                                             speech_clips):
    """Decoding is slowed to 0.3 s a round. A client that sent 20 s at once and vanished leaves the worker's set
    within a second (its handler used to wait for its backlog). A client far ahead of real time, whose pongs cannot
    reach the server (they wait behind the audio the server is not reading yet; here they are dropped), stays
    connected while keepalive pings run every 0.3 s (timeout 0.5 s), and gets its captions."""
    from websockets.frames import Opcode
    from websockets.sync.client import connect

    rec = Recognizer(asr.load_model(random_model_dir))
    real_decode = rec.decode

    def slow_decode(streams):
        time.sleep(0.3)
        real_decode(streams)

    rec.decode = slow_decode
    port, stop, t, srv = _start(rec, ping_interval=0.3, ping_timeout=0.5)
    audio = sf.read(speech_clips[0].path, dtype="float32")[0]
    pcm = (np.tile(audio, 1 + 16000 * 20 // audio.size)[: 16000 * 20] * 32767).astype("<i2").tobytes()
    try:
        gone = connect(f"ws://127.0.0.1:{port}/ws/audio").__enter__()
        gone.send(json.dumps({"sample_rate": 16000}))
        sender = threading.Thread(target=lambda: [gone.send(pcm[k:k + 32000]) for k in range(0, len(pcm), 32000)],
                                  daemon=True)
        sender.start()
        deadline = time.time() + 10
        while srv.clients and not any(c.queued > 8 for c in srv.clients) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        gone.socket.shutdown(socket.SHUT_RDWR)
        gone.socket.close()
        t0 = time.perf_counter()
        while srv.clients and time.perf_counter() - t0 < 5:
            time.sleep(0.05)
        assert not srv.clients, "a closed connection's stream is still being decoded"
        assert time.perf_counter() - t0 < 1.5

        with connect(f"ws://127.0.0.1:{port}/ws/audio") as fast:
            send_frame = fast.protocol.send_frame
            fast.protocol.send_frame = lambda f: None if f.opcode is Opcode.PONG else send_frame(f)
            fast.send(json.dumps({"sample_rate": 16000}))
            t0 = time.perf_counter()
            for k in range(0, 16000 * 2 * 12, 32000):  # 12 s of audio as fast as the server takes it
                fast.send(pcm[k:k + 32000])
            fast.send("end")
            got = []
            while time.perf_counter() - t0 < 60:
                msg = json.loads(fast.recv(timeout=30))
                got.append(msg)
                if msg["commit"] and not msg["tentative"] and srv.stats["batches"] > 5:
                    break
            assert time.perf_counter() - t0 > 2  # long enough for several pings to go unanswered
            assert any(m["commit"] for m in got)
    finally:
        stop.set()
        t.join(10)
