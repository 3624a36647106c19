"""Sending at the rate a shared quota allows, without a coordinator: ``AdaptiveRateLimiter``.

Bedrock's on-demand quota is per account and model (requests per minute with a burst), shared by every sink
instance; none of them knows how many others there are. A fixed concurrency bound cannot keep to it: one
worker already sends one call per latency (20 a second at 50 ms), whatever the quota. So each embedder
paces its calls and adapts the pace to what the service says, the way TCP shares a link:

- until the first throttle, calls are bounded only by ``max_concurrency`` (the config's upper bound);
- a ``ThrottlingException`` cuts the rate multiplicatively: to ``decrease`` x the current rate, and to no
  more than what this instance actually got through over the last second (its real share of the quota).
  Throttles of calls started before the last cut say nothing about the new rate and are ignored;
- each successful call that had to wait for its turn raises the rate by ``increase`` (1 %): growth in
  proportion to what an instance sends, so at equilibrium about one call in log(1/decrease)/log(1+increase)
  (some 1 in 20) is throttled, whatever the quota and however many instances share it. An instance that is
  not limited by the pace (too little work) does not raise it.

Every throttled call is still retried by the caller's ``RetryPolicy``; pacing makes that rare. ``clock``
and ``sleep`` are injectable so the controller is tested deterministically.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from freshvec.errors import error_code

T = TypeVar("T")
THROTTLE_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"})


class AdaptiveRateLimiter:
    """At most ``max_concurrency`` calls in flight, started no faster than the adapted rate."""

    def __init__(
        self,
        max_concurrency: int,
        *,
        decrease: float = 0.7,
        margin: float = 0.85,
        increase: float = 0.005,
        slow_start_increase: float = 0.08,
        start_rate: float = 2.0,
        min_rate: float = 0.1,
        window_s: float = 2.0,
        min_measure_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not 0 < decrease < 1 or increase <= 0 or slow_start_increase <= 0 or min_rate <= 0 or start_rate <= 0:
            raise ValueError("decrease must be in (0, 1); the increases and rates must be positive")
        self.max_concurrency = max_concurrency
        self._decrease = decrease
        self._margin = margin
        self._min_measure_s = min_measure_s
        self._increase = increase
        self._slow_start_increase = slow_start_increase
        self._start_rate = start_rate
        self._min_rate = min_rate
        self._window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self.rate: float | None = None  # calls per second; None: not paced (no throttle seen yet)
        self.slow_start = False  # growing fast from ``start_rate``: the first throttle came before any measure
        self._first_call: float | None = None
        self._next_start = float("-inf")
        self._last_cut = float("-inf")
        self._successes: deque[float] = deque()  # end times of recent successful calls
        self.throttles = 0
        self.cuts = 0

    def call(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` when its turn comes; a throttle it raises adapts the rate and is re-raised."""
        self._slots.acquire()
        try:
            started, paced = self._take_turn()
            try:
                result = operation()
            except Exception as exc:
                if error_code(exc) in THROTTLE_CODES:
                    self.throttled(started)
                raise
            self.succeeded(paced)
            return result
        finally:
            self._slots.release()

    def _take_turn(self) -> tuple[float, bool]:
        """Reserve the next start time and sleep until it: the start time, and whether pacing delayed it."""
        with self._lock:
            now = self._clock()
            if self._first_call is None:
                self._first_call = now
            if self.rate is None:
                return now, False
            start = max(now, self._next_start)
            self._next_start = start + 1 / self.rate
        if start > now:
            self._sleep(start - now)
        return start, start > now

    def succeeded(self, paced: bool) -> None:
        """A call went through; ``paced``: it had waited for its turn (the rate, not the work, limited it)."""
        with self._lock:
            now = self._clock()
            self._successes.append(now)
            if paced and self.rate is not None:
                self.rate *= 1 + (self._slow_start_increase if self.slow_start else self._increase)

    def throttled(self, started: float) -> None:
        """A call started at ``started`` was throttled: cut the rate, once per round of calls."""
        with self._lock:
            self.throttles += 1
            if started < self._last_cut:
                return  # sent at the old rate: the cut already answered it
            now = self._clock()
            achieved = self._achieved(now)
            if self.rate is None:
                # Unpaced so far: start just below what got through, or (nothing measured yet) from a floor.
                self.slow_start = achieved is None
                self.rate = achieved * self._margin if achieved is not None else self._start_rate
            elif achieved is not None:
                # What got through is this instance's share of the quota right now: settle just below it.
                self.slow_start = False
                self.rate = min(self.rate, achieved) * self._margin
            else:
                self.slow_start = False
                self.rate *= self._decrease
            self.rate = max(self._min_rate, self.rate)
            self._last_cut = now
            self._next_start = max(self._next_start, now + 1 / self.rate)
            self.cuts += 1

    def _achieved(self, now: float) -> float | None:
        """Successful calls per second over the window (or since the first call); None: too early to say."""
        self._forget_before(now - self._window_s)
        if self._first_call is None or now - self._first_call < self._min_measure_s or not self._successes:
            return None
        return len(self._successes) / min(self._window_s, now - self._first_call)

    def _forget_before(self, cutoff: float) -> None:
        while self._successes and self._successes[0] < cutoff:
            self._successes.popleft()
