"""Re-sync reads of a PostgreSQL table, placed by snapshot visibility: backfill, redrive, reconcile, status.

Every read runs in one ``REPEATABLE READ READ ONLY`` transaction, and its version is that transaction's
snapshot (``pg_current_snapshot()``: xmin, xmax and the in-progress xids; ``freshvec.versions.PgSnapshot``).
A live change whose transaction is visible in the snapshot is *included* in what the read saw; any other is
not, whatever the order of commit records in the WAL (commit order is not visibility order). So the sink
needs no wait for open transactions and no clock: it drops a live change the read included and lets any
other win (``freshvec.versions.verdict``).

Rows come back in the change-event JSON forms (``types.from_text`` of each column's text form, as the slot
reader converts them). Used by the operator CLI and by local mode (its control API, and the first fill of an
index from a table that already has rows), so it raises ``ValueError`` for a key it cannot bind (the callers
word it for their users).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from freshvec import constants as c
from freshvec.events import ChangeEvent, format_timestamp, sendable_bytes
from freshvec.keys import partition_key, vector_key
from freshvec.outgoing import OutgoingRecord
from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.session import quote_ident
from freshvec.sources.postgres.writer import MAX_ROWS_PER_STATEMENT, PgTableWriter
from freshvec.versions import PgSnapshot

Row = dict[str, Any]
_CURSOR = "freshvec_snapshot"


class UnreadableKeyError(ValueError):
    """A key value its column cannot hold: no row has that key."""


def begin_snapshot(conn: Any) -> str:
    """Open a read-only REPEATABLE READ transaction and return its snapshot as a version text."""
    conn.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        # The first statement takes the transaction's snapshot; pg_current_snapshot() returns that one.
        text = conn.run("SELECT pg_current_snapshot()::text")[0][0]
    except BaseException:
        conn.run("ROLLBACK")
        raise
    return parse_snapshot(text).text()


def parse_snapshot(text: str) -> PgSnapshot:
    """``xmin:xmax:xip,xip`` (pg_snapshot's text form)."""
    xmin, xmax, running = text.split(":")
    return PgSnapshot(int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x))


def read_keys(conn: Any, table: PgTableWriter, keys: Sequence[Mapping[str, Any]]) -> tuple[str, list[Row | None]]:
    """Each key's current row (None: no row) in one snapshot, and that snapshot's version text."""
    statements = [
        _key_select(table, keys[start : start + MAX_ROWS_PER_STATEMENT], start)
        for start in range(0, len(keys), MAX_ROWS_PER_STATEMENT)
    ]
    names = list(table.columns)
    found: dict[int, Row] = {}
    version = begin_snapshot(conn)
    try:
        for sql, params in statements:
            for position, *cells in conn.run(sql, **params):
                found[int(position)] = {
                    n: pgtypes.from_text(v, table.columns[n]) for n, v in zip(names, cells, strict=True)
                }
    finally:
        conn.run("ROLLBACK")  # read only: nothing to keep
    return version, [found.get(i) for i in range(len(keys))]


def snapshot_pages(conn: Any, table: PgTableWriter, page_rows: int) -> Iterator[tuple[str, list[Row]]]:
    """The whole table in one snapshot through a server-side cursor, ``page_rows`` a page, each page with the
    snapshot's version text."""
    names = list(table.columns)
    select = ", ".join(f"{quote_ident(n)}::text" for n in names)
    version = begin_snapshot(conn)
    try:
        conn.run(f"DECLARE {_CURSOR} NO SCROLL CURSOR FOR SELECT {select} FROM {table.name}")  # noqa: S608
        while True:
            rows = conn.run(f"FETCH {int(page_rows)} FROM {_CURSOR}")
            if not rows:
                break
            yield (
                version,
                [{n: pgtypes.from_text(v, table.columns[n]) for n, v in zip(names, row, strict=True)} for row in rows],
            )
    finally:
        conn.run("ROLLBACK")  # read only: nothing to keep


def backfill_record(
    row: dict[str, Any],
    *,
    keyspace: str,
    table: str,
    primary_key: Sequence[str],
    key_columns: Sequence[str],
    version: str,
    index: int,
    generations: Sequence[str] | None = None,
) -> OutgoingRecord:
    """A row read in the snapshot ``version`` as a BACKFILL INSERT (for the index ``generations`` only, when
    given), partitioned like the row's live changes: one Kinesis shard per row."""
    key = {name: row[name] for name in primary_key}
    now = datetime.now(UTC)
    seq = f"backfill:{version}#{index}"
    event = ChangeEvent(
        keyspace=keyspace,
        table=table,
        op="INSERT",
        key=key,
        new=row,
        old=None,
        seq=seq,
        shard="backfill",
        ts=format_timestamp(now),
        origin="BACKFILL",
        source="postgres",
        version=version,
        extra={c.EVENT_GENERATIONS: list(generations)} if generations else {},
    )
    shard_key = partition_key(vector_key(key, key_columns))
    return OutgoingRecord(sendable_bytes(event, shard_key), shard_key, seq, changed_at=now.timestamp())


def _key_select(table: PgTableWriter, keys: Sequence[Mapping[str, Any]], first: int) -> tuple[str, dict[str, Any]]:
    """``SELECT k.fv_i, <columns>::text FROM (VALUES (i, CAST(:k AS type), ...), ...) k JOIN t ON <key>``:
    each row comes back with the position of the key that asked for it (no comparison of value forms)."""
    params: dict[str, Any] = {}
    tuples = []
    for offset, key in enumerate(keys):
        cells = [str(first + offset)]
        for j, column in enumerate(table.primary_key):
            if key.get(column) is None:
                raise UnreadableKeyError(f"key {dict(key)} lacks primary key column {column!r}")
            try:
                params[f"k{offset}_{j}"] = pgtypes.to_text(key[column], table.columns[column])
            except pgtypes.PgTypeError as exc:
                raise UnreadableKeyError(f"key {dict(key)}: column {column!r}: {exc}") from exc
            cells.append(f"CAST(:k{offset}_{j} AS {pgtypes.storage_type(table.columns[column])})")
        tuples.append("(" + ", ".join(cells) + ")")
    aliases = ", ".join(["fv_i", *(f"fv_k{j}" for j in range(len(table.primary_key)))])
    join = " AND ".join(f"t.{quote_ident(col)} = k.fv_k{j}" for j, col in enumerate(table.primary_key))
    select = ", ".join(f"t.{quote_ident(n)}::text" for n in table.columns)
    # Names are quoted identifiers and types come from the validated config; key values are bound.
    sql = (
        f"SELECT k.fv_i, {select} FROM (VALUES {', '.join(tuples)}) AS k({aliases}) "  # noqa: S608
        f"JOIN {table.name} AS t ON {join}"
    )
    return sql, params
