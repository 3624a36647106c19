"""The SQL the PostgreSQL source runs besides reading: session settings, the checks at start, the slot.

Every check fails with a ``PostgresError`` that says what to change, because each is a setting an operator
makes once (docs/sources.md): ``wal_level = logical`` (RDS/Aurora: ``rds.logical_replication = 1``), a table
with a primary key, a publication that includes it, replica identity FULL, a ``pgoutput`` slot in the right
database.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.errors import PostgresError
from freshvec.sources.postgres.pgoutput import parse_lsn

log = logging.getLogger(__name__)

# Text forms the type conversions parse (freshvec.sources.postgres.types): UTC times, ISO dates, hex bytea,
# shortest exact floats.
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "iso_8601",
    "bytea_output": "hex",
    "extra_float_digits": "1",
}


def prepare_session(conn: Any) -> None:
    for name, value in SESSION_SETTINGS.items():
        conn.run(f"SET {name} TO '{value}'")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def primary_key_columns(conn: Any, oid: int) -> list[str]:
    """The primary key's columns of the table ``oid`` (a ``pg_class`` oid), in key order; [] when it has none."""
    return [
        row[0]
        for row in conn.run(
            "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = :oid AND i.indisprimary ORDER BY k.n",
            oid=oid,
        )
    ]


def check_table(
    conn: Any,
    *,
    schema: str,
    table: str,
    columns: Mapping[str, str],
    primary_key: Sequence[str],
    publication: str | None,
    set_replica_identity_full: bool = True,
) -> None:
    where = f"{schema}.{table}"
    wal_level = conn.run("SHOW wal_level")[0][0]
    if wal_level != "logical":
        raise PostgresError(
            f"wal_level is {wal_level!r}; logical replication needs wal_level = logical "
            "(Amazon RDS and Aurora: set rds.logical_replication = 1 in the parameter group and reboot)"
        )
    found = conn.run(
        "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relname = :table AND c.relkind IN ('r', 'p')",
        schema=schema,
        table=table,
    )
    if not found:
        raise PostgresError(f"table {where} does not exist (or this user cannot see it)")
    oid, identity = found[0]
    actual = dict(
        conn.run(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = :oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            oid=oid,
        )
    )
    for name, declared in columns.items():
        if name not in actual:
            raise PostgresError(f"column {name!r} is configured but {where} has no such column")
        if pgtypes.is_known(declared) and not pgtypes.same_type(declared, actual[name]):
            raise PostgresError(f"column {name!r} of {where} is {actual[name]}, but the config says {declared}")
    key = primary_key_columns(conn, oid)
    if not key:
        raise PostgresError(
            f"table {where} has no primary key; the pipeline needs one to key its vectors "
            f"(ALTER TABLE {qualified(schema, table)} ADD PRIMARY KEY (...))"
        )
    if list(key) != list(primary_key):
        raise PostgresError(
            f"the primary key of {where} is ({', '.join(key)}), but the config says ({', '.join(primary_key)})"
        )
    if publication is not None:
        _check_publication(conn, publication, schema, table)
    if identity != "f":
        if not set_replica_identity_full:
            raise PostgresError(
                f"table {where} has replica identity {identity!r}, not FULL: unchanged long texts (TOAST) would be "
                f"missing from updates. Run ALTER TABLE {qualified(schema, table)} REPLICA IDENTITY FULL"
            )
        try:
            conn.run(f"ALTER TABLE {qualified(schema, table)} REPLICA IDENTITY FULL")
        except Exception as exc:
            raise PostgresError(
                f"could not set REPLICA IDENTITY FULL on {where} ({exc}); the table owner must run "
                f"ALTER TABLE {qualified(schema, table)} REPLICA IDENTITY FULL"
            ) from exc
        log.info("set REPLICA IDENTITY FULL on %s", where)


def _check_publication(conn: Any, publication: str, schema: str, table: str) -> None:
    rows = conn.run("SELECT pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = :p", p=publication)
    if not rows:
        raise PostgresError(
            f"publication {publication!r} does not exist; create it with "
            f"CREATE PUBLICATION {quote_ident(publication)} FOR TABLE {qualified(schema, table)}"
        )
    if not all(rows[0]):
        raise PostgresError(f"publication {publication!r} must publish inserts, updates and deletes")
    included = conn.run(
        "SELECT 1 FROM pg_publication_tables WHERE pubname = :p AND schemaname = :s AND tablename = :t",
        p=publication,
        s=schema,
        t=table,
    )
    if not included:
        raise PostgresError(
            f"publication {publication!r} does not include {schema}.{table}; run "
            f"ALTER PUBLICATION {quote_ident(publication)} ADD TABLE {qualified(schema, table)}"
        )


def ensure_slot(conn: Any, slot: str, *, database: str) -> bool:
    """Create the ``pgoutput`` slot when it is missing (True: created now); PostgresError when it is unfit."""
    rows = conn.run("SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = :slot", slot=slot)
    if rows:
        plugin, kind, slot_database = rows[0]
        if kind != "logical" or plugin != "pgoutput":
            raise PostgresError(f"replication slot {slot!r} is a {kind} slot with plugin {plugin!r}, not pgoutput")
        if slot_database != database:
            raise PostgresError(f"replication slot {slot!r} belongs to database {slot_database!r}, not {database!r}")
        return False
    conn.run("SELECT pg_create_logical_replication_slot(:slot, 'pgoutput')", slot=slot)
    log.warning(
        "created replication slot %s: changes made before now are not in it; run `freshvec backfill` once", slot
    )
    return True


def slot_state(conn: Any, slot: str) -> tuple[int, int | None, int | None]:
    """The slot's confirmed flush LSN, the PID reading it (None: nobody) and the WAL bytes it retains."""
    rows = conn.run(
        "SELECT confirmed_flush_lsn::text, active_pid, pg_current_wal_lsn() - restart_lsn "
        "FROM pg_replication_slots WHERE slot_name = :slot",
        slot=slot,
    )
    if not rows:
        raise PostgresError(f"replication slot {slot!r} does not exist (dropped while the pipeline was reading?)")
    confirmed, pid, retained = rows[0]
    return parse_lsn(confirmed), pid, int(retained) if retained is not None else None


def slot_lag_bytes(conn: Any, slot: str) -> dict[str, int | None]:
    """WAL the slot holds back: since its restart LSN (what the server keeps) and its confirmed flush LSN."""
    rows = conn.run(
        "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint, (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = :slot",
        slot=slot,
    )
    if not rows:
        raise PostgresError(f"replication slot {slot!r} does not exist")
    retained, unconfirmed = rows[0]
    return {"retained_bytes": retained, "unconfirmed_bytes": unconfirmed}
