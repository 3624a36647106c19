"""The Keyspaces Streams stand-in's stored state and what changes it: ``StreamStore``.

Streams per table (a new label each time CDC is turned on), shards covering hash ranges of the partition
key (so one row's changes stay in one shard, in order: "How CDC streams work"), records appended with
sequence numbers that increase per shard, splits and merges with parent lineage, explicit trims and the
24 h retention. ``freshvec.local.keyspaces.streams.LocalKeyspacesStreams`` serves this state through the
boto3 client surface; the tables (``freshvec.local.keyspaces.table``) append to it.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from freshvec.constants import KEYSPACES_RETENTION_HOURS
from freshvec.local.keyspaces.model import EVENT_VERSION, _copy, _datetime, _Record, _Shard, _Stream, partition_hash

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "111122223333"
RETENTION_S = KEYSPACES_RETENTION_HOURS * 3600
HASH_SPACE = 2**128
VIEW_TYPES = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY")
_FIRST_SEQUENCE = 10**20  # sequence numbers have 21+ digits, as the model's minimum length asks


class StreamStore:
    """Streams, shards and records of one account and Region, behind one lock (thread-safe)."""

    def __init__(
        self,
        *,
        region: str,
        account_id: str,
        clock: Callable[[], float],
        retention_s: float,
        seed: int | None,
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.retention_s = retention_s
        self._clock = clock
        self._lock = threading.RLock()
        self._streams: dict[str, _Stream] = {}
        self._next_seq = _FIRST_SEQUENCE
        self._ids = random.Random(seed)  # noqa: S311 - ids in a simulation, reproducible with a seed

    def enable_stream(
        self,
        keyspace: str,
        table: str,
        shard_count: int = 1,
        *,
        view_type: str = "NEW_AND_OLD_IMAGES",
        enabling_s: float = 0.0,
    ) -> str:
        """Turn CDC on for a table; a table's earlier stream is disabled (its records stay readable).

        ``enabling_s``: how long GetStream reports ENABLING before ENABLED, as the service does after a
        CDC change.
        """
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        if view_type not in VIEW_TYPES:
            raise ValueError(f"view_type must be one of {', '.join(VIEW_TYPES)}")
        with self._lock:
            self.disable_stream(keyspace, table)
            now = self._clock()
            label = self._unique_label(keyspace, table, now)
            arn = f"arn:aws:cassandra:{self.region}:{self.account_id}:/keyspace/{keyspace}/table/{table}/stream/{label}"
            stream = _Stream(
                arn=arn,
                keyspace=keyspace,
                table=table,
                label=label,
                created_at=now,
                view_type=view_type,
                enabled_at=now + enabling_s,
            )
            width = HASH_SPACE // shard_count
            for index in range(shard_count):
                end = HASH_SPACE - 1 if index == shard_count - 1 else (index + 1) * width - 1
                self._new_shard(stream, index * width, end, parents=())
            self._streams[arn] = stream
            return arn

    def disable_stream(self, keyspace: str, table: str) -> str | None:
        """Turn CDC off: the table's enabled stream becomes DISABLED and its shards close. Returns its ARN."""
        with self._lock:
            stream = self._current_stream(keyspace, table)
            if stream is None:
                return None
            stream.status, stream.disabled_at = "DISABLED", self._clock()
            for shard in stream.open_shards():
                self._close(shard)
            return stream.arn

    def stream_arn(self, keyspace: str, table: str) -> str | None:
        """The ARN of the table's enabled stream, if CDC is on."""
        with self._lock:
            stream = self._current_stream(keyspace, table)
            return stream.arn if stream else None

    def append(self, keyspace: str, table: str, record: Mapping[str, Any]) -> str | None:
        """Add one change record (no ``sequenceNumber``) to the table's enabled stream; return its sequence number.

        The record goes to the open shard whose hash range covers the partition key, so a row's changes stay
        in one shard in order. Returns None when CDC is off for the table (nothing is captured, as in Keyspaces).
        """
        if "sequenceNumber" in record:
            raise ValueError("append() assigns the sequence number; leave sequenceNumber out")
        if not record.get("partitionKeys"):
            raise ValueError("a change record needs partitionKeys")
        body = _copy(record)
        with self._lock:
            stream = self._current_stream(keyspace, table)
            if stream is None:
                return None
            now = self._clock()
            body.setdefault("eventVersion", EVENT_VERSION)
            body.setdefault("createdAt", _datetime(now))
            body.setdefault("origin", "USER")
            hash_value = partition_hash(body["partitionKeys"])
            shard = next(shard for shard in stream.open_shards() if shard.covers(hash_value))
            seq = self._take_seq()
            size = len(json.dumps(body, default=str, separators=(",", ":")))
            shard.records.append(_Record(seq=seq, created_at=now, body=body, size=size))
            shard.last_assigned = seq
            return str(seq)

    def progress(self, keyspace: str, table: str, pages: int = 1) -> None:
        """The stream moves on without change records: each open shard gets ``pages`` positions that a reader
        walks as empty pages with ``BEHIND_TIP`` ("the stream is progressing but no customer records are
        available at this position; continue polling normally": iteratorDescription, keyspacesstreams model)."""
        with self._lock:
            stream = self._current_stream(keyspace, table)
            if stream is None:
                return
            for shard in stream.open_shards():
                for _ in range(pages):
                    seq = self._take_seq()
                    shard.progress_marks.append(seq)
                    shard.last_assigned = seq

    def split_shard(self, stream_arn: str, shard_id: str) -> tuple[str, str]:
        """Close an open shard and give its hash range to two new children (lower half, upper half)."""
        with self._lock:
            stream, shard = self._control_shard(stream_arn, shard_id)
            if shard.hash_start == shard.hash_end:
                raise ValueError(f"shard {shard_id} covers a single hash and cannot be split")
            self._close(shard)
            middle = (shard.hash_start + shard.hash_end) // 2
            low = self._new_shard(stream, shard.hash_start, middle, parents=(shard.shard_id,))
            high = self._new_shard(stream, middle + 1, shard.hash_end, parents=(shard.shard_id,))
            return low.shard_id, high.shard_id

    def merge_shards(self, stream_arn: str, shard_a: str, shard_b: str) -> str:
        """Close two open shards with adjacent hash ranges and give their union to one new child."""
        with self._lock:
            stream, first = self._control_shard(stream_arn, shard_a)
            _, second = self._control_shard(stream_arn, shard_b)
            low, high = sorted((first, second), key=lambda shard: shard.hash_start)
            if low.hash_end + 1 != high.hash_start:
                raise ValueError(f"shards {shard_a} and {shard_b} do not cover adjacent hash ranges")
            self._close(first)
            self._close(second)
            child = self._new_shard(stream, low.hash_start, high.hash_end, parents=(first.shard_id, second.shard_id))
            return child.shard_id

    def trim(self, stream_arn: str, shard_id: str, through_seq: str | int) -> None:
        """Drop a shard's records up to and including ``through_seq`` (readers behind it get TrimmedDataAccess)."""
        with self._lock:
            stream = self._streams.get(stream_arn)
            if stream is None or shard_id not in stream.shards:
                raise KeyError(f"no shard {shard_id} in stream {stream_arn}")
            self._trim_shard(stream.shards[shard_id], int(through_seq))

    def shard_ids(self, stream_arn: str, *, open_only: bool = False) -> list[str]:
        with self._lock:
            stream = self._streams[stream_arn]
            return [shard.shard_id for shard in stream.shards.values() if shard.is_open or not open_only]

    def last_sequence_number(self, stream_arn: str, shard_id: str) -> str | None:
        """The newest record's sequence number in a shard (trimmed or not), None when it never had one."""
        with self._lock:
            newest = self._streams[stream_arn].shards[shard_id].last_assigned
            return None if newest is None else str(newest)

    def record_count(self, stream_arn: str) -> int:
        """Records still held (not trimmed) across the stream's shards."""
        with self._lock:
            self._apply_retention()
            return sum(len(shard.records) for shard in self._streams[stream_arn].shards.values())

    # --- internals ---
    def _current_stream(self, keyspace: str, table: str) -> _Stream | None:
        with self._lock:
            for stream in reversed(self._streams.values()):
                if stream.keyspace == keyspace and stream.table == table and stream.status == "ENABLED":
                    return stream
            return None

    def _control_shard(self, stream_arn: str, shard_id: str) -> tuple[_Stream, _Shard]:
        stream = self._streams.get(stream_arn)
        if stream is None or shard_id not in stream.shards:
            raise KeyError(f"no shard {shard_id} in stream {stream_arn}")
        shard = stream.shards[shard_id]
        if not shard.is_open:
            raise ValueError(f"shard {shard_id} is already closed")
        return stream, shard

    def _take_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    def _new_shard(self, stream: _Stream, start: int, end: int, parents: tuple[str, ...]) -> _Shard:
        now_ms = int(self._clock() * 1000)
        shard_id = f"shardId-{now_ms:020d}-{self._ids.getrandbits(32):08x}"
        while shard_id in stream.shards:
            shard_id = f"shardId-{now_ms:020d}-{self._ids.getrandbits(32):08x}"
        shard = _Shard(
            shard_id=shard_id,
            ordinal=len(stream.shards),
            hash_start=start,
            hash_end=end,
            parents=parents,
            starting_seq=self._take_seq(),
        )
        stream.shards[shard_id] = shard
        return shard

    def _close(self, shard: _Shard) -> None:
        # The ending sequence number is the shard's last record, so a reader checkpointed there is done.
        shard.ending_seq = shard.last_assigned if shard.last_assigned is not None else self._take_seq()
        shard.closed_at = self._clock()

    def _trim_shard(self, shard: _Shard, through_seq: int) -> None:
        keep_from = bisect.bisect_right(shard.records, through_seq, key=lambda record: record.seq)
        shard.records = shard.records[keep_from:]
        shard.trimmed_through = max(shard.trimmed_through, through_seq)

    def _apply_retention(self) -> None:
        """Trim what is older than the retention period; forget closed shards and streams older than it."""
        horizon = self._clock() - self.retention_s
        for stream in list(self._streams.values()):
            for shard in list(stream.shards.values()):
                # Records are appended in time order, so the expired ones are a prefix.
                expired = 0
                while expired < len(shard.records) and shard.records[expired].created_at < horizon:
                    expired += 1
                if expired:
                    self._trim_shard(shard, shard.records[expired - 1].seq)
                if shard.closed_at is not None and shard.closed_at < horizon and not shard.records:
                    del stream.shards[shard.shard_id]
            if stream.disabled_at is not None and stream.disabled_at < horizon and not stream.shards:
                del self._streams[stream.arn]

    def _unique_label(self, keyspace: str, table: str, now: float) -> str:
        taken = {
            stream.label for stream in self._streams.values() if (stream.keyspace, stream.table) == (keyspace, table)
        }
        moment = now
        label = _datetime(moment).strftime("%Y-%m-%dT%H:%M:%S.") + f"{_datetime(moment).microsecond // 1000:03d}"
        while label in taken or (taken and label <= max(taken)):
            moment += 0.001  # labels are creation times in ms; a re-enable within the same ms gets the next one
            label = _datetime(moment).strftime("%Y-%m-%dT%H:%M:%S.") + f"{_datetime(moment).microsecond // 1000:03d}"
        return label
