"""The one result type every search method returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # token ids (no blank, sos/eos or mask)
    score: float  # log-probability (method-specific, comparable within one method)
    token_frames: tuple[int, ...] = field(default=())  # encoder frame where each token fires, when known
