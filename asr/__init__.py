"""asr: streaming speech recognition toolkit.

Public API::

    import asr
    m = asr.load_model("path/to/model_dir")     # LoadedModel(model, tokenizer, config, path)
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(path, device: str = "cpu", quantize: str | None = None):
    """Load a model directory written by `asr export-model` (see asr.model_dir); ``quantize="int8"`` for
    dynamic int8 Linear layers on the CPU."""
    from asr.model_dir import load_model as _load

    return _load(path, device, quantize)


__all__ = ["load_model", "__version__"]
