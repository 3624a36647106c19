"""The Keyspaces Streams stand-in's data model: records, shards and streams, and what both halves share.

``freshvec.local.keyspaces.streams`` serves these through the API; ``freshvec.local.keyspaces.table`` writes
the records. Also here: ``ManualClock`` (an injectable clock tests move by hand) and ``partition_hash`` (which
shard a row's changes go to).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from freshvec.sources.keyspaces.cells import value_to_json

EVENT_VERSION = "1"


class ManualClock:
    """A clock for tests and simulations: starts at ``start`` (epoch seconds) and moves only when told."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


@dataclass
class _Record:
    seq: int
    created_at: float
    body: dict[str, Any]
    size: int  # approximate wire size in bytes, for the GetRecords response size limit


@dataclass
class _Shard:
    shard_id: str
    ordinal: int
    hash_start: int  # inclusive
    hash_end: int  # inclusive
    parents: tuple[str, ...]
    starting_seq: int
    records: list[_Record] = field(default_factory=list)
    ending_seq: int | None = None
    closed_at: float | None = None
    trimmed_through: int = 0  # every record with seq <= this is gone
    last_assigned: int | None = None  # the newest record's sequence number, trimmed or not
    # Positions where the stream moved on without a change record (``LocalKeyspacesStreams.progress``): a read
    # starting at one returns no records and BEHIND_TIP while anything follows.
    progress_marks: list[int] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.ending_seq is None

    def covers(self, hash_value: int) -> bool:
        return self.hash_start <= hash_value <= self.hash_end

    def last_seq(self) -> int:
        return self.last_assigned if self.last_assigned is not None else self.starting_seq


@dataclass
class _Stream:
    arn: str
    keyspace: str
    table: str
    label: str
    created_at: float
    view_type: str
    shards: dict[str, _Shard] = field(default_factory=dict)
    status: str = "ENABLED"  # ENABLED or DISABLED; ENABLING is derived from enabled_at
    disabled_at: float | None = None
    enabled_at: float = 0.0  # before this the stream reports ENABLING (it already captures changes)

    def status_at(self, now: float) -> str:
        return "ENABLING" if self.status == "ENABLED" and now < self.enabled_at else self.status

    def open_shards(self) -> list[_Shard]:
        return [shard for shard in self.shards.values() if shard.is_open]


@dataclass
class _Latency:
    list_streams_s: float = 0.0
    get_stream_s: float = 0.0
    get_shard_iterator_s: float = 0.0
    get_records_s: float = 0.0

    def for_operation(self, operation: str) -> float:
        return {
            "ListStreams": self.list_streams_s,
            "GetStream": self.get_stream_s,
            "GetShardIterator": self.get_shard_iterator_s,
            "GetRecords": self.get_records_s,
        }[operation]


def _copy(value: Any) -> Any:
    """A deep copy of record-shaped data (dicts, lists, immutable leaves), many times faster than deepcopy."""
    kind = type(value)
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is list:
        return [_copy(item) for item in value]
    if kind in _IMMUTABLE_LEAVES:
        return value
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value


_IMMUTABLE_LEAVES = frozenset({str, bytes, bool, int, float, datetime, type(None)})


def partition_hash(partition_keys: Mapping[str, Any]) -> int:
    """A 128-bit hash of a record's partition key cells (column order does not matter)."""
    values = {column: value_to_json(value) for column, value in partition_keys.items()}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest(), "big")


def _within_size(records: list[_Record], max_bytes: int) -> list[_Record]:
    """The leading records that fit in one response (always at least one, so a reader never stalls)."""
    total = 0
    for count, record in enumerate(records):
        total += record.size
        if total > max_bytes and count > 0:
            return records[:count]
    return records


def _describe_shard(shard: _Shard) -> dict[str, Any]:
    sequence_range = {"startingSequenceNumber": str(shard.starting_seq)}
    if shard.ending_seq is not None:
        sequence_range["endingSequenceNumber"] = str(shard.ending_seq)
    description: dict[str, Any] = {"shardId": shard.shard_id, "sequenceNumberRange": sequence_range}
    if shard.parents:
        description["parentShardIds"] = list(shard.parents)
    return description


def _datetime(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)
