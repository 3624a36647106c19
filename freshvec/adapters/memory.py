"""In-process implementations of ports, for one process that needs no shared state (benchmarks, unit tests).

The Lambda sink and local mode use the DynamoDB ones (``freshvec.adapters.dynamodb``); these give the same
answers within one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from freshvec.versions import newer, parse


class InProcessTombstones:
    """``TombstoneStore`` in a dict; an expired tombstone is gone, as a DynamoDB item past its TTL is."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._versions: dict[str, tuple[str, float]] = {}

    def put(self, versions: Mapping[str, str], expires_at: float) -> None:
        """Each tombstone rises to ``versions[key]`` unless it is already as high (``freshvec.versions.newer``)."""
        now = self._clock()
        with self._lock:
            for key, version in versions.items():
                entry = self._versions.get(key)
                if entry is None or entry[1] <= now or newer(parse(version), parse(entry[0])):
                    self._versions[key] = (version, expires_at)

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        now = self._clock()
        found: dict[str, str] = {}
        with self._lock:
            for key in keys:
                entry = self._versions.get(key)
                if entry is not None and entry[1] > now:
                    found[key] = entry[0]
        return found
