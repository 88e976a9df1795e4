"""Second passes on a commit thread of their own (StreamingOptions.background_commits): the same commits as inline, in
order, while the partials go on; beyond the backlog a segment commits light."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

from asr import config
from asr.inference import streaming
from asr.inference.model_dir import load_model
from asr.inference.streaming import Recognizer, StreamingOptions


@pytest.fixture(autouse=True)
def unbounded_backlog(monkeypatch):
    """These loops run faster than real time: commits would queue past COMMIT_BACKLOG and go light depending on how
    loaded the machine is. Unbounded here; the backlog test sets its own."""
    monkeypatch.setattr(config, "COMMIT_BACKLOG", 10_000)


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


@pytest.fixture(scope="module")
def two_utterances(speech_clips):
    """Two utterances, each followed by 1.5 s of silence (the pause ends a segment)."""
    a, b = (sf.read(speech_clips[i].path, dtype="float32")[0] for i in (0, 1))
    gap = np.zeros(24000, np.float32)
    return np.concatenate([a, gap, b, gap]), a.size / 16000


@pytest.fixture
def gate(monkeypatch):
    """The streaming model's second passes wait until ``gate.set()`` (a slow second pass, made deterministic)."""
    opened = threading.Event()
    own = streaming.own_passes

    def gated(model, tokenizer, method, *args):
        assert method == "none" or opened.wait(60)  # (a light commit runs no second pass: nothing to wait for)
        return own(model, tokenizer, method, *args)

    monkeypatch.setattr(streaming, "own_passes", gated)
    return opened


def _live(rec, audio, rounds=None):
    """The live loop over ``audio`` in 100-ms blocks (``rounds`` sees each Round); then waits for every commit."""
    s = rec.create_stream()
    for i in range(0, audio.size, 1600):
        s.accept_waveform(audio[i:i + 1600], 16000)
        while rec.pending(s):
            r = rec.step([s])
            if rounds is not None:
                rounds(s, r)
    s.input_finished()
    segments = [seg for seg in rec.decode_ready(s)]
    assert s.ended and not s.inflight
    return s, segments


def _words(s):
    return [(w.word, round(w.start, 2), round(w.end, 2)) for seg in s.result.segments for w in seg.words]


def test_background_commits_commit_what_inline_commits(demo, two_utterances):
    audio, _ = two_utterances
    inline, _ = _live(Recognizer(demo, StreamingOptions()), audio)
    background, _ = _live(Recognizer(demo, StreamingOptions(background_commits=True)), audio)
    assert inline.result.count >= 2
    assert background.result.committed == inline.result.committed
    assert _words(background) == _words(inline)


def test_partials_go_on_while_a_commit_runs_and_commits_land_in_order(demo, two_utterances, gate):
    audio, first_end = two_utterances
    rec = Recognizer(demo, StreamingOptions(background_commits=True))
    seen = {"pending_rounds": 0, "tails": []}

    def rounds(s, r):
        if s.inflight and r.decoded and not gate.is_set():  # a chunk decoded while the first second pass waits
            seen["pending_rounds"] += 1
            seen["first_partial"] = s.inflight[0].partial
            seen["tails"].append(s.result.tentative)
            assert s.result.committed == ""  # nothing lands before its second pass
        if seen["pending_rounds"] >= 12:
            gate.set()

    s, _ = _live(rec, audio, rounds)
    assert seen["pending_rounds"] >= 12
    first = seen["first_partial"]
    assert first and all(t.startswith(first) for t in seen["tails"])  # the ended segment's partial stays shown
    assert len(seen["tails"][-1]) > len(first)  # ... and the next segment's words follow it as they come
    segs = list(s.result.segments)
    assert len(segs) >= 2 and segs[0].end <= first_end + 0.5 and segs[-1].start >= first_end
    assert s.result.tentative == ""


def test_beyond_the_commit_backlog_a_segment_commits_light(demo, two_utterances, gate, monkeypatch):
    monkeypatch.setattr(config, "COMMIT_BACKLOG", 1)
    audio, first_end = two_utterances
    rec = Recognizer(demo, StreamingOptions(background_commits=True))
    a, b = rec.create_stream(), rec.create_stream()
    for s in (a, b):
        s.accept_waveform(audio[: int(16000 * first_end)], 16000)
        while rec.is_ready(s):
            rec.decode([s])
    assert rec.close_segments([a]) == 0 and rec.committer.backlog == 1  # a's second pass waits on the gate
    shown = b.result.tentative
    assert rec.close_segments([b]) == 1  # the backlog is full: b commits its partial, at once
    assert [seg.text for _, seg, _, _ in rec.land([a, b])] == [shown] and b.result.committed == shown
    assert a.result.committed == "" and a.inflight
    gate.set()
    assert rec.land([a], wait=True)[0][1].text and not a.inflight and rec.committer.backlog == 0


def test_a_caption_server_with_background_commits_delivers_every_commit_and_ends(demo, two_utterances):
    from asr.apps.serve import CaptionServer, _Source

    audio, _ = two_utterances
    texts = []
    for background in (False, True):
        rec = Recognizer(demo, StreamingOptions(background_commits=background))
        srv = CaptionServer(rec, workers=1)
        client = _Source(rec.create_stream())
        srv._admit(client)
        for i in range(0, audio.size, 1600):
            client.put(audio[i:i + 1600])
            srv.step()
        client.put(None)
        for _ in range(2000):
            if client.stream.ended:
                break
            if not srv.step():
                threading.Event().wait(0.01)
        assert client.stream.ended and srv.stats["light_commits"] == 0
        texts.append(client.stream.result.committed)
    assert texts[0] and texts[1] == texts[0]


def test_commits_go_to_the_commit_thread_by_default_only_when_a_final_model_decodes_segments_from_audio(demo):
    assert Recognizer(demo).options.background_commits is False  # its own second pass: cheap, on the decoding thread
    assert Recognizer(demo, final_model=demo).options.background_commits is True
    assert Recognizer(demo, StreamingOptions(background_commits=True)).committer.background
