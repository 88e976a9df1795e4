"""How the AR / joint beam search picks candidates, ranks what ended and decides that it is done: strategies the
search is given (Whisper's ``decoding.py`` takes a ``SequenceRanker`` likewise), so the beam search itself reads as
one algorithm (:func:`asr.search.attention.beam_search`).

* :class:`BeamRules` (``asr``): the toolkit's: the ``n`` best non-ending tokens plus the end as candidates, the
  endings among an utterance's ``beam`` best extensions recorded and ranked by ``score / (len + 1) ** norm``, done
  once ``beam`` have ended (fairseq's rule), the end threshold and the CTC length window as the options say;
* :class:`WhisperRules` (``whisper``): as faster-whisper's (CTranslate2's) beam search, which it matches on 234
  of 237 utterances: no end threshold or CTC window, a finished hypothesis' length leaves its end token out;
* :class:`EspnetRules` (``espnet``): ESPnet's BatchBeamSearch: blank may be chosen without CTC (and is dropped from
  the output), joint candidates are the 1.5 x beam best tokens by the full scores (eos always), only the non-ending
  extensions among the beam best run on (the beam shrinks as hypotheses end), a search stops when none runs or by
  ESPnet's ``end_detect``, and at the length limit eos is appended unscored.

Hypotheses are ``N = B x beam`` rows, utterance-major; ``finished[b]`` lists ``(score, tokens, ranking score)``.
"""

from __future__ import annotations

import math

import torch

from asr.errors import UserError
from asr.text import BLANK_ID

NEG_INF = float("-inf")


