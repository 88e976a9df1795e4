"""Language models: the Kneser-Ney ARPA builder, LM directories, the lexicon + n-gram CTC decoder, tuning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asr.apps.cli import app
from asr.lm.ngram import ArpaLM, build_kneser_ney

runner = CliRunner()
TEXT = ["HELLO WORLD", "THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG", "HELLO THE WORLD", "THE LAZY FOX",
        "THE WORLD SAYS HELLO", "A QUICK DOG JUMPS"]


def test_kneser_ney_distributions_sum_to_one(tmp_path):
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(build_kneser_ney([s.split() for s in TEXT * 2], order=3))
    lm = ArpaLM(arpa)
    vocab = sorted({w for s in TEXT for w in s.split()}) + ["</s>", "<unk>"]
    for hist in (["<s>"], ["<s>", "HELLO"], ["THE", "LAZY"], ["UNSEEN", "WORDS"], ["FOX"]):
        assert sum(math.exp(lm.score(hist, w)) for w in vocab) == pytest.approx(1.0, abs=1e-4), hist
    seen = lm.perplexity([s.split() for s in TEXT])
    unseen = lm.perplexity([["DOG", "WORLD", "QUICK", "HELLO"]])
    assert 1.0 < seen < unseen < len(vocab) * 10


def test_arpa_errors_are_one_line(tmp_path):
    from asr.lm import LMError, load_lm_dir

    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nnot-a-number\tX\n")
    with pytest.raises(LMError, match="bad.arpa"):
        ArpaLM(bad)
    with pytest.raises(LMError, match="not an LM directory"):
        load_lm_dir(tmp_path)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("text") / "text.txt"
    f.write_text("\n".join(TEXT * 3) + "\n")
    return f


@pytest.fixture(scope="module")
def lm_dir(text_file, random_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm") / "lm"
    r = runner.invoke(app, ["lm", "train", str(text_file), "--out", str(out), "--order", "3", "--model",
                            str(random_model_dir)])
    assert r.exit_code == 0, r.output
    return out


def test_lm_train_writes_a_directory_with_its_card(lm_dir):
    card = json.loads((lm_dir / "card.json").read_text())
    assert card["order"] == 3 and card["train_sentences"] >= 5 and card["heldout_perplexity"] > 1
    assert card["words_without_spelling"] == 0 and card["lexicon_words"] == len((lm_dir / "words.txt").read_text().split())
    assert "HELLO\tH E L L O" in (lm_dir / "lexicon.txt").read_text()


def test_lm_train_leaves_out_dev_and_test_sentences(tiny_manifests, random_model_dir, tmp_path):
    from asr.data.prepare import load_cuts
    from asr.text import normalize_text

    dev = [normalize_text(c.supervisions[0].text) for c in load_cuts(tiny_manifests, "dev")]
    test = [normalize_text(c.supervisions[0].text) for c in load_cuts(tiny_manifests, "test")]
    text = tmp_path / "t.txt"
    text.write_text("\n".join(TEXT * 3 + dev + test + ["ZEBRAS ARE STRIPED"] * 3) + "\n")
    out = tmp_path / "lm"
    r = runner.invoke(app, ["lm", "train", str(text), "--out", str(out), "--exclude-manifests", str(tiny_manifests),
                            "--model", str(random_model_dir)])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "card.json").read_text())
    assert card["sentences_excluded"] == len(set(dev + test))
    arpa = (out / "lm.arpa").read_text()
    for s in dev + test:
        assert f"\t{s.split()[0]} {s.split()[1]} {s.split()[2]}\n" not in arpa or any(
            " ".join(s.split()[:3]) in t for t in TEXT)  # no trigram that only a held-out sentence has


def _emissions(tok, text: str, drop: int | None = None, frames_per_token: int = 3):
    """CTC log-probs spelling ``text``: each token peaks on one frame, blanks around it; ``drop``: that
    token is left out (a spelling mistake for the lexicon to repair)."""
    ids = tok.encode(text)
    V = tok.vocab_size
    rows = []
    for k, i in enumerate(ids):
        if k == drop:
            continue
        for f in range(frames_per_token):
            p = np.full(V, 0.01 / (V - 1))
            p[i if f == 1 else 0] = 0.99
            rows.append(p)
    lp = torch.tensor(np.log(np.stack(rows)), dtype=torch.float32)
    return lp.log_softmax(-1)


def test_lexicon_decoder_repairs_a_misspelled_word(lm_dir, random_model_dir):
    from asr.inference.model_dir import load_model
    from asr.search.ctc import ctc_greedy
    from asr.search.ctc_lm import LexiconDecoder

    tok = load_model(random_model_dir).tokenizer
    lp = _emissions(tok, "HELLO WORLD", drop=3)  # "HELO WORLD"
    lens = torch.tensor([lp.size(0)])
    greedy = tok.decode(ctc_greedy(lp.unsqueeze(0), lens)[0][0].tokens)
    assert greedy == "HELO WORLD"
    dec = LexiconDecoder(str(lm_dir), tok, beam=20, lm_weight=1.0, word_score=0.0)
    assert tok.decode(dec(lp.unsqueeze(0), lens)[0][0].tokens) == "HELLO WORLD"


def test_lexicon_decoder_batched_equals_single(lm_dir, random_model_dir):
    from asr.inference.model_dir import load_model
    from asr.search.ctc_lm import LexiconDecoder

    tok = load_model(random_model_dir).tokenizer
    a, b = _emissions(tok, "THE LAZY FOX"), _emissions(tok, "HELLO WORLD", drop=2)
    pad = torch.nn.utils.rnn.pad_sequence([a, b], batch_first=True)
    lens = torch.tensor([a.size(0), b.size(0)])
    dec = LexiconDecoder(str(lm_dir), tok, beam=20)
    batched = dec(pad, lens)
    singles = [dec(x.unsqueeze(0), torch.tensor([x.size(0)]))[0] for x in (a, b)]
    assert [h[0].tokens for h in batched] == [h[0].tokens for h in singles]
    assert tok.decode(batched[0][0].tokens) == "THE LAZY FOX"


def test_ctc_lm_from_the_command_line(lm_dir, random_model_dir, speech_clips, tmp_path):
    clip = str(speech_clips[0].path)
    r = runner.invoke(app, ["transcribe", clip, "--model", str(random_model_dir), "--decoder", "ctc_lm", "--no-progress"])
    assert r.exit_code == 1 and "without --lm" in r.output and "Traceback" not in r.output
    out = tmp_path / "out"
    r = runner.invoke(app, ["transcribe", clip, "--model", str(random_model_dir), "--decoder", "ctc_lm", "--lm",
                            str(lm_dir), "--format", "json", "--output-dir", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / f"{speech_clips[0].path.stem}.json").read_text())
    vocab = set((lm_dir / "words.txt").read_text().split())
    raw = data.get("raw_text", data["text"])  # the recognizer's words (the display text is punctuated)
    assert set(raw.split()) <= vocab  # every word comes from the lexicon
    assert [w["word"] for w in data["words"]] == raw.split()
    r = runner.invoke(app, ["transcribe", clip, "--model", str(random_model_dir), "--decoder", "ctc_lm", "--lm",
                            str(tmp_path / "nolm"), "--no-progress"])
    assert r.exit_code == 1 and "not an LM directory" in r.output


def test_lm_tune_writes_the_best_weights(lm_dir, random_model_dir, tiny_manifests, tmp_path):
    import shutil

    d = tmp_path / "lm"
    shutil.copytree(lm_dir, d)
    r = runner.invoke(app, ["lm", "tune", "--lm", str(d), "--model", str(random_model_dir), "--manifests",
                            str(tiny_manifests), "--limit", "3", "--lm-weight", "0.5", "--lm-weight", "2.0",
                            "--word-score", "0.0"])
    assert r.exit_code == 0, r.output
    card = json.loads((d / "card.json").read_text())
    assert card["lm_weight"] in (0.5, 2.0) and card["word_score"] == 0.0 and card["tuned_on"]["subset"] == "dev"
    r = runner.invoke(app, ["lm", "tune", "--lm", str(d), "--model", str(random_model_dir), "--manifests",
                            str(tiny_manifests), "--subset", "test"])
    assert r.exit_code == 1 and "never on test" in r.output


def test_corrupt_arpa_is_one_line(lm_dir, random_model_dir, speech_clips, tmp_path):
    import shutil

    d = tmp_path / "lm"
    shutil.copytree(lm_dir, d)
    (d / "lm.arpa").write_text("this is not an ARPA file\n")
    r = runner.invoke(app, ["transcribe", str(speech_clips[0].path), "--model", str(random_model_dir), "--decoder",
                            "ctc_lm", "--lm", str(d), "--lm-weight", "0.7", "--no-progress"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert any("lm.arpa" in line for line in r.output.splitlines() if line.startswith("error:")), r.output


def test_word_fusion_scores_completed_words_and_prefers_known_sentences(lm_dir, random_model_dir):
    from asr.inference.model_dir import load_model
    from asr.lm import load_lm_dir
    from asr.lm.ngram import cached_arpa
    from asr.search.fusion import WordFusion

    tok = load_model(random_model_dir).tokenizer
    fus = WordFusion(cached_arpa(str(load_lm_dir(lm_dir).arpa)), tok, weight=1.0, word_score=0.0)
    known, odd = tuple(tok.encode("HELLO WORLD")), tuple(tok.encode("WORLD LAZY HELLO"))
    assert fus.score(known[:3]) == 0.0  # "_HE": no word complete yet
    first_word = tuple(tok.encode("HELLO")) + (tok.encode("WORLD")[0],)  # "_HELLO_": HELLO is complete
    assert fus.score(first_word) < 0.0
    assert fus.final_score(known) > fus.final_score(odd)


def test_prefix_beam_with_lm_is_fused(lm_dir, random_model_dir):
    from asr.inference.model_dir import load_model
    from asr.search.methods import search
    from asr.search.options import DecodeOptions

    loaded = load_model(random_model_dir)
    lp = _emissions(loaded.tokenizer, "HELLO WORLD").unsqueeze(0)
    lens = torch.tensor([lp.size(1)])
    plain = search(loaded.model, None, lens, "ctc_prefix_beam", DecodeOptions(beam=4), ctc_log_probs=lp)
    with_lm = search(loaded.model, None, lens, "ctc_prefix_beam", DecodeOptions(beam=4, lm=str(lm_dir)), ctc_log_probs=lp,
                     tokenizer=loaded.tokenizer)
    assert with_lm[0][0].tokens == plain[0][0].tokens  # clear audio: same words
    assert with_lm[0][0].score != plain[0][0].score  # but scored with the LM


def test_streaming_second_pass_with_the_lm_commits_lexicon_words(lm_dir, speech_clips):
    from asr.inference.model_dir import load_model
    from asr.inference.streaming import Recognizer, StreamingOptions
    from asr.search.options import DecodeOptions

    loaded = load_model("demo")
    with pytest.raises(ValueError, match="needs an LM directory"):
        StreamingOptions(final="ctc_lm")
    rec = Recognizer(loaded, StreamingOptions(final="ctc_lm", decode=DecodeOptions(lm=str(lm_dir))))
    import soundfile as sf

    s = rec.create_stream()
    s.accept_waveform(sf.read(speech_clips[0].path, dtype="float32")[0][: 16000 * 4], 16000)
    s.input_finished()
    while rec.is_ready(s):
        rec.decode([s])
    seg = rec.finalize(s)
    vocab = set((lm_dir / "words.txt").read_text().split())
    assert seg is not None and seg.text.split(), "four seconds of speech committed nothing"
    assert set(seg.text.split()) <= vocab
    out = lm_dir.parent / "live.txt"
    r = runner.invoke(app, ["live", "--input", str(speech_clips[0].path), "--fast", "--lm", str(lm_dir),
                            "--final", "ctc_lm", "--output", str(out), "--no-punctuate"])
    assert r.exit_code == 0, r.output
    words = out.read_text().split()
    assert words and set(words) <= vocab


def test_live_and_the_api_choose_the_same_second_pass_with_an_lm(lm_dir):
    """One policy for the second pass (Recognizer: auto): `asr live --lm` and `model.stream(lm_dir=...)` agree
    (the command line used to commit ctc_lm text where the API committed attention rescoring)."""
    from asr.inference.model_dir import load_model
    from asr.inference.streaming import Recognizer, StreamingOptions, streaming_options

    loaded = load_model("demo")
    api = Recognizer(loaded, streaming_options(lm_dir=str(lm_dir)))
    cli = Recognizer(loaded, StreamingOptions(final="auto", decode=api.options.decode))
    assert api.options.final == cli.options.final == "attention_rescoring"


def test_neural_lm_trains_loads_and_fuses(lm_dir, random_model_dir, speech_clips, tmp_path):
    import shutil

    from asr.inference.model_dir import load_model
    from asr.lm import LMError
    from asr.lm.neural import load_neural_lm

    d = tmp_path / "lm"
    shutil.copytree(lm_dir, d)
    clip = str(speech_clips[0].path)
    r = runner.invoke(app, ["transcribe", clip, "--model", str(random_model_dir), "--decoder", "joint_ctc_attention",
                            "--lm", str(d), "--nlm-weight", "0.3", "--no-progress"])
    assert r.exit_code == 1 and "asr lm train --neural" in r.output and "Traceback" not in r.output
    text = tmp_path / "t.txt"
    text.write_text("\n".join(TEXT * 20) + "\n")
    r = runner.invoke(app, ["lm", "train", str(text), "--out", str(d), "--model", str(random_model_dir), "--neural",
                            "--neural-minutes", "0.1", "--neural-dim", "32"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((d / "nlm.json").read_text())
    assert cfg["heldout_token_perplexity"] > 1 and cfg["epochs"]
    loaded = load_model(random_model_dir)
    nlm = load_neural_lm(d, loaded.tokenizer, loaded.model.cfg.vocab_size)
    known, odd = [loaded.tokenizer.encode(s) for s in ("THE LAZY FOX", "XQZ FOX LAZY THE")]
    a, b = nlm.sentence_log_prob([known, odd])
    assert a > b  # it learned something of the text
    with pytest.raises(LMError, match="tokens"):
        load_neural_lm(d, None, loaded.model.cfg.vocab_size + 1)
    from asr.search.methods import ar_scorers
    from asr.search.options import DecodeOptions

    names = lambda o: [x.name for x in ar_scorers(loaded.model, o, loaded.tokenizer, 4, "cpu")]  # noqa: E731
    assert names(DecodeOptions(lm=str(d))) == ["neural_lm"]  # the neural LM alone when the directory has one
    assert names(DecodeOptions(lm=str(d), nlm_weight=0.0)) == ["ngram"]
    assert names(DecodeOptions(lm=str(lm_dir))) == ["ngram"]
    for method in ("joint_ctc_attention", "attention_beam", "attention_rescoring"):
        r = runner.invoke(app, ["transcribe", clip, "--model", str(random_model_dir), "--decoder", method, "--lm", str(d),
                                "--nlm-weight", "0.3", "--no-progress"])
        assert r.exit_code == 0, (method, r.output)
    (d / "nlm.safetensors").write_bytes(b"broken")
    r = runner.invoke(app, ["transcribe", clip, "--model", str(random_model_dir), "--decoder", "joint_ctc_attention",
                            "--lm", str(d), "--nlm-weight", "0.3", "--no-progress"])
    assert r.exit_code == 1 and "cannot load the neural LM" in r.output and "Traceback" not in r.output, r.output


def test_hotwords_from_the_command_line(random_model_dir, speech_clips, tmp_path):
    clip = str(speech_clips[0].path)
    hot = tmp_path / "hot.txt"
    hot.write_text("QUIXOTIC ZEBRA 40\n")
    for method in ("ctc_prefix_beam", "joint_ctc_attention", "attention_rescoring"):  # biasing itself: test_scorers
        r = runner.invoke(app, ["transcribe", clip, "--model", str(random_model_dir), "--decoder", method,
                                "--hotwords", str(hot), "--no-progress"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["live", "--model", str(random_model_dir), "--input", clip, "--fast", "--hotwords", str(hot)])
    assert r.exit_code == 0, r.output  # streaming partials (and the second pass) take them too
    hot.write_text("ZEBRA nan\n")
    r = runner.invoke(app, ["transcribe", clip, "--model", str(random_model_dir), "--hotwords", str(hot), "--no-progress"])
    assert r.exit_code == 1 and "hot.txt:1" in r.output and "Traceback" not in r.output


def test_eval_compare_lm_puts_both_rows_in_the_table(lm_dir, random_model_dir, tiny_manifests, tmp_path):
    out = tmp_path / "eval"
    r = runner.invoke(app, ["eval", "--model", str(random_model_dir), "--manifests", str(tiny_manifests), "--subset", "dev",
                            "--limit", "2", "--decoder", "ctc_greedy", "--decoder", "ctc_prefix_beam", "--decoder",
                            "joint_ctc_attention", "--lm", str(lm_dir), "--compare-lm", "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads((out / "dev.results.json").read_text())[i]["decoder"] for i in range(5)]
    assert rows == ["ctc_greedy", "ctc_prefix_beam", "ctc_prefix_beam+lm", "joint_ctc_attention", "joint_ctc_attention+lm"]
    assert (out / "dev_joint_ctc_attention+lm.details.txt").is_file() and (out / "dev.wer_vs_rtf.png").is_file()
