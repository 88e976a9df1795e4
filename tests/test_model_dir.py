"""Model directories: export from an experiment, load with nothing else, averaging."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import asr
from asr.config import Config
from asr.features import GlobalCMVN
from asr.models.asr_model import ASRModel
from asr.train.checkpoint import average_checkpoints, save_checkpoint
from asr.train.export import export_model

from .conftest import small_experiment


@pytest.fixture
def exp(tmp_path) -> Path:
    e = tmp_path / "exp"
    e.mkdir()
    cfg = small_experiment(e, 3.0, 2.0)
    for step in (1, 2):
        torch.manual_seed(step)
        m = ASRModel(cfg.model)
        m.set_cmvn(GlobalCMVN.load(e / "cmvn.json"))
        save_checkpoint(e, step, {"model": m.state_dict()}, keep_last=5)
    return e


def test_export_and_load(exp, tmp_path):
    out = export_model(exp, tmp_path / "model", average_last=2)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.yaml", "model.safetensors", "tokenizer.model", "cmvn.json", "MODEL_CARD.md"])
    loaded = asr.load_model(out)
    assert not loaded.model.training and isinstance(loaded.config, Config)
    assert torch.equal(loaded.model.cmvn_mean, torch.full((80,), 3.0))
    avg = average_checkpoints(sorted(exp.glob("step-*.pt")))
    for k, v in loaded.model.state_dict().items():
        assert torch.allclose(v, avg[k]), k
    feats = torch.randn(1, 100, 80)
    enc, lens = loaded.model.encode(feats, torch.tensor([100]))
    assert enc.shape[0] == 1 and torch.isfinite(enc).all()
    # exporting again replaces the folder atomically
    export_model(exp, tmp_path / "model", average_last=1)
    assert not list(tmp_path.glob(".model*"))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        asr.load_model(tmp_path)


def test_cli_average_and_export_with_scoring(exp, tmp_path, tiny_manifests):
    """`asr average` writes averaged weights; `asr export-model --manifests` records measured WER in the card."""
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from asr.apps.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["average", "--exp", str(exp), "--last", "2", "--out", str(tmp_path / "avg.safetensors")])
    assert r.exit_code == 0, r.output
    avg = average_checkpoints(sorted(exp.glob("step-*.pt")))
    got = load_file(str(tmp_path / "avg.safetensors"))
    assert all(torch.allclose(got[k], avg[k]) for k in avg)
    r = runner.invoke(app, ["export-model", "--exp", str(exp), "--out", str(tmp_path / "m"), "--average", "2",
                            "--manifests", str(tiny_manifests), "--subset", "dev"])
    assert r.exit_code == 0, r.output
    assert "dev: WER" in r.output
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "## Measured" in card and "| dev | ctc_greedy |" in card


def test_card_has_learning_curve(exp, tmp_path):
    import json

    rows = [{"step": 50, "wall_min": 1.0, "loss": 9.0},
            {"step": 100, "wall_min": 2.0, "valid_wer": 0.9, "valid_cer": 0.5, "test_wer": 0.8, "test_cer": 0.45},
            {"step": 200, "wall_min": 4.25, "valid_wer": 0.5, "valid_cer": 0.2}]
    (exp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    card = (export_model(exp, tmp_path / "m") / "MODEL_CARD.md").read_text()
    assert "| step | minutes | valid WER | valid CER | test WER | test CER |" in card
    assert "| 100 | 2.0 | 90.0% | 50.0% | 80.0% | 45.0% |" in card
    assert "| 200 | 4.2 | 50.0% | 20.0% |  |  |" in card


def test_int8_and_bf16_demo_decode_like_the_float_model(speech_clips):
    import jiwer
    import soundfile as sf
    from typer.testing import CliRunner

    from asr.apps.cli import app
    from asr.features import fbank
    from asr.inference.decode import decode_features
    from asr.inference.model_dir import ModelError, load_model

    runner = CliRunner()
    fp32, int8, bf16 = load_model("demo"), load_model("demo", quantize="int8"), load_model("demo", quantize="bf16")
    linears = [m for m in int8.model.modules() if type(m) is torch.nn.Linear]
    assert not linears  # every Linear became a dynamic int8 one
    assert bf16.model.decoder.out.weight.dtype == torch.bfloat16 and bf16.model.cmvn_mean.dtype == torch.float32
    hyp32, hyp8, hyp16 = [], [], []
    for clip in speech_clips[:4]:
        audio = sf.read(clip.path, dtype="float32")[0]
        f = fbank(audio).unsqueeze(0)
        lens = torch.tensor([f.size(1)])
        hyp32.append(decode_features(fp32.model, fp32.tokenizer, f, lens)[0].text)
        hyp8.append(decode_features(int8.model, int8.tokenizer, f, lens)[0].text)
        hyp16.append(decode_features(bf16.model, bf16.tokenizer, f, lens)[0].text)
    # the int8 / bf16 models' transcripts stay close to the float model's (not to the truth: that is the WER's job)
    assert jiwer.cer(hyp32, hyp8) < 0.1, (hyp32, hyp8)
    assert jiwer.cer(hyp32, hyp16) < 0.15, (hyp32, hyp16)
    r = runner.invoke(app, ["live", "--input", str(speech_clips[0].path), "--fast", "--quantize", "bf16"])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    with pytest.raises(ModelError, match="unknown quantization"):
        load_model("demo", quantize="int4")
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--quantize", "int8", "--no-progress"])
    assert r.exit_code == 0 and r.output.strip(), r.output
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--quantize", "int4", "--no-progress"])
    assert r.exit_code == 1 and "unknown quantization" in r.output and "Traceback" not in r.output


def test_eval_by_speaker_names_the_voices_and_adds_up(exp, tmp_path, tiny_manifests, tiny_corpus):
    """`asr eval --by-speaker`: one row per voice of the corpus's SPEAKERS.TXT; the rows' errors and words sum to
    the whole subset's."""
    from typer.testing import CliRunner

    from asr.apps.cli import app
    from asr.data.prepare import load_cuts
    from asr.evaluation.evaluate import evaluate_cuts
    from asr.evaluation.scoring import breakdown_table, speaker_labels

    model = export_model(exp, tmp_path / "m", average_last=2)
    cuts = load_cuts(tiny_manifests, "dev").to_eager()
    labels = speaker_labels(cuts)
    voices = {line.split("|")[2].strip() for line in (tiny_corpus / "SPEAKERS.TXT").read_text().splitlines()
              if not line.startswith(";") and "|dev" in line}
    assert set(labels.values()) == voices and len(labels) == len(cuts)
    res = evaluate_cuts(asr.load_model(model), cuts, "ctc_greedy")
    rows = [r.split("|")[1:-1] for r in breakdown_table(res, labels, "voice").splitlines()[2:]]
    assert sorted(r[0].strip() for r in rows) == sorted(voices)
    assert sum(int(r[2]) for r in rows) == res.wer.ref_len
    assert sum(int(r[1]) for r in rows) == len(cuts)
    r = CliRunner().invoke(app, ["eval", "--model", str(model), "--manifests", str(tiny_manifests), "--subset", "dev",
                                 "--by-speaker", "--out-dir", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert "per speaker" in r.output and all(v in r.output for v in voices)
    assert (tmp_path / "ev" / "dev_ctc_greedy.by_speaker.md").is_file()
    # --limit N --spread: N utterances over every speaker, where the first N hear only the first speakers
    from asr.evaluation.scoring import spread_subset

    n = len(voices)
    from lhotse import CutSet

    by_voice: dict[str, list] = {}
    for c in cuts:
        by_voice.setdefault(labels[c.id], []).append(c)
    grouped = CutSet.from_cuts([c.with_id(f"{c.id}_r{k}") for v in sorted(by_voice)  # 4 cuts a voice, in folder order
                                for k, c in enumerate((by_voice[v] * 4)[:4])])
    voice_of = {c.id: labels[c.id.rsplit("_r", 1)[0]] for c in grouped}
    spread = spread_subset(grouped, n)
    assert len(spread) == n and len({voice_of[c.id] for c in spread}) == n > len({voice_of[c.id] for c in grouped.subset(first=n)})
    picked = spread_subset(cuts, n)
    r = CliRunner().invoke(app, ["eval", "--model", str(model), "--manifests", str(tiny_manifests), "--subset", "dev",
                                 "--limit", str(n), "--spread", "--by-speaker"])
    assert r.exit_code == 0, r.output
    assert f"| dev | ctc_greedy | {n} |" in r.output and sum(v in r.output for v in voices) == len({labels[c.id] for c in picked})
