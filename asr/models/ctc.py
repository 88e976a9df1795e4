"""CTC head: a projection to the vocabulary (blank = id 0) and its loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr.errors import UserError
from asr.text import BLANK_ID


class CTCHead(nn.Module):
    def __init__(self, d_model: int, vocab_size: int, dropout: float = 0.0):
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def logits(self, enc: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(enc))

    def log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """``enc (B, T, D)`` -> ``(B, T, V)`` log-probabilities (float32 whatever the model's dtype)."""
        return self.logits(enc).float().log_softmax(-1)

    def loss(self, enc: torch.Tensor, enc_lens: torch.Tensor, targets: torch.Tensor, target_lens: torch.Tensor) -> torch.Tensor:
        """Summed CTC loss over the batch. ``targets (B, L)`` padded with anything, ``target_lens (B,)``."""
        lp = self.log_probs(enc).float().transpose(0, 1)  # (T, B, V)
        return F.ctc_loss(lp, targets.clamp_min(0), enc_lens, target_lens, blank=BLANK_ID, reduction="sum",
                          zero_infinity=True)


NEVER = -1e4  # log-probability of an id outside a CTC head's vocabulary (exp() is 0; sums stay finite)


class TiedCTCHead(CTCHead):
    """CTC over the attention decoder's vocabulary through its token embedding ``E (V, D)`` (WeNet's start for a
    Whisper encoder): ``logits = proj(enc) @ E[vocab]^T + b``, the blank (id 0, which the decoder never uses) a
    vector of its own. ``vocab_size > 0``: the head covers only the ids of its ``vocab`` buffer (the tokens of the
    training transcripts and the most frequent ones of a text corpus, set by the trainer and saved with the weights):
    a 51k-id Whisper vocabulary costs 5x less to train over 10k ids, and ids no transcript ever held would not be
    learned anyway. Every other id gets log-probability :data:`NEVER`. Costs ``D x D + |vocab| + D`` parameters;
    ``proj`` starts at zero (uniform output), the embedding is referenced, not registered."""

    def __init__(self, d_model: int, embed: nn.Embedding, dropout: float = 0.0, vocab_size: int = 0):
        nn.Module.__init__(self)
        V = embed.num_embeddings
        n = vocab_size if 0 < vocab_size < V else V - 1
        self.proj = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.blank = nn.Parameter(torch.zeros(d_model))
        self.bias = nn.Parameter(torch.zeros(n + 1))
        self.register_buffer("vocab", torch.arange(1, n + 1))  # model ids of the head's outputs 1..n
        self.dropout = nn.Dropout(dropout)
        self._embed = (embed,)
        self.full_size = V

    def set_vocab(self, ids: list[int]) -> None:
        """The model ids the head covers (sorted, blank excluded; as many as its ``vocab_size``)."""
        ids = sorted(set(int(i) for i in ids) - {BLANK_ID})
        if len(ids) != self.vocab.numel():
            raise UserError(f"a CTC vocabulary of {len(ids)} ids for a head of {self.vocab.numel()}")
        self.vocab.copy_(torch.tensor(ids))

    def logits(self, enc: torch.Tensor) -> torch.Tensor:
        """``(B, T, 1 + |vocab|)``: the blank, then the vocabulary's ids in order (the head's own index space)."""
        h = self.proj(self.dropout(enc))  # (B, T, D)
        E = self._embed[0].weight.to(h.dtype)
        blank = (h @ self.blank.to(h.dtype)).unsqueeze(-1) + self.bias[:1].to(h.dtype)
        return torch.cat([blank, F.linear(h, E[self.vocab], self.bias[1:].to(h.dtype))], dim=-1)

    def log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """``(B, T, V)`` over every model id (float32): :data:`NEVER` outside the head's vocabulary."""
        sub = self.logits(enc).float().log_softmax(-1)
        if self.vocab.numel() == self.full_size - 1:
            return sub
        out = sub.new_full((*sub.shape[:-1], self.full_size), NEVER)
        out[..., BLANK_ID] = sub[..., 0]
        out[..., self.vocab] = sub[..., 1:]
        return out

    def loss(self, enc: torch.Tensor, enc_lens: torch.Tensor, targets: torch.Tensor, target_lens: torch.Tensor) -> torch.Tensor:
        """Summed CTC loss in the head's index space (targets outside its vocabulary are left out)."""
        index = torch.full((self.full_size,), -1, dtype=torch.long, device=targets.device)
        index[self.vocab] = torch.arange(1, self.vocab.numel() + 1, device=targets.device)
        mapped = index[targets.clamp_min(0)]
        keep = (mapped > 0) & (torch.arange(targets.size(1), device=targets.device) < target_lens.unsqueeze(1))
        rows = [m[k] for m, k in zip(mapped, keep)]
        lens = torch.tensor([len(r) for r in rows], device=targets.device)
        tg = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True) if rows else targets
        lp = self.logits(enc).float().log_softmax(-1).transpose(0, 1)  # (T, B, 1 + |vocab|)
        return F.ctc_loss(lp, tg, enc_lens, lens, blank=0, reduction="sum", zero_infinity=True)
