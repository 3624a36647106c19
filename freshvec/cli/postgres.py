"""The operator CLI against a PostgreSQL source: the connection, ``freshvec load``'s writer, ``freshvec backfill``.

- Connection: the config's ``source.postgres.connection`` (TLS as configured: ``verify-full`` by default),
  the password from the config or ``FRESHVEC_PG_PASSWORD`` (local use), else the Secrets Manager secret
  (``password_secret_arn``: a plain string, or JSON with a ``password`` key as RDS-managed secrets hold it).
- Load: rows in batches of ``LOAD_BATCH_ROWS``, each one ``INSERT ... ON CONFLICT (<primary key>) DO UPDATE``
  in its own transaction (``freshvec.sources.postgres.writer``); a batch PostgreSQL refuses is written again
  row by row, so only the bad rows fail, each with the server's reason.
- Backfill without a gap: the slot first (changes after it are in it), then the whole table in one snapshot;
  every row read carries the snapshot as its version and goes through the one Kinesis writer
  (``ChangeStreamSender``) as a BACKFILL event (``freshvec.sources.postgres.snapshot``, the read local mode
  uses too). A live change the snapshot did not include wins; one it included is dropped.
- Re-sync reads (``PostgresRowReader``, for redrive and reconcile's repair): the same argument per batch of
  keys; reconcile's table side is one snapshot through a server-side cursor (``table_rows``); status counts
  rows with ``SELECT count(*)`` (``count_rows``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import typer

from freshvec.adapters.postgres import connect
from freshvec.cli import console
from freshvec.cli.errors import EXIT_CHECK_FAILED, OperatorError, RefusedKeyError
from freshvec.cli.load import TableSchema, WriteOp, WriteResult, batches_of_one_kind
from freshvec.cli.send import ChangeStreamSender, RateLimiter
from freshvec.config import PipelineConfig
from freshvec.errors import PoisonRecordError, TransientError
from freshvec.sources.keyspaces.driver import row_to_json
from freshvec.sources.postgres import snapshot
from freshvec.sources.postgres.errors import PostgresError
from freshvec.sources.postgres.session import check_table, ensure_slot, prepare_session, qualified
from freshvec.sources.postgres.writer import PgTableWriter, RowValueError

PASSWORD_ENV = "FRESHVEC_PG_PASSWORD"  # noqa: S105 - the variable's name, not a password
LOAD_BATCH_ROWS = 500
BACKFILL_PAGE_ROWS = 500
RECONCILE_PAGE_ROWS = 1000  # rows per FETCH of reconcile's table side
_POLL_S = 0.05


# ---- connection ------------------------------------------------------------------------------
def password(config: PipelineConfig, clients: Callable[[str], Any] | None) -> str | None:
    connection = config.postgres.connection
    if connection.password is not None:
        return connection.password
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if connection.password_secret_arn is None or clients is None:
        return None
    secret = clients("secretsmanager").get_secret_value(SecretId=connection.password_secret_arn)["SecretString"]
    try:
        document = json.loads(secret)
    except ValueError:
        return str(secret)
    return str(document["password"]) if isinstance(document, dict) and "password" in document else str(secret)


def connect_source(config: PipelineConfig, clients: Callable[[str], Any] | None) -> Any:
    """A pg8000 connection to the config's PostgreSQL (TLS as configured), session settings applied."""
    try:
        conn = connect(config.postgres.connection, password(config, clients))
    except TransientError as exc:
        raise OperatorError(str(exc)) from exc
    prepare_session(conn)
    return conn


def table_writer(config: PipelineConfig) -> PgTableWriter:
    pg = config.postgres
    return PgTableWriter(pg.schema, pg.table, dict(pg.columns), tuple(pg.primary_key))


