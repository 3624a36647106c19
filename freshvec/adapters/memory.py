"""In-process implementations of ports, for one process that needs no shared state (benchmarks, unit tests).

The Lambda sink and local mode use the DynamoDB ones (``freshvec.adapters.dynamodb``); these give the same
answers within one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence


class InProcessTombstones:
    """``TombstoneStore`` in a dict; an expired tombstone is gone, as a DynamoDB item past its TTL is."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._versions: dict[str, tuple[int, float]] = {}

    def put(self, versions: Mapping[str, int], expires_at: float) -> None:
        with self._lock:
            for key, version in versions.items():
                self._versions[key] = (version, expires_at)

    def get(self, keys: Sequence[str]) -> dict[str, int]:
        now = self._clock()
        found: dict[str, int] = {}
        with self._lock:
            for key in keys:
                entry = self._versions.get(key)
                if entry is not None and entry[1] > now:
                    found[key] = entry[0]
        return found
