"""Local mode's PostgreSQL source: a throwaway server on 127.0.0.1 with the config's table, or the user's own.

Nothing stands in here: the rows live in a real PostgreSQL, the forwarder reads its replication slot with the
same ``PostgresSlotSource`` as in AWS, and writes go through SQL (``PgTableWriter``).

- Throwaway (the default): ``LocalPostgres`` (``wal_level = logical``) listening on 127.0.0.1 only, with a
  random password, so plain TCP (``sslmode = disable``); the config's own connection settings are replaced by
  the local server's and the table, publication and slot are created from the config. ``passfile`` holds the
  password for ``psql`` (``PGPASSFILE``, mode 0600), so it is never printed.
- Attached (``pg_attach.Attachment``): the server and table the config (or a URL) names, used as they are
  (``freshvec.local.pg_attach`` checks and prepares them); ``read_all`` gives the rows already there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from freshvec.adapters.postgres import connect
from freshvec.config import PipelineConfig, PostgresConnectionConfig
from freshvec.local import pg_attach
from freshvec.local.pgserver import LocalPostgres
from freshvec.sources.postgres import snapshot
from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.errors import sqlstate
from freshvec.sources.postgres.session import prepare_session, quote_ident
from freshvec.sources.postgres.writer import PgTableWriter

Row = dict[str, Any]
T = TypeVar("T")


def with_local_connection(config: PipelineConfig, server: LocalPostgres) -> PipelineConfig:
    """``config`` with its PostgreSQL connection pointing at ``server`` (superuser, plain TCP on 127.0.0.1)."""
    pg = config.postgres
    connection = PostgresConnectionConfig(
        host=server.host,
        port=server.port,
        database=server.database,
        user=server.user,
        password=server.password,
        sslmode="disable",  # loopback only
    )
    source = dataclasses.replace(config.source, postgres=dataclasses.replace(pg, connection=connection))
    return dataclasses.replace(config, source=source)


_SCAN_FETCH_ROWS = 5000  # rows per FETCH while a scan reads the table


class LocalPostgresTable:
    """The config's table in a local PostgreSQL: started and created by ``start``, removed by ``stop``."""

    def __init__(
        self,
        config: PipelineConfig,
        attach: pg_attach.Attachment | None = None,
        say: pg_attach.Say = lambda _line: None,
    ) -> None:
        pg = config.postgres
        self.writer = PgTableWriter(pg.schema, pg.table, dict(pg.columns), tuple(pg.primary_key))
        self._publication = pg.publication
        self._config = config
        self.attachment = attach
        self._say = say
        self.server = LocalPostgres(wal_level="logical") if attach is None else None
        self.config = config  # with the local connection once started
        self.passfile: Path | None = None  # throwaway server: the psql password file
        self._slot_made = False  # attached: this run made its slot (and drops it at stop)
        self._lock = threading.Lock()  # one connection for writes, used by one caller at a time
        self._conn: Any = None
        self._readers: list[Any] = []  # the slot reader's connection

    @property
    def password(self) -> str | None:
        return self.config.postgres.connection.password

    def start(self) -> LocalPostgresTable:
        if self.attachment is not None:
            return self._start_attached(self.attachment)
        assert self.server is not None
        self.server.start()
        try:
            self.config = with_local_connection(self._config, self.server)
            self._conn = self._new_connection()
            if self.writer.schema != "public":
                self._conn.run(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.writer.schema)}")
            self.writer.create(self._conn, self._publication)
            # The slot before the first write: a change made before it exists would never reach the index.
            self._conn.run("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')", s=self._config.postgres.slot)
            # in the server's own folder: removed with it, also by the guard when ``local up`` is killed
            assert self.server.folder is not None
            self.passfile = _write_passfile(self.config.postgres.connection, self.server.folder)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_attached(self, attachment: pg_attach.Attachment) -> LocalPostgresTable:
        self.config = pg_attach.attached_config(self._config, attachment)
        try:
            self._conn = self._new_connection()
            pg_attach.claim(self._conn, self.config.postgres.slot)  # held by this connection until stop
            pg_attach.prepare(self._conn, self.config, self._say)
            # The slot before reading the rows there are: a change made after it is in it.
            pg_attach.make_slot(self._conn, self.config.postgres.slot, self._say)
            self._slot_made = True
        except BaseException:
            self.stop()
            raise
        return self

    def psql_command(self) -> str:
        """How to open ``psql`` on the table's server (the password from a file, never on the command line)."""
        conn = self.config.postgres.connection
        command = f"psql -h {conn.host} -p {conn.port} -U {conn.user} -d {conn.database}"
        return f"PGPASSFILE={self.passfile} {command}" if self.passfile is not None else command

    def connect(self) -> Any:
        """A new connection for the slot reader (the forwarder's ``connect``). Local mode runs one forwarder at a
        time, so an earlier reader connection is closed: its forwarder crashed, or dropped it after an error."""
        for earlier in self._readers:
            with contextlib.suppress(Exception):
                earlier.close()
        self._readers = [self._new_connection()]
        return self._readers[0]

    def connect_extra(self) -> Any:
        """A connection of its own (the caller closes it): reading the rows already there at start."""
        return self._new_connection()

    def _new_connection(self) -> Any:
        conn = connect(self.config.postgres.connection, self.password)
        prepare_session(conn)
        return conn

    # ---- the table, like LocalTable ------------------------------------------------------------
    def _call(self, work: Callable[[Any], T]) -> T:
        """``work`` on the table's connection, one caller at a time. A connection its server dropped (a restart)
        is made again and ``work`` tried once more: every call is idempotent (upserts and deletes by key, a
        TRUNCATE, reads). Errors the server answered (a row it refuses) and bad input are raised as they are."""
        with self._lock:
            try:
                return work(self._conn)
            except Exception as exc:
                if isinstance(exc, ValueError) or sqlstate(exc) is not None:
                    raise
                self._reconnect()
                return work(self._conn)

    def _reconnect(self) -> None:
        dropped, self._conn = self._conn, None
        if dropped is not None:
            with contextlib.suppress(Exception):
                dropped.close()
        conn = self._new_connection()
        if self.attachment is not None:  # the claim on the slot went with the old connection's session
            pg_attach.claim(conn, self.config.postgres.slot)
        self._conn = conn

    def upsert(self, rows: Iterable[Mapping[str, Any]], ttl_s: float | None = None) -> list[str]:
        if ttl_s is not None:
            raise ValueError("PostgreSQL has no row TTL; write without ttl_s")
        rows = list(rows)
        return self._call(lambda conn: self.writer.upsert(conn, rows))

    def delete(self, keys: Iterable[Mapping[str, Any]]) -> list[str]:
        keys = list(keys)
        return self._call(lambda conn: self.writer.delete(conn, keys))

    def truncate(self) -> list[str]:
        return self._call(self.writer.truncate)

    def expire_due(self) -> list[str]:
        return []  # no TTL in PostgreSQL

    def count(self) -> int:
        return self._call(self.writer.count)

    def rows(self) -> Iterator[Row]:
        """Every row, in the change-event JSON forms (what the index should hold)."""
        names = list(self.writer.columns)
        select = ", ".join(f"{quote_ident(n)}::text" for n in names)
        found = self._call(lambda conn: conn.run(f"SELECT {select} FROM {self.writer.name}"))  # noqa: S608
        for values in found:
            yield {n: pgtypes.from_text(v, self.writer.columns[n]) for n, v in zip(names, values, strict=True)}

    def read_keys(self, keys: Sequence[Mapping[str, Any]]) -> tuple[str, list[Row | None]]:
        """Each key's row (None: none) in one snapshot, and the snapshot's version (re-sync reads)."""
        return self._call(lambda conn: snapshot.read_keys(conn, self.writer, keys))

    def scan(
        self, segment: int, segments: int, *, after: str | None = None, limit: int = 1000
    ) -> tuple[str, list[Row], str | None]:
        """One page of the rows whose key hashes into ``segment`` of ``segments``, in key order after ``after``
        (a key id: the primary key values as compact JSON), read in one snapshot: (its version, the rows, the
        cursor for the next page or None)."""
        if segments < 1 or not 0 <= segment < segments:
            raise ValueError(f"segment must be in 0..{segments - 1} and segments at least 1")
        pages = self._call(lambda conn: list(snapshot.snapshot_pages(conn, self.writer, _SCAN_FETCH_ROWS)))
        version = pages[0][0] if pages else snapshot.parse_snapshot("1:1:").text()
        ids = {}
        for _, rows in pages:
            for row in rows:
                key_id = json.dumps(
                    [row[k] for k in self.writer.primary_key], separators=(",", ":"), ensure_ascii=False
                )
                digest = int.from_bytes(hashlib.sha256(key_id.encode("utf-8")).digest()[:8], "big")
                if digest % segments == segment and (after is None or key_id > after):
                    ids[key_id] = row
        ordered = sorted(ids)
        page = ordered[:limit]
        return version, [ids[k] for k in page], (page[-1] if len(ordered) > limit else None)

    def get(self, key: Mapping[str, Any]) -> Row | None:
        wanted = {k: key.get(k) for k in self.writer.primary_key}
        return next((row for row in self.rows() if {k: row[k] for k in wanted} == wanted), None)

    def stop(self) -> None:
        made, self._readers, self._conn = [*self._readers, self._conn], [], None
        for conn in (c for c in made if c is not None):
            with contextlib.suppress(Exception):  # closed already, or the server is going away anyway
                conn.close()
        if self.attachment is not None and self._slot_made:  # never another run's slot (a refused start)
            self._drop_local_slot()
            self._slot_made = False
        if self.passfile is not None:
            self.passfile.unlink(missing_ok=True)
            self.passfile = None
        if self.server is not None:
            self.server.stop()

    def _drop_local_slot(self) -> None:
        """The attached server keeps the user's table, publication and replica identity; only local mode's slot
        goes (an unread slot would hold WAL on their server)."""
        try:
            conn = self._new_connection()
        except Exception:  # noqa: BLE001 - the server is gone: nothing to drop from here
            return
        try:
            pg_attach.drop_slot(conn, self.config.postgres.slot)
        except Exception:  # noqa: BLE001 - still held by a reader that is going away; say so, do not fail the stop
            self._say(f"could not drop replication slot {self.config.postgres.slot}; drop it with "
                      f"SELECT pg_drop_replication_slot('{self.config.postgres.slot}')")  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def _write_passfile(connection: PostgresConnectionConfig, folder: Path) -> Path:
    """A libpq password file (``host:port:database:user:password``) in ``folder``, mode 0600."""
    path = folder / "pgpass"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        secret = (connection.password or "").replace("\\", "\\\\").replace(":", "\\:")
        handle.write(f"{connection.host}:{connection.port}:*:{connection.user}:{secret}\n")
    return path