class BeamRules:
    """The toolkit's rules (see the module docstring)."""

    name = "asr"
    end_len = 1  # a finished hypothesis' length counts its end token
    blank_without_ctc = False  # the decoder may choose the CTC blank when no CTC prefix score runs

    def options(self, eos_threshold: float, ctc_length_window: tuple[float, float]):
        """The end threshold and CTC length window that apply under these rules."""
        return eos_threshold, ctc_length_window

    def n_candidates(self, beam: int, vocab: int, partial: bool) -> int:
        """Tokens pre-selected per hypothesis (besides the end): ESPnet's 1.5 x beam pre-beam where partial scorers
        (CTC prefix, n-gram, hotwords) score only candidates."""
        return min(vocab, int(1.5 * beam) + 1) if partial else beam

    def candidates(self, pre: torch.Tensor, eos: int, n_cand: int, partial: bool):
        """The ``n_cand`` best tokens of each hypothesis by ``pre (N, V)`` other than eos, then eos:
        ``((N, n_cand + 1), None)`` (no column is void)."""
        N = pre.size(0)
        _, cand = pre.index_fill(1, torch.tensor([eos], device=pre.device), NEG_INF).topk(n_cand, dim=-1)
        return torch.cat([cand, torch.full((N, 1), eos, device=pre.device, dtype=torch.long)], 1), None

    def limit(self, step_scores: torch.Tensor, is_eos: torch.Tensor, at_limit: torch.Tensor,
              void: torch.Tensor | None) -> torch.Tensor:
        """``step_scores (N, C)`` under the length limit: only the end is possible there."""
        return step_scores.masked_fill(at_limit.unsqueeze(1) & ~is_eos, NEG_INF)

    def choose(self, total: torch.Tensor, is_eos: torch.Tensor, finished: list, done: torch.Tensor,
               prefix: torch.Tensor, beam: int, length_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's choice from ``total (N, C)`` (running score + extension): endings among an utterance's
        ``beam`` best extensions are recorded; the running beam is refilled from the best non-ending ones.
        Returns ``(best, flat)``, ``(B, beam)`` each."""
        N, C = total.shape
        B = N // beam
        top_val, top_idx = total.view(B, beam * C).topk(beam, dim=-1)
        top_eos = is_eos.view(B, beam * C).gather(1, top_idx) & torch.isfinite(top_val)
        if bool(top_eos.any()):
            self._collect_endings(finished, done, top_eos, top_idx, top_val, prefix, beam, C, length_norm)
        return self.running(total.masked_fill(is_eos, NEG_INF).view(B, beam * C), top_idx).topk(beam, dim=-1)

    def running(self, running: torch.Tensor, top_idx: torch.Tensor) -> torch.Tensor:
        """The non-ending extensions ``(B, beam x C)`` the running beam may take."""
        return running

    def _collect_endings(self, finished: list, done: torch.Tensor, top_eos: torch.Tensor, top_idx: torch.Tensor,
                         top_val: torch.Tensor, prefix: torch.Tensor, beam: int, C: int, norm: float) -> None:
        """Record the hypotheses that end at this step: ``(score, tokens, score / (len + end_len) ** norm)``."""
        for b, k in top_eos.nonzero().tolist():
            if not done[b]:
                flat = int(top_idx[b, k])
                seq = tuple(prefix[b * beam + flat // C].tolist())
                sc = float(top_val[b, k])
                finished[b].append((sc, seq, sc / max(1, len(seq) + self.end_len) ** norm))

    def finished(self, finished: list, best: torch.Tensor, t: int, beam: int) -> torch.Tensor:
        """``(B,)`` utterances done after step ``t``: once ``beam`` hypotheses have ended (comparing raw scores
        instead would stop at an early short hypothesis, since running scores only fall with length)."""
        return torch.tensor([len(f) >= beam for f in finished], device=best.device)

    def output(self, seq: tuple[int, ...]) -> tuple[int, ...]:
        return seq


class WhisperRules(BeamRules):
    """faster-whisper's rules (see the module docstring)."""

    name = "whisper"
    end_len = 0

    def options(self, eos_threshold: float, ctc_length_window: tuple[float, float]):
        return 0.0, (0.0, 0.0)


class EspnetRules(BeamRules):
    """ESPnet's BatchBeamSearch (see the module docstring)."""

    name = "espnet"
    blank_without_ctc = True

    def n_candidates(self, beam: int, vocab: int, partial: bool) -> int:
        return min(vocab, int(1.5 * beam)) if partial else beam

    def candidates(self, pre: torch.Tensor, eos: int, n_cand: int, partial: bool):
        """With partial scorers, ESPnet's pre-beam: the best ``n_cand`` of all tokens (eos included) then eos (its
        CTC prefix scorer scores eos whatever the pre-beam holds), and a mask of the pre-beam's own eos columns
        (eos has the last column; those would count it twice)."""
        if not partial:
            return super().candidates(pre, eos, n_cand, partial)
        N = pre.size(0)
        _, cand = pre.topk(n_cand, dim=-1)
        own_eos = cand == eos
        void = torch.cat([own_eos, torch.zeros_like(own_eos[:, :1])], 1)
        eos_column = torch.full((N, 1), eos, device=pre.device, dtype=torch.long)
        return torch.cat([torch.where(own_eos, cand[:, :1], cand), eos_column], 1), void

    def limit(self, step_scores, is_eos, at_limit, void):
        """At the length limit eos is appended with no score; the void pre-beam columns are out (but eos there)."""
        lim = at_limit.unsqueeze(1)
        if void is not None:
            step_scores = step_scores.masked_fill(void & ~(lim & is_eos), NEG_INF)
        step_scores = step_scores.masked_fill(lim & ~is_eos, NEG_INF)
        return torch.where(lim & is_eos, torch.zeros_like(step_scores), step_scores)

    def running(self, running, top_idx):
        """Only the non-ending extensions among the beam best run on."""
        keep = torch.zeros_like(running, dtype=torch.bool).scatter_(1, top_idx, True)
        return running.masked_fill(~keep, NEG_INF)

    def finished(self, finished, best, t, beam):
        """By ESPnet's ``end_detect``, or when nothing runs on."""
        return torch.tensor([espnet_end(f, t) for f in finished], device=best.device) | ~torch.isfinite(best).any(1)

    def output(self, seq):
        return tuple(i for i in seq if i != BLANK_ID)


def espnet_end(finished: list, t: int, m: int = 3, d_end: float = math.log(1e-10)) -> bool:
    """ESPnet's ``end_detect`` after step ``t``: for each of the last ``m`` lengths some hypothesis ended, and the
    best of each is worse than the best overall by more than ``-d_end`` (its lengths count sos and eos)."""
    if not finished:
        return False
    best = max(f[0] for f in finished)
    count = 0
    for k in range(m):
        same = [f[0] for f in finished if len(f[1]) + 2 == t - k]
        if same and max(same) - best < d_end:
            count += 1
    return count == m


RULES = {r.name: r for r in (BeamRules(), WhisperRules(), EspnetRules())}


def beam_rules(model, name: str) -> BeamRules:
    """The rules called ``name`` (``auto``: the model's own ``beam_rules``)."""
    name = getattr(model, "beam_rules", "asr") if name == "auto" else name
    if name not in RULES:
        raise UserError(f"beam rules must be one of auto, {', '.join(RULES)}, not {name!r}")
    return RULES[name]


__all__ = ["BeamRules", "WhisperRules", "EspnetRules", "RULES", "beam_rules", "espnet_end"]
