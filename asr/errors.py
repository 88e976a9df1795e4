"""The one error type the library raises on purpose for what a user gave it (a file, an option, a model directory),
and the one formatter of an exception as one line.

Every deliberate refusal is a :class:`UserError` (a ValueError, so ``except ValueError`` still catches it) or one of
its subclasses (``AudioError``, ``ModelError``, ``ImportRefused``...); the command line prints those as one
``error:`` line. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something the user gave cannot be used; ``str(err)`` is one line naming it and the cause."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's first non-empty line (its type's name when it has no message), at most ``limit`` characters."""
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    return (lines[0] if lines else type(e).__name__)[:limit]


__all__ = ["UserError", "first_line"]
