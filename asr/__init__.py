"""asr: streaming speech recognition toolkit.

Public API::

    import asr
    model = asr.load_model()                        # the bundled default, a bundled name or a model directory
    result = model.transcribe("talk.wav")           # or samples; .text, .segments, .words (asr.inference.api)
    live = model.stream(); live.feed(samples, 48000); segments = live.finish()
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(path=None, device: str = "cpu", quantize: str | None = None):
    """Load a model directory written by `asr export-model` or a bundled model by name (None: the bundled default) ->
    :class:`asr.inference.api.Model`; ``quantize="int8"`` for dynamic int8 Linear layers on the CPU."""
    from asr.inference.api import load_model as _load  # importing asr stays light: torch loads on first use

    if path is None:
        from asr.config import DEFAULT_MODEL

        path = DEFAULT_MODEL
    return _load(path, device, quantize)


__all__ = ["load_model", "__version__"]
