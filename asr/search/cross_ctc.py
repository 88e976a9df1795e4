"""Joint CTC/attention search when the CTC head writes other tokens than the decoder (a companion CTC model).

Whisper's decoder writes byte-level BPE (51,865 ids, cased, punctuated); the CTC branch trained on its encoder
(``whisper-tiny-en-ctc``) writes 29 characters. ESPnet's prefix score (:mod:`asr.search.ctc_prefix_score`) needs
one vocabulary. Here every decoder prefix is mapped to the companion's units through text (the decoder's tokens
decoded, normalised as references are scored, :func:`asr.text.normalize_text`, and spelled in the companion's
tokenizer), and the CTC term of a candidate token is

    log P_ctc(units(prefix + token) ...) - log P_ctc(units(prefix) ...)

(the end token: ``log P_ctc(units(prefix)) - log P_ctc(units(prefix) ...)``, the whole utterance, at least
:data:`END_FLOOR`). A token that adds
no unit (punctuation) adds 0; one that adds several (a BPE piece of 4 letters) is scored through all of them. The
increments telescope, so a finished hypothesis carries the CTC probability of its whole normalised text, whatever
path the normalisation took (``JOHN'`` -> ``JOHN`` -> ``JOHN'S``). Prefix probabilities are computed once per unit
sequence and cached (:class:`UnitPrefixScores`); the candidates of a step extend their parents by a few units, and
the extensions of one length are computed in one batched forward pass over time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from asr.search.ctc_prefix_score import NEG, _forward
from asr.text import BLANK_ID, normalize_text

Units = tuple[int, ...]
# The most the companion's CTC may take from an ending (nats, before its weight). Without it, a hypothesis whose
# text the companion cannot spell (Whisper's "1455" against the CTC's "FOURTEEN FIFTY FIVE") could never end: its
# end costs the whole mismatch, while a token without units (". . .") costs the CTC nothing, so the search went on
# to the length limit (LJ001-0007: 224 tokens, ". . ." after the text, 15 s). A matching hypothesis ends at 0 to -2.
END_FLOOR = -10.0


class UnitPrefixScores:
    """CTC prefix log-probabilities of unit sequences over one utterance, ``log_probs (T, V)`` (its frames only).

    For a sequence ``g``: ``r[g] (T, 2)`` the forward variables (paths that have emitted exactly ``g`` by frame t and end
    in its last unit [0] or in a blank [1]) and ``psi[g]`` = log P(g is a prefix of the output)."""

    def __init__(self, log_probs: torch.Tensor):
        self.x = log_probs.double().clamp_min(NEG)  # (T, V)
        T = self.x.size(0)
        r = torch.full((T, 2), NEG, dtype=torch.float64)
        r[:, 1] = torch.cumsum(self.x[:, BLANK_ID], 0)
        self.r: dict[Units, torch.Tensor] = {(): r}
        self.psi: dict[Units, float] = {(): 0.0}

    def end(self, g: Units) -> float:
        """log P(the output is exactly ``g``)."""
        self.ensure([g])
        r = self.r[g]
        return float(torch.logaddexp(r[-1, 0], r[-1, 1]))

    def prefix(self, g: Units) -> float:
        self.ensure([g])
        return self.psi[g]

    def ensure(self, seqs: list[Units]) -> None:
        """Compute every sequence of ``seqs`` (and the prefixes they need) not yet cached, one length at a time."""
        need: set[Units] = set()
        for g in seqs:
            while g not in self.r and g not in need:
                need.add(g)
                g = g[:-1]
        for n in sorted({len(g) for g in need}):
            self._extend(sorted(g for g in need if len(g) == n))

    def _extend(self, seqs: list[Units]) -> None:
        """Sequences of one length whose parents (all but the last unit) are cached: their ``r`` and ``psi``."""
        T, M = self.x.size(0), len(seqs)
        parents = torch.stack([self.r[g[:-1]] for g in seqs], -1)  # (T, 2, M)
        c = torch.tensor([g[-1] for g in seqs])
        same = torch.tensor([len(g) > 1 and g[-2] == g[-1] for g in seqs])
        xs = self.x[:, c]  # (T, M)
        # phi: paths that may emit c next: any path of the parent, or only those ending in a blank when c repeats
        phi = torch.where(same, parents[:, 1], torch.logaddexp(parents[:, 0], parents[:, 1]))
        r0 = torch.where(torch.tensor([len(g) == 1 for g in seqs]), xs[0], torch.full((M,), NEG, dtype=torch.float64))
        psi = r0.clone()
        r = torch.full((T, 2, M), NEG, dtype=torch.float64)
        r[0, 0] = r0
        if T > 1:
            out0, out1 = _forward(r0.unsqueeze(0), torch.full((1, M), NEG, dtype=torch.float64), phi[:-1].unsqueeze(1),
                                  xs[1:].unsqueeze(1), self.x[1:, BLANK_ID].view(-1, 1, 1))
            r[1:, 0], r[1:, 1] = out0[:, 0], out1[:, 0]
            psi = torch.logaddexp(psi, torch.logsumexp(phi[:-1] + xs[1:], 0))
        for k, g in enumerate(seqs):
            self.r[g] = r[:, :, k]
            self.psi[g] = float(psi[k])


def text_units(decode: Callable[[list[int]], str], encode: Callable[[str], list[int]]) -> Callable[[Units], Units]:
    """``tokens -> units``: the decoder's tokens as the companion spells their normalised text (cached)."""
    cache: dict[Units, Units] = {}

    def units(tokens: Units) -> Units:
        if tokens not in cache:
            text = normalize_text(decode(list(tokens)))
            cache[tokens] = tuple(encode(text)) if text else ()
        return cache[tokens]
    return units


