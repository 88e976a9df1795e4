"""The decoding core: every search method by name, what it needs, and the one :func:`search` that runs it.

Offline decoding (:mod:`asr.inference.decode`), the streaming second pass (:mod:`asr.inference.streaming`),
the ONNX backend (it lists the methods its graphs can run) and the CLI all go through :data:`METHODS` and
:func:`search`, so a method decodes the same way wherever it is used: with the same options, the same LM
directory and the same hotwords.

Search reaches the model only through ``encode``, ``ctc_log_probs``, ``decoder.init_cache / step`` /
``decoder(...)`` and ``mlm(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from asr.errors import UserError
from asr.lm import load_lm_dir
from asr.lm.neural import has_neural_lm, load_neural_lm
from asr.lm.ngram import cached_arpa
from asr.results import Hypothesis
from asr.search.attention import attention_beam, joint_ctc_attention
from asr.search.ctc import ctc_greedy, ctc_prefix_beam
from asr.search.ctc_lm import lexicon_decoder
from asr.search.fusion import WordFusion
from asr.search.hotwords import HotwordBias, HotwordScorer
from asr.search.mask_ctc import mask_ctc
from asr.search.options import DecodeOptions
from asr.search.prefix_bonus import SumBonus
from asr.search.rescoring import attention_rescoring
from asr.search.scorers import LengthBonus, PrefixBonusScorer, TokenLMScorer, Weighted


@dataclass(frozen=True)
class SearchInput:
    """One encoded batch and everything a method may use. ``enc (B, T, D)``, ``enc_lens (B,)``,
    ``log_probs (B, T, V)`` (the CTC head's output)."""

    model: object
    enc: torch.Tensor
    enc_lens: torch.Tensor
    log_probs: torch.Tensor
    opts: DecodeOptions
    tokenizer: object = None
    companion: tuple | None = None  # a companion CTC's ``(log_probs (B, T', V'), lens (B,))`` (asr.search.cross_ctc)


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[SearchInput], list[list[Hypothesis]]]
    needs: tuple[str, ...]  # the model parts it needs: "ctc", "decoder" (attention), "mlm" (Mask-CTC), "ctc_prefix"
    # (a CTC head or a companion model's: asr.search.cross_ctc)
    uses_lm: bool  # an LM directory changes its result (ctc_lm needs one)
    uses_hotwords: bool
    autoregressive: bool


def _arpa(opts: DecodeOptions):
    """The word n-gram of ``opts.lm``, loaded once per process."""
    return cached_arpa(str(load_lm_dir(opts.lm).arpa))


def neural_lm(model, opts: DecodeOptions, tokenizer):
    """The neural LM of ``opts.lm`` when the AR searches use it (a neural LM there and ``nlm_weight > 0``),
    else None; checked against the model's vocabulary and tokenizer (cached per process)."""
    if not opts.lm or opts.nlm_weight <= 0 or model.decoder is None or not has_neural_lm(opts.lm):
        return None
    return load_neural_lm(opts.lm, tokenizer, model.decoder.out.out_features)


def word_fusion_factory(opts: DecodeOptions, tokenizer):
    """``() -> prefix bonus`` for the CTC prefix searches (batch and streaming partials): word n-gram shallow
    fusion when ``opts`` has an LM (and a fusion weight) plus hotword biasing when it has hotwords; None when
    neither applies."""
    if tokenizer is None:
        return None
    parts = []
    if opts.lm and opts.fusion_weight > 0:
        arpa = _arpa(opts)
        parts.append(lambda: WordFusion(arpa, tokenizer, opts.fusion_weight, opts.fusion_word_score))
    if opts.hotwords:
        parts.append(lambda: HotwordBias(opts.hotwords, tokenizer))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return lambda: SumBonus(f() for f in parts)


