"""Regression tests for the defects a hostile tester found (issue 12): each names its item number.

Trainer items (2, 3, 4, 12) are in tests/train/test_trainer.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from asr.apps.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def _one_line_error(r, *needles: str) -> None:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output, r.output
    errs = _errors(r.output)
    assert errs, r.output
    for n in needles:
        assert any(n in e for e in errs), (n, r.output)


# ------------------------------------------------------------------------------------ 1: ids escaping
def test_manifest_ids_stay_inside_output_dir(random_model_dir, speech_clips, tmp_path):
    wav = speech_clips[0].path
    scp = tmp_path / "in.scp"
    absolute = tmp_path / "elsewhere" / "abs"
    scp.write_text(f"../esc {wav}\n{absolute} {wav}\nsub/dir {wav}\nplain {wav}\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["transcribe", str(scp), "--model", str(random_model_dir), "--output-dir", str(out),
                            "--no-progress"])
    _one_line_error(r, "'../esc'", f"'{absolute}'")
    assert sorted(p.name for p in out.iterdir()) == ["plain.txt", "sub_dir.txt"]
    assert not (tmp_path / "esc.txt").exists() and not (tmp_path / "elsewhere").exists()


# ------------------------------------------------------------------------------------ 5: eval exit codes
def test_eval_with_nothing_scored_fails(random_model_dir, tmp_path):
    refs = tmp_path / "refs.tsv"
    refs.write_text(f"{tmp_path / 'missing.wav'}\tHELLO\n")
    r = runner.invoke(app, ["eval", "--model", str(random_model_dir), "--refs", str(refs)])
    _one_line_error(r, "nothing to score")
    assert "0.00%" not in r.output


def test_eval_with_some_rows_failed_exits_1(random_model_dir, speech_clips, tmp_path):
    refs = tmp_path / "refs.tsv"
    refs.write_text(f"{speech_clips[0].path}\tHELLO WORLD\n{tmp_path / 'missing.wav'}\tHELLO\n")
    r = runner.invoke(app, ["eval", "--model", str(random_model_dir), "--refs", str(refs)])
    assert r.exit_code == 1 and "| refs | ctc_greedy | 1 |" in r.output and "Traceback" not in r.output


# ------------------------------------------------------------------------------------ 6: name collisions
def test_same_stems_get_distinct_outputs(random_model_dir, speech_clips, tmp_path):
    from asr.inference.transcribe import unique_ids

    src = speech_clips[0].path
    files = []
    for sub, name in (("a", "x.flac"), ("b", "x.wav"), ("c", "x_1.wav")):
        (tmp_path / sub).mkdir()
        audio, rate = sf.read(src, dtype="float32")
        sf.write(tmp_path / sub / name, audio[: rate * 2], rate)
        files.append(str(tmp_path / sub / name))
    ids = [i for i, _ in unique_ids([(Path(f).stem, Path(f)) for f in files])]
    assert len(set(ids)) == 3 and ids[2] == "x_1"
    out = tmp_path / "out"
    r = runner.invoke(app, ["transcribe", *files, "--model", str(random_model_dir), "--output-dir", str(out),
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*.txt"))) == 3


# ------------------------------------------------------------------------------------ 7: unwritable output
def test_unwritable_output_keeps_the_batch_and_the_text(random_model_dir, speech_clips, tmp_path):
    a, b = speech_clips[0].path, speech_clips[1].path
    out = tmp_path / "out"
    (out / f"{a.stem}.json").mkdir(parents=True)  # a folder where the file should go: the write fails
    r = runner.invoke(app, ["transcribe", str(a), str(b), "--model", str(random_model_dir), "--output-dir", str(out),
                            "--format", "txt", "--format", "json", "--no-progress"])
    _one_line_error(r, f"{a.stem}.json: cannot write")
    assert (out / f"{a.stem}.txt").is_file() and (out / f"{b.stem}.txt").is_file() and (out / f"{b.stem}.json").is_file()
    assert f"{a.stem}\t" in r.output  # the text that could not be written is printed
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path):
    from asr.files import write_atomic

    (tmp_path / "x.txt").mkdir()
    with pytest.raises(OSError):
        write_atomic(tmp_path / "x.txt", "text")
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


# ------------------------------------------------------------------------------------ 8: one-line errors
def test_short_max_segment_splits_correctly():
    from asr.inference.transcribe import split_points

    audio = np.random.default_rng(0).standard_normal(16000 * 13).astype(np.float32)
    for seg in (1.0, 2.0, 3.5):
        parts = split_points(audio, seg)
        assert parts[0][0] == 0 and parts[-1][1] == len(audio)
        assert all(0 < b - a <= seg * 16000 for a, b in parts), (seg, parts)
        assert all(p[1] == q[0] for p, q in zip(parts, parts[1:]))


@pytest.mark.parametrize("args,needle", [
    (["--max-segment", "0.5"], "--max-segment"),
    (["--beam", "0"], "beam must be at least 1"),
    (["--mask-iterations", "0"], "mask iterations"),
])
def test_bad_transcribe_options_are_one_line(random_model_dir, speech_clips, args, needle):
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--model", str(random_model_dir), "--no-progress",
                            *args])
    _one_line_error(r, needle)


def test_output_dir_that_is_a_file(random_model_dir, speech_clips, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--model", str(random_model_dir), "--output-dir",
                            str(f), "--no-progress"])
    _one_line_error(r, "is a file")


def test_eval_negative_limit(random_model_dir, tmp_path):
    r = runner.invoke(app, ["eval", "--model", str(random_model_dir), "--refs", str(tmp_path / "x.tsv"), "--limit", "-1"])
    _one_line_error(r, "--limit")


def test_refs_tsv_with_a_short_row(random_model_dir, speech_clips, tmp_path):
    refs = tmp_path / "refs.tsv"
    refs.write_text(f"id\twav\ttext\nc0\t{speech_clips[0].path}\tHELLO\nc1\t{speech_clips[1].path}\n")
    r = runner.invoke(app, ["eval", "--model", str(random_model_dir), "--refs", str(refs)])
    _one_line_error(r, "refs.tsv:3")
    assert "| refs | ctc_greedy | 1 |" in r.output


def test_corrupt_lhotse_manifest(random_model_dir, speech_clips, tmp_path):
    bad = tmp_path / "cuts.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    r = runner.invoke(app, ["transcribe", str(bad), str(speech_clips[0].path), "--model", str(random_model_dir),
                            "--no-progress"])
    _one_line_error(r, "cuts.jsonl.gz: not a readable lhotse manifest")
    assert speech_clips[0].path.stem not in " ".join(_errors(r.output))


def _damaged(model_dir: Path, tmp_path: Path, name: str, data: bytes | None = None, edit=None) -> Path:
    d = tmp_path / f"model_{name}"
    shutil.copytree(model_dir, d)
    if edit is not None:
        edit(d)
    else:
        (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize("case", ["safetensors", "yaml", "tokenizer", "mismatch"])
def test_damaged_model_directories_are_one_line(random_model_dir, speech_clips, tmp_path, case):
    import yaml

    def bigger(d: Path) -> None:
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        cfg["model"]["encoder"]["num_layers"] += 1
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))

    d = {"safetensors": lambda: _damaged(random_model_dir, tmp_path, "model.safetensors", b"\x00" * 64),
         "yaml": lambda: _damaged(random_model_dir, tmp_path, "config.yaml", b"model: {encoder: [unclosed\n"),
         "tokenizer": lambda: _damaged(random_model_dir, tmp_path, "tokenizer.model", b"not a model"),
         "mismatch": lambda: _damaged(random_model_dir, tmp_path, "config.yaml", edit=bigger)}[case]()
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--model", str(d), "--no-progress"])
    _one_line_error(r, str(d))
    assert len(_errors(r.output)) == 1


def test_sample_rate_message_rejects_huge_and_odd_values():
    from asr.apps.serve import _sample_rate

    assert _sample_rate('{"sample_rate": 16000}') == 16000
    for bad in ('{"sample_rate": 1e400}', '{"sample_rate": NaN}', '{"sample_rate": "16000"}', '{"sample_rate": true}',
                '{"sample_rate": 16000.5}', "[1]", "not json"):
        assert _sample_rate(bad) is None, bad


# ------------------------------------------------------------------------------------ 9: bundled model name
def test_bundled_name_is_not_shadowed_by_a_local_folder(tmp_path, monkeypatch):
    from asr.inference.model_dir import BUNDLED, resolve_model_path

    (tmp_path / "demo").mkdir()  # e.g. the recipe's own data/work/demo output folder
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("demo") == BUNDLED / "demo"
    assert resolve_model_path("bundled:demo") == BUNDLED / "demo"
    assert resolve_model_path("./demo") == Path("./demo")
    with pytest.raises(FileNotFoundError):
        resolve_model_path("bundled:nosuch")


# ------------------------------------------------------------------------------------ 10: caption server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(rec, source=None, **kw):
    from asr.apps.serve import CaptionServer, serve

    port = _free_port()
    ready, stop = threading.Event(), threading.Event()
    srv = CaptionServer(rec, **kw)
    t = threading.Thread(target=lambda: asyncio.run(serve(rec, source, "127.0.0.1", port, ready, stop, server=srv)),
                         daemon=True)
    t.start()
    assert ready.wait(30)
    return port, stop, t, srv


def test_overlay_query_string_serves_the_page(random_model_dir):
    from asr.inference.model_dir import load_model
    from asr.inference.streaming import Recognizer

    port, stop, t, _ = _start(Recognizer(load_model(random_model_dir)))
    try:
        for q in ("/?overlay", "/?overlay&size=60", "/index.html?x=1"):
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}{q}").read().decode()
            assert "<html" in page, q
    finally:
        stop.set()
        t.join(10)


def test_sockets_stay_responsive_during_a_slow_decode_and_bad_clients_are_quiet(random_model_dir, speech_clips,
                                                                                    monkeypatch, caplog):
    """A decode round that takes 3 s does not stall the event loop (no lock shared with the handlers); a
    client that never says its rate is closed after FIRST_MESSAGE_SECONDS; a client that vanishes leaves
    no traceback in the log; {"sample_rate": 1e400} is refused with 1003."""
    import logging

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    import asr.apps.serve as serve_mod
    from asr.inference.model_dir import load_model
    from asr.inference.streaming import Recognizer

    monkeypatch.setattr(serve_mod, "FIRST_MESSAGE_SECONDS", 1.0)
    rec = Recognizer(load_model(random_model_dir))
    decoding = threading.Event()
    real_decode = rec.decode

    def slow_decode(streams):
        decoding.set()
        time.sleep(3.0)
        real_decode(streams)

    monkeypatch.setattr(rec, "decode", slow_decode)
    caplog.set_level(logging.INFO)
    port, stop, t, srv = _start(rec)
    try:
        audio = sf.read(speech_clips[0].path, dtype="float32")[0][: 16000 * 2]
        pcm = (audio * 32767).astype("<i2").tobytes()
        with connect(f"ws://127.0.0.1:{port}/ws/audio") as ws:
            ws.send(json.dumps({"sample_rate": 16000}))
            ws.send(pcm[:32000])
            assert decoding.wait(10)
            t0 = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
            ws.send(pcm[32000:])
            with connect(f"ws://127.0.0.1:{port}/ws/captions") as viewer:
                viewer.recv(timeout=5)
            assert time.perf_counter() - t0 < 1.5, "the event loop waited for the decoder"
        with connect(f"ws://127.0.0.1:{port}/ws/audio") as silent:  # never sends its rate
            with pytest.raises(ConnectionClosed) as e:
                silent.recv(timeout=10)
            assert e.value.rcvd.code == 1008
        with connect(f"ws://127.0.0.1:{port}/ws/audio") as huge:
            huge.send('{"sample_rate": 1e400}')
            with pytest.raises(ConnectionClosed) as e:
                huge.recv(timeout=10)
            assert e.value.rcvd.code == 1003
        with contextlib.suppress(Exception), connect(f"ws://127.0.0.1:{port}/ws/audio") as rude:
            rude.send(json.dumps({"sample_rate": 16000}))
            rude.send(pcm[:6400])
            rude.socket.shutdown(socket.SHUT_RDWR)  # vanishes without a closing handshake
            rude.socket.close()
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(15)
    assert srv.stats["timeouts"] == 1 and srv.stats["rejected"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_a_client_far_ahead_advances_one_chunk_a_round_like_the_others(random_model_dir, speech_clips):
    from asr.apps.serve import CaptionServer, _Source
    from asr.inference.model_dir import load_model
    from asr.inference.streaming import Recognizer

    rec = Recognizer(load_model(random_model_dir))
    srv = CaptionServer(rec)
    audio = sf.read(speech_clips[0].path, dtype="float32")[0]
    flood, live = _Source(rec.create_stream()), _Source(rec.create_stream())
    sent = 0.0
    while sent < 60:  # a minute of audio sent at once
        for i in range(0, len(audio), 32000):
            flood.put(audio[i:i + 32000], 16000)
        sent += len(audio) / 16000
    srv.clients |= {flood, live}
    rounds = 0
    for i in range(0, 16000 * 3, 1600):  # the live client: 3 s, 100 ms at a time, one round each
        live.put(audio[i:i + 1600], 16000)
        srv.step()
        rounds += 1
    live_chunks, flood_chunks = live.stream.stats["chunks"], flood.stream.stats["chunks"]
    chunk_seconds = rec.options.chunk * rec.frame_seconds
    assert live_chunks >= 3
    assert flood_chunks <= rounds
    # the flood's audio waits in its own queue: taken at most one 2-s block beyond a chunk per round
    assert flood.stream.seconds <= rounds * chunk_seconds + 2.0 + chunk_seconds < sent / 2


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_serve_writes_output_and_stats(speech_clips, tmp_path, sig):
    """Ctrl-C or SIGTERM (a service manager) ends the server cleanly: last segment written, figures printed."""
    import signal

    out = tmp_path / "captions.srt"
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "asr.apps.cli", "live", "--serve", "--port", str(port), "--input",
                             str(speech_clips[0].path), "--fast", "--output", str(out), "--stats"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (out.is_file() and "-->" in out.read_text()):
            time.sleep(0.5)
    finally:
        proc.send_signal(getattr(signal, sig))
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "-->" in out.read_text(), output
    stats = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    assert stats["server_segments"] >= 1 and stats["server_audio_seconds"] > 1


# ------------------------------------------------------------------------------------ 11: decode defaults
def test_one_source_of_decode_defaults(random_model_dir, speech_clips, monkeypatch):
    import inspect

    import asr.search.mask_ctc as mc
    from asr.apps.cli import eval_cmd, transcribe_cmd
    from asr.inference.model_dir import load_model
    from asr.inference.streaming import EndpointConfig, EndpointRule, Recognizer, StreamingOptions
    from asr.search.options import DEFAULTS

    for cmd in (transcribe_cmd, eval_cmd):
        params = inspect.signature(cmd).parameters
        for name in ("beam", "ctc_weight", "mask_threshold", "mask_iterations"):
            assert params[name].default.default == getattr(DEFAULTS, name), (cmd.__name__, name)
    assert inspect.signature(mc.mask_ctc).parameters["threshold"].default == DEFAULTS.mask_threshold
    seen = {}
    real = mc.mask_ctc

    def spy(model, enc, lens, threshold=None, iterations=None, **kw):
        seen.update(threshold=threshold, iterations=iterations)
        return real(model, enc, lens, threshold, iterations, **kw)

    import asr.search.methods as methods

    monkeypatch.setattr(methods, "mask_ctc", spy)
    never = EndpointConfig(EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0), EndpointRule(False, 0.0, 0.0))
    rec = Recognizer(load_model(random_model_dir), StreamingOptions(final="mask_ctc", endpoint=never))
    s = rec.create_stream()
    s.accept_waveform(sf.read(speech_clips[0].path, dtype="float32")[0][: 16000 * 3], 16000)
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    rec.finalize(s)
    assert seen == {"threshold": DEFAULTS.mask_threshold, "iterations": DEFAULTS.mask_iterations}


# ------------------------------------------------------------------------------------ 13: word timestamps
class _CharTok:
    """Pieces: 1 = U+2581 (word boundary), 2.. = letters."""

    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def decode(self, ids):
        return "".join(" " if i == 1 else self.letters[i - 2] for i in ids).strip()

    def is_word_start(self, i):
        return i == 1


def test_a_word_starts_at_its_first_audible_piece():
    from asr.search.align import words_from_tokens

    tok = _CharTok()
    tokens = [1, 2 + 19, 2 + 7, 2 + 4, 1, 2 + 2, 2 + 0, 2 + 19]  # _THE _CAT
    spans = [(0, 1, 0.2), (25, 26, 0.9), (27, 28, 0.9), (29, 31, 0.9), (31, 32, 0.5), (35, 36, 0.9), (37, 38, 0.9),
             (39, 40, 0.9)]
    words = words_from_tokens(tok, tokens, spans, 0.04)
    assert [w.word for w in words] == ["THE", "CAT"]
    assert words[0].start == pytest.approx(1.0) and words[1].start == pytest.approx(1.4)


def test_prefix_beam_times_follow_the_most_probable_path():
    from asr.search.ctc import ctc_prefix_beam

    # "a" at frame 0 then blank (p = .45 x .7) beats blank then "a" at frame 1 (.55 x .3); the beam visits the
    # empty prefix first (it leads after frame 0), which used to decide the time
    lp = torch.tensor([[[math.log(.55), math.log(.45)], [math.log(.7), math.log(.3)]]])
    best = ctc_prefix_beam(lp, torch.tensor([2]), beam=4)[0][0]
    assert best.tokens == (1,) and best.token_frames == (0,)


def test_leading_silence_is_not_stamped_on_the_first_word(speech_clips, tmp_path):
    """1 s of silence before each clip: the first word starts where the speech does, not at 0.0 (the lone
    word-boundary piece of a character model used to be aligned to frame 0)."""
    paths, starts = [], []
    for i, c in enumerate(speech_clips[:6]):
        audio = sf.read(c.path, dtype="float32")[0]
        paths.append(tmp_path / f"lead{i}.wav")
        sf.write(paths[-1], np.concatenate([np.zeros(16000, np.float32), audio]), 16000)
        starts.append(1.0 + np.argmax(np.abs(audio) > 0.02) / 16000)  # first sample clearly above the noise floor
    out = tmp_path / "out"
    r = runner.invoke(app, ["transcribe", *map(str, paths), "--model", "demo", "--format", "json", "--output-dir",
                            str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    for p, speech_start in zip(paths, starts):
        words = json.loads((out / f"{p.stem}.json").read_text())["words"]
        assert words and words[0]["start"] >= speech_start - 0.3, (p.name, words[0], speech_start)


# ------------------------------------------------------------------------------------ 14: attention_beam length
def test_attention_beam_says_nothing_on_silence_and_keeps_length_on_speech(speech_clips):
    from asr.features import fbank
    from asr.inference.decode import decode_features
    from asr.inference.model_dir import load_model
    from asr.search.options import DecodeOptions

    loaded = load_model("demo")
    opts = DecodeOptions(timestamps=False)
    silence = (np.random.default_rng(0).standard_normal(16000 * 3) * 1e-3).astype(np.float32)
    f = fbank(silence).unsqueeze(0)
    assert decode_features(loaded.model, loaded.tokenizer, f, torch.tensor([f.size(1)]), "attention_beam", opts)[0].text == ""
    att = ctc = 0
    for c in speech_clips[:4]:
        f = fbank(sf.read(c.path, dtype="float32")[0]).unsqueeze(0)
        lens = torch.tensor([f.size(1)])
        att += len(decode_features(loaded.model, loaded.tokenizer, f, lens, "attention_beam", opts)[0].text.split())
        ctc += len(decode_features(loaded.model, loaded.tokenizer, f, lens, "ctc_greedy", opts)[0].text.split())
    assert att >= 0.6 * ctc, (att, ctc)


# ------------------------------------------------------------------------------------ 15: receptive field
def test_short_segment_with_8x_subsampling(tmp_path):
    from asr.features import GlobalCMVN
    from asr.models.asr_model import ASRModel
    from asr.train.checkpoint import save_checkpoint
    from asr.train.export import export_model

    from .conftest import small_experiment

    e = tmp_path / "exp"
    e.mkdir()
    cfg = small_experiment(e)
    import dataclasses

    from asr.config import save_config

    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, encoder=dataclasses.replace(cfg.model.encoder, subsampling=8)))
    save_config(cfg, e / "config.yaml")
    m = ASRModel(cfg.model)
    m.set_cmvn(GlobalCMVN.load(e / "cmvn.json"))
    save_checkpoint(e, 1, {"model": m.state_dict()}, keep_last=1)
    model = export_model(e, tmp_path / "model8")
    assert m.encoder.subsampling.receptive_field > 8
    short = tmp_path / "short.wav"
    sf.write(short, np.random.default_rng(0).standard_normal(160 * 12 + 240).astype(np.float32) * 0.1, 16000)  # 12 frames
    r = runner.invoke(app, ["transcribe", str(short), "--model", str(model), "--format", "json", "--output-dir",
                            str(tmp_path / "out"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "short.json").read_text())["text"] == ""


# ------------------------------------------------------------------------------------ 16: layering
def test_inference_modules_do_not_import_training():
    code = ("import sys, asr.inference.model_dir, asr.evaluation.evaluate, asr.inference.transcribe, asr.inference.streaming, asr.apps.live, asr.apps.serve, asr.evaluation.scoring; "
            "print(sorted(m for m in sys.modules if m.startswith('asr.train')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_batch_and_live_caption_files_are_the_same_cues(tmp_path):
    """One owner of caption formatting: the same words give byte-identical SRT / VTT from `asr transcribe`'s
    writer and from the live transcript writer."""
    from asr.apps.live import TranscriptWriter
    from asr.inference.transcribe import render
    from asr.results import Result, Segment, Word

    words = tuple(Word(f"w{i:02d}", 0.5 + i * 0.4, 0.8 + i * 0.4, 0.9) for i in range(30))
    seg = Segment(" ".join(w.word for w in words), words[0].start, words[-1].end, words)
    for fmt in ("srt", "vtt"):
        w = TranscriptWriter(tmp_path / f"live.{fmt}")
        w.write(seg)
        w.close()
        batch = render(Result.join([seg], 13.0, "x"), fmt)
        assert (tmp_path / f"live.{fmt}").read_text() == batch, fmt


def _copy_model(src, dst, **config_changes):
    import yaml

    shutil.copytree(src, dst)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    for dotted, value in config_changes.items():
        section = cfg["model"]
        *path, key = dotted.split("__")
        for p in path:
            section = section[p]
        section[key] = value
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


@pytest.mark.parametrize("changes,needle", [
    ({"encoder__num_heads": 3}, "multiple of encoder.num_heads"),
    ({"encoder__num_layers": 0}, "num_layers must be at least 1"),
    ({"decoder__num_heads": 7}, "multiple of num_heads"),
])
def test_a_config_that_cannot_build_a_model_is_one_line(random_model_dir, tmp_path, speech_clips, changes, needle):
    d = _copy_model(random_model_dir, tmp_path / "m", **changes)
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--model", str(d), "--no-progress"])
    assert r.exit_code != 0 and needle in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = subprocess.run([sys.executable, "-O", "-c", f"import asr; asr.load_model({str(d)!r})"], capture_output=True,
                       text=True)
    assert r.returncode != 0 and needle in r.stderr  # no assert that python -O would skip


def test_a_huge_model_in_a_config_fails_before_anything_is_allocated(random_model_dir, tmp_path):
    from asr.inference.model_dir import ModelError, load_model

    d = _copy_model(random_model_dir, tmp_path / "m", encoder__d_model=1_000_000, encoder__num_heads=1)
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match="do not match"):
        load_model(d)
    assert time.perf_counter() - t0 < 5.0  # it took 55 s and 10.4 GB before the shapes were compared


@pytest.mark.parametrize("card,needle", [({"lm_weight": "heavy"}, "lm_weight must be a number"),
                                         ([1, 2], "expected a JSON object")])
def test_an_lm_card_of_the_wrong_type_is_one_line(tmp_path, card, needle):
    from asr.errors import UserError
    from asr.search.options import decode_options

    (tmp_path / "lm.arpa").write_text("\\data\\\n")
    (tmp_path / "words.txt").write_text("A\n")
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(UserError, match=needle):
        decode_options(tmp_path)


def test_a_broken_punctuator_is_one_line(tmp_path):
    from asr.errors import UserError
    from asr.models.punctuator import BUNDLED_PUNCTUATOR, load_punctuator

    shutil.copytree(BUNDLED_PUNCTUATOR, tmp_path / "p")
    (tmp_path / "p" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="not a punctuator directory"):
        load_punctuator(tmp_path / "p")