# ---- preflight -------------------------------------------------------------------------------
def check_source(config: PipelineConfig, clients: Callable[[str], Any] | None) -> str:
    """What the forwarder checks at start, without changing anything: TLS connection, wal_level, the table, its
    columns and primary key, the publication, the replica identity, the slot (if it exists), the role's rights.
    Returns a summary; PostgresError (what to fix) or OperatorError (cannot reach it) otherwise."""
    pg = config.postgres
    conn = connect_source(config, clients)
    try:
        try:
            check_table(
                conn,
                schema=pg.schema,
                table=pg.table,
                columns=pg.columns,
                primary_key=pg.primary_key,
                publication=pg.publication,
                set_replica_identity_full=False,  # preflight changes nothing
            )
            identity = "replica identity FULL"
        except PostgresError as exc:
            # check_table tests the replica identity last: everything else passed. The forwarder sets FULL
            # at start when allowed to and the role owns the table.
            owner = conn.run(
                "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relname = :t",
                s=pg.schema,
                t=pg.table,
            )
            if "REPLICA IDENTITY FULL" not in str(exc) or not pg.set_replica_identity_full or not owner[0][0]:
                raise
            identity = "replica identity not FULL yet: the forwarder sets it at start (this role owns the table)"
        _check_rights(conn, pg.schema, pg.table, pg.slot, pg.connection.database)
        version = conn.run("SHOW server_version")[0][0]
    finally:
        conn.close()
    return f"PostgreSQL {version}: wal_level logical, publication {pg.publication}, {identity}"


def _check_rights(conn: Any, schema: str, table: str, slot: str, database: str) -> None:
    name = qualified(schema, table)
    if not conn.run("SELECT has_table_privilege(:t, 'SELECT')", t=name)[0][0]:
        raise PostgresError(
            f"this role may not SELECT {schema}.{table} (backfill reads it): GRANT SELECT ON {name} TO ..."
        )
    replication = conn.run(
        "SELECT r.rolreplication OR r.rolsuper OR pg_has_role(r.oid, 'rds_replication', 'MEMBER') "
        "FROM pg_roles r WHERE r.rolname = current_user"
        if conn.run("SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication'")
        else "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
    )[0][0]
    if not replication:
        raise PostgresError(
            "this role may not use replication slots: ALTER ROLE ... REPLICATION "
            "(RDS/Aurora: GRANT rds_replication TO ...)"
        )
    rows = conn.run("SELECT plugin, database FROM pg_replication_slots WHERE slot_name = :s", s=slot)
    if rows and (rows[0][0] != "pgoutput" or rows[0][1] != database):
        raise PostgresError(f"replication slot {slot!r} exists with plugin {rows[0][0]!r} in database {rows[0][1]!r}")


# ---- load ------------------------------------------------------------------------------------
class PostgresRowWriter:
    """``RowWriter`` for ``freshvec load``: batched upserts and deletes, one transaction per batch."""

    def __init__(self, conn: Any, config: PipelineConfig, schema: TableSchema, *, batch_rows: int = LOAD_BATCH_ROWS):
        self._conn = conn
        self._schema = schema
        self._writer = table_writer(config)
        self._batch_rows = batch_rows

    def write(self, ops: Iterable[WriteOp], report: Callable[[WriteResult], None]) -> None:
        for batch in batches_of_one_kind(ops, self._batch_rows):
            self._flush(batch, report)

    def _flush(self, batch: list[WriteOp], report: Callable[[WriteResult], None]) -> None:
        try:
            self._apply(batch)
        except RowValueError as exc:
            if len(batch) == 1:
                report(WriteResult(batch[0], str(exc)))
                return
            for op in batch:  # find the rows PostgreSQL refuses; the others are written
                self._flush([op], report)
            return
        except TransientError as exc:
            raise OperatorError(f"writing to PostgreSQL failed: {exc}") from exc
        for op in batch:
            report(WriteResult(op))

    def _apply(self, batch: list[WriteOp]) -> None:
        rows = [row_to_json(op.row, self._schema) for op in batch]
        if batch[0].kind == "delete":
            self._writer.delete(self._conn, rows)
        else:
            self._writer.upsert(self._conn, rows)

    def shutdown(self) -> None:
        self._conn.close()


