"""Models from other toolkits -> asr model directories (ESPnet: :mod:`asr.importers.espnet`; Whisper:
:mod:`asr.importers.whisper`)."""

from asr.errors import UserError


class ImportRefused(UserError):
    """A model this toolkit cannot represent exactly; ``str(err)`` is one line naming what differs."""
