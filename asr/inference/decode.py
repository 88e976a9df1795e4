"""Offline decoding: features -> encoder -> one search method (:mod:`asr.search.methods`) -> segments with
word timings.

Every method's output becomes the same :class:`asr.results.Segment` (text, start / end, words with
start / end / confidence, tokens, score); :func:`segment_from_tokens` is also how the streaming second
pass commits a segment, so offline and streaming results are built in one place.
"""

from __future__ import annotations

import torch

from asr.results import Segment, Word
from asr.search.align import encoder_frame_seconds, token_spans, words_from_tokens
from asr.search.attention_align import attention_token_spans
from asr.search.methods import available_methods, companion_log_probs, search
from asr.search.options import DecodeOptions


def segment_from_tokens(tokenizer, tokens, score: float, log_probs: torch.Tensor | None, frame_seconds: float,
                        start: float, end: float, spans: list | None = None) -> Segment:
    """The tokens a search chose for one stretch of audio (``start``..``end`` seconds) -> a :class:`Segment`;
    with the stretch's CTC ``log_probs (T, V)`` (or token ``spans`` in encoder frames from another aligner), words
    get times by forced alignment (offset by ``start``) and the segment spans its words."""
    toks = [int(t) for t in tokens]
    words: list[Word] = []
    if spans is None and log_probs is not None and toks:
        spans = token_spans(log_probs, toks)
    if spans is not None and toks:
        words = words_from_tokens(tokenizer, toks, spans, frame_seconds, start)
    if words:
        start, end = words[0].start, words[-1].end
    return Segment(tokenizer.decode(toks), start, end, tuple(words), tuple(toks), float(score))


@torch.inference_mode()
def decode_features(model, tokenizer, feats: torch.Tensor, feat_lens: torch.Tensor, method: str = "ctc_greedy",
                    opts: DecodeOptions = DecodeOptions(), offsets: list[float] | None = None) -> list[Segment]:
    """Raw fbank ``(B, T, 80)``, ``feat_lens (B,)`` -> one :class:`Segment` per utterance (words timed when
    ``opts.timestamps``). ``offsets``: seconds where each utterance starts (segments of a long recording)."""
    enc, enc_lens = model.encode(feats, feat_lens)
    lp = model.ctc_log_probs(enc)
    nbests = search(model, enc, enc_lens, method, opts, ctc_log_probs=lp, tokenizer=tokenizer,
                    companion=companion_log_probs(model, method, feats, feat_lens))
    shift = model.cfg.frontend.frame_seconds
    fs = encoder_frame_seconds(model.encoder.rate, shift)
    out = []
    for b, nb in enumerate(nbests):
        start = offsets[b] if offsets else 0.0
        end = start + int(feat_lens[b]) * shift
        spans = None
        if opts.timestamps and lp is None and model.decoder is not None:  # no CTC head: the decoder's cross-attention
            frames = min(int(enc_lens[b]), -(-int(feat_lens[b]) // model.encoder.rate))
            spans = attention_token_spans(model, enc[b], frames, [int(t) for t in nb[0].tokens])
        out.append(segment_from_tokens(tokenizer, nb[0].tokens, nb[0].score,
                                       lp[b, : int(enc_lens[b])] if opts.timestamps and lp is not None else None,
                                       fs, start, end, spans))
    return out


__all__ = ["decode_features", "segment_from_tokens", "available_methods", "search"]
