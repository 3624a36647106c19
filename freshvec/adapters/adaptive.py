"""Sending at the rate a shared quota allows, without a coordinator: ``AdaptiveRateLimiter``.

Bedrock's on-demand quota is per account and model (requests per minute with a burst), shared by every sink
instance; none of them knows how many others there are. A fixed concurrency bound cannot keep to it: one
worker already sends one call per latency (20 a second at 50 ms), whatever the quota. So each embedder
paces its calls and adapts the pace to what the service says, the way TCP shares a link:

- until the first throttle, calls are bounded only by ``max_concurrency`` (the config's upper bound); the
  first throttle starts pacing just below what got through (or, nothing measured yet, a slow start from
  ``start_rate``);
- a ``ThrottlingException`` means the quota's token bucket is empty. The rate is cut to ``decrease`` x
  itself and to no more than ``margin`` x the **ceiling**: what this instance got through over the last
  ``window_s``, its share of the quota (an overestimate while the burst was draining, hence the margin).
  Turns reserved at the old rate are given up and taken again at the new one, so a cut takes effect at once
  rather than after every waiting call went out into an empty bucket;
- for ``hold_s`` after a cut, throttles do not cut again (the other instances are cutting too, and the
  bucket needs a moment to refill) and the rate does not grow. If throttles came during the hold, the cut
  was not enough: at its end the rate and the ceiling are cut again, and another hold begins. Throttles of
  calls started before a cut are ignored;
- each successful call that had to wait for its turn then raises the rate in three steps, like a token
  bucket fitted to the ceiling: quickly (``recover_increase``) back to ``recover_to`` x the ceiling, slowly
  (``probe_increase``) from there to the ceiling, and past it by ``increase`` (to find a share freed by an
  instance that left). Plain AIMD, one increase everywhere, spends its time probing just below the quota,
  where the burst drains unseen until several instances are throttled at once. Growth is per paced call, so
  it holds however many instances share the quota; an instance not limited by the pace does not grow.

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
        margin: float = 0.65,
        increase: float = 0.005,
        recover_increase: float = 0.03,
        recover_to: float = 0.8,
        probe_increase: float = 0.001,
        slow_start_increase: float = 0.04,
        start_rate: float = 2.0,
        min_rate: float = 0.1,
        window_s: float = 2.0,
        min_measure_s: float = 1.0,
        hold_s: float = 1.0,
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
        self._hold_s = hold_s
        self._increase = increase
        self._recover_increase = recover_increase
        self._recover_to = recover_to
        self._probe_increase = probe_increase
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
        self.ceiling: float | None = None  # the rate this instance got through when last throttled
        self._first_call: float | None = None
        self._next_start = float("-inf")
        self._last_cut = float("-inf")
        self._hold_throttled = False  # a throttle came during the hold: the quota's bucket stayed empty
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
        """Reserve the next start time and sleep until it: the start time, and whether pacing delayed it.

        A cut while waiting cancels the reservation: the call takes a new turn at the new rate, instead of going
        out at the old one into a quota that has just said no.
        """
        delayed = False
        while True:
            with self._lock:
                now = self._clock()
                if self._first_call is None:
                    self._first_call = now
                if self.rate is None:
                    return now, delayed
                start = max(now, self._next_start)
                self._next_start = start + 1 / self.rate
                cuts = self.cuts
            if start <= now:
                return start, delayed
            self._sleep(start - now)
            delayed = True
            with self._lock:
                if self.cuts == cuts:
                    return start, True

    def succeeded(self, paced: bool) -> None:
        """A call went through; ``paced``: it had waited for its turn (the rate, not the work, limited it)."""
        with self._lock:
            now = self._clock()
            self._successes.append(now)
            if now - self._last_cut < self._hold_s:
                return  # no growth while the cut takes effect
            if self._end_hold(now):
                return  # cut again: a new hold begins
            if paced and self.rate is not None:
                self.rate *= 1 + self._growth()

    def _growth(self) -> float:
        """How much one paced success raises the rate: by where the rate is against the ceiling."""
        if self.slow_start or self.ceiling is None:
            return self._slow_start_increase if self.slow_start else self._increase
        if self.rate is not None and self.rate < self.ceiling * self._recover_to:
            return min(self._recover_increase, self.ceiling * self._recover_to / self.rate - 1)
        if self.rate is not None and self.rate < self.ceiling:
            return self._probe_increase
        return self._increase

    def throttled(self, started: float) -> None:
        """A call started at ``started`` was throttled: cut the rate, at most once per hold."""
        with self._lock:
            self.throttles += 1
            now = self._clock()
            if started < self._last_cut:
                return  # sent at the old rate: the cut already answered it
            if now - self._last_cut < self._hold_s:
                # The quota's bucket is still empty from the overshoot that caused the cut, and the other instances
                # are cutting too: only the end of the hold tells whether this cut was enough.
                self._hold_throttled = True
                return
            if self._end_hold(now):
                return
            achieved = self._achieved(now)
            if self.rate is None:
                # Unpaced so far: start just below what got through, or (nothing measured yet) from a floor.
                self.slow_start = achieved is None
                self.rate = achieved * self._margin if achieved is not None else self._start_rate
            elif achieved is not None:
                # What got through is this instance's share of the quota right now: settle well below it, so the
                # quota's bucket refills at once, and come back quickly to just below it.
                self.slow_start = False
                self.ceiling = min(self.rate, achieved)
                self.rate = min(self.rate * self._decrease, self.ceiling * self._margin)
            else:
                self.slow_start = False
                self.ceiling = self.rate
                self.rate *= self._decrease
            self.rate = max(self._min_rate, self.rate)
            self._start_cut(now)

    def _start_cut(self, now: float) -> None:
        assert self.rate is not None
        self._last_cut = now
        self._hold_throttled = False
        self._next_start = now + 1 / self.rate  # turns taken before the cut are taken again (``_take_turn``)
        self.cuts += 1

    def _end_hold(self, now: float) -> bool:
        """After a hold with throttles in it the quota's bucket stayed empty: the cut was not enough (the ceiling
        it measured still held the quota's burst). Cut again, lower the ceiling with it, and hold again. True
        when that cut was made."""
        if not self._hold_throttled or now - self._last_cut < self._hold_s or self.rate is None:
            return False
        self.slow_start = False
        self.rate = max(self._min_rate, self.rate * self._decrease)
        self.ceiling = self.rate / self._margin
        self._start_cut(now)
        return True

    def _achieved(self, now: float) -> float | None:
        """Successful calls per second over the window (or since the first call); None: too early to say."""
        self._forget_before(now - self._window_s)
        if self._first_call is None or now - self._first_call < self._min_measure_s or not self._successes:
            return None
        return len(self._successes) / min(self._window_s, now - self._first_call)

    def _forget_before(self, cutoff: float) -> None:
        while self._successes and self._successes[0] < cutoff:
            self._successes.popleft()
