"""The sources a ``freshvec.testing.stepped.SteppedStack`` reads: the Keyspaces stand-in, or a real PostgreSQL.

Each gives the stack its forwarder and answers re-sync reads as local mode does: a Keyspaces read stamped by
the reader's clock (``freshvec.versions.keyspaces_read_stamp``), a PostgreSQL read in one snapshot (its
``pg_current_snapshot()`` as the version).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from freshvec.adapters.postgres import connect
from freshvec.adapters.wiring import keyspaces_forwarder, postgres_forwarder
from freshvec.config import PipelineConfig
from freshvec.forwarder import Forwarder
from freshvec.local.keyspaces import LocalKeyspacesStreams, LocalTable, ManualClock
from freshvec.sources.postgres import snapshot
from freshvec.sources.postgres.session import prepare_session
from freshvec.sources.postgres.writer import PgTableWriter
from freshvec.versions import keyspaces_read_stamp

Row = dict[str, Any]


class SteppedSource(Protocol):
    def forwarder(self, config: PipelineConfig, kinesis: Any, dynamodb: Any, **wiring: Any) -> Forwarder: ...
    def read(self, keys: Sequence[Mapping[str, Any]], now: float) -> tuple[str, list[Row | None]]: ...
    def scan(
        self, segment: int, segments: int, after: str | None, limit: int, now: float
    ) -> tuple[str, list[Row], str | None]: ...
    def trim_unread(self) -> int: ...
    def close(self) -> None: ...


class KeyspacesSource:
    """The Keyspaces stand-in (table and stream) on the stack's clock."""

    def __init__(self, config: PipelineConfig, clock: ManualClock, shards: int) -> None:
        self.config = config
        self.streams = LocalKeyspacesStreams(clock=clock, seed=1)
        self.streams.enable_stream(config.keyspace, config.table, shards)
        self.table = LocalTable(
            config.keyspace,
            config.table,
            config.column_types,
            config.partition_key,
            config.clustering_key,
            self.streams,
            clock,
        )

    def forwarder(self, config: PipelineConfig, kinesis: Any, dynamodb: Any, **wiring: Any) -> Forwarder:
        return keyspaces_forwarder(config, self.streams, kinesis, dynamodb, **wiring)

    def read(self, keys: Sequence[Mapping[str, Any]], now: float) -> tuple[str, list[Row | None]]:
        return keyspaces_read_stamp(now).text(), [self.table.read(key)[0] for key in keys]

    def scan(
        self, segment: int, segments: int, after: str | None, limit: int, now: float
    ) -> tuple[str, list[Row], str | None]:
        stamp = keyspaces_read_stamp(now).text()
        page, cursor = self.table.scan(segment, segments, after=after, limit=limit)
        return stamp, [row for row, _ in page], cursor

    def trim_unread(self) -> int:
        arn = self.streams.stream_arn(self.config.keyspace, self.config.table) or ""
        before = self.streams.record_count(arn)
        for shard_id in self.streams.shard_ids(arn):
            newest = self.streams.last_sequence_number(arn, shard_id)
            if newest is not None:
                self.streams.trim(arn, shard_id, newest)
        return before - self.streams.record_count(arn)

    def close(self) -> None:
        return None


class PostgresSource:
    """A table of its own in a real PostgreSQL (created with its publication and slot); ``connection()`` gives
    the test connections for its own transactions."""

    def __init__(self, config: PipelineConfig) -> None:
        pg = config.postgres
        self.config = config
        self.writer = PgTableWriter(pg.schema, pg.table, dict(pg.columns), tuple(pg.primary_key))
        self._opened: list[Any] = []
        self._readers: list[Any] = []
        self._lock = threading.Lock()  # re-sync reads come from the control API's threads; one connection
        self.sql = self.connection()
        self.writer.create(self.sql, pg.publication)
        self.sql.run("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')", s=pg.slot)

    def connection(self) -> Any:
        conn = connect(self.config.postgres.connection, self.config.postgres.connection.password)
        prepare_session(conn)
        self._opened.append(conn)
        return conn

    def forwarder(self, config: PipelineConfig, kinesis: Any, dynamodb: Any, **wiring: Any) -> Forwarder:
        return postgres_forwarder(config, self._reader_connection, kinesis, dynamodb, **wiring)

    def _reader_connection(self) -> Any:
        """As local mode does: one forwarder reads at a time, so an earlier reader's connection (its forwarder
        crashed or was replaced) is closed and cannot hold the slot."""
        for earlier in self._readers:
            with contextlib.suppress(Exception):
                earlier.close()
        self._readers = [self.connection()]
        return self._readers[0]

    def read(self, keys: Sequence[Mapping[str, Any]], now: float) -> tuple[str, list[Row | None]]:
        with self._lock:
            return snapshot.read_keys(self.sql, self.writer, keys)

    def scan(
        self, segment: int, segments: int, after: str | None, limit: int, now: float
    ) -> tuple[str, list[Row], str | None]:
        with self._lock:
            pages = list(snapshot.snapshot_pages(self.sql, self.writer, 5000))
            if pages:
                version = pages[0][0]
            else:  # an empty table: the version is still the snapshot it was read in
                version = snapshot.begin_snapshot(self.sql)
                self.sql.run("ROLLBACK")
        found: dict[str, Row] = {}
        for _, rows in pages:
            for row in rows:
                key_id = json.dumps([row[k] for k in self.writer.primary_key], separators=(",", ":"))
                digest = int.from_bytes(hashlib.sha256(key_id.encode("utf-8")).digest()[:8], "big")
                if digest % segments == segment and (after is None or key_id > after):
                    found[key_id] = row
        ordered = sorted(found)
        return version, [found[k] for k in ordered[:limit]], (ordered[limit - 1] if len(ordered) > limit else None)

    def trim_unread(self) -> int:
        return 0  # a replication slot keeps its WAL until the reader confirms it

    def close(self) -> None:
        for conn in self._opened:
            with contextlib.suppress(Exception):
                conn.close()
