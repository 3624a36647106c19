"""The two clocks of a stand-in table: the service's and the client's.

The service's clock counts TTL deadlines and stamps ``createdAt`` (a record's creation time on the
service: "How CDC streams work"; its precision and its relation to when a write became visible are not
documented, so both are injectable: ``created_at_lag_s`` moves it earlier, by seconds or by what a callable
returns per record, and ``created_at_precision_s`` cuts it down). The client's clock is the service's plus
``client_skew_s``; it stamps writes that give no ``USING TIMESTAMP``, through a generator that never repeats a
value (as the drivers' monotonic timestamp generators do). Keyspaces accepts client timestamps from 2 days
in the past to 5 minutes in the future of its own clock ("Use client-side timestamps in queries").
Without client-side timestamps the service stamps every write itself and refuses ``USING TIMESTAMP``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

TIMESTAMP_PAST_S = 2 * 86_400
TIMESTAMP_FUTURE_S = 5 * 60
US = 1_000_000


class TableClocks:
    """Write timestamps (µs) and ``createdAt`` times (epoch seconds) for one table."""

    def __init__(
        self,
        service: Callable[[], float],
        *,
        client_skew_s: float = 0.0,
        created_at_lag_s: float | Callable[[], float] = 0.0,
        created_at_precision_s: float = 0.001,
        client_side_timestamps: bool = True,
    ) -> None:
        self.service = service
        self.client_skew_s = client_skew_s
        self.created_at_lag_s = created_at_lag_s
        self.created_at_precision_s = created_at_precision_s
        self.client_side_timestamps = client_side_timestamps
        self._last_us = -(2**63)

    def write_timestamp(self, given: int | None, now: float) -> int:
        """``USING TIMESTAMP given`` checked against the service's window, else the next generated one."""
        if given is not None:
            if not self.client_side_timestamps:
                raise ValueError("USING TIMESTAMP needs client-side timestamps on for the table")
            if isinstance(given, bool) or not isinstance(given, int):
                raise ValueError("timestamp_us must be a whole number of microseconds")
            if not (now - TIMESTAMP_PAST_S) * US <= given <= (now + TIMESTAMP_FUTURE_S) * US:
                raise ValueError(
                    f"timestamp {given} is outside what Keyspaces accepts: 2 days in the past to 5 minutes "
                    "in the future of the service's clock"
                )
            return given
        clock = now + (self.client_skew_s if self.client_side_timestamps else 0.0)
        self._last_us = max(int(clock * US), self._last_us + 1)
        return self._last_us

    def created_at(self, now: float) -> float:
        """``createdAt`` of a change made at service time ``now``."""
        lag = self.created_at_lag_s() if callable(self.created_at_lag_s) else self.created_at_lag_s
        moment = now - lag
        precision = self.created_at_precision_s
        return math.floor(moment / precision) * precision if precision > 0 else moment
