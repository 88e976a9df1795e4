"""Decoding options: the one home of every decoder default (the CLI, :func:`asr.inference.decode.search`, the
search functions and streaming's second pass all read them from here)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from asr.errors import UserError
from asr.lm import load_lm_dir
from asr.lm.neural import has_neural_lm
from asr.search.hotwords import DEFAULT_BOOST, load_hotwords, parse_hotwords

MASK_SCHEDULES = ("confidence", "espnet")
BEAM_RULES = ("auto", "asr", "espnet", "whisper")
# ESPnet's search rules (decode a model imported from ESPnet as ESPnet does): its beam search (hypotheses ranked by
# their summed scores, any may end where eos wins, no CTC length window, its stopping rule); its Mask-CTC schedule
ESPNET_RULES = {"length_norm": 0.0, "eos_threshold": 0.0, "ctc_length_window": (0.0, 0.0), "beam_rules": "espnet",
                "mask_schedule": "espnet"}


@dataclass(frozen=True)
class DecodeOptions:
    beam: int = 10  # beam size of every beam search (CTC prefix, AR, joint, rescoring n-best)
    ctc_weight: float = 0.7  # joint_ctc_attention: weight of the CTC prefix score (best of 0.5/0.7/0.9 on dev for the demo model)
    companion_weight: float | None = None  # joint_ctc_attention with a companion CTC model (ModelConfig.ctc_companion):
    # its weight (None: the model's own, ModelConfig.companion_weight)
    rescore_ctc_weight: float = 0.5  # attention_rescoring: weight of the CTC score
    reverse_weight: float = 0.3  # attention_rescoring with a right-to-left decoder
    length_norm: float = 1.0  # AR beam: final score / length ** length_norm
    eos_threshold: float = 1.0  # AR beam: end only where P(eos) >= this x the best other token's (0: off)
    ctc_length_window: tuple[float, float] = (0.5, 1.5)  # AR beam: output length within (lo, hi) x CTC greedy length
    mask_threshold: float = 0.5  # mask_ctc: tokens with CTC confidence below this are re-predicted
    mask_iterations: int = 10
    beam_rules: str = "auto"  # AR/joint beam: auto (the model's own: ModelConfig.beam_rules) | asr | espnet
    # (ESPnet's BatchBeamSearch) | whisper (openai-whisper's: no eos threshold or CTC length window, hypotheses ranked
    # by summed log-probability over their length without the end): see asr.search.attention.beam_search
    mask_schedule: str = "confidence"  # mask_ctc: confidence (fill by MLM probability; never blank, mask or eos;
    # ceil(n / iterations) a pass) | espnet (ESPnet's MaskCTCInference: by raw logit, any token, floor(n / passes))
    timestamps: bool = True
    lm: str = ""  # LM directory (asr lm train) for ctc_lm; "" = none
    lm_weight: float = 1.5  # ctc_lm: weight of the word n-gram log-probability (dev-tuned for the demo model)
    word_score: float = -1.0  # ctc_lm: added per word (positive: longer outputs; dev-tuned for the demo model)
    lm_beam: int = 50  # ctc_lm: beam size of the lexicon decoder
    fusion_weight: float = 0.3  # with lm: word n-gram shallow fusion in ctc_prefix_beam / attention_rescoring (0: off)
    fusion_word_score: float = 3.0  # with lm: added per completed word in that fusion (both chosen on 100 dev utterances)
    ar_fusion_weight: float = 0.4  # with lm and no neural LM in use: word n-gram weight in attention_beam / joint_ctc_attention (0: off)
    ar_fusion_word_score: float = 3.0  # with lm: added per completed word there (both chosen on 100 dev utterances)
    nlm_weight: float = 0.8  # with an lm directory holding a neural LM: its weight in the AR/joint search and
    # attention_rescoring's second pass (best for joint_ctc_attention on 100 dev utterances; 0: off)
    hotwords: tuple = ()  # ((phrase, boost), ...): contextual biasing (asr.search.hotwords.load_hotwords reads a file)
    length_bonus: float = 0.0  # AR/joint search: added per token

    def __post_init__(self) -> None:
        checks = [
            (self.beam >= 1, f"beam must be at least 1, not {self.beam}"),
            (0.0 < self.ctc_weight <= 1.0, f"ctc weight must be in (0, 1], not {self.ctc_weight}"),
            (self.companion_weight is None or 0.0 < self.companion_weight <= 1.0,
             f"companion weight must be in (0, 1], not {self.companion_weight}"),
            (self.rescore_ctc_weight >= 0.0, f"rescoring CTC weight must be >= 0, not {self.rescore_ctc_weight}"),
            (0.0 <= self.reverse_weight <= 1.0, f"reverse weight must be in [0, 1], not {self.reverse_weight}"),
            (self.length_norm >= 0.0, f"length normalisation must be >= 0, not {self.length_norm}"),
            (self.eos_threshold >= 0.0, f"eos threshold must be >= 0, not {self.eos_threshold}"),
            (len(self.ctc_length_window) == 2 and 0 <= self.ctc_length_window[0] <= max(self.ctc_length_window[1], 1e9),
             f"ctc length window must be (lo, hi) with 0 <= lo, not {self.ctc_length_window}"),
            (0.0 <= self.mask_threshold <= 1.0, f"mask threshold must be in [0, 1], not {self.mask_threshold}"),
            (self.mask_iterations >= 1, f"mask iterations must be at least 1, not {self.mask_iterations}"),
            (self.beam_rules in BEAM_RULES, f"beam rules must be one of {', '.join(BEAM_RULES)}, not {self.beam_rules!r}"),
            (self.mask_schedule in MASK_SCHEDULES,
             f"mask schedule must be one of {', '.join(MASK_SCHEDULES)}, not {self.mask_schedule!r}"),
            (self.lm_beam >= 1, f"LM beam must be at least 1, not {self.lm_beam}"),
            (self.lm_weight >= 0.0, f"LM weight must be >= 0, not {self.lm_weight}"),
            (self.fusion_weight >= 0.0, f"fusion weight must be >= 0, not {self.fusion_weight}"),
            (self.ar_fusion_weight >= 0.0, f"AR fusion weight must be >= 0, not {self.ar_fusion_weight}"),
            (self.nlm_weight >= 0.0, f"neural LM weight must be >= 0, not {self.nlm_weight}"),
            (all(len(h) == 2 and isinstance(h[0], str) and h[0] for h in self.hotwords),
             "hotwords must be (phrase, boost) pairs"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)


DEFAULTS = DecodeOptions()
FIELDS = tuple(f.name for f in fields(DecodeOptions))


def decode_options(lm_dir: str | os.PathLike | None = None, hotwords=None, hotword_boost: float = DEFAULT_BOOST,
                   espnet_rules: bool = False, **options) -> DecodeOptions:
    """The one way from user options to :class:`DecodeOptions` (the CLI, the Python API and streaming use it).

    ``options``: DecodeOptions fields; None means "not given". ``lm_dir``: an LM directory (``asr lm train``);
    its card's tuned ``lm_weight`` / ``word_score`` (``asr lm tune``) apply unless given here; a positive
    ``nlm_weight`` needs a neural LM there. ``hotwords``: a hotword file, or phrases / ``(phrase, boost)``
    pairs (normalised and checked as a file's lines are; ``hotword_boost`` for those without one).
    ``espnet_rules``: :data:`ESPNET_RULES` under what is given. A bad value raises ValueError with one line."""
    if lm_dir is None and options.get("lm"):
        lm_dir = options["lm"]
    options.pop("lm", None)
    unknown = sorted(set(options) - set(FIELDS))
    if unknown:
        raise UserError(f"unknown decoding option(s) {', '.join(unknown)}; choose from {', '.join(FIELDS)}")
    given = {**(ESPNET_RULES if espnet_rules else {}), **{k: v for k, v in options.items() if v is not None}}
    if isinstance(hotwords, (str, os.PathLike)):
        given["hotwords"] = load_hotwords(hotwords, hotword_boost)
    elif hotwords:
        given["hotwords"] = parse_hotwords("\n".join(h if isinstance(h, str) else f"{h[0]} {float(h[1])}"
                                                     for h in hotwords), default_boost=hotword_boost)
    if lm_dir is not None and str(lm_dir):
        card = load_lm_dir(lm_dir).card
        given["lm"] = str(lm_dir)
        for key in ("lm_weight", "word_score"):
            if key not in options or options[key] is None:
                given[key] = card.get(key, getattr(DEFAULTS, key))
        if given.get("nlm_weight", 0) > 0 and "nlm_weight" in options and not has_neural_lm(lm_dir):
            raise UserError(f"{lm_dir}: --nlm-weight needs a neural LM there (asr lm train --neural --out {lm_dir})")
    return DecodeOptions(**given)


__all__ = ["BEAM_RULES", "DecodeOptions", "DEFAULTS", "FIELDS", "decode_options", "ESPNET_RULES", "MASK_SCHEDULES"]
