"""Decoding front: features -> encoder -> one search method -> transcripts with word timings.

Every method returns the same :class:`Transcript` (text, tokens, score, words with start/end/confidence).
Search reaches the model only through ``encode``, ``ctc_log_probs``, ``decoder.step`` / ``decoder(...)``
and ``mlm(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.lm.neural import has_neural_lm
from asr.search.align import Word, encoder_frame_seconds, token_spans, words_from_tokens
from asr.search.attention import attention_beam, joint_ctc_attention
from asr.search.ctc import ctc_greedy, ctc_prefix_beam
from asr.search.mask_ctc import mask_ctc
from asr.search.options import DecodeOptions  # noqa: F401 - re-exported: asr.inference.decode.DecodeOptions
from asr.search.rescoring import attention_rescoring
from asr.search.result import Hypothesis

METHODS = ("ctc_greedy", "ctc_prefix_beam", "attention_beam", "joint_ctc_attention", "attention_rescoring", "mask_ctc",
           "ctc_lm")
AUTOREGRESSIVE = ("attention_beam", "joint_ctc_attention", "attention_rescoring")
LM_FUSED = ("ctc_prefix_beam", "attention_rescoring")  # prefix searches that fuse the word n-gram / hotwords
LM_USERS = LM_FUSED + ("attention_beam", "joint_ctc_attention")  # methods an LM directory changes (ctc_lm aside)


def _arpa(opts: DecodeOptions):
    """The word n-gram of ``opts.lm``, loaded once per process (:func:`asr.lm.ngram.cached_arpa`)."""
    from asr.lm import load_lm_dir
    from asr.lm.ngram import cached_arpa

    return cached_arpa(str(load_lm_dir(opts.lm).arpa))


def neural_lm(model, opts: DecodeOptions, tokenizer):
    """The neural LM of ``opts.lm`` when the AR searches use it (a neural LM there and ``nlm_weight > 0``),
    else None; checked against the model's vocabulary and tokenizer (cached per process)."""
    if not opts.lm or opts.nlm_weight <= 0 or model.decoder is None or not has_neural_lm(opts.lm):
        return None
    from asr.lm.neural import load_neural_lm

    return load_neural_lm(opts.lm, tokenizer, model.decoder.out.out_features)


def word_fusion_factory(opts: DecodeOptions, tokenizer):
    """``() -> prefix bonus`` for the CTC prefix searches: word n-gram shallow fusion when ``opts`` has an LM
    (and a fusion weight) plus hotword biasing when it has hotwords; None when neither applies."""
    if tokenizer is None:
        return None
    parts = []
    if opts.lm and opts.fusion_weight > 0:
        from asr.search.fusion import WordFusion

        arpa = _arpa(opts)
        parts.append(lambda: WordFusion(arpa, tokenizer, opts.fusion_weight, opts.fusion_word_score))
    if opts.hotwords:
        from asr.search.hotwords import HotwordBias

        parts.append(lambda: HotwordBias(opts.hotwords, tokenizer))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    from asr.search.prefix_bonus import SumBonus

    return lambda: SumBonus(f() for f in parts)


def ar_scorers(model, opts: DecodeOptions, tokenizer, n: int, device) -> list:
    """The extra weighted scorers (:mod:`asr.search.scorers`) of the AR / joint search for ``opts``: the
    neural LM (``nlm_weight``) when the LM directory has one, else word n-gram fusion (``ar_fusion_weight`` /
    ``ar_fusion_word_score``, inside the bonus); hotwords; the length bonus. ``n`` hypotheses (utterances x beam)."""
    from asr.search.scorers import LengthBonus, PrefixBonusScorer, TokenLMScorer, Weighted

    out = []
    eos = model.sos
    nlm = neural_lm(model, opts, tokenizer)
    # with a neural LM the word n-gram stays out: together they did worse on dev than the neural LM alone
    if tokenizer is not None and opts.lm and opts.ar_fusion_weight > 0 and nlm is None:
        from asr.search.fusion import WordFusion

        fusion = WordFusion(_arpa(opts), tokenizer, opts.ar_fusion_weight, opts.ar_fusion_word_score)
        out.append(Weighted("ngram", 1.0, PrefixBonusScorer(fusion, eos)))
    if nlm is not None:
        out.append(Weighted("neural_lm", opts.nlm_weight, TokenLMScorer(nlm, n, device)))
    if tokenizer is not None and opts.hotwords:
        from asr.search.hotwords import HotwordBias, HotwordScorer

        bias = HotwordBias(opts.hotwords, tokenizer)
        out.append(Weighted("hotwords", 1.0, HotwordScorer(bias, model.decoder.out.out_features, eos)))
    if opts.length_bonus:
        out.append(Weighted("length_bonus", opts.length_bonus, LengthBonus(model.decoder.out.out_features, eos, device)))
    return out


