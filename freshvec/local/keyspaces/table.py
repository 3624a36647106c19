"""``LocalTable``: the in-memory Keyspaces table whose writes append records to its stream.

INSERT (``upsert``) writes a row marker and the given cells, UPDATE (``update``) only the given cells (and
``"$add"``/``"$remove"`` collection elements); each write has a client timestamp (``timestamp_us`` or the
client's clock, ``freshvec.local.keyspaces.clocks``) and last write wins per cell
(``freshvec.local.keyspaces.storage``). Each row-level change appends one record
(``freshvec.local.keyspaces.records``): key columns only in the key maps, static columns in records of their
own, range and partition deletes row by row. Expired cells vanish from reads at once; their origin-TTL
records come when ``expire_due`` purges them, as the service purges later. Each rule and the page it comes
from: docs/local-mode.md, "The Keyspaces stand-in".
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from freshvec.local.keyspaces.clocks import TableClocks
from freshvec.local.keyspaces.model import _copy
from freshvec.local.keyspaces.records import RecordMaker
from freshvec.local.keyspaces.schema import LocalSchema
from freshvec.local.keyspaces.segments import SegmentIndex
from freshvec.local.keyspaces.storage import (
    COLLECTION_KINDS,
    Cell,
    StoredPartition,
    StoredRow,
    apply_cells,
    expired_parts,
    purge,
    tombstone,
    ttl_deadlines,
)
from freshvec.sources.keyspaces.cqltypes import CqlType

if TYPE_CHECKING:
    from freshvec.local.keyspaces.streams import LocalKeyspacesStreams

MAX_TTL_S = 630_720_000  # 20 years (Keyspaces "How it works: TTL")
_NOT_VERSIONED = frozenset({"list", "set", "map", "tuple", "udt"})  # WRITETIME the re-sync SELECT does not read


class LocalTable:
    """An in-memory Keyspaces table whose writes produce Keyspaces Streams records.

    Values are change-event JSON values, checked against the column types and stored in canonical form; a bad
    value raises ValueError naming the column and nothing of the call is applied. ``clock`` is the service's
    clock; ``client_skew_s``, ``created_at_lag_s``, ``created_at_precision_s`` and ``client_side_timestamps``
    set up ``self.clocks`` (``TableClocks``), where they can be changed while the table runs.
    """

    def __init__(  # noqa: PLR0917 - mirrors how a table is declared: name, columns, keys, stream, clock
        self,
        keyspace: str,
        table: str,
        column_types: Mapping[str, CqlType | str],
        partition_key: Sequence[str],
        clustering_key: Sequence[str] = (),
        streams: LocalKeyspacesStreams | None = None,
        clock: Callable[[], float] = time.time,
        *,
        static_columns: Sequence[str] = (),
        client_skew_s: float = 0.0,
        created_at_lag_s: float | Callable[[], float] = 0.0,
        created_at_precision_s: float = 0.001,
        client_side_timestamps: bool = True,
        record_missing_deletes: bool = False,
    ) -> None:
        self.schema = LocalSchema(keyspace, table, column_types, partition_key, clustering_key, static_columns)
        self.keyspace, self.table = keyspace, table
        self.column_types = self.schema.column_types
        self.partition_key, self.clustering_key = self.schema.partition_key, self.schema.clustering_key
        self.static_columns = self.schema.static_columns
        self._kinds = {column: cql_type.name for column, cql_type in self.column_types.items()}
        self._records = RecordMaker(self.schema, client_side_timestamps=client_side_timestamps)
        self.streams = streams
        self.clocks = TableClocks(
            clock,
            client_skew_s=client_skew_s,
            created_at_lag_s=created_at_lag_s,
            created_at_precision_s=created_at_precision_s,
            client_side_timestamps=client_side_timestamps,
        )
        self.record_missing_deletes = record_missing_deletes
        self._clock = clock
        self._lock = threading.RLock()
        self._partitions: dict[str, StoredPartition] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # key id -> (partition id, clustering id), rows ever written
        self._segments = SegmentIndex()  # the same key ids, by scan segment and in order
        self._expiring: set[tuple[str, str | None]] = set()  # (partition, row or None: static) with TTL cells

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.schema.primary_key

    def service_now(self) -> float:
        """The service's clock (epoch seconds): what TTL deadlines and ``createdAt`` are counted on."""
        return self._clock()

    # ---- writes ------------------------------------------------------------------------------
    def upsert(
        self,
        rows: Iterable[Mapping[str, Any]],
        ttl_s: float | None = None,
        *,
        timestamp_us: int | None = None,
        origin: str = "USER",
    ) -> list[str | None]:
        """INSERT rows: a row marker and the given columns (None writes a null: a tombstone for that cell).

        Columns not given keep their cells. ``ttl_s`` applies to the marker and the cells written here only.
        Returns each record's sequence number (None where CDC is off); a row with static columns also
        emits its partition's static record.
        """
        return self._write(rows, ttl_s, timestamp_us, origin, insert=True)

    def update(
        self,
        rows: Iterable[Mapping[str, Any]],
        ttl_s: float | None = None,
        *,
        timestamp_us: int | None = None,
        origin: str = "USER",
    ) -> list[str | None]:
        """UPDATE rows: only the given cells, no row marker (a row whose cells all go is gone).

        A row may hold ``"$add": {column: elements}`` and ``"$remove": {column: elements}`` for non-frozen
        collections (``SET c = c + ...`` / ``c - ...``; map removals name keys). ``ttl_s`` applies to
        exactly the cells and elements written here (``UPDATE ... USING TTL``).
        """
        return self._write(rows, ttl_s, timestamp_us, origin, insert=False)

    def delete(
        self, keys: Iterable[Mapping[str, Any]], *, timestamp_us: int | None = None, origin: str = "USER"
    ) -> list[str]:
        """Delete rows by primary key: a row tombstone at the write's timestamp; one record per live row.

        Cells written after the tombstone's timestamp survive it (the record then keeps a new image). A key
        with no row emits nothing unless ``record_missing_deletes`` (then a keys-only record).
        """
        _check_write_origin(origin)
        keys_given = [self.schema.canonical_key(key, f"key {position}") for position, key in enumerate(keys)]
        sequences: list[str] = []
        with self._lock:
            now = self._clock()
            for key in keys_given:
                delete_row = functools.partial(tombstone, written_us=self.clocks.write_timestamp(timestamp_us, now))
                seqs = self._change_row(key, now, origin, delete_row, self._partition(key))
                if not seqs and self.record_missing_deletes:
                    seqs = [self._emit(self._records.record(key, None, None, origin, self.clocks.created_at(now)))]
                sequences.extend(seq for seq in seqs if seq is not None)
        return sequences

    def delete_range(
        self,
        partition_key: Mapping[str, Any],
        clustering_prefix: Mapping[str, Any] | None = None,
        *,
        timestamp_us: int | None = None,
    ) -> list[str]:
        """``DELETE ... WHERE pk = ? [AND ck1 = ? ...]``: every live row of the partition whose leading clustering
        columns equal ``clustering_prefix`` is deleted, row by row, one record each (as Keyspaces applies range
        deletes)."""
        return self._delete_rows(partition_key, clustering_prefix or {}, timestamp_us, whole_partition=False)

    def delete_partition(self, partition_key: Mapping[str, Any], *, timestamp_us: int | None = None) -> list[str]:
        """``DELETE FROM t WHERE pk = ?``: a partition tombstone (it also shadows later writes with older
        timestamps); a record per live row, and one for the static columns when they had values."""
        return self._delete_rows(partition_key, {}, timestamp_us, whole_partition=True)

    def expire_due(self) -> list[str | None]:
        """Purge cells whose TTL has passed, with an origin-TTL record per row (and static row) they leave, in
        the order of their deadlines (then keys)."""
        sequences: list[str | None] = []
        with self._lock:
            now = self._clock()
            for _, partition_id, row_id in sorted((self._deadline(*entry), *entry) for entry in self._expiring):
                partition = self._partitions[partition_id]
                key = dict(zip(self.partition_key, json.loads(partition_id), strict=True))
                if row_id is None:
                    sequences.extend(self._purge_statics(partition, key, now))
                else:
                    key |= dict(zip(self.clustering_key, json.loads(row_id), strict=True))
                    sequences.extend(self._purge_row(partition, key, now))
        return sequences

    # ---- reads (what a LOCAL_QUORUM SELECT answers: expired and deleted data is filtered out) --------
    def read(self, key: Mapping[str, Any]) -> tuple[dict[str, Any] | None, int | None]:
        """The row (statics included) and its re-sync version: the newest ``WRITETIME`` of its regular
        columns that are neither keys, collections, tuples nor UDTs (None when no such cell is set), as the
        re-sync SELECT reads it; (None, None) when there is no row."""
        key_id = self.schema.id_of(self.schema.canonical_key(key, "key"), self.primary_key)
        with self._lock:
            return self._read(key_id, self._clock())

    def writetimes(self, key: Mapping[str, Any]) -> dict[str, int | None]:
        """``WRITETIME(c)`` for each regular column CQL allows it on (not keys, not non-frozen collections):
        None for a null, deleted or expired cell; ``{}`` when there is no row."""
        key = self.schema.canonical_key(key, "key")
        with self._lock:
            now = self._clock()
            stored = self._partitions.get(self.schema.id_of(key, self.partition_key))
            row = stored.rows.get(self.schema.id_of(key, self.clustering_key)) if stored else None
            if stored is None or row is None or self._records.snapshot(stored, row, now) is None:
                return {}
            shadow = max(row.deleted_us, stored.deleted_us)
            times: dict[str, int | None] = {}
            for column, cql_type in self.column_types.items():
                if column in self.primary_key or cql_type.name in COLLECTION_KINDS:
                    continue
                cells = stored.static if column in self.static_columns else row.cells
                cell = cells.get(column)
                times[column] = cell.written_us if cell is not None and cell.live(now, shadow) else None
            return times

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row with this primary key (static columns included, as SELECT * answers), or None."""
        return self.read(key)[0]

    def rows_with_versions(self) -> Iterator[tuple[dict[str, Any], int | None]]:
        """Every row with its re-sync version (a snapshot taken when iteration starts)."""
        with self._lock:
            now = self._clock()
            snapshot = [self._read(key_id, now) for key_id in sorted(self._keys)]
        return iter([(row, version) for row, version in snapshot if row is not None])

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every row (a snapshot taken when iteration starts), for backfills."""
        return iter([row for row, _ in self.rows_with_versions()])

    def scan(
        self, segment: int, segments: int, *, after: str | None = None, limit: int = 1000
    ) -> tuple[list[tuple[dict[str, Any], int | None]], str | None]:
        """One page of the rows whose key hashes into ``segment`` of ``segments``, in key order after ``after``.

        Returns the rows with their versions and the cursor to pass as ``after`` for the next page (None: this
        was the last page). A segment is the stand-in's token range: rows written or deleted while a scan runs
        are seen or not, as with paged CQL reads.
        """
        if segments < 1 or not 0 <= segment < segments:
            raise ValueError(f"segment must be in 0..{segments - 1} and segments at least 1")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with self._lock:
            now = self._clock()
            page_ids = self._segments.page(segment, segments, after, limit + 1)
            more = len(page_ids) > limit
            page_ids = page_ids[:limit]
            reads = [self._read(key_id, now) for key_id in page_ids]
        # A page may hold fewer rows than ``limit`` (keys whose rows are gone); the cursor still moves on.
        return [(row, version) for row, version in reads if row is not None], (page_ids[-1] if more else None)

    def count(self) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for key_id in self._keys if self._read(key_id, now)[0] is not None)

    def expires_at(self, key: Mapping[str, Any]) -> float | None:
        """When the row stops existing if nothing else is written (epoch seconds): the latest TTL deadline of
        its marker and cells not purged yet (a deadline may have passed), or None when something in it has no
        TTL or there is no row."""
        key = self.schema.canonical_key(key, "key")
        with self._lock:
            stored = self._partitions.get(self.schema.id_of(key, self.partition_key))
            row = stored.rows.get(self.schema.id_of(key, self.clustering_key)) if stored else None
            if stored is None or row is None:
                return None
            shadow, unpurged = max(row.deleted_us, stored.deleted_us), float("-inf")  # expired, not purged: counted
            cells = (row.marker, *row.cells.values())
            live = [cell for cell in cells if cell is not None and cell.live(unpurged, shadow)]
            for collection in row.collections.values():
                live.extend(cell for _, cell in collection.live_elements(unpurged, shadow))
            if not live or any(cell.expires_at is None for cell in live):
                return None
            return max(cell.expires_at for cell in live if cell.expires_at is not None)

    # ---- internals: applying a write ---------------------------------------------------------------
    def _write(
        self,
        rows: Iterable[Mapping[str, Any]],
        ttl_s: float | None,
        timestamp_us: int | None,
        origin: str,
        *,
        insert: bool,
    ) -> list[str | None]:
        if ttl_s is not None and not 0 < ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl_s must be between 1 and {MAX_TTL_S} seconds")
        _check_write_origin(origin)
        prepared = [
            self.schema.canonical_write(row, f"row {position}", insert=insert) for position, row in enumerate(rows)
        ]
        sequences: list[str | None] = []
        with self._lock:
            now = self._clock()
            for key, regular, static, ops in prepared:
                written_us = self.clocks.write_timestamp(timestamp_us, now)
                expires_at = None if ttl_s is None else now + ttl_s
                partition = self._partition(key)
                if len(key) == len(self.primary_key) and (regular or ops or insert):
                    apply = functools.partial(
                        self._apply_row,
                        insert=insert,
                        values=regular,
                        ops=ops,
                        written_us=written_us,
                        expires_at=expires_at,
                    )
                    sequences.extend(self._change_row(key, now, origin, apply, partition))
                if static:
                    sequences.extend(self._change_statics(partition, key, now, static, written_us, expires_at))
        return sequences

    def _apply_row(
        self,
        row: StoredRow,
        *,
        insert: bool,
        values: Mapping[str, Any],
        ops: Mapping[str, Mapping[str, Any]],
        written_us: int,
        expires_at: float | None,
    ) -> None:
        if insert:  # the row marker: the row exists while it lives, whatever its cells do
            marker = Cell(True, written_us, expires_at)
            if row.marker is None or marker.beats(row.marker) or marker.written_us == row.marker.written_us:
                row.marker = marker
        apply_cells(self._kinds, row.cells, row.collections, values, ops, written_us, expires_at)

    def _change_row(
        self,
        key: dict[str, Any],
        now: float,
        origin: str,
        apply: Callable[[StoredRow], None],
        partition: StoredPartition,
    ) -> list[str | None]:
        """Purge the row's expired cells (their TTL record first), apply one change, emit its record."""
        sequences = self._purge_row(partition, key, now)
        row_id = self.schema.id_of(key, self.clustering_key)
        row = partition.rows.setdefault(row_id, StoredRow())
        key_id = self.schema.id_of(key, self.primary_key)
        if key_id not in self._keys:
            self._keys[key_id] = (self.schema.id_of(key, self.partition_key), row_id)
            self._segments.add(key_id)
        before = self._records.snapshot(partition, row, now)
        apply(row)
        after = self._records.snapshot(partition, row, now)
        self._note_expiring(partition, key, row_id)
        if before is None and after is None:
            return sequences
        return [*sequences, self._emit(self._records.record(key, after, before, origin, self.clocks.created_at(now)))]

    def _change_statics(  # noqa: PLR0917 - a static write: partition, key, time, cells, stamp, TTL
        self,
        partition: StoredPartition,
        key: dict[str, Any],
        now: float,
        values: Mapping[str, Any],
        written_us: int,
        expires_at: float | None,
    ) -> list[str | None]:
        pk = {column: key[column] for column in self.partition_key}
        sequences = self._purge_statics(partition, pk, now)
        before = self._records.static_snapshot(partition, now)
        apply_cells(self._kinds, partition.static, partition.static_collections, values, {}, written_us, expires_at)
        after = self._records.static_snapshot(partition, now)
        self._note_expiring(partition, pk, None)
        if before is None and after is None:
            return sequences
        return [
            *sequences,
            self._emit(self._records.record(pk, after, before, "USER", self.clocks.created_at(now), static=True)),
        ]

    def _delete_rows(
        self,
        partition_key: Mapping[str, Any],
        prefix: Mapping[str, Any],
        timestamp_us: int | None,
        *,
        whole_partition: bool,
    ) -> list[str]:
        if list(prefix) != list(self.clustering_key[: len(prefix)]):
            raise ValueError(f"clustering_prefix must name leading clustering columns of {self.clustering_key}")
        pk = self.schema.canonical_columns(partition_key, self.partition_key, "partition key")
        wanted = self.schema.canonical_columns(prefix, tuple(prefix), "clustering prefix")
        sequences: list[str | None] = []
        with self._lock:
            now = self._clock()
            written_us = self.clocks.write_timestamp(timestamp_us, now)
            partition = self._partition(pk)
            delete_row = functools.partial(tombstone, written_us=written_us)
            for row_id in sorted(partition.rows):
                values = dict(zip(self.clustering_key, json.loads(row_id), strict=True))
                if all(values[column] == wanted[column] for column in wanted):
                    sequences.extend(self._change_row({**pk, **values}, now, "USER", delete_row, partition))
            if whole_partition:
                sequences.extend(self._purge_statics(partition, pk, now))
                before = self._records.static_snapshot(partition, now)
                partition.deleted_us = max(partition.deleted_us, written_us)
                after = self._records.static_snapshot(partition, now)
                if before is not None:
                    sequences.append(
                        self._emit(
                            self._records.record(pk, after, before, "USER", self.clocks.created_at(now), static=True)
                        )
                    )
        return [seq for seq in sequences if seq is not None]

    def _purge_row(self, partition: StoredPartition, key: dict[str, Any], now: float) -> list[str | None]:
        """Turn the row's expired cells into tombstones; an origin-TTL record when that changed the row."""
        row_id = self.schema.id_of(key, self.clustering_key)
        row = partition.rows.get(row_id)
        if row is None or (self.schema.id_of(key, self.partition_key), row_id) not in self._expiring:
            return []
        expired = expired_parts(row.cells, row.collections, now) or (row.marker is not None and row.marker.expired(now))
        if not expired:
            return []
        before = self._records.snapshot(partition, row, now, expired_view=True)
        purge(row.cells, row.collections, now)
        if row.marker is not None and row.marker.expired(now):
            row.marker = Cell(None, row.marker.written_us)  # an expired marker still outranks older writes
        after = self._records.snapshot(partition, row, now)
        self._note_expiring(partition, key, row_id)
        if before is None:
            return []
        return [self._emit(self._records.record(key, after, before, "TTL", self.clocks.created_at(now)))]

    def _purge_statics(self, partition: StoredPartition, pk: dict[str, Any], now: float) -> list[str | None]:
        if not expired_parts(partition.static, partition.static_collections, now):
            return []
        before = self._records.static_snapshot(partition, now, expired_view=True)
        purge(partition.static, partition.static_collections, now)
        after = self._records.static_snapshot(partition, now)
        self._note_expiring(partition, pk, None)
        if before is None:
            return []
        return [self._emit(self._records.record(pk, after, before, "TTL", self.clocks.created_at(now), static=True))]

    def _deadline(self, partition_id: str, row_id: str | None) -> tuple[float, str]:
        """The earliest TTL deadline in an expiring row (``row_id`` None: the partition's static row)."""
        deadlines = ttl_deadlines(self._partitions[partition_id], row_id)
        return (min(deadlines) if deadlines else float("inf")), row_id or ""

    def _note_expiring(self, partition: StoredPartition, key: Mapping[str, Any], row_id: str | None) -> None:
        entry = (self.schema.id_of(key, self.partition_key), row_id)
        (self._expiring.add if ttl_deadlines(partition, row_id) else self._expiring.discard)(entry)

    # ---- internals: what a row is at a moment ------------------------------------------------------
    def _read(self, key_id: str, now: float) -> tuple[dict[str, Any] | None, int | None]:
        ids = self._keys.get(key_id)
        if ids is None:
            return None, None
        partition = self._partitions[ids[0]]
        row = partition.rows[ids[1]]
        key = self.schema.key_from_id(key_id)
        snapshot = self._records.snapshot(partition, row, now)
        if snapshot is None:
            return None, None
        statics = self._records.static_snapshot(partition, now)
        shadow = max(row.deleted_us, partition.deleted_us)
        times = [
            cell.written_us
            for column, cell in row.cells.items()
            if cell.live(now, shadow) and self.column_types[column].base.name not in _NOT_VERSIONED
        ]
        row_values = {**key, **(statics[0] if statics else {}), **snapshot[0]}
        return _copy(row_values), (max(times) if times else None)

    def _emit(self, record: dict[str, Any]) -> str | None:
        if self.streams is None:
            return None
        return self.streams.append(self.keyspace, self.table, record)

    def _partition(self, key: Mapping[str, Any]) -> StoredPartition:
        return self._partitions.setdefault(self.schema.id_of(key, self.partition_key), StoredPartition())


def _check_write_origin(origin: str) -> None:
    if origin not in ("USER", "REPLICATION"):
        raise ValueError(f"origin {origin!r} is not USER or REPLICATION (TTL records come from expire_due)")