# ---- backfill --------------------------------------------------------------------------------
def backfill(
    conn: Any,
    config: PipelineConfig,
    sender: ChangeStreamSender,
    *,
    rate_per_s: float = 500.0,
    page_rows: int = BACKFILL_PAGE_ROWS,
    on_progress: Callable[[int], None] | None = None,
    generations: Sequence[str] | None = None,
    on_unindexable: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """Send every row as a BACKFILL INSERT read in one snapshot (for ``generations`` only, when given); returns
    (rows sent, the snapshot's version). A row no vector can hold (its key too long) goes to ``on_unindexable``
    as one line (key shortened, reason) and the rest are sent; without it, PoisonRecordError stops the run."""
    pg = config.postgres
    ensure_slot(conn, pg.slot, database=pg.connection.database)  # first: what changes from now on is kept
    limiter = RateLimiter(rate_per_s)
    sent = 0
    version = ""
    for version, page in snapshot.snapshot_pages(conn, table_writer(config), page_rows):
        records = []
        for i, row in enumerate(page):
            try:
                records.append(snapshot.backfill_record(
                    row, keyspace=config.keyspace, table=config.table, primary_key=config.primary_key,
                    key_columns=config.key_columns, version=version, index=sent + i, generations=generations,
                ))  # fmt: skip
            except PoisonRecordError as exc:
                if on_unindexable is None:
                    raise
                key = json.dumps([row.get(name) for name in config.primary_key], ensure_ascii=False, default=str)
                on_unindexable(f"{console.shorten(key)}: {exc}")
        limiter.acquire(len(records))
        sender.send(records)
        sent += len(records)
        if on_progress is not None:
            on_progress(len(records))
    return sent, version


def backfill_command(
    res: Any, clients: Callable[[str], Any], *, rate_per_s: float, generations: Sequence[str] | None = None
) -> None:
    """``freshvec backfill`` for a postgres source (``res``: the stack's ``StackResources``)."""
    unindexable: list[str] = []
    conn = connect_source(res.config, clients)
    try:
        sender = ChangeStreamSender.for_kinesis(clients("kinesis"), res.stream_name)
        with console.progress() as progress:
            task = progress.add_task("backfill", total=None)
            sent, version = backfill(
                conn,
                res.config,
                sender,
                rate_per_s=rate_per_s,
                on_progress=lambda n: progress.advance(task, n),
                generations=generations,
                on_unindexable=unindexable.append,
            )
    finally:
        conn.close()
    console.out.print(
        f"backfill: {sent} row(s) of {res.config.keyspace}.{res.config.table} sent to {res.stream_name}, "
        f"read in one snapshot ({version or 'the table was empty'})"
    )
    if unindexable:
        console.unindexable_rows(unindexable, "they were not sent (shorten their keys in the table)")
        raise typer.Exit(EXIT_CHECK_FAILED)


# ---- re-sync reads (redrive, reconcile --repair) and reconcile's table side -------------------------------
class PostgresRowReader:
    """``RowReader`` for redrive and reconcile's repair: a batch of keys' current rows in one snapshot, every
    key (with a row or not) with the snapshot as its version (``freshvec.sources.postgres.snapshot``)."""

    def __init__(self, conn: Any, config: PipelineConfig) -> None:
        self.conn = conn
        self.config = config

    def read(self, keys: Sequence[Mapping[str, Any]]) -> list[tuple[dict[str, Any] | None, str | None]]:
        if not keys:
            return []
        try:
            version, rows = snapshot.read_keys(self.conn, table_writer(self.config), keys)
        except snapshot.UnreadableKeyError as exc:
            raise RefusedKeyError(str(exc)) from exc
        except ValueError as exc:
            raise OperatorError(str(exc)) from exc
        return [(row, version) for row in rows]


def table_rows(conn: Any, config: PipelineConfig, *, page_rows: int = RECONCILE_PAGE_ROWS) -> Iterator[list[Any]]:
    """Reconcile's table side: the whole table in one snapshot through a server-side cursor, ``page_rows`` a
    page, as ``(row, snapshot version)`` reads (one segment)."""
    for version, page in snapshot.snapshot_pages(conn, table_writer(config), page_rows):
        yield [(row, version) for row in page]


def count_rows(conn: Any, config: PipelineConfig) -> int:
    """``SELECT count(*)``: an exact count (a sequential scan; ``reltuples`` would only be an estimate)."""
    return table_writer(config).count(conn)
