"""`asr transcribe`, `asr eval`, `asr bench`: formats parsed back, bad files, long files, real clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from asr.apps.cli import app
from asr.inference.captions import caption_cues
from asr.inference.transcribe import split_points

runner = CliRunner()


@pytest.fixture(scope="module")
def clips(speech_clips):
    """``clips(n)``: paths of the first n speech clips."""
    return lambda n: [c.path for c in speech_clips[:n]]


def test_split_points_cover_audio_and_respect_limit():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(16000 * 50).astype(np.float32) * 0.1
    audio[16000 * 17: 16000 * 17 + 3200] = 0.0  # a pause inside the search window of the first cut
    parts = split_points(audio, max_segment=20.0)
    assert parts[0][0] == 0 and parts[-1][1] == len(audio)
    assert all(a < b and b - a <= 20 * 16000 for a, b in parts)
    assert all(p[1] == q[0] for p, q in zip(parts, parts[1:]))
    assert 16000 * 17 <= parts[0][1] <= 16000 * 17 + 3200  # cut in the pause


def test_transcribe_formats_parse_back(random_model_dir, clips, tmp_path):
    import srt
    import webvtt

    clip = clips(1)[0]
    out = tmp_path / "out"
    r = runner.invoke(app, ["transcribe", str(clip), "--model", str(random_model_dir), "--output-dir", str(out),
                            "--format", "txt", "--format", "json", "--format", "srt", "--format", "vtt",
                            "--format", "tsv", "--no-progress"])
    assert r.exit_code == 0, r.output
    stem = clip.stem
    data = json.loads((out / f"{stem}.json").read_text())
    assert data["text"] == (out / f"{stem}.txt").read_text().strip()
    words = data["words"]
    assert words, "the random model (blank bias lowered) emits words"
    subs = list(srt.parse((out / f"{stem}.srt").read_text()))
    vtt = list(webvtt.read(str(out / f"{stem}.vtt")))
    assert len(subs) == len(vtt) >= 1
    assert " ".join(s.content for s in subs).split() == [w.get("display", w["word"]) for w in words]
    assert subs[0].start.total_seconds() == pytest.approx(words[0]["start"], abs=1e-3)
    assert " ".join(c.text for c in vtt).split() == [w.get("display", w["word"]) for w in words]
    tsv = (out / f"{stem}.tsv").read_text().splitlines()
    assert tsv[0] == "start\tend\tword\tconfidence" and len(tsv) == len(words) + 1
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and words[-1]["end"] <= data["duration"] + 0.05


def test_bad_file_in_batch_reports_one_line_and_continues(random_model_dir, clips, tmp_path):
    good = clips(2)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    missing = tmp_path / "missing.flac"
    out = tmp_path / "out"
    r = runner.invoke(app, ["transcribe", str(good[0]), str(bad), str(missing), str(good[1]), "--model",
                            str(random_model_dir), "--output-dir", str(out), "--no-progress"])
    assert r.exit_code == 1
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("broken.wav" in e for e in errors) and any("missing.flac" in e for e in errors)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{g.stem}.txt" for g in good)


def test_long_file_is_split_and_stitched(random_model_dir, clips, tmp_path):
    parts, total = [], 0
    while total < 16000 * 40:  # ~40 s from the clips, repeated if they are short
        for p in clips(6):
            parts.append(sf.read(p, dtype="float32")[0])
            total += len(parts[-1])
    audio = np.concatenate(parts)
    long = tmp_path / "long.wav"
    sf.write(long, audio, 16000)
    out = tmp_path / "out"
    r = runner.invoke(app, ["transcribe", str(long), "--model", str(random_model_dir), "--output-dir", str(out),
                            "--format", "json", "--max-segment", "8", "--no-progress"])
    assert r.exit_code == 0, r.output
    words = json.loads((out / "long.json").read_text())["words"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert words[-1]["end"] > 30 and words[-1]["end"] <= len(audio) / 16000 + 0.05


def test_folder_glob_and_list_inputs(random_model_dir, clips, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for p in clips(2):
        shutil.copy(p, d / p.name)
    lst = tmp_path / "files.list"
    lst.write_text("".join(f"utt{i} {p}\n" for i, p in enumerate(clips(2))))
    for arg in (str(d), str(d / "*.wav"), str(lst)):
        r = runner.invoke(app, ["transcribe", arg, "--model", str(random_model_dir), "--no-progress"])
        assert r.exit_code == 0, r.output
        assert len([line for line in r.output.splitlines() if "\t" in line]) == 2, arg


def test_caption_cues_are_two_lines_of_42_and_7_seconds_at_most():
    from asr.inference.captions import break_lines
    from asr.results import Word

    words = [Word(f"word{i}", i * 0.35, i * 0.35 + 0.3, 1.0) for i in range(40)]
    words.append(Word("late", 20.0, 20.5, 1.0))  # after a pause: a cue of its own
    words.append(Word("x" * 50, 21.0, 21.5, 1.0))  # longer than a line: alone, not lost
    cues = caption_cues(words)
    for start, end, text in cues[:-1]:
        lines = text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), text
        assert end - start <= 7.0
    assert cues[-2][2] == "late" and cues[-1][2] == "x" * 50
    assert " ".join(t.replace("\n", " ") for _, _, t in cues).split() == [w.word for w in words]
    assert len(cues[0][2].split("\n")) == 2  # a full cue uses both lines
    # two balanced lines: the longer as short as possible
    assert break_lines("the quick brown fox jumps over the lazy dog and runs far away".split()) == [
        "the quick brown fox jumps over", "the lazy dog and runs far away"]
    assert break_lines(["a" * 43]) is None


def test_eval_with_refs_writes_table_details_and_plot(random_model_dir, clips, tmp_path):
    refs = tmp_path / "refs.tsv"
    rows = ["id\twav\ttext"] + [f"c{i}\t{p}\tSOME REFERENCE TEXT" for i, p in enumerate(clips(2))]
    refs.write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval"
    r = runner.invoke(app, ["eval", "--model", str(random_model_dir), "--refs", str(refs), "--decoder", "ctc_greedy",
                            "--decoder", "mask_ctc", "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert "| refs | ctc_greedy | 2 |" in r.output and "| refs | mask_ctc | 2 |" in r.output
    res = json.loads((out / "refs.results.json").read_text())
    assert [x["decoder"] for x in res] == ["ctc_greedy", "mask_ctc"] and all(x["ref_words"] == 6 for x in res)
    assert (out / "refs.wer_vs_rtf.png").stat().st_size > 1000
    assert "REF:" in (out / "refs_ctc_greedy.details.txt").read_text()


def test_bench_random_preset_prints_every_decoder():
    r = runner.invoke(app, ["bench", "--model", "tiny", "--seconds", "2", "--runs", "1", "--beam", "2",
                            "--output-tokens", "5", "--vocab-size", "50"])
    assert r.exit_code == 0, r.output
    for d in ("ctc_greedy", "ctc_prefix_beam", "attention_beam", "joint_ctc_attention", "attention_rescoring",
              "mask_ctc", "no KV cache"):
        assert d in r.output


def test_bench_stream_random_preset():
    r = runner.invoke(app, ["bench-stream", "--model", "tiny", "--seconds", "3", "--chunk-ms", "320"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output.strip().splitlines()[-1])
    assert row["chunk_ms"] == 320 and row["rtf"] > 0 and row["audio_seconds"] >= 3


def test_transcribe_plot_draws_png(random_model_dir, clips, tmp_path):
    clip = clips(1)[0]
    r = runner.invoke(app, ["transcribe", str(clip), "--model", str(random_model_dir), "--output-dir", str(tmp_path),
                            "--plot", "--no-progress"])
    assert r.exit_code == 0, r.output
    png = tmp_path / f"{clip.stem}.png"
    assert png.stat().st_size > 10000 and png.read_bytes()[:4] == b"\x89PNG"


def test_bench_stream_reports_caption_latencies(tiny_manifests):
    """Streaming WER with the demo model on the tiny corpus: committed text never revised, and the reader's
    latencies (partial words, end of speech to commit) measured on the simulated real-time clock."""
    r = runner.invoke(app, ["bench-stream", "--model", "demo", "--seconds", "2", "--chunk-ms", "640",
                            "--manifests", str(tiny_manifests), "--subset", "dev", "--limit", "3"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output.strip().splitlines()[-1])
    assert row["utterances"] == 3 and "committed_revisions" not in row  # committed text only appends: nothing to count
    # a segment is committed after 0.5 s of silence past its last word (rule 2), less the word-time slack
    assert row["commit_latency_median_s"] is not None and row["commit_latency_median_s"] >= 0.2
    assert row["partial_latency_median_s"] is not None and -1.0 < row["partial_latency_median_s"] < 2.0
    assert row["partial_latency_p90_s"] >= row["partial_latency_median_s"]


def test_bench_stream_scores_a_refs_tsv_and_names_its_bad_rows(tmp_path):
    """`--refs` instead of manifests: the bundled recordings streamed through the demo model, a missing file
    reported on its own line and left out of the figures."""
    samples = Path(__file__).parents[1] / "data" / "samples"
    rows = (samples / "samples.tsv").read_text().splitlines()[1:3]
    refs = tmp_path / "refs.tsv"
    refs.write_text("".join(f"{samples}/{r}\n" for r in rows) + f"{tmp_path}/missing.wav\tNOTHING\n")
    r = runner.invoke(app, ["bench-stream", "--model", "demo", "--seconds", "2", "--chunk-ms", "640",
                            "--refs", str(refs), "--limit", "0", "--final", "none"])
    assert r.exit_code == 0, r.output
    assert "missing.wav" in r.output
    lines = [json.loads(x) for x in r.output.strip().splitlines() if x.startswith("{")]
    assert "full_context_attention_rescoring_wer" in lines[-2]
    row = lines[-1]
    assert row["utterances"] == 2 and row["final"] == "none" and 0.0 <= row["wer"] < 1.0


def test_a_long_file_is_read_in_blocks_and_transcribed_as_a_whole(demo, speech_clips, tmp_path, monkeypatch):
    """Past LONG_FILE_SECONDS a file is read, cut and decoded a block at a time (flat memory): the same words, in
    order, at the same times as when it is read whole."""
    import numpy as np
    import soundfile as sf

    import asr.inference.transcribe as tr

    clips = [sf.read(c.path, dtype="float32")[0] for c in speech_clips[:3]]
    gap = np.zeros(16000 * 3, np.float32)
    audio = np.concatenate([x for c in clips for x in (c, gap)])
    path = tmp_path / "long.wav"
    sf.write(path, audio, 16000)
    whole = demo.transcribe(str(path), decoder="ctc_greedy")
    monkeypatch.setattr(tr, "LONG_FILE_SECONDS", 5.0)
    monkeypatch.setattr(tr, "BLOCK_SECONDS", 8.0)
    blocks = list(tr.read_blocks(path, 8.0, search=3.0))
    assert len(blocks) >= 3 and all(len(b) <= (8.0 + 3.0) * 16000 for _, b in blocks)
    assert np.allclose(np.concatenate([b for _, b in blocks]), audio, atol=1e-6)
    assert [o for o, _ in blocks] == sorted(o for o, _ in blocks)
    blocked = demo.transcribe(str(path), decoder="ctc_greedy")
    assert blocked.raw_text == whole.raw_text
    assert [round(w.start, 2) for w in blocked.words] == [round(w.start, 2) for w in whole.words]


def test_importing_the_vad_leaves_torchs_thread_count_alone():
    """silero_vad sets one thread when imported; every command that imports the VAD decoded on one core."""
    import subprocess
    import sys

    code = "import torch; torch.set_num_threads(2); import asr.inference.vad; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "2", out.stderr