def ar_scorers(model, opts: DecodeOptions, tokenizer, n: int, device) -> list:
    """The extra weighted scorers (:mod:`asr.search.scorers`) of the AR / joint search for ``opts``: the
    neural LM (``nlm_weight``) when the LM directory has one, else word n-gram fusion (``ar_fusion_weight`` /
    ``ar_fusion_word_score``, inside the bonus); hotwords; the length bonus. ``n`` hypotheses (utterances x beam)."""
    out = []
    eos = model.eos
    vocab = model.decoder.out.out_features
    nlm = neural_lm(model, opts, tokenizer)
    # with a neural LM the word n-gram stays out: together they did worse on dev than the neural LM alone
    if tokenizer is not None and opts.lm and opts.ar_fusion_weight > 0 and nlm is None:
        fusion = WordFusion(_arpa(opts), tokenizer, opts.ar_fusion_weight, opts.ar_fusion_word_score)
        out.append(Weighted("ngram", 1.0, PrefixBonusScorer(fusion, eos)))
    if nlm is not None:
        out.append(Weighted("neural_lm", opts.nlm_weight, TokenLMScorer(nlm, n, device)))
    if tokenizer is not None and opts.hotwords:
        out.append(Weighted("hotwords", 1.0, HotwordScorer(HotwordBias(opts.hotwords, tokenizer), vocab, eos)))
    if opts.length_bonus:
        out.append(Weighted("length_bonus", opts.length_bonus, LengthBonus(vocab, eos, device)))
    return out


def _ctc_greedy(x: SearchInput):
    return ctc_greedy(x.log_probs, x.enc_lens)


def _ctc_prefix_beam(x: SearchInput):
    return ctc_prefix_beam(x.log_probs, x.enc_lens, beam=x.opts.beam,
                           fusion_factory=word_fusion_factory(x.opts, x.tokenizer))


def _extra(x: SearchInput) -> list:
    return ar_scorers(x.model, x.opts, x.tokenizer, x.enc.size(0) * x.opts.beam, x.enc.device)


def _attention_beam(x: SearchInput):
    o = x.opts
    return attention_beam(x.model, x.enc, x.enc_lens, o.beam, length_norm=o.length_norm, eos_threshold=o.eos_threshold,
                          ctc_length_window=o.ctc_length_window, ctc_log_probs=x.log_probs, extra_scorers=_extra(x),
                          rules=o.beam_rules)


def _joint_ctc_attention(x: SearchInput):  # the CTC prefix score already keeps the length; no window needed
    o = x.opts
    weight, scorer = o.ctc_weight, None
    if x.log_probs is None and x.companion is not None:  # the CTC of a companion model, over its own units
        comp = x.model.companion
        weight = o.companion_weight if o.companion_weight is not None else comp.weight
        scorer = comp.scorer(*x.companion, o.beam, x.model.eos)
    return joint_ctc_attention(x.model, x.enc, x.enc_lens, o.beam, ctc_weight=weight, length_norm=o.length_norm,
                               eos_threshold=0.0, ctc_length_window=(0.0, 0.0), ctc_log_probs=x.log_probs,
                               extra_scorers=_extra(x), rules=o.beam_rules, ctc_scorer=scorer)


def _attention_rescoring(x: SearchInput):
    o = x.opts
    return attention_rescoring(x.model, x.enc, x.enc_lens, o.beam, o.rescore_ctc_weight, o.reverse_weight,
                               fusion_factory=word_fusion_factory(o, x.tokenizer),
                               neural_lm=neural_lm(x.model, o, x.tokenizer), neural_lm_weight=o.nlm_weight)


def _mask_ctc(x: SearchInput):
    return mask_ctc(x.model, x.enc, x.enc_lens, x.opts.mask_threshold, x.opts.mask_iterations,
                    schedule=x.opts.mask_schedule)


def _ctc_lm(x: SearchInput):
    o = x.opts
    if not o.lm or x.tokenizer is None:
        raise UserError("ctc_lm needs an LM directory (--lm, made by `asr lm train`)")
    dec = lexicon_decoder(str(o.lm), str(x.tokenizer.model_path), o.lm_beam, o.lm_weight, o.word_score)
    return dec(x.log_probs, x.enc_lens)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ctc_greedy", _ctc_greedy, ("ctc",), False, False, False),
    Method("ctc_prefix_beam", _ctc_prefix_beam, ("ctc",), True, True, False),
    Method("attention_beam", _attention_beam, ("decoder",), True, True, True),
    Method("joint_ctc_attention", _joint_ctc_attention, ("ctc_prefix", "decoder"), True, True, True),
    Method("attention_rescoring", _attention_rescoring, ("ctc", "decoder"), True, True, True),
    Method("mask_ctc", _mask_ctc, ("ctc", "mlm"), False, False, False),
    Method("ctc_lm", _ctc_lm, ("ctc",), True, False, False),
)}
AUTOREGRESSIVE = tuple(n for n, m in METHODS.items() if m.autoregressive)
LM_USERS = tuple(n for n, m in METHODS.items() if m.uses_lm and n != "ctc_lm")  # methods an LM directory changes


