"""Reading an Amazon Keyspaces CDC stream: the ``ChangeSource`` the forwarder pulls from.

Keyspaces CDC is pull only (ListStreams / GetStream / GetShardIterator / GetRecords). This module knows
everything Keyspaces-specific about it:

- which stream to follow: the newest enabled one at first; after CDC is re-enabled (a new stream label)
  the old stream is finished before the new one is read (the registry of followed streams lives in the
  forwarder's ``LeaseStore``);
- its shards and their lineage (``parentShardIds`` after splits and merges), paged through completely;
- iterators: from the checkpoint (AFTER_SEQUENCE_NUMBER), TRIM_HORIZON or LATEST for a new shard, or the
  iterator saved past a stretch without changes (``ReadResult.resume``); an expired one (15 minutes) is taken
  again from the checkpoint; an empty ``BEHIND_TIP`` page is not the tip, reading goes on at once;
  ``TrimmedDataAccess`` (the reader fell out of the 24 h retention) is logged loudly with the lost range,
  counted, and reading goes on from the oldest record still there;
- converting each record (``convert.RecordConverter``).

The forwarder (``freshvec.forwarder``) owns leases, checkpoints, concurrency and writing; it calls
``current_stream``, ``describe``, ``read``, ``rewind`` and ``convert``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from freshvec import constants as c
from freshvec.errors import TransientError, error_code
from freshvec.outgoing import OutgoingRecord
from freshvec.ports import LeaseStore, LostRange, Partition, ReadResult, SourceCursor, StreamEntry, StreamView
from freshvec.sources.keyspaces.cells import to_micros
from freshvec.sources.keyspaces.convert import RecordConverter
from freshvec.sources.keyspaces.types.temporal import as_datetime

log = logging.getLogger(__name__)

ITERATOR_TRIM_HORIZON = "TRIM_HORIZON"
ITERATOR_AFTER_SEQUENCE = "AFTER_SEQUENCE_NUMBER"
ITERATOR_AT_TIP = "AT_TIP"  # iteratorPosition: nothing more to read now (the other value is BEHIND_TIP)
STATUS_READABLE = ("ENABLED", "ENABLING")
STATUS_DISABLED = "DISABLED"
VALIDATION_EXPIRED_ITERATOR = "ExpiredIterator"
VALIDATION_TRIMMED = "TrimmedDataAccess"
VALIDATION_EXPIRED_NEXT_TOKEN = "ExpiredNextToken"  # noqa: S105 - an error code, not a secret
SHARD_PAGE = 100  # GetStream and ListStreams maxResults ceiling
_LISTING_ATTEMPTS = 3  # a listing whose token expired is started over this often


@dataclass
class _ShardState:
    """What the source keeps per owned shard between reads."""

    iterator: str | None = None
    trimmed_after: list[str | None] = field(default_factory=list)  # trims seen, their lost range not yet logged


class KeyspacesStreamsSource:
    """The CDC stream of one Keyspaces table, read through a boto3 ``keyspacesstreams`` client."""

    name = "keyspaces"

    def __init__(
        self,
        streams: Any,
        keyspace: str,
        table: str,
        converter: RecordConverter,
        *,
        starting_position: str = ITERATOR_TRIM_HORIZON,
    ) -> None:
        self._streams = streams
        self.keyspace = keyspace
        self.table = table
        self._converter = converter
        self._starting_position = starting_position
        self._labels: dict[str, str] = {}  # stream ARN -> stream label
        self._lineage: dict[str, tuple[str, int]] = {}  # shard id -> (stream label, lineage depth) of opened shards

    @classmethod
    def for_config(cls, streams: Any, config: Any) -> KeyspacesStreamsSource:
        """The source for a ``PipelineConfig`` (duck-typed: sources never import the config module)."""
        return cls(
            streams,
            config.keyspace,
            config.table,
            RecordConverter.for_config(config),
            starting_position=config.forwarder.starting_position,
        )

    @property
    def description(self) -> str:
        return f"the CDC stream of {self.keyspace}.{self.table}"

    # ---- discovery ----------------------------------------------------------------------------
    def current_stream(self, leases: LeaseStore) -> tuple[StreamEntry | None, bool]:
        """The oldest followed stream not yet read to its end, and whether it follows an earlier one."""
        registry = leases.load_streams(self.keyspace, self.table)
        listed = sorted(self._list_streams(), key=lambda s: (s["streamLabel"], s["streamArn"]))
        known = {entry.stream_arn for entry in registry}
        if not registry:
            newest = self._newest_enabled(listed)
            if newest is None:
                log.warning("no enabled CDC stream for %s.%s; enable CDC on the table", self.keyspace, self.table)
                return None, False
            new_streams = [newest]
        else:
            newest_label = registry[-1].label
            new_streams = [s for s in listed if s["streamArn"] not in known and s["streamLabel"] > newest_label]
        if new_streams:
            for stream in new_streams:
                leases.register_stream(self.keyspace, self.table, stream["streamArn"], stream["streamLabel"])
            registry = leases.load_streams(self.keyspace, self.table)
        for position, entry in enumerate(registry):
            if not entry.done:
                return entry, position > 0
        return None, False

    def stream_done(self, leases: LeaseStore, stream_arn: str) -> None:
        leases.mark_stream_done(self.keyspace, self.table, stream_arn)

    def describe(self, stream_arn: str) -> StreamView:
        """Every shard of the stream with its parents; a stream that no longer exists is closed and empty."""
        try:
            pages = list(self._paged_get_stream(stream_arn))
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                log.error("stream %s no longer exists; nothing more can be read from it", stream_arn)
                return StreamView(stream_arn, closed=True, partitions={})
            raise
        shards = {shard["shardId"]: shard for page in pages for shard in page.get("shards", [])}
        partitions = {
            shard_id: Partition(
                shard_id,
                parents=tuple(p for p in shard.get("parentShardIds") or [] if p in shards),
                order=_start_sequence(shard),
                named_parents=tuple(shard.get("parentShardIds") or ()),
            )
            for shard_id, shard in shards.items()
        }
        self._labels[stream_arn] = str(pages[0].get("streamLabel") or stream_arn.rpartition("/")[2])
        return StreamView(stream_arn, closed=pages[0]["streamStatus"] == STATUS_DISABLED, partitions=partitions)

    def open(
        self,
        stream_arn: str,
        partition_id: str,
        position: str | None,
        *,
        fresh: bool,
        resume: str | None = None,
        depth: int = 0,
    ) -> SourceCursor:
        """A cursor at the checkpoint; a shard never read starts at the configured position only when
        ``fresh`` (no parent was read and this is the first stream), else from its start.

        ``resume`` is a shard iterator an earlier reader got past a stretch without changes: the first read uses
        it, and when it has expired (15 minutes) the iterator is taken again from the checkpoint. ``depth``: the
        shard's lineage depth as the forwarder's lease store keeps it (``freshvec.forwarder.lineage_depth``),
        which the versions of its records carry with the stream label.
        """
        self._lineage[partition_id] = (self._labels.get(stream_arn) or stream_arn.rpartition("/")[2], depth)
        start = self._starting_position if fresh else ITERATOR_TRIM_HORIZON
        return SourceCursor(stream_arn, partition_id, position, start, _ShardState(iterator=resume))

    # ---- reading --------------------------------------------------------------------------------
    def read(self, cursor: SourceCursor) -> ReadResult:
        """One GetRecords from the cursor (up to 1,000 records); ClientErrors go to the caller to classify."""
        state: _ShardState = cursor.state
        trims_before = len(state.trimmed_after)
        response = self._get_records(cursor, state)
        trims = len(state.trimmed_after) - trims_before
        records = response.get("changeRecords") or []
        lost = self._lost_ranges(cursor, state, records)
        regressions = created_at_regressions(records, cursor.partition_id)
        next_iterator = response.get("nextShardIterator")
        if next_iterator is None:
            return ReadResult(
                records, ended=True, at_tip=False, trims=trims, lost_ranges=lost, created_at_regressions=regressions
            )
        state.iterator = next_iterator
        # AT_TIP: nothing more now. BEHIND_TIP, even with no records, means the stream moved on without changes
        # at this position and more may follow: read on at once ("Continue polling normally", GetRecords'
        # iteratorDescription in the keyspacesstreams model). No description: an empty page is the tip.
        position = (response.get("iteratorDescription") or {}).get("iteratorPosition")
        at_tip = position == ITERATOR_AT_TIP if position is not None else not records
        return ReadResult(
            records, ended=False, at_tip=at_tip, trims=trims, lost_ranges=lost, resume=next_iterator,
            created_at_regressions=regressions,
        )  # fmt: skip

    def rewind(self, cursor: SourceCursor) -> None:
        """Resume from the checkpoint on the next read, not from where the last read got to."""
        cursor.state.iterator = None

    def committed(self, cursor: SourceCursor, position: str) -> None:
        """Nothing to do: Keyspaces keeps no reader position; the checkpoint table is the only one."""

    def convert(self, record: Mapping[str, Any], partition_id: str) -> tuple[OutgoingRecord, bool]:
        return self._converter.convert(record, partition_id, self._lineage.get(partition_id, ("", 0)))

    def _get_records(self, cursor: SourceCursor, state: _ShardState) -> Mapping[str, Any]:
        for _ in range(3):
            if state.iterator is None:
                state.iterator = self._shard_iterator(cursor, state)
            try:
                return self._streams.get_records(
                    shardIterator=state.iterator, maxResults=c.KEYSPACES_MAX_RECORDS_PER_GET
                )
            except ClientError as exc:
                reason = validation_reason(exc)
                if reason == VALIDATION_EXPIRED_ITERATOR:
                    state.iterator = None  # 15 minutes passed: start again from the checkpoint
                    continue
                if reason == VALIDATION_TRIMMED:
                    state.trimmed_after.append(cursor.position)
                    state.iterator = self._iterator(cursor, ITERATOR_TRIM_HORIZON)
                    continue
                raise
        raise TransientError(f"could not get a usable iterator for {cursor.partition_id}")

    def _shard_iterator(self, cursor: SourceCursor, state: _ShardState) -> str:
        if cursor.position is None:
            return self._iterator(cursor, cursor.start)
        try:
            return self._iterator(cursor, ITERATOR_AFTER_SEQUENCE, cursor.position)
        except ClientError as exc:
            if validation_reason(exc) != VALIDATION_TRIMMED:
                raise
            state.trimmed_after.append(cursor.position)
            return self._iterator(cursor, ITERATOR_TRIM_HORIZON)

    def _iterator(self, cursor: SourceCursor, iterator_type: str, sequence_number: str | None = None) -> str:
        request = {"streamArn": cursor.stream_id, "shardId": cursor.partition_id, "shardIteratorType": iterator_type}
        if sequence_number is not None:
            request["sequenceNumber"] = sequence_number
        return self._streams.get_shard_iterator(**request)["shardIterator"]

    def _lost_ranges(
        self, cursor: SourceCursor, state: _ShardState, records: Sequence[Mapping[str, Any]]
    ) -> list[LostRange]:
        """After a trim, the first record read from the oldest available one tells where the gap ends."""
        resumed_at = str(records[0]["sequenceNumber"]) if records else None
        lost = []
        for after in state.trimmed_after:
            gap = LostRange(cursor.stream_id, cursor.partition_id, after, resumed_at)
            lost.append(gap)
            log.error(
                "TrimmedDataAccess: changes in shard %s of stream %s after sequence number %s and before %s were "
                "trimmed (older than the %d h retention) before they were forwarded; they are lost. "
                "Run `freshvec backfill` to re-sync the index.",
                cursor.partition_id,
                cursor.stream_id,
                after or "(shard start)",
                resumed_at or "(no records left)",
                c.KEYSPACES_RETENTION_HOURS,
                extra={"lost_range": dataclasses.asdict(gap)},
            )
        state.trimmed_after.clear()
        return lost

    # ---- listing ----------------------------------------------------------------------------------
    def _list_streams(self) -> list[Mapping[str, Any]]:
        request: dict[str, Any] = {"keyspaceName": self.keyspace, "tableName": self.table, "maxResults": SHARD_PAGE}
        return list(self._paged(self._streams.list_streams, request, "streams"))

    def _newest_enabled(self, listed: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
        for stream in reversed(listed):
            header = self._streams.get_stream(streamArn=stream["streamArn"], maxResults=1)
            if header["streamStatus"] in STATUS_READABLE:
                return stream
        return None

    def _paged_get_stream(self, stream_arn: str) -> Iterator[Mapping[str, Any]]:
        request: dict[str, Any] = {"streamArn": stream_arn, "maxResults": SHARD_PAGE}
        for attempt in range(_LISTING_ATTEMPTS):
            pages: list[Mapping[str, Any]] = []
            try:
                page = self._streams.get_stream(**request)
                pages.append(page)
                while page.get("nextToken"):
                    page = self._streams.get_stream(**request, nextToken=page["nextToken"])
                    pages.append(page)
            except ClientError as exc:
                if validation_reason(exc) == VALIDATION_EXPIRED_NEXT_TOKEN and attempt < _LISTING_ATTEMPTS - 1:
                    continue  # the listing took too long: start it over
                raise
            yield from pages
            return

    def _paged(self, operation: Callable[..., Any], request: dict[str, Any], result_key: str) -> Iterator[Any]:
        for attempt in range(_LISTING_ATTEMPTS):
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
                if validation_reason(exc) == VALIDATION_EXPIRED_NEXT_TOKEN and attempt < _LISTING_ATTEMPTS - 1:
                    continue
                raise
            yield from items
            return


def validation_reason(exc: ClientError) -> str | None:
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


def created_at_regressions(records: Sequence[Mapping[str, Any]], shard_id: str) -> int:
    """How many records of one page of a shard carry a ``createdAt`` older than the previous record's of the same
    row (primary key) in that page; the first one is logged, with positions and times but no key or row data.

    Versions order a key's records by ``createdAt`` first, assuming it never goes backwards along them (the order
    is per key and per shard, docs/exactness.md). This checks that assumption where it costs nothing: on the page
    in hand, with no call. While ``createdAt`` rises along the page (a record at or after every earlier one cannot
    be older than its row's previous record) a record costs one comparison; from the first record that is older
    than an earlier one, rows are told apart (a ``repr`` of the record's keys and a dictionary lookup per record).
    It cannot see a regression across pages, shards or invocations, nor one that keeps the order of the page but
    disagrees with the service's visibility order.
    """
    rows: dict[str, tuple[datetime, Mapping[str, Any]]] | None = None  # row -> its latest (createdAt, record)
    latest: datetime | None = None  # the newest createdAt of the page so far
    found, first = 0, None
    for position, record in enumerate(records):
        created = _created(record)
        if created is None:
            continue  # unreadable: the converter parks it with the reason
        if rows is None:
            if latest is None or created >= latest:
                latest = created
                continue
            rows = {}
            for earlier in records[:position]:
                moment = _created(earlier)
                if moment is not None:
                    rows[_row(earlier)] = (moment, earlier)
        row = _row(record)
        previous = rows.get(row)
        if previous is not None and created < previous[0]:
            found += 1
            first = first or (previous[1], record)
        rows[row] = (created, record)
    if first is not None:
        before, after = first
        log.warning(
            "createdAt went backwards along one row's records in shard %s: %d record(s) in this read, the first at "
            "sequence number %s (createdAt %d µs) after %s (%d µs); versions of that row may be misordered",
            shard_id, found, after.get("sequenceNumber"), to_micros(after.get("createdAt")),
            before.get("sequenceNumber"), to_micros(before.get("createdAt")),
        )  # fmt: skip
    return found


def _created(record: Mapping[str, Any]) -> datetime | None:
    try:
        return as_datetime(record.get("createdAt"))  # a datetime from boto3: returned as it is
    except (ValueError, TypeError, OverflowError):
        return None


def _row(record: Mapping[str, Any]) -> str:
    return repr((record.get("partitionKeys"), record.get("clusteringKeys")))  # one row's keys print alike


def _start_sequence(shard: Mapping[str, Any]) -> int:
    start = (shard.get("sequenceNumberRange") or {}).get("startingSequenceNumber") or ""
    return int(start) if start.isdigit() else 0
