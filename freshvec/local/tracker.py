"""Knowing when local mode is in sync: every source change written so far applied to the index or parked.

Each write to the local table produces change records at known source positions: sequence numbers, which
the local stream hands out once across all its shards. The event source mapping reports every Kinesis
record it finished (the sink applied it, parked it in the DLQ, or the mapping sent it to the on-failure
destination); the change event inside names its source position. A position is done once any copy of it
finished (the forwarder may forward a change twice after a crash; either copy counts). So "in sync" does
not depend on counters that retries and duplicates would skew, and the time a position finished gives
the freshness of the write that made it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Position = str  # source sequence number (unique across the local stream's shards)


@dataclass(frozen=True)
class WriteReceipt:
    """What one write produced: its change records' positions and when the write call started."""

    changes: int
    positions: tuple[Position, ...]
    written_at: float  # monotonic seconds

    def __bool__(self) -> bool:
        return self.changes > 0


@dataclass
class _State:
    written: dict[Position, float] = field(default_factory=dict)  # position -> write time (monotonic)
    finished: dict[Position, tuple[float, str]] = field(default_factory=dict)  # position -> (time, outcome)


class SyncTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state = _State()
        self._cond = threading.Condition()

    def now(self) -> float:
        return self._clock()

    def written(self, positions: Iterable[Position], at: float) -> WriteReceipt:
        positions = tuple(positions)
        with self._cond:
            for position in positions:
                self._state.written.setdefault(position, at)
        return WriteReceipt(len(positions), positions, at)

    def finished(self, positions: Iterable[Position], outcome: str) -> None:
        at = self._clock()
        with self._cond:
            for position in positions:
                self._state.finished.setdefault(position, (at, outcome))
            self._cond.notify_all()

    def pending(self, positions: Iterable[Position] | None = None) -> list[Position]:
        with self._cond:
            return self._pending(positions)

    def _pending(self, positions: Iterable[Position] | None) -> list[Position]:
        wanted = self._state.written if positions is None else positions
        return [p for p in wanted if p not in self._state.finished]

    def wait(self, timeout: float, positions: Iterable[Position] | None = None) -> None:
        """Block until the positions (default: everything written so far) are finished, else TimeoutError."""
        wanted = None if positions is None else tuple(positions)
        with self._cond:
            if wanted is None:
                wanted = tuple(self._state.written)
            if not self._cond.wait_for(lambda: not self._pending(wanted), timeout):
                left = self._pending(wanted)
                sample = ", ".join(left[:5])
                raise TimeoutError(
                    f"{len(left)} of {len(wanted)} change(s) not yet applied or parked after {timeout:g} s "
                    f"(source sequence numbers: {sample}{', ...' if len(left) > 5 else ''})"
                )

    def freshness_ms(self, receipt: WriteReceipt) -> float:
        """Write call to the last of its changes finished, in ms (the receipt must be finished)."""
        with self._cond:
            done = [self._state.finished[p][0] for p in receipt.positions if p in self._state.finished]
        if len(done) != len(receipt.positions):
            raise ValueError("the write is not yet in sync")
        return max(0.0, (max(done, default=receipt.written_at) - receipt.written_at) * 1000)

    def latencies_ms(self) -> list[float]:
        """Write-to-finished time of every finished change written so far, in ms."""
        with self._cond:
            return [
                (self._state.finished[p][0] - at) * 1000
                for p, at in self._state.written.items()
                if p in self._state.finished
            ]

    def outcomes(self) -> dict[str, int]:
        with self._cond:
            counts: dict[str, int] = {}
            for position in self._state.written:
                if position in self._state.finished:
                    outcome = self._state.finished[position][1]
                    counts[outcome] = counts.get(outcome, 0) + 1
            return counts