def ctc_companion(model):
    """The companion whose CTC scores ``model``'s joint decoding (:mod:`asr.search.cross_ctc`): set by the loader for a
    model without a CTC head of its own (Whisper's decoder with ``whisper-tiny-en-ctc``); else None."""
    if getattr(model, "ctc", True) is not None:
        return None
    return getattr(model, "companion", None)


def available_methods(model, with_lm: bool = False) -> list[str]:
    """The methods this model's heads support (``ctc_lm`` only when an LM directory is given; an ONNX model
    lists the ones its graphs run in ``model.methods``)."""
    parts = {"ctc": getattr(model, "ctc", True) is not None, "decoder": getattr(model, "decoder", None) is not None,
             "mlm": getattr(model, "mlm", None) is not None}
    parts["ctc_prefix"] = parts["ctc"] or ctc_companion(model) is not None  # own head or a companion
    allowed = getattr(model, "methods", None)
    return [n for n, m in METHODS.items() if all(parts[p] for p in m.needs) and (with_lm or n != "ctc_lm")
            and (allowed is None or n in allowed)]


def default_method(model) -> str:
    """What ``auto`` means for this model: CTC greedy where it has a CTC head; joint CTC/attention where a companion
    model's CTC scores its decoder (Whisper with ``whisper-tiny-en-ctc``: a fifth fewer errors for 10% more decoding
    time on short utterances, twice the time on 8-s clips, docs/whisper.md); else its attention beam."""
    if getattr(model, "ctc", True) is not None:
        return "ctc_greedy"
    return "joint_ctc_attention" if ctc_companion(model) is not None else "attention_beam"


def resolve_methods(model, names, with_lm: bool = False) -> list[str]:
    """Decoder names as a user gives them -> method names: ``auto`` is :func:`default_method`, ``all`` every one
    the model has."""
    out: list[str] = []
    for n in names:
        out += available_methods(model, with_lm) if n == "all" else [default_method(model) if n == "auto" else n]
    return list(dict.fromkeys(out))


def search(model, enc: torch.Tensor, enc_lens: torch.Tensor, method: str, opts: DecodeOptions = DecodeOptions(),
           ctc_log_probs: torch.Tensor | None = None, tokenizer=None, companion: tuple | None = None
           ) -> list[list[Hypothesis]]:
    """Run one method over an encoded batch: an n-best list (best first) per utterance. Methods that take an
    LM directory or hotwords need the model's ``tokenizer`` (words are spelled in its tokens). ``companion``: the
    companion CTC's ``(log_probs, lens)`` of the same audio (:func:`companion_log_probs`), for a model without
    a CTC head of its own."""
    method = default_method(model) if method == "auto" else method
    if method not in METHODS:
        raise UserError(f"unknown decoder {method!r}; choose from {', '.join(METHODS)}")
    lp = ctc_log_probs if ctc_log_probs is not None else model.ctc_log_probs(enc)
    return METHODS[method].run(SearchInput(model, enc, enc_lens, lp, opts, tokenizer, companion))


def companion_log_probs(model, method: str, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple | None:
    """The companion CTC's ``(log_probs, lens)`` of raw features ``(B, T, F)`` when ``method`` uses it (joint
    decoding on a model without a CTC head of its own), else None."""
    method = default_method(model) if method == "auto" else method
    comp = ctc_companion(model)
    return comp.log_probs(feats, feat_lens) if comp is not None and method == "joint_ctc_attention" else None


def check_lms(model, tokenizer, opts: DecodeOptions, methods) -> None:
    """Load the LMs ``methods`` will use before decoding starts, so a bad LM directory fails at once with
    one line: the lexicon decoder (ctc_lm), the word n-gram (fusion), the neural LM."""
    if "ctc_lm" in methods:
        if not opts.lm:
            raise UserError("ctc_lm needs an LM directory (--lm, made by `asr lm train`)")
        lexicon_decoder(str(opts.lm), str(tokenizer.model_path), opts.lm_beam, opts.lm_weight, opts.word_score)
    if opts.lm and any(METHODS[m].uses_lm for m in methods if m in METHODS):
        _arpa(opts)
        neural_lm(model, opts, tokenizer)


__all__ = ["METHODS", "Method", "SearchInput", "search", "companion_log_probs", "ctc_companion", "available_methods", "default_method", "resolve_methods", "check_lms", "word_fusion_factory",
           "ar_scorers", "neural_lm", "AUTOREGRESSIVE", "LM_USERS"]