@dataclass(frozen=True)
class Transcript:
    text: str
    tokens: tuple[int, ...]
    score: float
    words: tuple[Word, ...] = field(default=())

    def as_dict(self) -> dict:
        return {"text": self.text, "score": round(self.score, 4), "words": [w.as_dict() for w in self.words]}


def available_methods(model, with_lm: bool = False) -> list[str]:
    """The methods this model's heads support (``ctc_lm`` only when an LM directory is given)."""
    out = ["ctc_greedy", "ctc_prefix_beam"]
    if model.decoder is not None:
        out += ["attention_beam", "joint_ctc_attention", "attention_rescoring"]
    if model.mlm is not None:
        out.append("mask_ctc")
    if with_lm:
        out.append("ctc_lm")
    allowed = getattr(model, "methods", None)  # an ONNX model runs only some of them
    return [m for m in out if allowed is None or m in allowed]


def search(model, enc: torch.Tensor, enc_lens: torch.Tensor, method: str,
           opts: DecodeOptions = DecodeOptions(), ctc_log_probs: torch.Tensor | None = None,
           tokenizer=None) -> list[list[Hypothesis]]:
    """Run one method over an encoded batch: an n-best list (best first) per utterance. ``ctc_lm`` needs
    ``opts.lm`` and the model's ``tokenizer`` (its lexicon is spelled in the model's tokens)."""
    if method not in METHODS:
        raise ValueError(f"unknown decoder {method!r}; choose from {', '.join(METHODS)}")
    lp = ctc_log_probs
    if method == "ctc_lm":
        if not opts.lm or tokenizer is None:
            raise ValueError("ctc_lm needs an LM directory (--lm, made by `asr lm train`)")
        from asr.search.ctc_lm import lexicon_decoder

        dec = lexicon_decoder(str(opts.lm), str(tokenizer.model_path), opts.lm_beam, opts.lm_weight, opts.word_score)
        return dec(lp if lp is not None else model.ctc_log_probs(enc), enc_lens)
    fusion = word_fusion_factory(opts, tokenizer) if method in LM_FUSED else None
    if method == "ctc_greedy":
        return ctc_greedy(lp if lp is not None else model.ctc_log_probs(enc), enc_lens)
    if method == "ctc_prefix_beam":
        return ctc_prefix_beam(lp if lp is not None else model.ctc_log_probs(enc), enc_lens, beam=opts.beam,
                               fusion_factory=fusion)
    if method in ("attention_beam", "joint_ctc_attention"):
        extra = ar_scorers(model, opts, tokenizer, enc.size(0) * opts.beam, enc.device)
    if method == "attention_beam":
        return attention_beam(model, enc, enc_lens, opts.beam, length_norm=opts.length_norm, fixed_len=opts.fixed_len,
                              eos_threshold=opts.eos_threshold, ctc_length_window=opts.ctc_length_window,
                              ctc_log_probs=lp, extra_scorers=extra)
    if method == "joint_ctc_attention":  # the CTC prefix score already keeps the length; no window needed
        return joint_ctc_attention(model, enc, enc_lens, opts.beam, ctc_weight=opts.ctc_weight,
                                   length_norm=opts.length_norm, fixed_len=opts.fixed_len, eos_threshold=0.0,
                                   ctc_length_window=(0.0, 0.0), ctc_log_probs=lp, extra_scorers=extra)
    if method == "attention_rescoring":
        return attention_rescoring(model, enc, enc_lens, opts.beam, opts.rescore_ctc_weight, opts.reverse_weight,
                                   fusion_factory=fusion, neural_lm=neural_lm(model, opts, tokenizer),
                                   neural_lm_weight=opts.nlm_weight)
    return mask_ctc(model, enc, enc_lens, opts.mask_threshold, opts.mask_iterations, fixed_len=opts.fixed_len)


@torch.inference_mode()
def decode_features(model, tokenizer, feats: torch.Tensor, feat_lens: torch.Tensor, method: str = "ctc_greedy",
                    opts: DecodeOptions = DecodeOptions(), offsets: list[float] | None = None) -> list[Transcript]:
    """Raw fbank ``(B, T, 80)``, ``feat_lens (B,)`` -> one :class:`Transcript` per utterance.
    ``offsets``: seconds added to each utterance's word times (segments of a long recording)."""
    enc, enc_lens = model.encode(feats, feat_lens)
    lp = model.ctc_log_probs(enc)
    nbests = search(model, enc, enc_lens, method, opts, ctc_log_probs=lp, tokenizer=tokenizer)
    fs = encoder_frame_seconds(model.encoder.rate)
    out = []
    for b, nb in enumerate(nbests):
        best = nb[0]
        toks = list(best.tokens)
        words: list[Word] = []
        if opts.timestamps and toks:
            spans = token_spans(lp[b, : int(enc_lens[b])], toks)
            words = words_from_tokens(tokenizer, toks, spans, fs, offsets[b] if offsets else 0.0)
        out.append(Transcript(tokenizer.decode(toks), tuple(toks), best.score, tuple(words)))
    return out
