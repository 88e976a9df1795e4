"""Captions as people expect them: cased, punctuated text (raw words kept for scoring), caption cues that end at
sentence ends, and no words from noise or silence (silero-vad) in batch transcription and live captions."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import asr
from asr.apps.cli import app
from asr.inference.captions import caption_cues
from asr.inference.streaming import Recognizer, StreamingOptions
from asr.inference.vad import speech_probabilities, speech_regions, speech_segments
from asr.models.punctuator import BUNDLED_PUNCTUATOR, PunctuatorConfig, load_punctuator, word_labels
from asr.results import Word
from asr.train.punctuator import train_punctuator

runner = CliRunner()


def _noise(seconds: float = 12.0, seed: int = 0) -> np.ndarray:
    """Pink-ish noise with a 440 Hz tone, as in the report that 40 s of it gave 15 invented words."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / 16000), 1.0)
    x = np.fft.irfft(spec / np.sqrt(f), n)
    x = 0.3 * x / np.abs(x).max() + 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def clips(speech_clips) -> list[np.ndarray]:
    return [sf.read(c.path, dtype="float32")[0] for c in speech_clips[:3]]


def test_word_labels_read_marks_and_case_from_written_text():
    assert word_labels("Hello,") == [("hello", 1, 1)]
    assert word_labels("LORD.") == [("lord", 2, 2)]
    assert word_labels('it?"') == [("it", 3, 0)]
    assert word_labels("well-known;") == [("well", 0, 0), ("known", 1, 0)]
    assert word_labels("--") == []


def test_punctuator_trains_and_learns_questions_and_sentence_case(tmp_path):
    rng = random.Random(0)
    names, places = ["anna", "bob", "carl", "dora", "eve"], ["home", "school", "work", "the park", "the shop"]
    lines = []
    for _ in range(3000):
        n, p = rng.choice(names).capitalize(), rng.choice(places)
        lines.append(rng.choice([f"Where is {n}? {n} is at {p}.", f"Is {n} at {p}? Yes, {n} is at {p}.",
                                 f"{n} went to {p}, and then {n} went home."]))
    text = tmp_path / "text.txt"
    text.write_text("\n".join(lines))
    cfg = PunctuatorConfig(vocab_size=40, dim=64, layers=1, max_len=128)
    card = train_punctuator([str(text)], tmp_path / "p", minutes=0.5, cfg=cfg, batch=16, length=64, lr=3e-3,
                            log=lambda _: None)
    assert card["test"]["."]["f1"] > 0.6 and card["test"][","]["f1"] > 0.6, card["test"]
    assert card["test"]["case_accuracy"] > 0.9
    p = load_punctuator(tmp_path / "p")
    out = p.restore("dora went to school and then dora went home".split())
    assert out[0] == "Dora" and out[-1] == "home.", out


def test_the_bundled_punctuator_is_small_and_ends_a_sentence():
    size = sum(f.stat().st_size for f in BUNDLED_PUNCTUATOR.iterdir())
    assert size <= 20 * 2**20, size
    out = load_punctuator().restore("and god said let there be light and there was light and god saw the light "
                                    "that it was good".split())
    assert out[0] == "And" and any(w[-1] in ",.?" for w in out[:-1]), out


