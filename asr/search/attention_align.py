"""Word timestamps from an attention decoder's cross-attention (Whisper's way, for models without a CTC head).

openai-whisper's ``timing.find_alignment``: the decoder reads the prompt, the chosen tokens and the end; the
cross-attention scores of its alignment heads (``DecoderConfig.alignment_heads``; default: every head of the last
half of the layers) over the real frames are softmaxed, standardised per token, median-filtered over time (width 7)
and averaged; dynamic time warping through the negated matrix gives the frame where each token starts. A token
spans from its start to the next one's; its confidence is the decoder's probability of it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MEDIAN_WIDTH = 7


def median_filter(x: torch.Tensor, width: int = MEDIAN_WIDTH) -> torch.Tensor:
    """Median of ``x (K, L, T)`` over T in windows of ``width`` (odd), reflect-padded (openai-whisper's)."""
    pad = width // 2
    if x.size(-1) <= pad:
        return x
    return F.pad(x, (pad, pad), mode="reflect").unfold(-1, width, 1).sort()[0][..., pad]


def dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping through cost ``x (N, M)`` (openai-whisper's ``dtw_cpu``, the same tie rules):
    ``(rows, columns)`` of the path from (0, 0) to (N-1, M-1)."""
    N, M = x.shape
    cost = np.full((N + 1, M + 1), np.inf, dtype=np.float32)
    trace = -np.ones((N + 1, M + 1), dtype=np.int8)
    cost[0, 0] = 0
    xs = x.astype(np.float32).tolist()
    c = cost.tolist()
    for j in range(1, M + 1):
        for i in range(1, N + 1):
            c0, c1, c2 = c[i - 1][j - 1], c[i - 1][j], c[i][j - 1]
            if c0 < c1 and c0 < c2:
                best, t = c0, 0
            elif c1 < c0 and c1 < c2:
                best, t = c1, 1
            else:
                best, t = c2, 2
            c[i][j] = float(np.float32(xs[i - 1][j - 1] + best))
            trace[i, j] = t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = N, M, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    rows, cols = np.array(path[::-1]).T
    return rows, cols


def alignment_heads(decoder, heads: tuple = ()) -> list[tuple[int, int]]:
    """``(layer, head)`` pairs: the given ones, or every head of the last half of the layers."""
    if heads:
        return [(int(a), int(b)) for a, b in heads]
    n, h = len(decoder.layers), decoder.layers[0].src_attn.h
    return [(i, j) for i in range(n // 2, n) for j in range(h)]


@torch.inference_mode()
def attention_token_spans(model, enc: torch.Tensor, frames: int, tokens: list[int]) -> list[tuple[int, int, float]]:
    """``(start, end, prob)`` in encoder frames for each of ``tokens``, from the decoder's cross-attention over the
    first ``frames`` frames of ``enc (T, D)`` (one utterance)."""
    if not tokens:
        return []
    dec = model.decoder
    prompt = list(model.prompt)
    seq = torch.tensor([prompt + list(tokens) + [model.eos]], device=enc.device)
    lp, scores = dec.cross_attention(enc.unsqueeze(0), seq)  # (1, L, V), (layers, 1, H, L, T)
    heads = alignment_heads(dec, model.cfg.decoder.alignment_heads)
    w = torch.stack([scores[a, 0, b] for a, b in heads])[:, :, :frames].float().softmax(-1)  # (K, L, frames)
    std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
    w = median_filter((w - mean) / std)
    matrix = w.mean(0)[len(prompt) - 1: -1]  # rows that predict each token, then the end
    rows, cols = dtw(-matrix.double().cpu().numpy())
    jumps = np.pad(np.diff(rows), (1, 0), constant_values=1).astype(bool)
    starts = cols[jumps].tolist()  # the frame where each row (token, then the end) starts
    probs = lp[0, torch.arange(len(prompt) - 1, len(prompt) - 1 + len(tokens)), torch.tensor(tokens)].exp().tolist()
    return [(starts[k], max(starts[k] + 1, starts[k + 1]) if k + 1 < len(starts) else frames, probs[k])
            for k in range(len(tokens))]


__all__ = ["attention_token_spans", "dtw", "median_filter", "alignment_heads"]
