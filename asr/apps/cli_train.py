"""``asr train``, ``asr average``, ``asr export-model``, ``asr export-onnx``, ``asr export-sherpa``, ``asr import espnet|whisper``: from manifests to model
directories and deployable graphs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from asr.apps.cli_common import _fail, _run, app, sigterm_as_interrupt


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
    sigterm_as_interrupt()
    try:
        summary = _run(train, cfg, manifests, lang, exp, train_subset, valid_subset, resume=resume,
                       device=device, progress=progress, curve_subset=curve_subset, overwrite=overwrite, init=init)
    except KeyboardInterrupt:  # the trainer saved a checkpoint and said where
        raise typer.Exit(130) from None
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
    from asr.evaluation.evaluate import measure_into_card
    from asr.train.export import export_model

    path = _run(export_model, exp, out, average, half=half, select=select, interpolate=interpolate, alpha=alpha)
    typer.echo(f"exported {path}")
    if manifests:
        _run(measure_into_card, path, manifests, subsets or ["test"], log=typer.echo)


@app.command("export-onnx")
def export_onnx_cmd(
    model: str = typer.Argument(..., help="Model directory (asr export-model) or a bundled model's name."),
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



@app.command("export-sherpa")
def export_sherpa_cmd(
    model: str = typer.Argument(..., help="Model directory (asr export-model) or a bundled model's name."),
    out: Path = typer.Argument(..., help="Folder for model.onnx, model-streaming.onnx and tokens.txt."),
    chunk: int = typer.Option(16, help="Chunk size (encoder frames) the streaming graph is checked with and its metadata names; sherpa-onnx's chunk_size may differ."),
    left_chunks: int = typer.Option(4, help="Left chunks of attention cache for the check and the metadata (sherpa-onnx's num_left_chunks)."),
) -> None:
    """Export the CTC model for sherpa-onnx in the layout of its WeNet CTC models (run it with
    sherpa_onnx.OfflineRecognizer.from_wenet_ctc / OnlineRecognizer.from_wenet_ctc), and check the graphs against
    PyTorch."""
    from asr.export.sherpa import export_sherpa

    if chunk < 1 or left_chunks < 1:
        _fail("--chunk and --left-chunks must be at least 1")
    info = _run(export_sherpa, model, out, chunk, left_chunks)
    typer.echo(json.dumps(info, indent=2))
    worst = max(v for k, v in info.items() if k.startswith("max_abs_diff"))
    if worst > 1e-4:
        _fail(f"{out}: onnxruntime differs from PyTorch by {worst:.2e} (more than 1e-4)")


import_app = typer.Typer(help="Models from other toolkits: an ESPnet or Whisper model becomes an asr model directory.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("espnet")
def import_espnet_cmd(
    config: Path = typer.Argument(..., help="ESPnet's training config (exp/asr_train_*/config.yaml)."),
    model: Path = typer.Argument(..., help="ESPnet's weights (e.g. valid.acc.ave.pth)."),
    out: Path = typer.Argument(..., help="Model directory to write."),
    bpe_model: Optional[Path] = typer.Option(None, "--bpe-model", help="The SentencePiece model, when the config's bpemodel path does not resolve (it is tried as written, then beside the config and in its parent folders)."),
) -> None:
    """Import an ESPnet conformer model (joint CTC/attention, or Mask-CTC) with its BPE model and global MVN
    statistics. A model this toolkit cannot compute exactly is refused with one line naming the option."""
    from asr.importers.espnet import import_espnet
    from asr.inference.model_dir import load_model

    path = _run(import_espnet, config, model, out, bpe_model)
    loaded = load_model(path)
    decoders = ["ctc_greedy", "ctc_prefix_beam"] + (["attention_beam", "joint_ctc_attention"] if loaded.model.decoder
                                                    is not None else []) + (["mask_ctc"] if loaded.model.mlm is not None else [])
    typer.echo(f"{path}: imported ({loaded.tokenizer.vocab_size} ids; decoders: {', '.join(decoders)}; full context "
               "only: asr transcribe / asr eval)")


@import_app.command("whisper")
def import_whisper_cmd(
    src: str = typer.Argument(..., help="A CTranslate2 Whisper folder (faster-whisper's: model.bin), an OpenAI checkpoint (*.pt), a transformers Whisper folder (config.json + model.safetensors), or a Hugging Face repo id of one (downloaded; needs a network)."),
    out: Path = typer.Argument(..., help="Model directory to write."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Whisper's tokenizer.json, where the source has none (an OpenAI .pt)."),
) -> None:
    """Import a Whisper model (the attention decoder over Whisper's 30-s window; no CTC head). Anything this toolkit
    cannot compute exactly is refused with one line."""
    from asr.importers.whisper import fetch_source, import_whisper
    from asr.inference.model_dir import load_model

    path = _run(import_whisper, _run(fetch_source, src), out, tokenizer)
    loaded = load_model(path)
    typer.echo(f"{path}: imported ({loaded.tokenizer.vocab_size} ids; decoders: attention_beam; full context only: "
               "asr transcribe / asr eval)")


punct_app = typer.Typer(help="Punctuation and casing: train the model that restores them on recognized text.",
                        no_args_is_help=True)
app.add_typer(punct_app, name="punctuator")


@punct_app.command("train")
def punctuator_train_cmd(
    out: Path = typer.Option(..., "--out", help="Punctuator directory to write (config.json, model.safetensors, tokenizer.model)."),
    texts: List[str] = typer.Option(["bible", "fortunes", "devil", "jargon"], "--text", help="Text sources: bible, fortunes, devil, jargon (Debian packages), or UTF-8 text files (repeatable)."),
    minutes: float = typer.Option(9.0, help="Wall-time budget of the training (the schedule runs over it)."),
    exclude_manifests: Optional[Path] = typer.Option(None, "--exclude-manifests", help="Leave out every transcript of these manifests' --exclude-subset subsets."),
    exclude_subsets: List[str] = typer.Option(["dev", "test"], "--exclude-subset", help="Subsets whose sentences must not be trained on (repeatable)."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    seed: int = typer.Option(0, help="Random seed."),
    arch: str = typer.Option("lstm", help="lstm (a bidirectional LSTM) or transformer."),
    dim: int = typer.Option(256, help="Model width (both LSTM directions together)."),
    layers: int = typer.Option(2, help="Layers."),
    lr: float = typer.Option(2e-3, help="Peak learning rate."),
    dropout: float = typer.Option(0.25, help="Dropout between layers and before the heads."),
) -> None:
    """Train the punctuation and casing model on written text (dev / test blocks held out) and print its card:
    F1 per mark and case accuracy on held-out text."""
    import torch

    from asr.lm import excluded_sentences
    from asr.train.punctuator import train_punctuator

    if not minutes > 0:
        _fail(f"--minutes must be positive, not {minutes}")
    if threads:
        torch.set_num_threads(threads)
    exclude = _run(excluded_sentences, exclude_manifests, exclude_subsets) if exclude_manifests else set()
    from asr.models.punctuator import PunctuatorConfig

    cfg = _run(PunctuatorConfig, arch=arch, dim=dim, layers=layers, dropout=dropout)
    card = _run(train_punctuator, texts, out, minutes, exclude, cfg=cfg, lr=lr, seed=seed, log=typer.echo)
    typer.echo(json.dumps({k: v for k, v in card.items() if k != "curve"}, indent=2))
