"""Reading a whole PostgreSQL table at one version, without a gap to the slot: local mode's first fill of an
index from a table that already has rows (attached to the user's own server).

The argument is the backfill's (docs/sources.md, "Backfill without a gap"): the slot first, then a WAL
position ``L`` such that every transaction that committed before ``L`` has ended, then one REPEATABLE READ
snapshot; every row read carries ``L`` as its version. A change the snapshot missed commits after ``L`` and
reaches the slot with a higher version, and wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from freshvec.events import ChangeEvent, format_timestamp
from freshvec.keys import partition_key, vector_key
from freshvec.outgoing import OutgoingRecord
from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.errors import PostgresError
from freshvec.sources.postgres.pgoutput import format_lsn, parse_lsn
from freshvec.sources.postgres.session import qualified, quote_ident

WAIT_S = 60.0  # how long to wait for transactions open at the start
_POLL_S = 0.05


def gap_free_position(conn: Any, wait_s: float = WAIT_S, sleep: Callable[[float], None] = time.sleep) -> int:
    """A WAL position ``L``: read it, then the running transactions and the next id in one statement, and wait
    until each transaction that may have committed before ``L`` has ended (so a snapshot taken next sees it)."""
    lsn, snapshot, next_xid = conn.run(
        "SELECT pg_current_wal_lsn()::text, pg_current_snapshot()::text, pg_current_xact_id()::text"
    )[0]
    _, xmax, running = snapshot.split(":")
    waiting = sorted({int(x) for x in running.split(",") if x} | set(range(int(xmax), int(next_xid))))
    deadline = time.monotonic() + wait_s
    while waiting:
        waiting = [
            xid
            for xid in waiting
            if conn.run("SELECT pg_xact_status(CAST(:x AS xid8))", x=str(xid))[0][0] == "in progress"
        ]
        if waiting and time.monotonic() > deadline:
            raise PostgresError(
                f"transactions {', '.join(map(str, waiting[:5]))} stayed open for {wait_s:.0f} s; reading the table "
                "waits for the transactions open when it starts (see pg_stat_activity)"
            )
        if waiting:
            sleep(_POLL_S)
    return parse_lsn(lsn)


def snapshot_pages(
    conn: Any, schema: str, table: str, columns: Mapping[str, str], page_rows: int = 500
) -> Iterator[list[dict[str, Any]]]:
    """The table's rows in one REPEATABLE READ snapshot, a page at a time (a server-side cursor), as change-event
    JSON values (what the slot reader makes of the same text forms)."""
    names = list(columns)
    select = ", ".join(f"{quote_ident(n)}::text" for n in names)
    conn.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        # Quoted names from the validated config.
        conn.run(f"DECLARE freshvec_snapshot NO SCROLL CURSOR FOR SELECT {select} FROM {qualified(schema, table)}")  # noqa: S608
        while rows := conn.run(f"FETCH {int(page_rows)} FROM freshvec_snapshot"):
            yield [{n: pgtypes.from_text(v, columns[n]) for n, v in zip(names, row, strict=True)} for row in rows]
    finally:
        conn.run("ROLLBACK")  # read only: nothing to keep


def backfill_record(
    row: dict[str, Any],
    *,
    keyspace: str,
    table: str,
    primary_key: Sequence[str],
    key_columns: Sequence[str],
    version: int,
    index: int,
) -> OutgoingRecord:
    """A row read at ``version`` as a BACKFILL INSERT, partitioned like the row's live changes."""
    key = {name: row[name] for name in primary_key}
    now = datetime.now(UTC)
    seq = f"backfill:{format_lsn(version)}#{index}"
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
    )
    shard_key = partition_key(vector_key(key, key_columns))
    return OutgoingRecord(event.to_bytes(), shard_key, seq, changed_at=now.timestamp())
