"""Atomic file writes: the one place that writes a file under a temporary name and renames it into place.

A reader (or a killed job) sees either the old file or the new one, never half of one, and a failed write
leaves no temporary file behind. The temporary name keeps the target's full name at the end
(``.tmp-PID-NAME``), so libraries that choose a format by extension (soundfile, matplotlib, lhotse) still
see it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".tmp-"


def temp_name(path: str | os.PathLike) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it is renamed to ``path``,
    otherwise it is removed and the error propagates. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)


def stale_temp_files(folder: str | os.PathLike, name_glob: str = "*") -> list[Path]:
    """Temporary files a killed writer left in ``folder`` for targets matching ``name_glob``."""
    return sorted(Path(folder).glob(f"{TMP_PREFIX}*-{name_glob}"))


@contextlib.contextmanager
def atomic_model_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out`` (mode 755) to write a model directory into; when the block
    ends without error it takes ``out``'s place (an existing ``out`` is renamed aside first and removed after),
    otherwise it is removed and the error propagates."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model directory is meant to be shared
    try:
        yield tmp
        if out.exists():
            backup = out.with_name(f".{out.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(out, backup)
            os.replace(tmp, out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["atomic_path", "atomic_model_dir", "write_atomic", "temp_name", "stale_temp_files"]
