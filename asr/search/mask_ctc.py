"""Mask-CTC decoding (Higuchi et al. 2020), batched across utterances.

CTC greedy gives a first transcript; its tokens whose CTC confidence is below ``threshold`` are masked
and the conditional masked LM decoder fills them over ``iterations`` passes, the most confident
predictions first. Every pass is one MLM forward over the whole padded batch; the choice of which masks
to fill is a tensor operation, not a loop over frames or utterances (ESPnet's is both).
"""

from __future__ import annotations

import torch

from asr.errors import UserError
from asr.results import Hypothesis
from asr.search.options import DEFAULTS
from asr.text import BLANK_ID


def greedy_tokens_with_confidence(log_probs: torch.Tensor, lens: torch.Tensor):
    """CTC greedy tokens with a confidence each: the highest frame probability within the token's run
    of frames. Returns ``(tokens list[(L_b,)], conf list[(L_b,)], frames list[(L_b,)])``."""
    best, idx = log_probs.max(-1)  # (B, T)
    B, T = idx.shape
    valid = torch.arange(T, device=idx.device).unsqueeze(0) < lens.unsqueeze(1)
    idx = idx.masked_fill(~valid, BLANK_ID)
    prev = torch.cat([idx.new_full((B, 1), -1), idx[:, :-1]], dim=1)
    starts = (idx != prev)  # a new run begins (blank runs included)
    run_id = starts.long().cumsum(1) - 1  # (B, T)
    run_max = torch.full((B, T), float("-inf"), device=idx.device).scatter_reduce(1, run_id, best.float(), "amax")
    keep = valid & starts & (idx != BLANK_ID)
    toks, confs, frames = [], [], []
    for b in range(B):
        f = keep[b].nonzero().squeeze(1)
        toks.append(idx[b, f])
        confs.append(run_max[b, run_id[b, f]].exp())
        frames.append(f)
    return toks, confs, frames


@torch.inference_mode()
def mask_ctc(model, enc: torch.Tensor, enc_lens: torch.Tensor, threshold: float = DEFAULTS.mask_threshold,
             iterations: int = DEFAULTS.mask_iterations, schedule: str = DEFAULTS.mask_schedule) -> list[list[Hypothesis]]:
    """``enc (B, T, D)``, ``enc_lens (B,)`` -> one hypothesis per utterance (scored by the CTC greedy
    path plus the MLM log-probabilities of the filled tokens)."""
    if model.mlm is None:
        raise UserError("this model has no Mask-CTC decoder (model.mlm.num_layers = 0)")
    lp = model.ctc_log_probs(enc)
    toks, confs, frames = greedy_tokens_with_confidence(lp, enc_lens)
    return refine(model, enc, enc_lens, lp, toks, confs, frames, threshold, iterations, schedule)


@torch.inference_mode()
def refine(model, enc: torch.Tensor, enc_lens: torch.Tensor, lp: torch.Tensor, toks: list, confs: list, frames: list,
           threshold: float, iterations: int, schedule: str = DEFAULTS.mask_schedule) -> list[list[Hypothesis]]:
    """The MLM iterations: per utterance ``toks (L,)`` with CTC confidences ``confs (L,)`` (and the frames
    where they fire); tokens below ``threshold`` are masked and filled by the MLM decoder in ``iterations``
    steps, the most confident first.

    ``schedule``: ``confidence`` ranks by MLM log-probability, never predicts blank, mask or eos, and fills
    ceil(n / iterations) a pass; ``espnet`` is ESPnet's MaskCTCInference: min(iterations, n) passes, each filling
    floor(n / passes) by raw logit with any token (blank deletes the position), the last pass filling the rest."""
    device = enc.device
    B = enc.size(0)
    lens = torch.tensor([len(t) for t in toks], device=device)
    L = max(1, int(lens.max()) if B else 1)
    y = torch.full((B, L), model.eos, dtype=torch.long, device=device)
    conf = torch.ones((B, L), device=device)
    for b in range(B):
        y[b, : lens[b]] = toks[b]
        conf[b, : lens[b]] = confs[b]
    pos_valid = torch.arange(L, device=device).unsqueeze(0) < lens.unsqueeze(1)
    masked = pos_valid & (conf < threshold)
    y = y.masked_fill(masked, model.mask_id)
    score = torch.tensor([float(lp[b, :enc_lens[b]].max(-1).values.sum()) for b in range(B)], device=device)
    n_masked = masked.sum(1)  # (B,)
    if schedule == "espnet":
        passes = n_masked.clamp(max=iterations)  # (B,)
        per_iter = n_masked // passes.clamp_min(1)
        last = passes
    else:
        per_iter = torch.ceil(n_masked.float() / max(1, iterations)).long().clamp_min(1)
        last = torch.full_like(n_masked, iterations)
    banned = torch.tensor([BLANK_ID, model.mask_id, model.eos], device=device)
    it = 0
    memory_kv = model.mlm.init_cache(enc).memory_kv if bool(masked.any()) else None  # projected once, reused
    while bool(masked.any()) and it < iterations:
        it += 1
        hidden = model.mlm(enc, enc_lens, y, lens.clamp_min(1), memory_kv=memory_kv, return_hidden=True)  # (B, L, D)
        logits = model.mlm.out(hidden[masked]).float()  # (n_masked, V): only the positions still masked
        if schedule == "espnet":
            pm, tm = logits.max(-1)
        else:
            logits.index_fill_(1, banned, float("-inf"))
            pm, tm = logits.log_softmax(-1).max(-1)
        p = torch.full(masked.shape, float("-inf"), device=device).masked_scatter(masked, pm)  # (B, L)
        tok = torch.zeros_like(y).masked_scatter(masked, tm)
        # rank the masked positions of each utterance by confidence; fill the best per_iter (all at the end)
        cand = p.masked_fill(~masked, float("-inf"))
        order = cand.argsort(dim=1, descending=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(L, device=device).expand(B, L))
        n_fill = torch.where(it < last, per_iter, n_masked)  # the last pass fills what is left
        fill = masked & (rank < n_fill.unsqueeze(1))
        y = torch.where(fill, tok, y)
        score = score + torch.where(fill, p, torch.zeros_like(p)).sum(1)
        masked = masked & ~fill
    out = []
    for b in range(B):
        seq, fr = y[b, : lens[b]], frames[b]
        if schedule == "espnet":  # a pass may have predicted blank (a deletion), mask or eos: not tokens
            keep = (seq != BLANK_ID) & (seq != model.mask_id) & (seq != model.eos)
            seq, fr = seq[keep], (fr[keep] if len(fr) == len(keep) else fr)
        out.append([Hypothesis(tuple(seq.tolist()), float(score[b]), tuple(fr.tolist()) if len(fr) == len(seq) else ())])
    return out


__all__ = ["mask_ctc", "refine", "greedy_tokens_with_confidence"]
