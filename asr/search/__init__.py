"""Decoding methods. Each takes a batch and returns one :class:`Hypothesis` list per utterance."""

from asr.results import Hypothesis

__all__ = ["Hypothesis"]
