"""Sending change events to the change stream, for backfill and redrive: the one Kinesis writer, paced.

Records go through ``freshvec.adapters.kinesis.KinesisWriter`` (the ``ChangeStreamWriter`` port) in the
calls ``freshvec.outgoing.plan_calls`` groups them into: at most 500 records / 5 MiB per PutRecords call and
never two changes of one row in one call, so re-sending only the records Kinesis rejected keeps each row's
changes in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from freshvec.adapters.kinesis import KINESIS_RETRY, KinesisWriter
from freshvec.cli.errors import OperatorError
from freshvec.errors import TransientError
from freshvec.outgoing import OutgoingRecord, plan_calls
from freshvec.ports import ChangeStreamWriter
from freshvec.retry import RetryPolicy

# An operator waits at the terminal: 8 attempts without progress, 0.1 s doubling up to 5 s apart.
CLI_KINESIS_RETRY = KINESIS_RETRY.with_(attempts=8, base_delay_s=0.1)


class ChangeStreamSender:
    """Sends records in order through one ``ChangeStreamWriter``, call by call as ``plan_calls`` plans them.

    A writer that gives up (TransientError: Kinesis kept refusing) becomes an OperatorError naming the
    stream; a misconfiguration (stream missing, access denied) is raised as it is, for ``explain``.
    """

    def __init__(self, writer: ChangeStreamWriter, stream_name: str) -> None:
        self.writer = writer
        self.stream_name = stream_name

    @classmethod
    def for_kinesis(
        cls, kinesis: Any, stream_name: str, *, retry: RetryPolicy = CLI_KINESIS_RETRY
    ) -> ChangeStreamSender:
        return cls(KinesisWriter(kinesis, stream_name, retry=retry), stream_name)

    def send(self, records: Sequence[OutgoingRecord]) -> int:
        """Deliver every record (the calls one after another); returns the number of planned calls."""
        calls = plan_calls(records)
        for call in calls:
            try:
                self.writer.put([records[i] for i in call])
            except TransientError as exc:
                raise OperatorError(f"Kinesis stream {self.stream_name} kept refusing records: {exc}") from exc
        return len(calls)


class RateLimiter:
    """A token bucket shared by threads: ``acquire(n)`` waits until n more records fit under the rate."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("the rate must be positive")
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = clock()

    def acquire(self, count: int) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next_free)
            self._next_free = start + count / self.per_second
            wait = start - now
        if wait > 0:
            self._sleep(wait)
