"""What streaming, search, export and alignment may ask of any encoder, and the encoders by name.

An encoder is chosen by ``EncoderConfig.kind``: ``conformer`` (the toolkit's own,
:class:`asr.models.encoder.ConformerEncoder`) or ``whisper`` (:class:`asr.models.whisper_encoder.WhisperEncoder`).
Nothing outside the encoders branches on the kind: it asks the interface below (icefall's ``EncoderInterface``,
WeNet's encoder classes chosen by name in the config).
"""

from __future__ import annotations

from typing import Protocol

import torch

from asr.config import EncoderConfig
from asr.errors import UserError
from asr.models.encoder import ConformerEncoder
from asr.models.state import EncoderState
from asr.models.whisper_encoder import WhisperEncoder


class EncoderInterface(Protocol):
    cfg: EncoderConfig
    rate: int  # feature frames per encoder frame (subsampling)
    receptive_field: int  # feature frames one encoder frame sees (the shortest input that gives one frame)
    streaming: bool  # forward_chunk computes what forward with the matching chunk mask computes
    left_pad: int  # zero feature frames a stream puts before its first frame (the first window's left context)
    weight_dtype: torch.dtype

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, chunk: int = 0, left_chunks: int = -1,
                tap: int = 0):
        """``x (B, T, F)``, ``x_lens (B,)`` -> ``(y (B, T', D), y_lens (B,))`` (and layer ``tap``'s output)."""

    def chunk_window(self, chunk: int) -> tuple[int, int]:
        """``(window, stride)`` in feature frames for ``chunk`` encoder frames."""

    def init_state(self, batch_size: int = 1, device: torch.device | str = "cpu",
                   dtype: torch.dtype | None = None) -> EncoderState:
        """The empty streaming state."""

    def forward_chunk(self, x: torch.Tensor, state: EncoderState, left_frames: int = -1,
                      last: bool = False) -> tuple[torch.Tensor, EncoderState]:
        """One feature window ``(B, W, F)`` (``last``: the stream's final, shorter one) -> ``(y (B, C, D), new_state)``."""


ENCODERS = {"conformer": ConformerEncoder, "whisper": WhisperEncoder}


def build_encoder(cfg: EncoderConfig) -> EncoderInterface:
    if cfg.kind not in ENCODERS:
        raise UserError(f"encoder.kind must be one of {', '.join(ENCODERS)}, not {cfg.kind!r}")
    return ENCODERS[cfg.kind](cfg)


__all__ = ["EncoderInterface", "ENCODERS", "build_encoder"]