def test_transcribe_writes_cased_punctuated_text_and_json_keeps_the_raw_words(clips, tmp_path):
    wav = tmp_path / "talk.wav"
    sf.write(wav, np.concatenate([clips[0], np.zeros(16000, np.float32), clips[1]]), 16000)
    r = runner.invoke(app, ["transcribe", str(wav), "--format", "json", "--format", "srt", "--format", "txt",
                            "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert r.exit_code == 0, r.output
    js = json.loads((tmp_path / "out" / "talk.json").read_text())
    assert js["text"][0].isupper() and js["text"].rstrip()[-1] in ".?!" and js["text"] != js["text"].upper()
    assert js["raw_text"] == js["raw_text"].upper() and js["raw_text"].split() == [w["word"] for w in js["words"]]
    assert [w["display"] for w in js["words"]] == js["text"].split()
    assert (tmp_path / "out" / "talk.txt").read_text().strip() == js["text"]
    raw = runner.invoke(app, ["transcribe", str(wav), "--no-punctuate", "--no-progress"])
    assert raw.exit_code == 0 and raw.stdout.strip() == js["raw_text"]


def test_a_paragraph_with_pauses_comes_back_as_cased_sentences(demo, clips):
    pause = np.zeros(24000, np.float32)
    result = demo.transcribe(np.concatenate([clips[0], pause, clips[1], pause, clips[2]]))
    assert result.text[0].isupper() and result.text[-1] in ".?!"
    assert result.raw_text.isupper() and result.text.upper().replace(",", "").replace(".", "").replace("?", "") \
        .split() == result.raw_text.split()
    assert asr.load_model("demo").transcribe(clips[0], punctuate=False).text.isupper()


def test_noise_and_silence_give_no_words_in_transcribe_and_live(demo):
    for audio in (_noise(), np.zeros(16000 * 8, np.float32)):
        assert demo.transcribe(audio).text == ""
        live = demo.stream()
        for i in range(0, len(audio), 1600):
            live.feed(audio[i:i + 1600])
        assert live.finish() == [] and live.committed == ""
    rec = Recognizer(demo, StreamingOptions(vad=True))  # the gate is the stream's own (server streams have it too)
    assert rec.create_stream().gate is not None


def test_vad_cuts_keep_speech_and_drop_the_pauses(clips):
    pause = np.zeros(32000, np.float32)
    audio = np.concatenate([pause, clips[0], pause, clips[1], pause])
    segs = speech_segments(audio, max_segment=30.0, gap=0.5)
    assert 1 <= len(segs) <= 6
    speech = sum(b - a for a, b in segs)
    assert 0.6 * (len(clips[0]) + len(clips[1])) <= speech < len(audio) - 3 * 16000  # the clips hold pauses too
    assert segs[0][0] >= 32000 - 0.3 * 16000  # the leading pause is not decoded
    assert speech_regions(speech_probabilities(np.zeros(16000 * 3, np.float32))) == []


def test_live_commits_cased_punctuated_segments(demo, clips):
    live = demo.stream()
    audio = np.concatenate([clips[0], np.zeros(16000, np.float32)])
    for i in range(0, len(audio), 1600):
        live.feed(audio[i:i + 1600])
    segs = live.finish()
    assert segs and segs[0].text[0].isupper() and segs[-1].text[-1] in ".?"
    assert segs[0].raw_text.isupper()


def test_caption_cues_end_at_sentence_ends():
    text = ("So this is the first sentence of the talk. And here comes the second one, which runs on for a while "
            "longer than the first. Third.").split()
    words = [Word(w.strip(".,").upper(), 0.3 * i, 0.3 * i + 0.25, 1.0, display=w) for i, w in enumerate(text)]
    cues = caption_cues(words)
    assert cues[0][2].replace("\n", " ").endswith("talk.")
    assert all(c[2].replace("\n", " ").endswith((".", ",")) or c is cues[-1] or len(c[2]) > 60 for c in cues)


def test_vad_batched_over_recordings_and_streams_equals_one_at_a_time(clips):
    """silero-vad runs with explicit state: recordings of different lengths batched together, and stream gates fed
    in blocks and decided together, give each one's own probabilities and decisions."""
    from asr.inference.vad import StreamGate, decide, speech_probabilities_batch

    audios = [clips[0], clips[1][: len(clips[1]) // 2], np.zeros(700, np.float32)]
    alone = [speech_probabilities(a) for a in audios]
    together = speech_probabilities_batch(audios)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert len(together[2]) == 1 and len(together[0]) == len(clips[0]) // 512
    gates = [StreamGate(), StreamGate(), StreamGate()]  # the third fed in other blocks: other window counts queued
    third = clips[1][: 1100 * len(range(0, len(clips[0]), 1600))]
    for k, i in enumerate(range(0, len(clips[0]), 1600)):
        gates[0].accept(clips[0][i:i + 1600])
        gates[1].accept(audios[1][i:i + 1600])
        gates[2].accept(third[1100 * k:1100 * (k + 1)])
        if i % 4800 == 0:
            decide(gates)
    decide(gates)
    for g, p in zip(gates, [*alone[:2], speech_probabilities(third)]):
        assert list(g.speech) == [j for j, x in enumerate(p) if x >= 0.5] and g.windows == len(p)


def test_the_vad_rests_while_a_segment_has_heard_speech_and_restarts_at_the_next(demo, clips, monkeypatch):
    """Once silero-vad heard speech in a segment, the rest of it is not run through the network (the gate's verdict
    cannot change): the skipped windows are dropped when the next segment begins, whose decisions start afresh. The
    captions are those of a stream whose gate decides every window: speech commits, the pause between shows nothing."""
    from asr.inference import vad

    decided = []
    window_probs = vad.window_probs
    monkeypatch.setattr(vad, "window_probs", lambda m, w, st: decided.append(w.shape[1]) or window_probs(m, w, st))
    audio = np.concatenate([clips[0], np.zeros(32000, np.float32), clips[1], np.zeros(16000, np.float32)])
    rec = Recognizer(demo, StreamingOptions(vad=True))
    s = rec.create_stream()
    for i in range(0, audio.size, 1600):
        s.accept_waveform(audio[i:i + 1600], 16000)
        rec.decode_ready(s)
    s.input_finished()
    rec.decode_ready(s)
    assert s.result.count >= 2 and s.result.committed
    assert sum(decided) < 0.5 * (audio.size // 512)  # the speech after the first words of each segment: skipped
    gate = vad.StreamGate()
    gate.accept(audio[: 16000 * 3])
    vad.decide([gate])
    heard = list(gate.speech)
    gate = vad.StreamGate()
    gate.accept(audio[: 16000 * 3])
    gate.skip_to(1.0)  # a segment begins at 1 s: the windows before it are dropped undecided
    assert gate.windows == 1 * 16000 // 512 and gate.pending_n == 16000 * 3 - gate.windows * 512
    vad.decide([gate])
    assert gate.windows == 16000 * 3 // 512 and all(i >= 31 for i in gate.speech) and gate.speech
    later = [i for i in heard if i >= 31 + 8]  # past a quarter second of warm-up, the fresh start agrees
    assert later and [i for i in gate.speech if i >= 31 + 8] == later
