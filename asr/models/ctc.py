"""CTC head: a projection to the vocabulary (blank = id 0) and its loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr.text import BLANK_ID


class CTCHead(nn.Module):
    def __init__(self, d_model: int, vocab_size: int, dropout: float = 0.0):
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """``enc (B, T, D)`` -> ``(B, T, V)`` log-probabilities (float32 whatever the model's dtype)."""
        return self.proj(self.dropout(enc)).float().log_softmax(-1)

    def loss(self, enc: torch.Tensor, enc_lens: torch.Tensor, targets: torch.Tensor, target_lens: torch.Tensor) -> torch.Tensor:
        """Summed CTC loss over the batch. ``targets (B, L)`` padded with anything, ``target_lens (B,)``."""
        lp = self.log_probs(enc).float().transpose(0, 1)  # (T, B, V)
        return F.ctc_loss(lp, targets.clamp_min(0), enc_lens, target_lens, blank=BLANK_ID, reduction="sum",
                          zero_infinity=True)
