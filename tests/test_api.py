"""The one-call Python API: the README's example runs as written (with a test clip for talk.wav)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import asr

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(speech_clips, capsys):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- api-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert block, "the README lost its API example"
    code = block.group(1).replace('"talk.wav"', repr(str(speech_clips[0].path)))
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)  # noqa: S102 - our own README
    out = capsys.readouterr().out
    assert env["result"].text and out.strip()
    assert env["live"].committed  # the streaming session committed text
    assert [s.text for s in env["segments"]] and " ".join(s.text for s in env["segments"]) == env["live"].committed


def test_transcribe_arrays_paths_and_long_audio_agree(speech_clips):
    import soundfile as sf

    model = asr.load_model("demo")
    path = speech_clips[0].path
    by_path = model.transcribe(path)
    samples, rate = sf.read(path, dtype="float32")
    assert model.transcribe(samples, sample_rate=rate).text == by_path.text
    assert [w.word for w in by_path.words] == by_path.raw_text.split()  # the recognizer's own words
    assert [w.shown for w in by_path.words] == by_path.text.split()  # as displayed: cased and punctuated
    assert all(0 <= w.start <= w.end <= by_path.duration + 0.05 for w in by_path.words)
    # a long recording: three clips with silence between, cut into segments of at most 8 s
    gap = np.zeros(rate, dtype=np.float32)
    clips = [sf.read(c.path, dtype="float32")[0] for c in speech_clips[:3]]
    long = np.concatenate([x for c in clips for x in (c, gap)])
    r = model.transcribe(long, sample_rate=rate, max_segment=8.0)
    assert len(r.segments) >= 2 and all(s.end - s.start <= 8.0 + 1e-6 for s in r.segments)
    assert [w.start for w in r.words] == sorted(w.start for w in r.words)
    d = r.as_dict()
    assert d["text"] == r.text and len(d["words"]) == len(r.words)


def test_api_errors_are_one_line():
    model = asr.load_model("demo")
    with pytest.raises(ValueError, match="not available"):
        model.transcribe(np.zeros(16000, dtype=np.float32), decoder="ctc_lm")
    with pytest.raises(ValueError, match="1-D"):
        model.transcribe(np.zeros((2, 2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="boost"):
        model.transcribe(np.zeros(16000, dtype=np.float32), hotwords=[("X", float("nan"))])


def test_feeding_a_finished_live_session_is_refused(demo):
    import numpy as np

    from asr.errors import UserError

    live = demo.stream(vad=False)
    live.feed(np.zeros(16000, np.float32))
    segs = live.finish()
    assert live.finish() == segs  # finishing twice changes nothing
    with pytest.raises(UserError, match="finished"):
        live.feed(np.zeros(1600, np.float32))
