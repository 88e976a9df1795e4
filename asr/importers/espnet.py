"""ESPnet ASR models -> ``asr`` model directories (``asr import espnet CONFIG MODEL OUT``).

What maps, and how (ESPnet 202511's espnet2 modules):

* front end ``default`` (STFT -> power -> Slaney mel -> log) -> ``FrontendConfig(kind="stft_logmel")``;
* ``global_mvn`` -> the model's CMVN buffers (ESPnet keeps mean and std in the weights as ``normalize.*``);
* ``conformer`` encoder (macaron FFNs, convolution module, pre-norm, swish) -> our Conformer with ``input_scale``
  (ESPnet multiplies the subsampled input by sqrt(d)), ``final_norm`` (its ``after_norm``) and ``rel_pos``
  (``latest``, or ``legacy``: ESPnet's pre-2021 layout, its default); the convolution stays non-causal, so the
  imported model decodes full context only;
* ``transformer`` decoder -> our attention decoder with ``activation: relu``; ``mlm`` (Mask-CTC) -> our MLM;
* the token list (``<blank>``, ``<unk>``, BPE pieces in ESPnet's frequency order, ``<sos/eos>``[, ``<mask>``]) ->
  our layout (blank 0, SentencePiece id + 1, mask V-2, sos/eos V-1): rows of every output layer and embedding are
  permuted; ids the token list lacks (pieces never seen in ESPnet's training text) get a -1e4 output bias, so
  they are never chosen and leave every other log-probability unchanged.

Anything else (another encoder, a front end other than 16-kHz STFT log-mel, char tokens, pre/post-encoders) is
refused with one line naming the option.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml
from safetensors.torch import save_file

from asr.config import (
    Config,
    DecoderConfig,
    EncoderConfig,
    FrontendConfig,
    MLMConfig,
    ModelConfig,
    replace,
    save_config,
    to_dict,
)
from asr.errors import first_line
from asr.features import GlobalCMVN
from asr.files import atomic_model_dir
from asr.importers import ImportRefused
from asr.models.asr_model import ASRModel
from asr.text import Tokenizer, special_ids

NEVER = -1e4  # output bias of ids the ESPnet vocabulary lacks
SUBSAMPLING = {"conv2d": 4, "conv2d6": 6, "conv2d8": 8}


# ESPnet's defaults (espnet2 202511) for the options that change what the network computes
ENCODER_DEFAULTS = dict(output_size=256, attention_heads=4, linear_units=2048, num_blocks=6, dropout_rate=0.1,
                        positional_dropout_rate=0.1, attention_dropout_rate=0.0, input_layer="conv2d",
                        normalize_before=True, concat_after=False, positionwise_layer_type="linear",
                        positionwise_conv_kernel_size=3, macaron_style=False, rel_pos_type="legacy",
                        pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
                        activation_type="swish", use_cnn_module=True, zero_triu=False, cnn_module_kernel=31,
                        padding_idx=-1, interctc_layer_idx=[], interctc_use_conditioning=False, ctc_trim=False,
                        stochastic_depth_rate=0.0, layer_drop_rate=0.0, max_pos_emb_len=5000, qk_norm=False,
                        use_flash_attn=True)
# the values this toolkit computes exactly (a key absent here may take any value: training-only options)
ENCODER_REQUIRED = dict(normalize_before=True, concat_after=False, positionwise_layer_type="linear",
                        macaron_style=True, activation_type="swish", use_cnn_module=True,
                        zero_triu=False, interctc_use_conditioning=False, ctc_trim=False, qk_norm=False)
DECODER_DEFAULTS = dict(attention_heads=4, linear_units=2048, num_blocks=6, dropout_rate=0.1,
                        positional_dropout_rate=0.1, self_attention_dropout_rate=0.0, src_attention_dropout_rate=0.0,
                        input_layer="embed", use_output_layer=True, normalize_before=True, concat_after=False,
                        layer_drop_rate=0.0, qk_norm=False, use_flash_attn=True, gradient_checkpoint_layers=[])
DECODER_REQUIRED = dict(input_layer="embed", use_output_layer=True, normalize_before=True, concat_after=False,
                        qk_norm=False)
FRONTEND_DEFAULTS = dict(fs=16000, n_fft=512, win_length=None, hop_length=128, window="hann", center=True,
                         normalized=False, onesided=True, n_mels=80, fmin=None, fmax=None, htk=False,
                         frontend_conf=None, apply_stft=True)
FRONTEND_REQUIRED = dict(fs=16000, window="hann", center=True, normalized=False, onesided=True, htk=False,
                         frontend_conf=None, apply_stft=True)


def _options(section: str, given: dict | None, defaults: dict, required: dict) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ImportRefused(f"{section}: unknown option {unknown[0]} (not in ESPnet 202511's signature)")
    opts = {**defaults, **given}
    for k, want in required.items():
        if opts[k] != want:
            raise ImportRefused(f"{section}: {k}={opts[k]!r} is not supported (this toolkit computes {k}={want!r})")
    return opts


def _fs(value) -> int:
    if isinstance(value, str):  # ESPnet writes "16k"
        v = value.strip().lower()
        return int(float(v[:-1]) * 1000) if v.endswith("k") else int(float(v))
    return int(value)


def model_config(cfg: dict) -> tuple[ModelConfig, str]:
    """An ESPnet training config (its ``config.yaml``) -> our ``ModelConfig`` (vocab_size unset) and its kind
    (``joint`` or ``maskctc``). Raises :class:`ImportRefused`."""
    kind = {None: "joint", "espnet": "joint", "maskctc": "maskctc"}.get(cfg.get("model"))
    if kind is None:
        raise ImportRefused(f"model: {cfg.get('model')!r} is not supported (espnet or maskctc)")
    for key in ("preencoder", "postencoder"):
        if cfg.get(key):
            raise ImportRefused(f"{key}: {cfg[key]!r} is not supported (none)")
    if cfg.get("token_type") != "bpe":
        raise ImportRefused(f"token_type: {cfg.get('token_type')!r} is not supported (bpe)")
    if cfg.get("frontend") != "default":
        raise ImportRefused(f"frontend: {cfg.get('frontend')!r} is not supported (default: STFT log-mel)")
    fe = _options("frontend_conf", cfg.get("frontend_conf"), FRONTEND_DEFAULTS,
                  {k: v for k, v in FRONTEND_REQUIRED.items() if k != "fs"})
    if _fs(fe["fs"]) != 16000:
        raise ImportRefused(f"frontend_conf: fs={fe['fs']!r} is not supported (16 kHz)")
    if cfg.get("normalize") not in ("global_mvn", None):
        raise ImportRefused(f"normalize: {cfg.get('normalize')!r} is not supported (global_mvn or none)")
    if cfg.get("encoder") != "conformer":
        raise ImportRefused(f"encoder: {cfg.get('encoder')!r} is not supported (conformer)")
    e = _options("encoder_conf", cfg.get("encoder_conf"), ENCODER_DEFAULTS, ENCODER_REQUIRED)
    if e["rel_pos_type"] not in ("latest", "legacy"):
        raise ImportRefused(f"encoder_conf: rel_pos_type={e['rel_pos_type']!r} is not supported (latest, legacy)")
    for key, allowed in (("pos_enc_layer_type", ("rel_pos", "legacy_rel_pos")),
                         ("selfattention_layer_type", ("rel_selfattn", "legacy_rel_selfattn"))):
        if e[key] not in allowed:
            raise ImportRefused(f"encoder_conf: {key}={e[key]!r} is not supported ({', '.join(allowed)})")
    # ESPnet turns rel_pos / rel_selfattn into their legacy classes when rel_pos_type is legacy
    legacy = e["rel_pos_type"] == "legacy" or e["pos_enc_layer_type"] == "legacy_rel_pos"
    if legacy != (e["rel_pos_type"] == "legacy" or e["selfattention_layer_type"] == "legacy_rel_selfattn"):
        raise ImportRefused("encoder_conf: pos_enc_layer_type and selfattention_layer_type disagree on legacy positions")
    if e["input_layer"] not in SUBSAMPLING:
        raise ImportRefused(f"encoder_conf: input_layer={e['input_layer']!r} is not supported "
                            f"({', '.join(SUBSAMPLING)})")
    want_decoder = "transformer" if kind == "joint" else "mlm"
    if cfg.get("decoder") not in (want_decoder, None):
        raise ImportRefused(f"decoder: {cfg.get('decoder')!r} is not supported with model "
                            f"{cfg.get('model') or 'espnet'} ({want_decoder})")
    d = _options("decoder_conf", cfg.get("decoder_conf"), DECODER_DEFAULTS, DECODER_REQUIRED)
    n_fft = int(fe["n_fft"])
    front = FrontendConfig(kind="stft_logmel", n_mels=int(fe["n_mels"]), n_fft=n_fft,
                           win_length=int(fe["win_length"] or n_fft), hop_length=int(fe["hop_length"]),
                           fmin=float(fe["fmin"] or 0.0), fmax=float(fe["fmax"] if fe["fmax"] is not None else 8000.0))
    enc = EncoderConfig(input_dim=front.n_mels, d_model=int(e["output_size"]), num_heads=int(e["attention_heads"]),
                        ffn_dim=int(e["linear_units"]), num_layers=int(e["num_blocks"]),
                        kernel_size=int(e["cnn_module_kernel"]), subsampling=SUBSAMPLING[e["input_layer"]],
                        subsampling_channels=0, dropout=float(e["dropout_rate"]),
                        attention_dropout=float(e["attention_dropout_rate"]), causal_conv=False, chunk_prob=0.0,
                        input_scale=True, final_norm=True, rel_pos="legacy" if legacy else "latest",
                        legacy_max_len=int(e["max_pos_emb_len"]))
    ctc_weight = float((cfg.get("model_conf") or {}).get("ctc_weight", 0.5))
    has_decoder = cfg.get("decoder") is not None and ctc_weight < 1.0
    layers = int(d["num_blocks"]) if has_decoder else 0
    dec = DecoderConfig(num_layers=layers if kind == "joint" else 0, num_heads=int(d["attention_heads"]),
                        ffn_dim=int(d["linear_units"]), dropout=float(d["dropout_rate"]), r2l_layers=0,
                        activation="relu")
    mlm = MLMConfig(num_layers=layers if kind == "maskctc" else 0, num_heads=int(d["attention_heads"]),
                    ffn_dim=int(d["linear_units"]), dropout=float(d["dropout_rate"]), activation="relu")
    lsm = float((cfg.get("model_conf") or {}).get("lsm_weight", 0.0))
    model = ModelConfig(encoder=enc, decoder=dec, mlm=mlm, frontend=front, ctc_weight=ctc_weight,
                        att_weight=1.0 - ctc_weight if kind == "joint" and layers else 0.0,
                        mlm_weight=1.0 - ctc_weight if kind == "maskctc" and layers else 0.0, r2l_weight=0.0,
                        label_smoothing=lsm)
    return model, kind


def espnet_tokens(cfg: dict, config: Path, kind: str) -> list[str]:
    """ESPnet's token list as its model has it: the config's list (or file), ``<mask>`` last for Mask-CTC
    (MaskCTCModel appends it when it is built; a config saved after that already lists it)."""
    tokens = list(cfg["token_list"]) if isinstance(cfg["token_list"], list) else \
        _find(cfg["token_list"], config, "token list").read_text().split()
    return tokens + ["<mask>"] if kind == "maskctc" and tokens[-1] != "<mask>" else tokens


def token_permutation(token_list: list[str], tok: Tokenizer, kind: str) -> list[int]:
    """Our id of each ESPnet id (``<mask>`` included last for Mask-CTC models)."""
    blank, mask, sos = special_ids(tok.vocab_size)
    out, seen = [], {}
    for i, t in enumerate(token_list):
        if t == "<blank>":
            j = blank
        elif t == "<sos/eos>":
            j = sos
        elif t == "<mask>":
            j = mask
        else:
            j = tok.piece_to_id(t)
            if j is None:
                raise ImportRefused(f"token_list: {t!r} (id {i}) is not a piece of the BPE model")
        if j in seen:
            raise ImportRefused(f"token_list: {t!r} (id {i}) and id {seen[j]} are the same piece")
        seen[j] = i
        out.append(j)
    if token_list[0] != "<blank>" or token_list[-1 if kind == "joint" else -2] != "<sos/eos>":
        raise ImportRefused("token_list: expected <blank> first and <sos/eos> last (ESPnet's layout)")
    return out


def _rows(src: torch.Tensor, perm: list[int], V: int, fill: float) -> torch.Tensor:
    out = torch.full((V, *src.shape[1:]), fill, dtype=torch.float32)
    out[torch.tensor(perm)] = src.float()
    return out


ENCODER_LAYER_NAMES = {
    "self_attn.linear_q": "attn.q", "self_attn.linear_k": "attn.k", "self_attn.linear_v": "attn.v",
    "self_attn.linear_out": "attn.out", "self_attn.linear_pos": "attn.pos", "self_attn.pos_bias_u": "attn.pos_bias_u",
    "self_attn.pos_bias_v": "attn.pos_bias_v", "feed_forward.w_1": "ff2.0", "feed_forward.w_2": "ff2.3",
    "feed_forward_macaron.w_1": "ff1.0", "feed_forward_macaron.w_2": "ff1.3",
    "conv_module.pointwise_conv1": "conv.pointwise1", "conv_module.depthwise_conv": "conv.depthwise",
    "conv_module.norm": "conv.norm", "conv_module.pointwise_conv2": "conv.pointwise2", "norm_ff_macaron": "norm_ff1",
    "norm_mha": "norm_attn", "norm_conv": "norm_conv", "norm_ff": "norm_ff2", "norm_final": "norm_out",
}
DECODER_LAYER_NAMES = {
    "self_attn.linear_q": "self_attn.q", "self_attn.linear_k": "self_attn.k", "self_attn.linear_v": "self_attn.v",
    "self_attn.linear_out": "self_attn.out", "src_attn.linear_q": "src_attn.q", "src_attn.linear_k": "src_attn.k",
    "src_attn.linear_v": "src_attn.v", "src_attn.linear_out": "src_attn.out", "feed_forward.w_1": "ff.0",
    "feed_forward.w_2": "ff.3", "norm1": "norm1", "norm2": "norm2", "norm3": "norm3",
}


def _layer_name(parts: list[str], names: dict[str, str], ours: str) -> str | None:
    """``<part>.<encoders|decoders>.<i>.<ESPnet module>.<param>`` -> ``<ours>.layers.<i>.<our module>.<param>``."""
    layer, rest = parts[2], ".".join(parts[3:])
    for old, new in names.items():
        if rest == old or rest.startswith(old + "."):
            return f"{ours}.layers.{layer}.{new}{rest[len(old):]}"
    return None


def _rename(key: str, dec_name: str) -> str | None:
    """An ESPnet weight name -> ours (None: a weight with no counterpart)."""
    parts = key.split(".")
    if key.startswith("encoder.embed.conv."):
        return "encoder.subsampling.conv." + ".".join(parts[3:])
    if key.startswith("encoder.embed.out.0."):
        return "encoder.subsampling.out." + parts[-1]
    if key.startswith("encoder.after_norm."):
        return "encoder.final_norm." + parts[-1]
    if key.startswith("encoder.encoders."):
        return _layer_name(parts, ENCODER_LAYER_NAMES, "encoder")
    if key.startswith("ctc.ctc_lo."):
        return "ctc.proj." + parts[-1]
    if key.startswith("decoder.embed.0."):
        return f"{dec_name}.embed.weight"
    if key.startswith("decoder.after_norm."):
        return f"{dec_name}.norm.{parts[-1]}"
    if key.startswith("decoder.output_layer."):
        return f"{dec_name}.out.{parts[-1]}"
    if key.startswith("decoder.decoders."):
        return _layer_name(parts, DECODER_LAYER_NAMES, dec_name)
    if key in ("normalize.mean", "normalize.std"):
        return "cmvn_" + parts[-1]
    return None


def convert_weights(espnet: dict, model: ASRModel, perm: list[int], kind: str) -> dict:
    """ESPnet's state dict -> ours for ``model`` (its shapes). Raises :class:`ImportRefused` on a weight that has
    no counterpart or a shape that differs."""
    V = model.cfg.vocab_size
    dec_name = "decoder" if kind == "joint" else "mlm"
    own = model.state_dict()
    vocab_rows = {"ctc.proj.weight": 0.0, "ctc.proj.bias": NEVER, f"{dec_name}.out.weight": 0.0,
                  f"{dec_name}.out.bias": NEVER, f"{dec_name}.embed.weight": 0.0}  # name -> fill of absent ids
    out = {}
    for k, v in espnet.items():
        if k.startswith("frontend.") or k.startswith("criterion") or k.startswith("specaug."):
            continue  # the mel matrix (recomputed from the config), loss modules
        name = _rename(k, dec_name)
        if name is None or name not in own:
            raise ImportRefused(f"weight {k}: no counterpart in this toolkit's model")
        if name in vocab_rows:  # one row per token: into our order (CTC lacks Mask-CTC's <mask>, the last id)
            if v.shape[0] > len(perm):
                raise ImportRefused(f"weight {k}: {v.shape[0]} rows for {len(perm)} tokens")
            v = _rows(v, perm[: v.shape[0]], V, vocab_rows[name])
        if tuple(v.shape) != tuple(own[name].shape):
            raise ImportRefused(f"weight {k}: shape {tuple(v.shape)} where this toolkit's {name} is "
                                f"{tuple(own[name].shape)}")
        out[name] = v.to(own[name].dtype)
    missing = sorted(set(own) - set(out) - {"cmvn_mean", "cmvn_std"})
    if missing:
        raise ImportRefused(f"the ESPnet weights lack {missing[0]} (and {len(missing) - 1} more)")
    return out


def _find(path: str | None, config: Path, what: str) -> Path:
    """A path written in an ESPnet config: as written, relative to the working directory, or relative to the
    config's folder or one of its parents (model-zoo archives keep the recipe's relative paths)."""
    if not path:
        raise ImportRefused(f"{config}: no {what} path in the config (give --{what.replace(' ', '-')})")
    p = Path(path)
    tries = [p] + ([config.parent / p.name] if p.is_absolute() else [d / p for d in [config.parent, *config.parent.parents]])
    for t in tries:
        if t.is_file():
            return t
    raise FileNotFoundError(f"{path}: {what} named in {config} not found (give --{what.replace(' ', '-')})")


def import_espnet(config: str | os.PathLike, model_file: str | os.PathLike, out: str | os.PathLike,
                  bpe_model: str | os.PathLike | None = None) -> Path:
    """Write an ``asr`` model directory ``out`` from ESPnet's training ``config`` (``config.yaml``) and weights
    (``*.pth``), atomically. ``bpe_model``: the SentencePiece model when the config's path does not resolve."""
    config, model_file = Path(config), Path(model_file)
    try:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ImportRefused(f"{config}: not a readable ESPnet config ({first_line(e, 120)})") from None
    if not isinstance(cfg, dict) or "token_list" not in cfg:
        raise ImportRefused(f"{config}: not an ESPnet training config (no token_list)")
    mcfg, kind = model_config(cfg)
    bpe = Path(bpe_model) if bpe_model else _find(cfg.get("bpemodel"), config, "bpe model")
    tok = Tokenizer(bpe)
    token_list = espnet_tokens(cfg, config, kind)
    try:
        state = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise ImportRefused(f"{model_file}: not a readable ESPnet model file ({first_line(e, 120)})") from None
    mcfg = replace(mcfg, vocab_size=tok.vocab_size)
    if kind == "joint" and not mcfg.decoder.num_layers and any(k.startswith("decoder.") for k in state):
        raise ImportRefused(f"{config}: the weights hold a decoder the config gives weight 0")
    perm = token_permutation(token_list, tok, kind)
    model = ASRModel(mcfg)
    weights = convert_weights(state, model, perm, kind)
    if "cmvn_mean" not in weights:  # normalize: none
        weights["cmvn_mean"] = torch.zeros(mcfg.encoder.input_dim)
        weights["cmvn_std"] = torch.ones(mcfg.encoder.input_dim)
    model.load_state_dict(weights)
    frames = 0
    stats = (cfg.get("normalize_conf") or {}).get("stats_file")
    if stats:
        try:
            frames = int(np.load(_find(stats, config, "stats file"))["count"])
        except (FileNotFoundError, ImportRefused, KeyError, ValueError):
            frames = 0  # the statistics are in the weights; the count only goes on the card
    with atomic_model_dir(out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        save_config(Config(model=mcfg), tmp / "config.yaml")
        (tmp / "tokenizer.model").write_bytes(bpe.read_bytes())
        GlobalCMVN(model.cmvn_mean.clone(), model.cmvn_std.clone(), frames).save(tmp / "cmvn.json")
        (tmp / "MODEL_CARD.md").write_text(_card(Path(out).name, config, model_file, bpe, cfg, mcfg, kind, perm))
    return Path(out)


def _card(name: str, config: Path, model_file: Path, bpe: Path, cfg: dict, mcfg: ModelConfig, kind: str,
          perm: list[int]) -> str:
    from asr.models.asr_model import count_parameters

    params = count_parameters(ASRModel(mcfg))
    return "\n".join([
        f"# {name}", "",
        f"Imported from ESPnet with `asr import espnet` ({'joint CTC/attention' if kind == 'joint' else 'Mask-CTC'} "
        "model). The weights are ESPnet's, unchanged except for the order of the vocabulary rows.", "",
        "## Where it came from", "",
        f"- config: `{config}`", f"- weights: `{model_file}`", f"- BPE model: `{bpe}`",
        f"- ESPnet version that wrote the config: {cfg.get('version', 'unknown')}", "",
        "## What this toolkit runs", "",
        "- features: ESPnet's STFT log-mel front end (`frontend.kind: stft_logmel`), global MVN from its statistics",
        "- encoder: the same Conformer, full context only (its convolution is not causal): `asr transcribe` and "
        "`asr eval` run it; `asr live` refuses it (streaming needs a model trained for chunks)",
        f"- decoders: CTC{', attention' if mcfg.decoder.num_layers else ''}"
        f"{', Mask-CTC' if mcfg.mlm.num_layers else ''}; {len(perm)} ESPnet tokens in a "
        f"{mcfg.vocab_size}-id vocabulary", "",
        "Parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()), "",
        "```yaml", json.dumps(to_dict(mcfg), indent=1), "```", "",
        "No WER was measured by the import; run `asr eval` on your data.", ""])


def parity(model_dir: str | os.PathLike, fixture: str | os.PathLike) -> dict:
    """Compare an imported model with the reference outputs ``tools/espnet_fixture.py`` wrote into ``fixture``
    (ESPnet's own outputs on ``speech.wav``). Returns the largest absolute differences (features, CTC
    log-probabilities, decoder log-probabilities or MLM logits, over ESPnet's ids) and, per decoder, ESPnet's text
    and ours (ESPnet's options: beam 10, joint CTC weight 0.3, Mask-CTC threshold 0.99 and 10 iterations)."""
    from asr.features import features
    from asr.inference.decode import decode_features
    from asr.inference.model_dir import load_model
    from asr.search.options import decode_options

    fixture = Path(fixture)
    ref = torch.load(fixture / "reference.pt", weights_only=True)
    info = json.loads((fixture / "reference.json").read_text())
    cfg = yaml.safe_load((fixture / "config.yaml").read_text())
    loaded = load_model(model_dir)
    m, tok = loaded.model, loaded.tokenizer
    kind = info["kind"]
    perm = torch.tensor(token_permutation(espnet_tokens(cfg, fixture / "config.yaml", kind), tok, kind))
    speech, _ = sf.read(fixture / "speech.wav", dtype="float32")
    out: dict = {"espnet": info["espnet"], "kind": kind, "shape": info["shape"], "diff": {}, "texts": {}}
    with torch.inference_mode():
        f = features(speech, m.cfg.frontend)
        out["diff"]["features"] = float((f - ref["feats"]).abs().max())
        feats, lens = ref["feats"].unsqueeze(0), torch.tensor([ref["feats"].shape[0]])  # ESPnet's features
        enc, enc_lens = m.encode(feats, lens)
        lp = m.ctc_log_probs(enc)[0]
        n_ctc = ref["ctc_log_probs"].shape[1]
        out["diff"]["ctc_log_probs"] = float((lp[:, perm[:n_ctc]] - ref["ctc_log_probs"]).abs().max())
        ours_ids = perm[ref["tokens"]]
        if kind == "joint" and m.decoder is not None:
            ys = torch.cat([torch.tensor([m.sos]), ours_ids]).unsqueeze(0)
            logits = m.decoder(enc, enc_lens, ys, torch.tensor([ys.size(1)]))[0]
            n = ref["decoder_log_probs"].shape[1]
            out["diff"]["decoder_log_probs"] = float(
                (logits.log_softmax(-1)[:, perm[:n]] - ref["decoder_log_probs"]).abs().max())
        if kind == "maskctc" and m.mlm is not None:
            ys = perm[ref["mlm_input"]].unsqueeze(0)
            logits = m.mlm(enc, enc_lens, ys, torch.tensor([ys.size(1)]))[0]
            out["diff"]["mlm_logits"] = float((logits[:, perm] - ref["mlm_logits"]).abs().max())
        o = info["options"]
        # ESPnet's search rules (asr.search.options.ESPNET_RULES; `--espnet-rules` on the command line)
        opts = decode_options(espnet_rules=True, beam=o["beam"], ctc_weight=o["joint_ctc_weight"],
                              mask_iterations=o["mask_iterations"], mask_threshold=o["mask_threshold"], timestamps=False)
        for method, text in info["texts"].items():
            got = decode_features(m, tok, feats, lens, method, opts)[0].text
            out["texts"][method] = {"espnet": text, "asr": got, "same": " ".join(text.split()) == got}
    return out


__all__ = ["parity", "espnet_tokens", "import_espnet", "model_config", "token_permutation", "convert_weights", "ImportRefused"]
