"""The forwarder: pull the Keyspaces CDC stream and forward every change, as a change event, to Kinesis.

Keyspaces CDC cannot push anywhere, so something has to pull it. One pass (``run_once``):

1. Find the stream (newest enabled one at first; after CDC is re-enabled the old stream is finished first),
   page through its shards and lease every shard that is readable: not ended, and every parent (split or
   merge) read to its end. Leases and checkpoints live in DynamoDB (``freshvec.adapters.dynamodb``).
2. Read each owned shard once (GetRecords, up to 1,000 records), shards concurrently with a bound.
3. Convert each record to a change event and PutRecords it to Kinesis with the row's primary key as the
   partition key: ≤500 records and ≤5 MiB a call, and never two changes of one row in one call, so that a
   partial failure (only the rejected records are sent again) cannot let a row's changes overtake each other.
4. Checkpoint only up to the longest run of records, from the start of the read, that Kinesis accepted.

At least once: a crash anywhere leaves the checkpoint at or before what Kinesis holds, so the next reader
sends some changes again but never skips one. ``run`` repeats passes until a deadline, polling at the tip
with a short interval, then releases its leases.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from freshvec import constants as c
from freshvec.adapters.dynamodb import CheckpointStore
from freshvec.adapters.kinesis import KINESIS_RETRY, KinesisWriter
from freshvec.config import PipelineConfig
from freshvec.errors import (
    MisconfigurationError,
    PoisonRecordError,
    TransientError,
    classify,
    error_code,
)
from freshvec.keys import partition_key, vector_key
from freshvec.outgoing import OutgoingRecord, plan_calls
from freshvec.ports import LeaseLostError, StreamEntry
from freshvec.retry import RetryPolicy
from freshvec.sources.keyspaces.cells import record_to_event

log = logging.getLogger(__name__)

# Named steps at which ``hooks`` is called (tests raise from it to simulate a crash right there).
STEP_AFTER_LEASE = "after_lease"  # a shard lease was taken, nothing read yet
STEP_AFTER_READ = "after_read"  # GetRecords returned, nothing sent yet
STEP_AFTER_PUT = "after_put"  # Kinesis accepted one PutRecords call's records, not checkpointed yet
STEP_AFTER_CHECKPOINT = "after_checkpoint"  # the checkpoint moved forward
STEP_AFTER_SHARD_END = "after_shard_end"  # the shard was read to its end and marked ended

Hooks = Callable[..., None]  # hooks(step, **details): stream_arn, shard_id and position or count

ITERATOR_TRIM_HORIZON = "TRIM_HORIZON"
ITERATOR_AFTER_SEQUENCE = "AFTER_SEQUENCE_NUMBER"
STATUS_READABLE = ("ENABLED", "ENABLING")
STATUS_DISABLED = "DISABLED"
VALIDATION_EXPIRED_ITERATOR = "ExpiredIterator"
VALIDATION_TRIMMED = "TrimmedDataAccess"
VALIDATION_EXPIRED_NEXT_TOKEN = "ExpiredNextToken"  # noqa: S105 - an error code, not a secret

_SHARD_PAGE = 100  # GetStream and ListStreams maxResults ceiling
_REFRESH_INTERVAL_S = 10.0  # how often to look for new shards and free leases while reading
_IDLE_REFRESH_INTERVAL_S = 1.0  # the same while holding no shard
# Per-shard backoff after a failed read: 50 ms doubling to 5 s (the attempt count never runs out here;
# the invocation's deadline bounds it).
_SHARD_BACKOFF = RetryPolicy(attempts=1_000_000, base_delay_s=0.05, max_delay_s=5.0)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LostRange:
    """Changes that fell out of the stream's 24 h retention before they were forwarded."""

    stream_arn: str
    shard_id: str
    after_sequence_number: str | None  # last change forwarded before the gap; None: from the shard's start
    resumed_at_sequence_number: str | None  # first change still available; None: none was left


