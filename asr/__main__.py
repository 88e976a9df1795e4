"""``python -m asr ...``: the ``asr`` command."""

from asr.apps.cli import main

main()
