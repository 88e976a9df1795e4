"""Frozen dataclasses for every configuration, and the only YAML reader/writer.

A config file holds ``model:`` and ``train:`` sections; presets ship in ``asr/conf/NAME.yaml``
(``tiny``, ``base``, ``large``) and any key can be overridden with ``section.key=value`` strings.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asr.errors import UserError
from asr.files import write_atomic

PRESET_DIR = Path(__file__).parent / "conf"
# the model every command and asr.load_model() use when none is named (a bundled name or a directory; ASR_MODEL
# overrides it: the test suite runs on the small demo model)
DEFAULT_MODEL = os.environ.get("ASR_MODEL") or "whisper-tiny-en"
# the bundled model whose CTC partials live captions show when the model named cannot stream: Whisper's encoder with
# the toolkit's streaming CTC head (docs/whisper.md; on real speech in 640-ms chunks it beats the demo, at half its cost)
STREAMING_MODEL = "whisper-tiny-en-ctc"


@dataclass(frozen=True)
class EncoderConfig:
    kind: str = "conformer"  # conformer | whisper (asr.models.interface.ENCODERS)
    input_dim: int = 80  # feature bins
    d_model: int = 256  # attention dimension
    num_heads: int = 4
    ffn_dim: int = 2048  # feed-forward inner dimension
    num_layers: int = 12
    kernel_size: int = 15  # depthwise convolution kernel
    subsampling: int = 4  # 4, 6 or 8 (conv2d front end)
    subsampling_channels: int = 0  # conv2d front-end channels (0: d_model, as in WeNet/ESPnet)
    dropout: float = 0.1
    attention_dropout: float = 0.0
    causal_conv: bool = True  # causal depthwise conv: needed for exact streaming (chunk) decoding
    # Dynamic chunk training (U2): a batch uses full context with probability 1 - chunk_prob,
    # otherwise a random chunk of 1..max_chunk frames (after subsampling) and random left context.
    chunk_prob: float = 0.5
    max_chunk: int = 25
    max_left_chunks: int = 8  # random left context is 1..max_left_chunks chunks or unlimited
    # ESPnet's conformer (asr import espnet): the subsampled input scaled by sqrt(d_model) before the layers,
    # and one LayerNorm after them
    input_scale: bool = False
    final_norm: bool = False
    rel_pos: str = "latest"  # relative positions: latest (distances -(T-1)..T-1) | legacy (ESPnet's pre-2021 layout:
    # the first T rows of a table of positions L-1 .. 0, L = max(legacy_max_len, T), and Transformer-XL's shift;
    # full context only)
    legacy_max_len: int = 5000  # ESPnet's max_pos_emb_len
    # the whisper encoder: absolute positions (its 30-s window: 1500) and, for Whisper's own decoder, the input
    # padded with zeros to pad_to feature frames (3000) and attended whole (0: the real length)
    max_positions: int = 0
    pad_to: int = 0

    def __post_init__(self) -> None:
        for name in ("input_dim", "d_model", "num_heads", "ffn_dim", "num_layers"):
            if getattr(self, name) < 1:
                raise UserError(f"encoder.{name} must be at least 1, not {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise UserError(f"encoder.d_model {self.d_model} must be a multiple of encoder.num_heads {self.num_heads}")


@dataclass(frozen=True)
class DecoderConfig:
    num_layers: int = 6  # 0 disables the attention decoder
    num_heads: int = 4
    ffn_dim: int = 2048
    dropout: float = 0.1
    r2l_layers: int = 0  # > 0 adds a right-to-left decoder for bidirectional rescoring
    activation: str = "swish"  # feed-forward activation: swish | relu (ESPnet's and WeNet's Transformer decoders) |
    # gelu (Whisper's)
    positions: str = "sinusoid"  # sinusoid (token embeddings scaled by sqrt(d)) | learned (Whisper's: max_positions
    max_positions: int = 0  # rows, embeddings not scaled)
    tie_output: bool = False  # the output projection is the token embedding (Whisper's), with a bias of its own
    alignment_heads: tuple = ()  # (layer, head) pairs whose cross-attention times words (Whisper's; () = all heads
    # of the last half of the layers, openai-whisper's default)


@dataclass(frozen=True)
class MLMConfig:
    num_layers: int = 0  # Mask-CTC conditional masked LM decoder; 0 disables it
    num_heads: int = 4
    ffn_dim: int = 2048
    dropout: float = 0.1
    activation: str = "swish"  # swish | relu | gelu
    tied: bool = False  # read and write tokens through the attention decoder's embedding (a Whisper model's MLM)


FRONTENDS = ("fbank", "stft_logmel", "whisper_logmel")


@dataclass(frozen=True)
class FrontendConfig:
    """Waveform -> features (the registry: ``asr.features.FRONTENDS``). ``fbank``: Kaldi-compatible log-mel fbank
    (25-ms windows, 10-ms hop, snip_edges; the toolkit's own); ``stft_logmel``: ESPnet's DefaultFrontend (centred
    STFT with a periodic Hann window, power spectrum, Slaney mel filters, natural log floored at 1e-10), for models
    imported from ESPnet; ``whisper_logmel``: Whisper's (n_fft 400, hop 160, Slaney mel, log10 floored at max - 8,
    then (x + 4) / 4), for models imported from Whisper."""
    kind: str = "fbank"
    n_mels: int = 80
    n_fft: int = 512  # stft_logmel only
    win_length: int = 512
    hop_length: int = 160
    fmin: float = 0.0
    fmax: float = 8000.0

    @property
    def frame_seconds(self) -> float:
        """Seconds between feature frames (fbank: 10 ms; stft_logmel: ``hop_length`` samples at 16 kHz)."""
        return 0.010 if self.kind == "fbank" else self.hop_length / 16000

    def __post_init__(self) -> None:
        if self.kind not in FRONTENDS:
            raise UserError(f"frontend kind must be one of {', '.join(FRONTENDS)}, not {self.kind!r}")
        if self.kind == "fbank" and self.n_mels != 80:
            raise UserError(f"frontend fbank computes 80 mel bins, not {self.n_mels}")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 0  # filled in from the tokenizer
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    ctc_weight: float = 0.3  # loss = ctc_weight * CTC + att_weight * CE + mlm_weight * MLM
    att_weight: float = 0.7
    mlm_weight: float = 0.0
    r2l_weight: float = 0.3  # share of the attention loss given to the right-to-left decoder
    label_smoothing: float = 0.1
    inter_ctc_layer: int = 0  # intermediate CTC (Lee & Watanabe 2021): also apply the CTC loss (shared head) to
    inter_ctc_weight: float = 0.3  # this encoder layer's output (1-based; 0: off); CTC term = (1-w) final + w inter
    ctc_tied: bool = False  # the CTC head projects onto the attention decoder's token embedding (asr.models.ctc.
    # TiedCTCHead: a Whisper vocabulary of 51k ids for D x D parameters instead of D x V)
    ctc_vocab: int = 0  # a tied CTC head covers this many ids (its vocab buffer; 0: every id)
    beam_rules: str = "asr"  # the AR beam search's rules for this model when decoding asks for "auto" (asr | whisper:
    # the rules its decoder was trained with; asr.search.options.DecodeOptions.beam_rules)
    ctc_companion: str = ""  # a model directory (or bundled name) whose CTC head scores this model's joint decoding
    # in its own units (a model without a CTC head: Whisper's decoder with whisper-tiny-en-ctc; asr.search.cross_ctc)
    companion_weight: float = 0.08  # the companion's CTC weight in joint_ctc_attention (DecodeOptions.companion_weight)


@dataclass(frozen=True)
class TrainConfig:
    max_duration: float = 120.0  # seconds of audio per batch (before accumulation)
    num_buckets: int = 10  # lhotse dynamic bucketing
    accum_grad: int = 1
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 500
    schedule: str = "noam"  # noam (inverse sqrt after warmup) | cosine
    schedule_over: str = "steps"  # cosine decays over total_steps | minutes (max_minutes of training wall time)
    total_steps: int = 0  # stop after this many optimizer steps (0: use epochs)
    epochs: int = 100
    max_minutes: float = 0.0  # stop after this much wall time (0: no limit)
    weight_decay: float = 1e-3
    grad_clip: float = 5.0
    # exponential moving average of the weights (e.g. 0.999; 0: off), updated every step after warm-up; validated
    # next to the raw weights, and what checkpoints are ranked by and export averages
    ema_decay: float = 0.0
    speed_perturb: bool = True  # 0.9 / 1.0 / 1.1
    spec_augment: bool = True
    vtlp: float = 0.0  # vocal-tract-length perturbation: each utterance's spectrum stretched by 1 +- up to this
    plain_steps: int = 0  # first N steps without SpecAugment and chunk masks (leave the CTC plateau sooner)
    curriculum_steps: int = 0  # first N steps draw only utterances of at most curriculum_max_seconds (SortaGrad-like)
    curriculum_max_seconds: float = 3.0
    shuffle_batches: bool = True  # shuffle each epoch's length-bucketed batches (else the epoch ends on one bucket)
    num_workers: int = 1
    amp: str = "auto"  # auto (bf16 on CUDA when supported) | none | fp16 | bf16
    log_every: int = 20
    valid_every: int = 200  # steps between validation (loss + CTC greedy WER)
    valid_max_cuts: int = 200
    checkpoint_every: int = 200
    keep_last: int = 5
    keep_best: int = 5  # also keep the checkpoints with the lowest dev CER (export --select best averages them)
    freeze: tuple = ()  # parameter-name prefixes kept as they are (e.g. ["decoder.embed."]: a pretrained embedding)
    head_lr_scale: float = 1.0  # learning-rate factor of the CTC head and the Mask-CTC decoder (ctc., mlm.): heads
    # new to a pretrained model learn from scratch while the rest is fine-tuned
    feature_cache: str = ""  # folder for cached fbank features ("" = compute every time; "auto" = MANIFESTS/feature_cache)
    seed: int = 0


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------- YAML I/O


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


def from_dict(cls: type, data: dict | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a (nested) dict; unknown keys are an error naming the key."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UserError(f"unknown config key(s) {sorted(unknown)} in {where or cls.__name__}; "
                         f"known: {sorted(names)}")
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        t, v = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(t):
            kwargs[f.name] = from_dict(t, v, f"{where}.{f.name}" if where else f.name)
        elif t is float and isinstance(v, int) and not isinstance(v, bool):
            kwargs[f.name] = float(v)
        else:
            base = typing.get_origin(t) or t
            if isinstance(base, type) and not isinstance(v, base) and not (base is tuple and isinstance(v, list)):
                hint = " (YAML reads yes/no/on/off as booleans: quote the value)" if isinstance(v, bool) else ""
                raise UserError(f"{where + '.' if where else ''}{f.name}: expected {base.__name__}, got "
                                 f"{type(v).__name__} {v!r}{hint}")
            kwargs[f.name] = tuple(v) if base is tuple else v
    return cls(**kwargs)


def _set_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def load_config(path_or_preset: str | os.PathLike, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config (a path, or a preset name: tiny, base, large) and apply ``key=value`` overrides."""
    p = Path(path_or_preset)
    if not p.is_file():
        preset = PRESET_DIR / f"{path_or_preset}.yaml"
        if not preset.is_file():
            names = sorted(x.stem for x in PRESET_DIR.glob("*.yaml"))
            raise FileNotFoundError(f"{path_or_preset}: no such config file or preset (presets: {names})")
        p = preset
    data = yaml.safe_load(p.read_text()) or {}
    for o in overrides:
        key, sep, val = o.partition("=")
        if not sep:
            raise UserError(f"override {o!r}: expected section.key=value")
        _set_path(data, key.strip(), yaml.safe_load(val))
    return from_dict(Config, data)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write atomically as YAML."""

    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)


# Streaming endpoint defaults (asr.inference.streaming.EndpointConfig and `asr live` read them). The pause after speech
# was chosen on 100 dev utterances at 640-ms chunks (end of speech to commit, median / WER: 0.4 s 0.87 s / 67.8%,
# 0.5 s 0.94 s / 67.8%, 0.6 s 1.01 s / 67.4%, 0.8 s 1.25 s / 67.4%; `asr bench-stream --manifests M --subset dev
# --pause P`).
ENDPOINT_IDLE_SECONDS = 2.4  # rule 1: nothing said for this long
ENDPOINT_PAUSE_SECONDS = 0.5  # rule 2: silence after speech
ENDPOINT_MAX_SEGMENT_SECONDS = 20.0  # rule 3: longest segment
# streams whose second passes run in one padded batch: on CPU one at a time is fastest and smallest (50 streams' attention
# rescoring at once: 66 s and 4.9 GB peak; 8 at a time 61 s, 1.6 GB; one 56 s, 1.1 GB: docs/serving.md); more on a GPU
SECOND_PASS_BATCH = 1
# background commits (StreamingOptions.background_commits): with this many second passes unfinished on the commit thread
# (one running, one queued), a segment that ends commits its partial's best path instead (light): no unbounded queue
COMMIT_BACKLOG = 2
DECODE_WORKERS = max(1, min(2, os.cpu_count() or 1))  # caption server: decoding threads (docs/serving.md)
MAX_LIVE_STREAMS = 20  # caption server: live audio clients at once (asr bench-serve: demo, 640 ms; docs/serving.md)
