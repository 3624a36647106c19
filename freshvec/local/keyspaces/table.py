"""``LocalTable``: the in-memory Keyspaces table whose writes append records to its stream.

Rows in memory, CQL upsert semantics, deletes and TTL expiry, each change appended to the table's enabled
stream (``freshvec.local.keyspaces.streams.LocalKeyspacesStreams``) in the exact record shape Keyspaces
produces.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from freshvec.local.keyspaces.model import EVENT_VERSION, _copy, _datetime
from freshvec.sources.keyspaces.cells import json_to_value, row_to_image, value_to_json
from freshvec.sources.keyspaces.cqltypes import CqlType, parse_cql_type

if TYPE_CHECKING:
    from freshvec.local.keyspaces.streams import LocalKeyspacesStreams


@dataclass
class _Row:
    values: dict[str, Any]
    written_at: float
    expires_at: float | None
    write_times: dict[str, int]  # per column: microseconds, as CQL's WRITETIME keeps them per cell

    @property
    def version(self) -> int:
        """The newest cell write time: the row state's version, as Keyspaces orders writes."""
        return max(self.write_times.values())


class LocalTable:
    """An in-memory Keyspaces table whose writes produce Keyspaces Streams records.

    Values are change-event JSON values (what ``freshvec.sources.keyspaces.cells.cell_to_json``
    produces), checked against the column types and stored in that canonical form; a bad value raises
    ValueError naming the column and nothing of the call is applied. TTL is kept per row (the stand-in's
    simplification of CQL's per-cell TTL): ``upsert(..., ttl_s=n)`` makes the row expire n seconds later,
    an upsert without a TTL makes it permanent again.
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
        record_missing_deletes: bool = False,
    ) -> None:
        self.keyspace = keyspace
        self.record_missing_deletes = record_missing_deletes
        self.table = table
        self.column_types = {
            name: cql_type if isinstance(cql_type, CqlType) else parse_cql_type(cql_type)
            for name, cql_type in column_types.items()
        }
        self.partition_key = tuple(partition_key)
        self.clustering_key = tuple(clustering_key)
        if not self.partition_key:
            raise ValueError("a table needs at least one partition key column")
        missing = [column for column in self.primary_key if column not in self.column_types]
        if missing:
            raise ValueError(f"key column(s) {', '.join(missing)} have no type in column_types")
        self.streams = streams
        self._clock = clock
        self._lock = threading.RLock()
        self._rows: dict[str, _Row] = {}
        self._hashes: dict[str, int] = {}  # key id -> its scan-segment hash, computed once
        self._last_write_us = 0

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.partition_key + self.clustering_key

    def upsert(
        self, rows: Iterable[Mapping[str, Any]], ttl_s: float | None = None, *, origin: str = "USER"
    ) -> list[str | None]:
        """Insert or update rows: given columns overwrite (None clears one), others keep their values.

        Every row is checked before any is applied. Returns each change's sequence number (None where CDC is
        off for the table). ``origin="REPLICATION"`` marks writes that arrive from another Region.
        """
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        _check_write_origin(origin)
        prepared = [self._canonical_row(row, f"row {position}") for position, row in enumerate(rows)]
        sequences: list[str | None] = []
        with self._lock:
            now = self._clock()
            for row in prepared:
                key_id = self._key_id(row)
                old = self._rows.get(key_id)
                merged = {**(old.values if old else {}), **row}
                values = {column: value for column, value in merged.items() if value is not None}
                written_us = self._write_time(now)
                times = {**(old.write_times if old else {}), **dict.fromkeys(row, written_us)}
                new = _Row(
                    values=values,
                    written_at=now,
                    expires_at=None if ttl_s is None else now + ttl_s,
                    write_times={column: times[column] for column in values},
                )
                self._rows[key_id] = new
                sequences.append(self._emit(self._record(new=new, old=old, origin=origin, now=now)))
        return sequences

    def delete(self, keys: Iterable[Mapping[str, Any]], *, origin: str = "USER") -> list[str]:
        """Delete rows by primary key; each existing row emits a record with only an old image.

        A key with no row changes nothing and, by default, emits nothing (there is no before or after to
        report). With ``record_missing_deletes`` it emits a keys-only record (no images), the other behaviour
        a CQL DELETE could have, so consumers can be tested against both. Returns the emitted sequence numbers.
        """
        _check_write_origin(origin)
        keys_given = [self._canonical_key(key, f"key {position}") for position, key in enumerate(keys)]
        sequences: list[str] = []
        with self._lock:
            now = self._clock()
            for key in keys_given:
                old = self._rows.pop(self._key_id(key), None)
                self._hashes.pop(self._key_id(key), None)
                if old is None and not self.record_missing_deletes:
                    continue
                seq = self._emit(self._record(new=None, old=old, origin=origin, now=now, key=key))
                if seq is not None:
                    sequences.append(seq)
        return sequences

    def expire_due(self) -> list[str | None]:
        """Remove rows whose TTL has passed, each with an origin-TTL record carrying its old image."""
        sequences: list[str | None] = []
        with self._lock:
            now = self._clock()
            due = sorted(
                (row.expires_at, key_id)
                for key_id, row in self._rows.items()
                if row.expires_at is not None and row.expires_at <= now
            )
            for _, key_id in due:
                old = self._rows.pop(key_id)
                sequences.append(self._emit(self._record(new=None, old=old, origin="TTL", now=now)))
        return sequences

    def read(self, key: Mapping[str, Any]) -> tuple[dict[str, Any] | None, int | None]:
        """The row and its version (the newest WRITETIME of its cells), as a re-sync reads it; (None, None)
        when there is no row."""
        key_id = self._key_id(self._canonical_key(key, "key"))
        with self._lock:
            row = self._rows.get(key_id)
            return (_copy(row.values), row.version) if row is not None else (None, None)

    def rows_with_versions(self) -> Iterator[tuple[dict[str, Any], int]]:
        """Every row with its version (a snapshot taken when iteration starts), for backfill and reconcile."""
        with self._lock:
            snapshot = [(_copy(row.values), row.version) for row in self._rows.values()]
        return iter(snapshot)

    def scan(
        self, segment: int, segments: int, *, after: str | None = None, limit: int = 1000
    ) -> tuple[list[tuple[dict[str, Any], int]], str | None]:
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
            candidates = (
                key_id
                for key_id in self._rows
                if (after is None or key_id > after) and self._segment_hash(key_id) % segments == segment
            )
            page_ids = heapq.nsmallest(limit + 1, candidates)
            more = len(page_ids) > limit
            page_ids = page_ids[:limit]
            page = [(_copy(self._rows[key_id].values), self._rows[key_id].version) for key_id in page_ids]
        return page, (page_ids[-1] if more else None)

    def _segment_hash(self, key_id: str) -> int:
        cached = self._hashes.get(key_id)
        if cached is None:
            cached = int.from_bytes(hashlib.sha256(key_id.encode("utf-8")).digest()[:8], "big")
            self._hashes[key_id] = cached
        return cached

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row with this primary key, or None."""
        key_id = self._key_id(self._canonical_key(key, "key"))
        with self._lock:
            row = self._rows.get(key_id)
            return _copy(row.values) if row is not None else None

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every row (a snapshot taken when iteration starts), for backfills."""
        with self._lock:
            snapshot = [_copy(row.values) for row in self._rows.values()]
        return iter(snapshot)

    def count(self) -> int:
        with self._lock:
            return len(self._rows)

    def expires_at(self, key: Mapping[str, Any]) -> float | None:
        """When the row's TTL runs out (epoch seconds), or None for a permanent or missing row."""
        with self._lock:
            row = self._rows.get(self._key_id(self._canonical_key(key, "key")))
            return row.expires_at if row is not None else None

    # --- internals ---
    def _canonical_row(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The row with every value in the form the stream carries; ValueError naming the column."""
        canonical = self._canonical_key(row, where)
        for column, value in row.items():
            if column in canonical:
                continue
            cql_type = self.column_types.get(column)
            if cql_type is None:
                raise ValueError(f"{where}: column '{column}' is not a column of {self.keyspace}.{self.table}")
            canonical[column] = None if value is None else self._canonical_value(column, value, where)
        return canonical

    def _canonical_key(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        key: dict[str, Any] = {}
        for column in self.primary_key:
            value = row.get(column)
            if value is None:
                raise ValueError(f"{where}: primary key column '{column}' is missing or null")
            key[column] = self._canonical_value(column, value, where)
        return key

    def _canonical_value(self, column: str, value: Any, where: str) -> Any:
        cql_type = self.column_types[column]
        try:
            return value_to_json(json_to_value(value, cql_type))
        except ValueError as exc:
            raise ValueError(f"{where}: column '{column}' ({cql_type}): {exc}") from exc

    def _write_time(self, now: float) -> int:
        """Microseconds, strictly increasing per table: two writes never share a timestamp (Keyspaces would
        order equal ones by value; the stand-in keeps it simple)."""
        self._last_write_us = max(int(now * 1_000_000), self._last_write_us + 1)
        return self._last_write_us

    def _key_id(self, row: Mapping[str, Any]) -> str:
        return json.dumps([row[column] for column in self.primary_key], separators=(",", ":"), ensure_ascii=False)

    def _record(
        self,
        *,
        new: _Row | None,
        old: _Row | None,
        origin: str,
        now: float,
        key: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        values = key if key is not None else (new or old).values  # type: ignore[union-attr]
        record: dict[str, Any] = {
            "eventVersion": EVENT_VERSION,
            "createdAt": _datetime(now),
            "origin": origin,
            "partitionKeys": self._keys(values, self.partition_key),
        }
        if self.clustering_key:
            record["clusteringKeys"] = self._keys(values, self.clustering_key)
        if new is not None:
            record["newImage"] = self._image(new)
        if old is not None:
            record["oldImage"] = self._image(old)
        return record

    def _keys(self, values: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
        return {column: json_to_value(values[column], self.column_types[column]) for column in columns}

    def _image(self, row: _Row) -> dict[str, Any]:
        image = row_to_image(row.values, self.column_types)
        for cells in (image.get("valueCells", {}), image.get("staticCells", {})):
            for column, cell in cells.items():
                cell["metadata"] = {"writeTime": str(row.write_times[column])}  # CQL WRITETIME: microseconds
        metadata = {"writeTime": str(row.version)}
        if row.expires_at is not None:
            metadata["expirationTime"] = str(int(row.expires_at))  # epoch seconds, as CQL keeps TTL deadlines
        image["rowMetadata"] = metadata
        return image

    def _emit(self, record: dict[str, Any]) -> str | None:
        if self.streams is None:
            return None
        return self.streams.append(self.keyspace, self.table, record)


def _check_write_origin(origin: str) -> None:
    if origin not in ("USER", "REPLICATION"):
        raise ValueError(f"origin {origin!r} is not USER or REPLICATION (TTL records come from expire_due)")
