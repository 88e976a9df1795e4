"""Two-pass attention rescoring (WeNet): CTC prefix-beam n-best, rescored by the AR decoder(s).

Every hypothesis of every utterance goes through the decoder in one teacher-forced batch.
"""

from __future__ import annotations

import torch

from asr.errors import UserError
from asr.models.asr_model import pad_list
from asr.results import Hypothesis
from asr.search.ctc import ctc_prefix_beam
from asr.search.options import DEFAULTS


def _teacher_forced(decoder, enc, enc_lens, seqs: list[tuple[int, ...]], owner: list[int], prompt: tuple[int, ...],
                    eos: int) -> torch.Tensor:
    """Sum of decoder log-probs of each ``seqs[i]`` followed by ``eos`` after ``prompt``, given utterance
    ``owner[i]``: ``(N,)``."""
    dev = enc.device
    ys = [torch.tensor(s, dtype=torch.long, device=dev) for s in seqs]
    head, end = torch.tensor(prompt, device=dev), torch.tensor([eos], device=dev)
    skip = torch.full((len(prompt) - 1,), -1, device=dev)
    y_in = pad_list([torch.cat([head, y]) for y in ys], eos)
    y_out = pad_list([torch.cat([skip, y, end]) for y in ys], -1)
    lens = torch.tensor([len(s) + len(prompt) for s in seqs], device=dev)
    idx = torch.tensor(owner, device=dev)
    lp = decoder(enc[idx], enc_lens[idx], y_in, lens).float().log_softmax(-1)  # (N, L+1, V)
    valid = y_out >= 0
    tok_lp = torch.gather(lp, 2, y_out.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (tok_lp * valid).sum(1)


@torch.inference_mode()
def attention_rescoring(model, enc: torch.Tensor, enc_lens: torch.Tensor, beam: int = DEFAULTS.beam,
                        ctc_weight: float = DEFAULTS.rescore_ctc_weight, reverse_weight: float = DEFAULTS.reverse_weight,
                        fusion_factory=None, neural_lm=None, neural_lm_weight: float = 0.0) -> list[list[Hypothesis]]:
    """Rescore the CTC prefix-beam ``beam``-best with the decoder: ``att + ctc_weight * ctc`` where ``att``
    mixes left-to-right and right-to-left decoder scores (``reverse_weight``) when the model has both.
    Returns the n-best per utterance, re-ranked (timing from the CTC pass). ``fusion_factory``: word n-gram
    shallow fusion / hotwords in the first pass (its scores then include them). ``neural_lm``
    (:class:`asr.lm.neural.TokenLM`): adds ``neural_lm_weight * log P_nlm(hypothesis)`` to the second pass."""
    if model.decoder is None:
        raise UserError("this model has no attention decoder (model.decoder.num_layers = 0)")
    nbests = ctc_prefix_beam(model.ctc_log_probs(enc), enc_lens, beam=beam, fusion_factory=fusion_factory)
    seqs, owner = [], []
    for b, nb in enumerate(nbests):
        for h in nb:
            seqs.append(h.tokens)
            owner.append(b)
    if not seqs:
        return nbests
    att = _teacher_forced(model.decoder, enc, enc_lens, seqs, owner, model.prompt, model.eos)
    if model.r2l_decoder is not None and reverse_weight > 0:
        r2l = _teacher_forced(model.r2l_decoder, enc, enc_lens, [s[::-1] for s in seqs], owner, model.prompt, model.eos)
        att = (1 - reverse_weight) * att + reverse_weight * r2l
    if neural_lm is not None and neural_lm_weight:
        att = att + neural_lm_weight * torch.tensor(neural_lm.sentence_log_prob([list(s) for s in seqs]),
                                                    device=att.device)
    out, i = [], 0
    for nb in nbests:
        scored = []
        for h in nb:
            scored.append(Hypothesis(h.tokens, float(att[i]) + ctc_weight * h.score, h.token_frames))
            i += 1
        out.append(sorted(scored, key=lambda h: h.score, reverse=True))
    return out