@dataclass
class ForwarderStats:
    changes_forwarded: int = 0  # change events Kinesis accepted (repeats after a crash count again)
    unconvertible_forwarded: int = 0  # records sent as an error envelope the sink parks in its DLQ
    newest_change_time: float | None = None  # epoch seconds of the newest change forwarded
    shards_owned: int = 0  # most shards held at once
    throttles: int = 0  # ThrottlingException from Keyspaces Streams, throttled PutRecords entries
    trimmed_events: int = 0
    lost_ranges: list[LostRange] = field(default_factory=list)
    passes: int = 0
    at_tip: bool = True  # every owned shard had nothing more to read (for ``run``: at the end of the run)

    def lag_ms(self, now: float) -> float | None:
        """Now minus the newest forwarded change time; None when nothing was forwarded."""
        if self.newest_change_time is None:
            return None
        return max(0.0, (now - self.newest_change_time) * 1000)

    def merge(self, other: ForwarderStats) -> None:
        self.changes_forwarded += other.changes_forwarded
        self.unconvertible_forwarded += other.unconvertible_forwarded
        if other.newest_change_time is not None:
            self.newest_change_time = max(self.newest_change_time or other.newest_change_time, other.newest_change_time)
        self.shards_owned = max(self.shards_owned, other.shards_owned)
        self.throttles += other.throttles
        self.trimmed_events += other.trimmed_events
        self.lost_ranges.extend(other.lost_ranges)
        self.passes += other.passes
        self.at_tip = self.at_tip and other.at_tip


