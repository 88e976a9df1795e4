"""The command line: help texts, and the recipe's data stages end to end through `asr`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from asr.apps.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_every_command():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "data" in r.output and "info" in r.output
    r = runner.invoke(app, ["data", "--help"])
    for cmd in ("voices", "synth", "prepare", "stats", "import", "mix"):
        assert cmd in r.output
    for cmd in ("synth", "prepare", "stats", "import", "mix"):
        r = runner.invoke(app, ["data", cmd, "--help"])
        assert r.exit_code == 0 and "--" in r.output


def test_voices():
    r = runner.invoke(app, ["data", "voices"])
    assert r.exit_code == 0
    assert "espeak-ng:en-us+m3" in r.output and "rhvoice:slt" in r.output


def test_synth_bad_voice_is_one_line(tmp_path):
    r = runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--voices", "nosuch:x"])
    assert r.exit_code != 0


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
