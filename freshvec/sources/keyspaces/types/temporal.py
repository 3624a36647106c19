"""Temporal CQL types: date, timestamp, time, duration.

Encodings the stream model leaves open are read leniently and written one way: ``dateT`` is days since
1970-01-01 (an ISO date is read too), ``timestampT`` milliseconds since the epoch (ISO 8601 read too),
``timeT`` nanoseconds since midnight (``HH:MM:SS[.fffffffff]`` read too). In change events a date is
``YYYY-MM-DD``, a timestamp ISO 8601 UTC with milliseconds, a time ``HH:MM:SS.fffffffff``, a duration its
CQL literal. In metadata a date is the integer ``YYYYMMDD`` and a timestamp epoch milliseconds UTC; both
read back with ``date_from_metadata``/``timestamp_from_metadata``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from typing import Any

from freshvec.events import format_timestamp, parse_timestamp
from freshvec.sources.keyspaces.cqltypes import CqlType
from freshvec.sources.keyspaces.types.base import (
    CellError,
    CqlValueType,
    describe,
    expect,
    parse_input_text,
    register,
)
from freshvec.sources.keyspaces.types.scalar import read_text

_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANOS_PER_DAY = 86_400 * 10**9
_INTEGER_TEXT = re.compile(r"^-?\d+$")
_TIME_TEXT = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
# CQL duration literals: 1h30m, -2d, 1mo3w, P1Y2M3DT4H5M6S, P2W, P0001-02-03T04:05:06
_DURATION_UNITS = r"(?:\d+(?:y|mo|w|d|h|ms|m|s|us|µs|ns))+"
_DURATION_ISO = r"P(?=\d|T\d)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+S)?)?"
_DURATION_ISO_ALT = r"P\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
_DURATION_TEXT = re.compile(rf"^-?(?:{_DURATION_UNITS}|{_DURATION_ISO}|{_DURATION_ISO_ALT})$", re.IGNORECASE)


def _iso_or_text(value: Any) -> str:
    """A driver date or time (datetime's, or cassandra.util's Date/Time) as its ISO text."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def date_number(text: str) -> int:
    """``"1993-06-11"`` -> ``19930611``."""
    day = date.fromisoformat(text)
    return day.year * 10_000 + day.month * 100 + day.day


def date_from_metadata(number: int) -> date:
    """The inverse of ``date_number``."""
    return date(number // 10_000, number // 100 % 100, number % 100)


class DateType(CqlValueType):
    names = ("date",)
    members = ("dateT",)

    def from_cell(self, raw: Any) -> str:
        text = str(raw).strip()
        if _INTEGER_TEXT.match(text):
            return (_EPOCH_DATE + timedelta(days=int(text))).isoformat()
        return date.fromisoformat(text).isoformat()

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if isinstance(value, datetime) or not isinstance(value, str | date):
            raise ValueError(f"expected a 'YYYY-MM-DD' string for {cql}, got {describe(value)}")
        try:
            day = value if isinstance(value, date) else date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a 'YYYY-MM-DD' date") from None
        return {"dateT": str((day - _EPOCH_DATE).days)}

    def to_driver(self, value: Any, cql: CqlType) -> date:
        return parse_input_text(value, date.fromisoformat, "a date YYYY-MM-DD")

    def from_driver(self, value: Any, cql: CqlType) -> str:
        return _iso_or_text(value)

    def to_metadata(self, value: Any, cql: CqlType) -> int:
        return date_number(expect(value, str, cql.name))


def epoch_millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def timestamp_from_metadata(millis: int) -> datetime:
    """The inverse of the timestamp conversion (UTC)."""
    return _EPOCH + timedelta(milliseconds=millis)


def read_timestamp_text(text: str) -> datetime:
    """Epoch milliseconds or ISO 8601 text as an aware datetime (a time without a zone is UTC)."""
    text = text.strip()
    if _INTEGER_TEXT.match(text):
        return _EPOCH + timedelta(milliseconds=int(text))
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_datetime(value: Any) -> datetime:
    """A datetime, epoch seconds or timestamp text as an aware datetime; TypeError for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        return read_timestamp_text(value)
    raise TypeError(f"not a time: {value!r}")


class TimestampType(CqlValueType):
    names = ("timestamp",)
    members = ("timestampT",)

    def from_cell(self, raw: Any) -> str:
        return format_timestamp(as_datetime(raw))

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # a time without a zone is UTC
        else:
            raise ValueError(f"expected an ISO 8601 timestamp string for {cql}, got {describe(value)}")
        return {"timestampT": str(epoch_millis(moment))}

    def to_driver(self, value: Any, cql: CqlType) -> datetime:
        moment = parse_input_text(
            value, lambda text: datetime.fromisoformat(text.replace("Z", "+00:00")), "an ISO 8601 time"
        )
        # A time without a zone is taken as UTC, the zone Keyspaces stores.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def from_driver(self, value: Any, cql: CqlType) -> str:
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))

    def to_metadata(self, value: Any, cql: CqlType) -> int:
        return epoch_millis(parse_timestamp(expect(value, str, cql.name)))


def parse_time_text(text: str) -> int:
    """``HH:MM:SS[.fffffffff]`` as nanoseconds since midnight; ValueError naming the text."""
    match = _TIME_TEXT.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an 'HH:MM:SS[.fffffffff]' time")
    hours, minutes, seconds = (int(part) for part in match.group(1, 2, 3))
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} is not a time of day")
    fraction = (match.group(4) or "").ljust(9, "0")
    return ((hours * 60 + minutes) * 60 + seconds) * 10**9 + int(fraction or 0)


def format_time(nanos: int) -> str:
    seconds, fraction = divmod(nanos, 10**9)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{second:02d}.{fraction:09d}"


class TimeType(CqlValueType):
    names = ("time",)
    members = ("timeT",)

    def from_cell(self, raw: Any) -> str:
        text = str(raw).strip()
        nanos = int(text) if _INTEGER_TEXT.match(text) else parse_time_text(text)
        if not 0 <= nanos < _NANOS_PER_DAY:
            raise ValueError("time out of range")
        return format_time(nanos)

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if not isinstance(value, str):
            raise ValueError(f"expected an 'HH:MM:SS[.fffffffff]' string for {cql}, got {describe(value)}")
        return {"timeT": str(parse_time_text(value.strip()))}

    def to_driver(self, value: Any, cql: CqlType) -> time_of_day:
        return parse_input_text(value, time_of_day.fromisoformat, "a time HH:MM:SS[.ffffff]")

    def from_driver(self, value: Any, cql: CqlType) -> str:
        return _iso_or_text(value)

    def to_metadata(self, value: Any, cql: CqlType) -> str:
        return expect(value, str, cql.name)


class DurationType(CqlValueType):
    names = ("duration",)
    members = ("durationT",)

    def from_cell(self, raw: Any) -> str:
        return read_text(raw)

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if not isinstance(value, str) or not _DURATION_TEXT.match(value.strip()):
            raise ValueError(f"expected a CQL duration such as '1h30m' or 'P1DT2H' for {cql}, got {value!r}")
        return {"durationT": value.strip()}

    def to_driver(self, value: Any, cql: CqlType) -> Any:
        raise CellError("duration columns are not supported by the loader")

    def from_driver(self, value: Any, cql: CqlType) -> str:
        return str(value)

    def to_metadata(self, value: Any, cql: CqlType) -> str:
        return expect(value, str, cql.name)


DATE = register(DateType())
TIMESTAMP = register(TimestampType())
TIME = register(TimeType())
DURATION = register(DurationType())