# ---------------------------------------------------------------------------------------------
# Record conversion
# ---------------------------------------------------------------------------------------------
class RecordConverter:
    """A Keyspaces Streams record -> the bytes and partition key that go to Kinesis; never raises.

    A record that cannot become a change event (or one too large for Kinesis even without its old image)
    still travels: as an error envelope with the reason and the raw record, which the sink's contract check
    rejects into its DLQ, payload and reason intact. Nothing is dropped silently.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self._config = config

    def convert(self, record: Mapping[str, Any], shard_id: str) -> tuple[OutgoingRecord, bool]:
        """The outgoing record and whether it is a proper change event (False: error envelope)."""
        seq = str(record.get("sequenceNumber") or "")
        try:
            event = record_to_event(
                record,
                keyspace=self._config.keyspace,
                table=self._config.table,
                shard_id=shard_id,
                key_columns=self._config.primary_key,
            )
            key = partition_key(vector_key(event.key, self._config.key_columns))
            data = event.to_bytes()
            key.encode("utf-8")
        except PoisonRecordError as exc:
            return self._envelope(record, shard_id, seq, str(exc), shard_id), False
        except UnicodeEncodeError as exc:  # a lone surrogate in a text value: not sendable as UTF-8 JSON
            reason = f"text is not valid UTF-8: {exc.reason} at position {exc.start}"
            return self._envelope(record, shard_id, seq, reason, shard_id), False
        if len(data) + len(key.encode("utf-8")) > c.KINESIS_MAX_RECORD_BYTES and event.old is not None:
            # The old image only helps the sink skip a re-embed; the new image and key are what matter.
            event = dataclasses.replace(event, old=None, extra={**event.extra, "old_omitted": True})
            data = event.to_bytes()
        if len(data) + len(key.encode("utf-8")) > c.KINESIS_MAX_RECORD_BYTES:
            reason = f"change event is {len(data)} bytes; a Kinesis record holds at most {c.KINESIS_MAX_RECORD_BYTES}"
            return self._envelope(record, shard_id, seq, reason, key), False
        return OutgoingRecord(data, key, event.seq, event.changed_at.timestamp()), True

    def _envelope(self, record: Mapping[str, Any], shard_id: str, seq: str, reason: str, key: str) -> OutgoingRecord:
        doc: dict[str, Any] = {
            "v": c.EVENT_VERSION,
            "source": "keyspaces",
            "keyspace": self._config.keyspace,
            "table": self._config.table,
            "seq": seq,
            "shard": shard_id,
            "error": f"forwarder could not convert this record: {reason}",
            "record": record,
        }
        data = _dump(doc)
        if len(data) + len(key.encode("utf-8")) > c.KINESIS_MAX_RECORD_BYTES:
            keys_only = {name: record.get(name) for name in ("partitionKeys", "clusteringKeys", "sequenceNumber")}
            doc["record"] = {**keys_only, "truncated": True}
            data = _dump(doc)
        log.error(
            "stream record %s in shard %s cannot become a change event (%s); sending it for the sink's DLQ",
            seq,
            shard_id,
            reason,
        )
        return OutgoingRecord(data, key, seq, None)


def _dump(doc: Mapping[str, Any]) -> bytes:
    # ASCII-escaped so that even text that is not valid Unicode (a lone surrogate) travels to the DLQ intact.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, default=_json_default).encode("ascii")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


# ---------------------------------------------------------------------------------------------
# The forwarder
# ---------------------------------------------------------------------------------------------
@dataclass
class _OwnedShard:
    stream_arn: str
    shard_id: str
    position: str | None  # last checkpointed sequence number
    start_type: str  # where to begin when there is no position yet
    lease_expires_at: float
    iterator: str | None = None
    failed_reads: int = 0  # consecutive failed reads, for the backoff
    trimmed_after: list[str | None] = field(default_factory=list)  # a trim seen, its lost range not yet logged


@dataclass(frozen=True)
class _StreamView:
    arn: str
    status: str
    shards: dict[str, Mapping[str, Any]]  # by shard id, as GetStream returns them


class Forwarder:
    """Reads every shard of the table's CDC stream in lineage order and forwards each change to Kinesis."""

    def __init__(
        self,
        config: PipelineConfig,
        streams: Any,
        kinesis: Any,
        dynamodb: Any,
        *,
        stream_name: str,
        checkpoint_table: str,
        owner_id: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        hooks: Hooks | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._settings = config.forwarder
        self._streams = streams
        self._clock = clock
        self._sleep = sleep
        self._hooks = hooks
        self._monotonic = monotonic
        self.owner_id = owner_id
        self._store = CheckpointStore(
            dynamodb,
            checkpoint_table,
            owner_id=owner_id,
            lease_duration_s=self._settings.lease_duration_s,
            clock=clock,
        )
        self._backoff = _SHARD_BACKOFF.with_(sleep=sleep)
        self._throttle_lock = threading.Lock()
        self._put_throttles = 0
        self._writer = KinesisWriter(
            kinesis,
            stream_name,
            retry=KINESIS_RETRY.with_(sleep=sleep),
            should_stop=self._out_of_time,
            on_throttle=self._count_put_throttle,
        )
        self._converter = RecordConverter(config)
        self._owned: dict[str, _OwnedShard] = {}
        self._stream_arn: str | None = None
        self._next_refresh = float("-inf")
        self._deadline: float | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ---- public API -----------------------------------------------------------------------
    def run(self, deadline_monotonic: float) -> ForwarderStats:
        """Pass after pass until the deadline (polling at the tip), then release every lease."""
        total = ForwarderStats()
        last_at_tip = True
        self._deadline = deadline_monotonic
        try:
            while not self._out_of_time():
                stats = self.run_once()
                total.merge(stats)
                last_at_tip = stats.at_tip
                if stats.at_tip:
                    self._sleep(min(self._settings.poll_interval_ms / 1000, self._time_left()))
        finally:
            self._deadline = None
            self.release()
        total.at_tip = last_at_tip  # where the run ended, not whether it ever fell behind
        return total

    def run_once(self) -> ForwarderStats:
        """One pass: take leases, read each owned shard once, forward, checkpoint."""
        stats = ForwarderStats(passes=1)
        if self._refresh_due():
            try:
                self._refresh()
            except ClientError as exc:
                if classify(exc) is not TransientError:
                    where = f"{self._config.keyspace}.{self._config.table}"
                    raise MisconfigurationError(f"looking up the CDC stream of {where}: {exc}") from exc
                # Keep reading the shards already owned; look again on the next pass.
                log.warning("looking up the stream and its shards failed, will retry: %s", exc)
                stats.throttles += int(error_code(exc) == "ThrottlingException")
                self._next_refresh = self._clock() + self._settings.poll_interval_ms / 1000
        shards = list(self._owned.values())
        if shards:
            futures = [self._executor().submit(self._read_shard, shard) for shard in shards]
            wait(futures)  # every shard finishes its step before a failure is raised
            for future in futures:
                failure = future.exception()
                if failure is not None:
                    raise failure
                stats.merge(future.result())
        stats.shards_owned = len(self._owned)
        with self._throttle_lock:
            stats.throttles += self._put_throttles
            self._put_throttles = 0
        return stats

    def release(self) -> None:
        """Give back every lease (checkpoints stay), so the next invocation can take them at once."""
        for shard in list(self._owned.values()):
            try:
                self._store.release(shard.stream_arn, shard.shard_id)
            except ClientError as exc:  # the lease simply expires later
                log.warning("could not release the lease on %s: %s", shard.shard_id, exc)
        self._owned.clear()
        self._next_refresh = float("-inf")
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def owned_shards(self) -> list[str]:
        return sorted(self._owned)

    # ---- discovery and leases -------------------------------------------------------------
    def _refresh_due(self) -> bool:
        return self._clock() >= self._next_refresh

    def _refresh(self) -> None:
        self._lookup_stream_and_lease()
        # Holding nothing (another forwarder has the shards, or no stream yet): look again soon, but not on
        # every poll. Holding shards: look for new children and expired leases now and then.
        interval = _IDLE_REFRESH_INTERVAL_S if not self._owned else _REFRESH_INTERVAL_S
        self._next_refresh = self._clock() + min(interval, self._settings.lease_duration_s / 3)

    def _lookup_stream_and_lease(self) -> None:
        for _ in range(8):  # each round may finish a drained stream and move on to the next
            entry, successor = self._current_stream()
            if entry is None:
                self._drop_owned(lambda shard: True)
                self._stream_arn = None
                return
            if entry.stream_arn != self._stream_arn:
                self._drop_owned(lambda shard, arn=entry.stream_arn: shard.stream_arn != arn)
                self._stream_arn = entry.stream_arn
            if self._lease_readable_shards(self._describe(entry.stream_arn), continuation=successor):
                return
            self._store.mark_stream_done(self._config.keyspace, self._config.table, entry.stream_arn)
            log.info("stream %s was read to its end; moving on to the next stream", entry.stream_arn)

    def _current_stream(self) -> tuple[StreamEntry | None, bool]:
        """The oldest followed stream not yet read to its end, and whether it follows an earlier one."""
        ks, table = self._config.keyspace, self._config.table
        registry = self._store.load_streams(ks, table)
        listed = sorted(self._list_streams(), key=lambda s: (s["streamLabel"], s["streamArn"]))
        known = {entry.stream_arn for entry in registry}
        if not registry:
            newest = self._newest_enabled(listed)
            if newest is None:
                log.warning("no enabled CDC stream for %s.%s; enable CDC on the table", ks, table)
                return None, False
            new_streams = [newest]
        else:
            newest_label = registry[-1].label
            new_streams = [s for s in listed if s["streamArn"] not in known and s["streamLabel"] > newest_label]
        if new_streams:
            for stream in new_streams:
                self._store.register_stream(ks, table, stream["streamArn"], stream["streamLabel"])
            registry = self._store.load_streams(ks, table)
        for position, entry in enumerate(registry):
            if not entry.done:
                return entry, position > 0
        return None, False

    def _list_streams(self) -> list[Mapping[str, Any]]:
        request: dict[str, Any] = {
            "keyspaceName": self._config.keyspace,
            "tableName": self._config.table,
            "maxResults": _SHARD_PAGE,
        }
        return list(self._paged(self._streams.list_streams, request, "streams"))

    def _newest_enabled(self, listed: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
        for stream in reversed(listed):
            header = self._streams.get_stream(streamArn=stream["streamArn"], maxResults=1)
            if header["streamStatus"] in STATUS_READABLE:
                return stream
        return None

    def _describe(self, stream_arn: str) -> _StreamView:
        try:
            pages = list(self._paged_get_stream(stream_arn))
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                log.error("stream %s no longer exists; nothing more can be read from it", stream_arn)
                return _StreamView(stream_arn, STATUS_DISABLED, {})
            raise
        shards = {shard["shardId"]: shard for page in pages for shard in page.get("shards", [])}
        return _StreamView(stream_arn, pages[0]["streamStatus"], shards)

    def _paged_get_stream(self, stream_arn: str) -> Iterator[Mapping[str, Any]]:
        request: dict[str, Any] = {"streamArn": stream_arn, "maxResults": _SHARD_PAGE}
        for attempt in range(3):
            pages: list[Mapping[str, Any]] = []
            try:
                page = self._streams.get_stream(**request)
                pages.append(page)
                while page.get("nextToken"):
                    page = self._streams.get_stream(**request, nextToken=page["nextToken"])
                    pages.append(page)
            except ClientError as exc:
                if _validation_reason(exc) == VALIDATION_EXPIRED_NEXT_TOKEN and attempt < 2:
                    continue  # the listing took too long: start it over
                raise
            yield from pages
            return

    def _paged(self, operation: Callable[..., Any], request: dict[str, Any], result_key: str) -> Iterator[Any]:
        for attempt in range(3):
            items: list[Any] = []
            token: str | None = None
            try:
                while True:
                    page = operation(**request, **({"nextToken": token} if token else {}))
                    items.extend(page.get(result_key, []))
                    token = page.get("nextToken")
                    if not token:
                        break
            except ClientError as exc:
                if _validation_reason(exc) == VALIDATION_EXPIRED_NEXT_TOKEN and attempt < 2:
                    continue
                raise
            yield from items
            return

    def _lease_readable_shards(self, view: _StreamView, *, continuation: bool) -> bool:
        """Lease every shard whose parents are done; False when the stream is disabled and fully read."""
        checkpoints = self._store.load_stream(view.arn)
        ended = {shard_id for shard_id, cp in checkpoints.items() if cp.ended}
        self._drop_owned(lambda shard: shard.shard_id in ended or shard.shard_id not in view.shards)
        if view.status == STATUS_DISABLED and all(shard_id in ended for shard_id in view.shards):
            return False
        now = self._clock()
        for shard_id, shard in sorted(view.shards.items(), key=_shard_order):
            if shard_id in ended or shard_id in self._owned:
                continue
            parents = [p for p in shard.get("parentShardIds") or [] if p in view.shards]
            if any(parent not in ended for parent in parents):
                continue  # lineage: a child waits until every parent was read to its end
            current = checkpoints.get(shard_id)
            if current is not None and not current.lease_free(now) and current.lease_owner != self.owner_id:
                continue
            lease = self._store.try_acquire(view.arn, shard_id)
            if lease is None:
                continue
            fresh_start = not continuation and not any(p in checkpoints for p in parents)
            self._owned[shard_id] = _OwnedShard(
                stream_arn=view.arn,
                shard_id=shard_id,
                position=lease.sequence_number,
                start_type=self._settings.starting_position if fresh_start else ITERATOR_TRIM_HORIZON,
                lease_expires_at=lease.lease_expires_at or now,
            )
            self._hook(STEP_AFTER_LEASE, stream_arn=view.arn, shard_id=shard_id, position=lease.sequence_number)
        return True

    def _drop_owned(self, predicate: Callable[[_OwnedShard], bool]) -> None:
        for shard in [s for s in self._owned.values() if predicate(s)]:
            del self._owned[shard.shard_id]
            try:
                self._store.release(shard.stream_arn, shard.shard_id)
            except ClientError as exc:
                log.warning("could not release the lease on %s: %s", shard.shard_id, exc)

    def _ensure_lease(self, shard: _OwnedShard) -> None:
        """Renew when less than half the lease is left, so a lease never lapses while a batch is in flight."""
        if shard.lease_expires_at - self._clock() < self._settings.lease_duration_s / 2:
            shard.lease_expires_at = self._store.renew(shard.stream_arn, shard.shard_id)

    # ---- reading one shard ----------------------------------------------------------------
    def _read_shard(self, shard: _OwnedShard) -> ForwarderStats:
        stats = ForwarderStats()
        if self._out_of_time():
            return stats
        read = False
        try:
            self._ensure_lease(shard)
            response = self._get_records(shard, stats)
            read = True
            shard.failed_reads = 0
            records = response.get("changeRecords") or []
            self._hook(STEP_AFTER_READ, stream_arn=shard.stream_arn, shard_id=shard.shard_id, count=len(records))
            self._log_lost_range(shard, records, stats)
            if records:
                self._forward(shard, records, stats)
            next_iterator = response.get("nextShardIterator")
            if next_iterator is None:
                self._end_shard(shard)
                stats.at_tip = False  # its children may be readable now
                return stats
            shard.iterator = next_iterator
            position = (response.get("iteratorDescription") or {}).get("iteratorPosition")
            stats.at_tip = not records or position == "AT_TIP"
        except LeaseLostError as exc:
            log.warning("%s; stopping reading it", exc)
            self._owned.pop(shard.shard_id, None)
            self._next_refresh = float("-inf")
        except ClientError as exc:
            if classify(exc) is not TransientError:
                raise MisconfigurationError(f"reading shard {shard.shard_id} of {shard.stream_arn}: {exc}") from exc
            if error_code(exc) == "ThrottlingException":
                stats.throttles += 1
            else:
                log.warning("reading %s failed, will retry: %s", shard.shard_id, exc)
            if read:
                shard.iterator = None  # resume from the checkpoint, not from where the read got to
            self._back_off(shard)
            stats.at_tip = False  # unknown: try again at once (the backoff already waited)
        except TransientError as exc:
            log.warning("forwarding from %s did not finish, will resume from its checkpoint: %s", shard.shard_id, exc)
            shard.iterator = None
            stats.at_tip = False
        return stats

    def _get_records(self, shard: _OwnedShard, stats: ForwarderStats) -> Mapping[str, Any]:
        for _ in range(3):
            if shard.iterator is None:
                shard.iterator = self._shard_iterator(shard, stats)
            try:
                return self._streams.get_records(
                    shardIterator=shard.iterator, maxResults=c.KEYSPACES_MAX_RECORDS_PER_GET
                )
            except ClientError as exc:
                reason = _validation_reason(exc)
                if reason == VALIDATION_EXPIRED_ITERATOR:
                    shard.iterator = None  # 15 minutes passed: start again from the checkpoint
                    continue
                if reason == VALIDATION_TRIMMED:
                    self._note_trim(shard, stats)
                    shard.iterator = self._iterator(shard, ITERATOR_TRIM_HORIZON)
                    continue
                raise
        raise TransientError(f"could not get a usable iterator for {shard.shard_id}")

    def _shard_iterator(self, shard: _OwnedShard, stats: ForwarderStats) -> str:
        if shard.position is None:
            return self._iterator(shard, shard.start_type)
        try:
            return self._iterator(shard, ITERATOR_AFTER_SEQUENCE, shard.position)
        except ClientError as exc:
            if _validation_reason(exc) != VALIDATION_TRIMMED:
                raise
            self._note_trim(shard, stats)
            return self._iterator(shard, ITERATOR_TRIM_HORIZON)

    def _iterator(self, shard: _OwnedShard, iterator_type: str, sequence_number: str | None = None) -> str:
        request = {"streamArn": shard.stream_arn, "shardId": shard.shard_id, "shardIteratorType": iterator_type}
        if sequence_number is not None:
            request["sequenceNumber"] = sequence_number
        return self._streams.get_shard_iterator(**request)["shardIterator"]

    def _note_trim(self, shard: _OwnedShard, stats: ForwarderStats) -> None:
        stats.trimmed_events += 1
        shard.trimmed_after.append(shard.position)

    def _log_lost_range(self, shard: _OwnedShard, records: Sequence[Mapping[str, Any]], stats: ForwarderStats) -> None:
        """After a trim, the first record read from the oldest available one tells where the gap ends."""
        resumed_at = str(records[0]["sequenceNumber"]) if records else None
        for after in shard.trimmed_after:
            lost = LostRange(shard.stream_arn, shard.shard_id, after, resumed_at)
            stats.lost_ranges.append(lost)
            log.error(
                "TrimmedDataAccess: changes in shard %s of stream %s after sequence number %s and before %s were "
                "trimmed (older than the %d h retention) before they were forwarded; they are lost. "
                "Run `freshvec backfill` to re-sync the index.",
                shard.shard_id,
                shard.stream_arn,
                after or "(shard start)",
                resumed_at or "(no records left)",
                c.KEYSPACES_RETENTION_HOURS,
                extra={"lost_range": dataclasses.asdict(lost)},
            )
        shard.trimmed_after.clear()

    def _forward(self, shard: _OwnedShard, records: Sequence[Mapping[str, Any]], stats: ForwarderStats) -> None:
        outgoing = []
        for record in records:
            converted, is_event = self._converter.convert(record, shard.shard_id)
            outgoing.append(converted)
            if not is_event:
                stats.unconvertible_forwarded += 1
        accepted = [False] * len(outgoing)
        prefix = 0  # records [0, prefix) are all in Kinesis: the checkpoint may move to outgoing[prefix - 1]
        for call in plan_calls(outgoing):
            self._ensure_lease(shard)
            self._writer.put([outgoing[i] for i in call])
            for i in call:
                accepted[i] = True
            stats.changes_forwarded += len(call)
            times = [outgoing[i].changed_at for i in call if outgoing[i].changed_at is not None]
            if times:
                stats.newest_change_time = max(stats.newest_change_time or times[0], *times)
            self._hook(STEP_AFTER_PUT, stream_arn=shard.stream_arn, shard_id=shard.shard_id, count=len(call))
            while prefix < len(outgoing) and accepted[prefix]:
                prefix += 1
            last = outgoing[prefix - 1].sequence_number if prefix else None
            if last is not None and last != shard.position:
                shard.lease_expires_at = self._store.checkpoint(shard.stream_arn, shard.shard_id, last)
                shard.position = last
                self._hook(STEP_AFTER_CHECKPOINT, stream_arn=shard.stream_arn, shard_id=shard.shard_id, position=last)

    def _end_shard(self, shard: _OwnedShard) -> None:
        self._store.mark_ended(shard.stream_arn, shard.shard_id, shard.position)
        self._owned.pop(shard.shard_id, None)
        self._next_refresh = float("-inf")
        log.info("shard %s of %s was read to its end", shard.shard_id, shard.stream_arn)
        self._hook(STEP_AFTER_SHARD_END, stream_arn=shard.stream_arn, shard_id=shard.shard_id, position=shard.position)

    # ---- helpers --------------------------------------------------------------------------
    def _back_off(self, shard: _OwnedShard) -> None:
        shard.failed_reads += 1
        self._sleep(min(self._backoff.delay(shard.failed_reads), self._time_left()))

    def _count_put_throttle(self) -> None:
        with self._throttle_lock:
            self._put_throttles += 1

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._settings.max_concurrent_shards, thread_name_prefix="freshvec-shard"
            )
        return self._pool

    def _time_left(self) -> float:
        if self._deadline is None:
            return float("inf")
        return max(0.0, self._deadline - self._monotonic())

    def _out_of_time(self) -> bool:
        return self._time_left() <= 0

    def _hook(self, step: str, **details: Any) -> None:
        if self._hooks is not None:
            self._hooks(step, **details)


def _validation_reason(exc: ClientError) -> str | None:
    """The ``errorCode`` of a Keyspaces Streams ValidationException (botocore puts modeled fields at the top)."""
    if error_code(exc) != "ValidationException":
        return None
    response: Any = exc.response
    reason = response.get("errorCode") or response.get("Error", {}).get("errorCode")
    if reason:
        return str(reason)
    message = str(response.get("Error", {}).get("Message", ""))
    known = (VALIDATION_EXPIRED_ITERATOR, VALIDATION_TRIMMED, VALIDATION_EXPIRED_NEXT_TOKEN)
    return next((name for name in known if name in message), None)


def _shard_order(item: tuple[str, Mapping[str, Any]]) -> tuple[int, str]:
    start = (item[1].get("sequenceNumberRange") or {}).get("startingSequenceNumber") or ""
    return (int(start) if start.isdigit() else 0, item[0])