class CrossCTCScorer:
    """A partial scorer (:mod:`asr.search.scorers`) for the companion's CTC: ``log_probs (B, T, V')`` over its
    units, ``lens (B,)``, ``beam`` hypotheses per utterance (utterance-major), ``units`` maps a decoder prefix
    to the companion's units (:func:`text_units`); ``end_floor``: :data:`END_FLOOR`. Stateless: the per-utterance caches hold the forward variables."""

    full = False

    def __init__(self, log_probs: torch.Tensor, lens: torch.Tensor, beam: int, eos: int,
                 units: Callable[[Units], Units], end_floor: float = END_FLOOR):
        self.utts = [UnitPrefixScores(log_probs[b, : int(lens[b])]) for b in range(log_probs.size(0))]
        self.beam, self.eos, self.units, self.end_floor = beam, eos, units, end_floor

    def init_state(self):
        return None

    def score(self, state, prefix: torch.Tensor, cand: torch.Tensor):
        """``prefix (N, t)``, ``cand (N, C)`` -> the CTC increments ``(N, C)``."""
        rows, cands = prefix.tolist(), cand.tolist()
        base = [self.units(tuple(p)) for p in rows]
        ext = [[None if c == self.eos else self.units(tuple(p) + (c,)) for c in cs] for p, cs in zip(rows, cands)]
        for b, u in enumerate(self.utts):  # one batched pass per new length, over the utterance's rows
            rs = range(b * self.beam, (b + 1) * self.beam)
            u.ensure([base[i] for i in rs] + [g for i in rs for g in ext[i] if g is not None])
        out = []
        for i, gs in enumerate(ext):
            u = self.utts[i // self.beam]
            p0 = u.psi[base[i]]
            out.append([max(u.end(base[i]) - p0, self.end_floor) if g is None else u.psi[g] - p0 for g in gs])
        return torch.tensor(out, dtype=torch.float32, device=cand.device), None

    def select(self, state, aux, parent, col, tokens):
        return None


@dataclass
class CTCCompanion:
    """A model whose CTC head scores another model's joint decoding (``ModelConfig.ctc_companion``): ``loaded`` (an
    :class:`asr.inference.model_dir.LoadedModel`; live captions show its partials when it is the streaming model),
    its ``weight`` (the main model's ``companion_weight``), ``decode`` (the main model's tokens -> text). Not a
    submodule: the main model's weights stay its own."""

    loaded: object
    weight: float
    decode: Callable[[list[int]], str] = field(repr=False)

    @property
    def model(self):
        return self.loaded.model

    @torch.inference_mode()
    def log_probs(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The main model's raw features ``(B, T, F)`` (both read the same front end) -> the companion's CTC
        ``(B, T', V')`` and lengths ``(B,)``."""
        enc, lens = self.model.encode(feats, feat_lens)
        return self.model.ctc_log_probs(enc), lens

    def scorer(self, log_probs: torch.Tensor, lens: torch.Tensor, beam: int, eos: int) -> CrossCTCScorer:
        # a units cache per search: one kept with the companion would grow with every prefix a process ever decodes
        return CrossCTCScorer(log_probs, lens, beam, eos, text_units(self.decode, self.loaded.tokenizer.encode))


__all__ = ["END_FLOOR", "CTCCompanion", "CrossCTCScorer", "UnitPrefixScores", "text_units"]
