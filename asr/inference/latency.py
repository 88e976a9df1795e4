"""What a caption reader waits for, measured one way everywhere: when each stretch of a stream's audio arrived, and
how long after that its first token showed (partial latency) or its segment was committed (commit latency).

``asr live`` keeps an :class:`ArrivalClock` beside its stream (wall time), and so does every client of the serving
benchmark (``asr bench-serve``: the caption server's messages carry the stream times of the tokens it shows for the
first time and of the committed segments' last words). Pure Python: the benchmark's client process imports no torch.
"""

from __future__ import annotations


class ArrivalClock:
    """Arrival times of a stream's audio in slots of ``resolution`` seconds (stream time), the last
    ``keep_seconds`` of them (bounded however long the stream runs), and the latencies measured against them."""

    def __init__(self, resolution: float, keep_seconds: float = 120.0):
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, not {resolution}")
        self.resolution = resolution
        self.keep = max(1, int(keep_seconds / resolution))
        self._at: dict[int, float] = {}  # slot -> when its audio arrived
        self._next = 0  # the first slot whose audio has not arrived
        self.partial: list[float] = []  # a token's first display minus its audio's arrival (s)
        self.commit: list[float] = []  # a segment's commit minus its last word's audio's arrival (s)

    def _slot(self, seconds: float) -> int:
        return int(seconds / self.resolution + 1e-6)

    def arrived(self, until_seconds: float, now: float) -> None:
        """The stream's audio up to ``until_seconds`` (stream time) has arrived, at ``now``."""
        end = self._slot(until_seconds)
        for k in range(self._next, end):
            self._at[k] = now
        self._next = max(self._next, end)
        while len(self._at) > self.keep:
            self._at.pop(next(iter(self._at)))

    def since(self, seconds: float, now: float) -> float | None:
        """``now`` minus when the audio at ``seconds`` (stream time) arrived; None when that is not known (not yet
        arrived, or older than ``keep_seconds``)."""
        t = self._at.get(self._slot(seconds))
        return None if t is None else max(0.0, now - t)

    def shown(self, seconds: list[float], now: float) -> None:
        """Tokens at these stream times showed for the first time at ``now``."""
        self.partial.extend(x for x in (self.since(s, now) for s in seconds) if x is not None)

    def committed(self, seconds: list[float], now: float) -> None:
        """Segments whose last words end at these stream times were committed at ``now``."""
        self.commit.extend(x for x in (self.since(s, now) for s in seconds) if x is not None)

