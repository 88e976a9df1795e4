"""Models from other toolkits -> asr model directories (ESPnet: :mod:`asr.importers.espnet`; Whisper:
:mod:`asr.importers.whisper`)."""


class ImportRefused(ValueError):
    """A model this toolkit cannot represent exactly; ``str(err)`` is one line naming what differs."""
