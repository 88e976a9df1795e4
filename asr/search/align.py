"""Word timestamps and confidences for any method's output, by CTC forced alignment.

The tokens a method chose are aligned to the CTC log-probabilities (``torchaudio.functional.forced_align``);
a word spans its tokens' frames and its confidence is the mean frame probability of its tokens.
"""

from __future__ import annotations

import torch
import torchaudio.functional as AF

from asr.audio import FRAME_SHIFT_MS
from asr.results import Word
from asr.text import BLANK_ID


def token_spans(log_probs: torch.Tensor, tokens: list[int]) -> list[tuple[int, int, float]]:
    """Align ``tokens`` to ``log_probs (T, V)`` of one utterance: ``(start, end, prob)`` per token in encoder
    frames (end exclusive). When the tokens cannot fit (more frames needed than there are), they are
    spread evenly with probability 0."""

    T = log_probs.size(0)
    L = len(tokens)
    if L == 0:
        return []
    repeats = sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
    if L + repeats <= T:
        ali, scores = AF.forced_align(log_probs.float().unsqueeze(0).cpu(),
                                      torch.tensor([tokens], dtype=torch.int32), blank=BLANK_ID)
        spans = AF.merge_tokens(ali[0], scores[0].exp(), blank=BLANK_ID)
        if len(spans) == L:
            return [(s.start, s.end, float(s.score)) for s in spans]
    edges = torch.linspace(0, T, L + 1).long().tolist()
    return [(edges[i], max(edges[i] + 1, edges[i + 1]), 0.0) for i in range(L)]


def words_from_tokens(tokenizer, tokens: list[int], spans: list[tuple[int, int, float]], frame_seconds: float,
                      offset: float = 0.0) -> list[Word]:
    """Group token spans into words at SentencePiece word starts."""
    groups: list[list[int]] = []
    for i, t in enumerate(tokens):
        if not groups or tokenizer.is_word_start(t):
            groups.append([])
        groups[-1].append(i)
    words = []
    for g in groups:
        text = tokenizer.decode([tokens[i] for i in g]).strip()
        if not text:
            continue
        # a bare word-boundary piece (character models' U+2581) carries no sound: forced alignment may put it
        # anywhere in the silence before the word (often frame 0), so the word starts at its first audible piece;
        # punctuation (a cased tokenizer's "," or ".") is not heard either (Whisper's word times leave it out)
        audible = [i for i in g if any(c.isalnum() for c in tokenizer.decode([tokens[i]]))] or g
        start, end = spans[audible[0]][0], spans[audible[-1]][1]
        conf = sum(spans[i][2] for i in audible) / len(audible)
        words.append(Word(text, offset + start * frame_seconds, offset + end * frame_seconds, conf))
    return words


def encoder_frame_seconds(subsampling: int, feature_seconds: float = FRAME_SHIFT_MS / 1000) -> float:
    """Seconds per encoder frame: ``subsampling`` feature frames of ``feature_seconds`` (the model's front end's
    ``frame_seconds``; 10 ms for fbank)."""
    return subsampling * feature_seconds
