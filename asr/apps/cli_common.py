"""What every ``asr`` command shares: the typer apps, one-line errors, model loading, and the decoding
flags (declared once, given to every command that decodes)."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Optional

import typer

from asr.config import DEFAULT_MODEL  # noqa: F401 - the commands' default --model
from asr.search.hotwords import DEFAULT_BOOST as HOTWORD_DEFAULT_BOOST
from asr.search.options import DEFAULTS

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

# Errors a user can cause with their input: printed as one line, never a traceback. The library raises
# asr.errors.UserError (and its subclasses) on purpose; any other exception is a bug and keeps its traceback.
def user_errors() -> tuple[type[BaseException], ...]:
    from asr.errors import UserError

    return (UserError, FileNotFoundError, IsADirectoryError, PermissionError)


def sigterm_as_interrupt() -> None:
    """SIGTERM (a service manager stopping us, `kill`) ends a command as Ctrl-C does: training saves a checkpoint,
    live captions keep their last segment."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except user_errors() as e:
        msg = str(e)
        if msg.startswith("Caught "):  # re-raised from a DataLoader worker: the original error is the last line
            msg = msg.strip().splitlines()[-1].split(": ", 1)[-1]
        _fail(msg)





def load(model: str, device: str = "cpu", quantize: Optional[str] = None, backend: str = "torch"):
    """A model directory (or ``demo``) for the CLI: PyTorch, or an ``asr export-onnx`` directory with onnxruntime."""
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        _fail(f"--device {device!r}: not a compute device (cpu, cuda, cuda:N, mps)")
    if backend == "onnx":
        if quantize or not str(device).startswith("cpu"):
            _fail("--backend onnx runs on the CPU, without --quantize")
        from asr.export.onnx_runtime import load_onnx_model

        return _run(load_onnx_model, model)
    if backend != "torch":
        _fail(f"unknown backend {backend!r}; choose torch or onnx")
    from asr.inference.model_dir import load_model

    return _run(load_model, model, device, quantize)


# The decoding flags, declared once: name -> (type, option). `with_decode_flags` adds them to a command and hands
# the command one dict, which `asr.search.options.decode_options` turns into DecodeOptions (LM card included).
DECODE_FLAGS = {
    "beam": (int, typer.Option(DEFAULTS.beam, help="Beam size (beam-search decoders).")),
    "ctc_weight": (float, typer.Option(DEFAULTS.ctc_weight, help="CTC weight in joint_ctc_attention.")),
    "companion_weight": (Optional[float], typer.Option(None, help="joint_ctc_attention on a model whose CTC comes from a companion model (whisper-tiny-en): that CTC's weight (default: the model's own, 0.08 for whisper-tiny-en).")),
    "mask_threshold": (float, typer.Option(DEFAULTS.mask_threshold, help="Mask-CTC: re-predict tokens with CTC confidence below this.")),
    "mask_iterations": (int, typer.Option(DEFAULTS.mask_iterations, help="Mask-CTC iterations.")),
    "espnet_rules": (bool, typer.Option(False, "--espnet-rules", help="Search as ESPnet does (for models from asr import espnet): beams ranked by summed scores with no length normalisation, eos threshold or CTC length window; ESPnet's Mask-CTC schedule.")),
    "lm_dir": (Optional[Path], typer.Option(None, "--lm", help="LM directory (asr lm train): enables the ctc_lm decoder (lexicon + word n-gram) and fusion in the others.")),
    "lm_weight": (Optional[float], typer.Option(None, help=f"ctc_lm: LM weight (default: the LM card's tuned value, else {DEFAULTS.lm_weight}).")),
    "word_score": (Optional[float], typer.Option(None, help=f"ctc_lm: score added per word (default: tuned, else {DEFAULTS.word_score}).")),
    "lm_beam": (int, typer.Option(DEFAULTS.lm_beam, help="ctc_lm: beam size (500: more accurate, about 4x slower).")),
    "fusion_weight": (float, typer.Option(DEFAULTS.fusion_weight, help="With --lm: word n-gram weight fused into ctc_prefix_beam / attention_rescoring (0: off).")),
    "fusion_word_score": (float, typer.Option(DEFAULTS.fusion_word_score, help="With --lm: bonus per completed word in that fusion.")),
    "ar_fusion_weight": (float, typer.Option(DEFAULTS.ar_fusion_weight, help="With --lm and no neural LM in use (--nlm-weight 0 or none there): word n-gram weight fused into attention_beam / joint_ctc_attention (0: off).")),
    "ar_fusion_word_score": (float, typer.Option(DEFAULTS.ar_fusion_word_score, help="With --lm: bonus per completed word in that fusion.")),
    "nlm_weight": (Optional[float], typer.Option(None, help=f"With --lm holding a neural LM (asr lm train --neural): its weight in the AR/joint search and attention_rescoring (default {DEFAULTS.nlm_weight}; 0: off).")),
    "hotwords": (Optional[Path], typer.Option(None, "--hotwords", help="File of hotwords to favour, one phrase a line, optionally followed by its boost.")),
    "hotword_boost": (float, typer.Option(HOTWORD_DEFAULT_BOOST, help="Boost per token of a hotword line that gives none.")),
}


def with_decode_flags(fn):
    """Give a command every decoding flag; it receives them as one dict in its ``decode`` parameter."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name != "decode"]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=typ)
             for n, (typ, opt) in DECODE_FLAGS.items()]

    @functools.wraps(fn)
    def command(*args, **kwargs):
        flags = {n: kwargs.pop(n) for n in DECODE_FLAGS}
        return fn(*args, decode=flags, **kwargs)

    command.__signature__ = sig.replace(parameters=own + extra)
    command.__annotations__ = {p.name: p.annotation for p in own + extra}
    return command


def decode_options_from(flags: dict, **extra):
    """The decoding flags (``with_decode_flags``) -> DecodeOptions, a bad value a one-line error."""
    from asr.search.options import decode_options

    flags = dict(flags, **extra)
    return _run(decode_options, flags.pop("lm_dir"), flags.pop("hotwords"), flags.pop("hotword_boost"),
                flags.pop("espnet_rules", False), **flags)


def check_decoders(loaded, opts, methods: list[str]) -> None:
    """Each decoder must be one this model has; its LMs load now, so a bad LM directory is one line."""
    from asr.search.methods import available_methods, check_lms

    have = available_methods(loaded.model, with_lm=bool(opts.lm))
    for m in methods:
        if m not in have:
            _fail(f"decoder {m!r} is not available for {loaded.path}" + (" without --lm" if m == "ctc_lm" else "")
                  + f" (it has: {', '.join(have)})")
    _run(check_lms, loaded.model, loaded.tokenizer, opts, methods)


BACKEND_OPT = typer.Option("torch", "--backend", help="torch, or onnx: run an `asr export-onnx` directory (--model) with onnxruntime.")
QUANTIZE_OPT = typer.Option(None, "--quantize", help="int8: dynamic int8 Linear layers (CPU); bf16: bfloat16 weights (fast on CPUs with AMX / AVX512-BF16 and on GPUs). See the README for speed and WER.")
