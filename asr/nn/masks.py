"""Boolean masks. Convention: ``True`` means "may attend" / "is a real frame"."""

from __future__ import annotations

import torch


def lengths_to_mask(lens: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``lens (B,)`` -> ``(B, T)`` with True on valid positions."""
    # max_len stays as given (a traced size when exporting to ONNX; int() would freeze it)
    T = max_len if max_len is not None else int(lens.max().item() if lens.numel() else 0)
    return torch.arange(T, device=lens.device).unsqueeze(0) < lens.unsqueeze(1)


def causal_mask(T: int, device=None) -> torch.Tensor:
    """``(T, T)`` lower-triangular: position i attends to j <= i."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def chunk_mask(T: int, chunk: int, left_chunks: int = -1, device=None) -> torch.Tensor:
    """``(T, T)`` dynamic-chunk mask (U2): frame i attends to every frame of its own chunk and of
    ``left_chunks`` chunks before it (all earlier chunks when ``left_chunks < 0``)."""
    idx = torch.arange(T, device=device)
    ci = idx // chunk  # chunk index of each frame
    end = (ci + 1) * chunk  # (T,) exclusive end of own chunk
    start = torch.zeros_like(idx) if left_chunks < 0 else ((ci - left_chunks).clamp_min(0) * chunk)
    j = idx.unsqueeze(0)
    return (j >= start.unsqueeze(1)) & (j < end.unsqueeze(1))
