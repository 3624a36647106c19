"""The one retry policy: exponential backoff with full jitter, an attempt budget and an optional deadline.

Every place that retries uses it: AWS calls in the adapters (``call``), loops that re-send what a service
partly refused (the Kinesis writer, the SQS dead letters), the forwarder's per-shard backoff, the loader's
driver writes and the local event source mapping (``delay`` and ``exhausted``). Only transient errors are
retried (``freshvec.errors.classify``); anything else is raised at once for the caller's error class.

``sleep``, ``clock`` and ``rng`` are injectable, so tests never wait and jitter is reproducible.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from freshvec.errors import TransientError, is_transient

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    - ``attempts``: the attempt budget, the first try included (``attempts=1`` never retries);
    - ``base_delay_s`` / ``max_delay_s``: retry *n* waits a random time in [0, min(max, base * 2**(n-1))];
    - ``deadline_s``: optional wall-clock budget for one ``call``, measured with ``clock``; no retry starts
      if its wait would end past it.
    """

    attempts: int = 6
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0
    deadline_s: float | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")

    def with_(self, **changes: object) -> RetryPolicy:
        """A copy with some settings changed (e.g. a call site's own budget)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 = the first retry), with full jitter."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, retry - 1))
        return self.rng.uniform(0, ceiling)

    def exhausted(self, attempts_made: int, started: float | None = None, next_delay: float = 0.0) -> bool:
        """True when no further attempt is allowed: the budget is spent or the deadline would pass."""
        if attempts_made >= self.attempts:
            return True
        if self.deadline_s is not None and started is not None:
            return self.clock() + next_delay - started > self.deadline_s
        return False

    def wait(self, attempts_made: int, what: str, started: float | None = None) -> None:
        """Sleep before the next attempt, or raise TransientError naming ``what`` when none is allowed."""
        pause = self.delay(attempts_made)
        if self.exhausted(attempts_made, started, pause):
            raise TransientError(f"{what} still failing after {attempts_made} attempt(s)")
        self.sleep(pause)

    def call(
        self,
        operation: Callable[[], T],
        what: str,
        *,
        retry_on: Callable[[BaseException], bool] = is_transient,
    ) -> T:
        """Run ``operation`` until it succeeds; retry what ``retry_on`` accepts (transient errors by default).

        Raises TransientError (chained to the last failure) when the budget or the deadline runs out; any
        error ``retry_on`` refuses is re-raised unchanged, for the caller to classify.
        """
        started = self.clock()
        attempt = 1
        while True:
            try:
                return operation()
            except Exception as exc:
                if not retry_on(exc):
                    raise
                pause = self.delay(attempt)
                if self.exhausted(attempt, started, pause):
                    raise TransientError(f"{what} still failing after {attempt} attempt(s): {exc}") from exc
            self.sleep(pause)
            attempt += 1


NO_RETRY = RetryPolicy(attempts=1)
