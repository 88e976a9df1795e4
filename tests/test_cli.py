"""The command line: help texts, and the recipe's data stages end to end through `asr`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asr.apps.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_every_command_and_each_has_its_own_help():
    import typer.main

    root = typer.main.get_command(app)
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for name, cmd in root.commands.items():
        assert name in top.output, name
        subs = getattr(cmd, "commands", {name: cmd})
        for sub in subs:
            args = [name, sub] if hasattr(cmd, "commands") else [name]
            r = runner.invoke(app, [*args, "--help"])
            assert r.exit_code == 0 and "--help" in r.output and "Usage" in r.output, args
    assert len(root.commands) >= 12


def test_voices():
    r = runner.invoke(app, ["data", "voices"])
    assert r.exit_code == 0
    assert "espeak-ng:en-us+m3" in r.output and "rhvoice:slt" in r.output


def test_synth_bad_voice_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "asr", "data", "synth", "--out", str(tmp_path), "--voices", "nosuch:x"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: voice 'nosuch:x': expected ENGINE:NAME"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_synth_missing_text_file(tmp_path):
    r = subprocess.run([sys.executable, "-m", "asr.apps.cli", "data", "synth", "--out", str(tmp_path / "c"), "--text",
                        str(tmp_path / "missing.txt"), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {tmp_path / 'missing.txt'}: no such text file"


def test_prepare_missing_corpus(tmp_path):
    r = subprocess.run([sys.executable, "-m", "asr.apps.cli", "data", "prepare", "--corpus-dir", str(tmp_path / "none"),
                        "--out", str(tmp_path / "m")], capture_output=True, text=True)
    assert r.returncode == 1 and "no such directory" in r.stderr and "Traceback" not in r.stderr


def test_recipe_stages_0_to_2(tmp_path):
    """recipes/librispeech/run.sh on a small synthetic corpus, then resumed from stage 1 (a no-op)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = ["bash", str(REPO / "recipes/librispeech/run.sh"), "--hours", "0.04", "--seed", "5", "--work", str(tmp_path),
           "--stop-stage", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    lang = tmp_path / "manifests_synthetic" / "lang_char"  # the tiny synthetic path's characters
    assert (lang / "cmvn.json").is_file() and (lang / "tokenizer.model").is_file()
    summary = json.loads((tmp_path / "synthetic" / "synth.json").read_text())
    assert summary["num_failed"] <= 2 and summary["subsets"]["train"]["utterances"] > 20
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "manifests_synthetic").rglob("*") if p.is_file()}
    r = subprocess.run(cmd + ["--stage", "1"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    r = subprocess.run(cmd[:-2] + ["--stop-stage", "0"], capture_output=True, text=True, env=env)  # synth again
    assert r.returncode == 0 and "all files were already there" in r.stdout + r.stderr, r.stderr[-2000:]


def test_a_bad_compute_device_is_one_line():
    r = subprocess.run([sys.executable, "-m", "asr", "transcribe", "x.wav", "--device", "nonexistent"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "error: --device 'nonexistent': not a compute device (cpu, cuda, cuda:N, mps)"


def test_an_internal_error_keeps_its_traceback_and_a_user_error_is_one_line(monkeypatch, capsys):
    """``main`` prints what the library refuses on purpose (asr.errors.UserError) as one line; a plain ValueError
    from deep inside (a bug) is not disguised as a user's mistake."""
    import asr.apps.cli as cli
    from asr.errors import UserError

    def boom(exc):
        def app():
            raise exc
        return app

    monkeypatch.setattr(cli, "app", boom(UserError("talk.wav: not audio")))
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 1 and capsys.readouterr().err.strip() == "error: talk.wav: not audio"
    monkeypatch.setattr(cli, "app", boom(ValueError("shapes (3,) and (4,) not aligned")))
    with pytest.raises(ValueError, match="not aligned"):
        cli.main()
