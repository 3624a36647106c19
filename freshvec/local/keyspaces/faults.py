"""Faults the Keyspaces Streams stand-in can inject, with the service's real error codes.

Throttling with a probability, added latency, the next calls failing with a given error, access denied, and
the service's limit of two processes reading one shard ("Keyspaces throttles a shard read by more than two
processes"). ``LocalKeyspacesStreams`` checks these at the start of every call.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable

from freshvec.local.keyspaces.model import _Latency

READ_OPERATIONS = ("ListStreams", "GetStream", "GetShardIterator", "GetRecords")
STATUS_BY_CODE = {
    "ValidationException": 400,
    "ThrottlingException": 400,
    "AccessDeniedException": 400,
    "ResourceNotFoundException": 400,
    "InternalServerException": 500,
}


class FaultInjection:
    """The fault settings of one stand-in and the checks that apply them (under the stand-in's lock)."""

    _lock: threading.RLock

    def __init__(self, seed: int | None) -> None:
        self._throttle_probability = 0.0
        self._throttle_operations: frozenset[str] = frozenset()
        self._throttle_random = random.Random(seed)  # noqa: S311 - fault injection, not security
        self._latency = _Latency()
        self._injected: list[tuple[str, str, str | None]] = []  # (operation, code, errorCode), raised in order
        self._denied: frozenset[str] = frozenset()
        self._max_readers: int | None = None
        self._reader_window_s = 1.0
        self._recent_readers: dict[tuple[str, str], dict[str, float]] = {}
        self.throttled: Counter[str] = Counter()

    def throttle(
        self, probability: float, seed: int | None = None, operations: Iterable[str] = READ_OPERATIONS
    ) -> None:
        """From now on, each call to ``operations`` fails with ThrottlingException with this probability."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        unknown = set(operations) - set(READ_OPERATIONS)
        if unknown:
            raise ValueError(f"unknown operation(s) {sorted(unknown)}; use {', '.join(READ_OPERATIONS)}")
        with self._lock:
            self._throttle_probability = probability
            self._throttle_operations = frozenset(operations)
            if seed is not None:
                self._throttle_random = random.Random(seed)  # noqa: S311 - fault injection, not security

    def latency(
        self,
        get_records_s: float = 0.0,
        get_shard_iterator_s: float = 0.0,
        get_stream_s: float = 0.0,
        list_streams_s: float = 0.0,
    ) -> None:
        """Sleep this long (real time) in each call, to make benchmarks feel the service's round trips."""
        with self._lock:
            self._latency = _Latency(list_streams_s, get_stream_s, get_shard_iterator_s, get_records_s)

    def inject_error(self, operation: str, code: str, error_code: str | None = None, count: int = 1) -> None:
        """Fail the next ``count`` calls of ``operation`` with ``code`` (and ``errorCode`` for validation errors)."""
        if operation not in READ_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; use {', '.join(READ_OPERATIONS)}")
        if code not in STATUS_BY_CODE:
            raise ValueError(f"{code} is not an error Keyspaces Streams returns; use {', '.join(STATUS_BY_CODE)}")
        with self._lock:
            self._injected.extend([(operation, code, error_code)] * count)

    def limit_readers(self, max_readers: int | None = 2, window_s: float = 1.0) -> None:
        """Throttle GetRecords on a shard read by more than ``max_readers`` iterator chains within ``window_s``.

        Keyspaces throttles a shard read by more than two processes at once. A reader is one chain of
        iterators (a GetShardIterator call and the next iterators that follow it). Off by default; None
        turns it off again.
        """
        if max_readers is not None and max_readers < 1:
            raise ValueError("max_readers must be at least 1")
        with self._lock:
            self._max_readers = max_readers
            self._reader_window_s = window_s
            self._recent_readers.clear()

    def deny_access(self, operations: Iterable[str] = READ_OPERATIONS) -> None:
        """Answer ``operations`` with AccessDeniedException (pass an empty list to allow everything again)."""
        with self._lock:
            self._denied = frozenset(operations)

    def _fault_for(self, operation: str) -> tuple[str, str, str | None] | None:
        """(code, message, errorCode) of the fault this call meets, if any: denied, injected, then throttled."""
        if operation in self._denied:
            return "AccessDeniedException", f"not authorized to perform cassandra:{operation}", None
        for index, (injected_operation, code, error_code) in enumerate(self._injected):
            if injected_operation == operation:
                del self._injected[index]
                return code, f"injected {code}", error_code
        if operation in self._throttle_operations and self._throttle_random.random() < self._throttle_probability:
            self.throttled[operation] += 1
            return "ThrottlingException", "Rate exceeded for shard reads; reduce the request rate", None
        return None

    def _reader_refusal(self, arn: str, shard_id: str, reader: str, now: float) -> str | None:
        """Why a shard read by more readers than allowed within the window is throttled (``limit_readers``)."""
        if self._max_readers is None:
            return None
        recent = self._recent_readers.setdefault((arn, shard_id), {})
        for other, last_read in list(recent.items()):
            if now - last_read > self._reader_window_s:
                del recent[other]
        if reader not in recent and len(recent) >= self._max_readers:
            self.throttled["GetRecords"] += 1
            return f"more than {self._max_readers} processes are reading shard {shard_id}; use one reader per shard"
        recent[reader] = now
        return None
