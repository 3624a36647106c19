"""What a PostgreSQL table says about itself: columns and types, primary key, publications, replica identity.

``describe_table`` reads the catalog (``pg_attribute``, ``pg_index``, ``pg_publication_tables``) and the
server's ``wal_level``; ``text_lengths`` measures the text columns over a sample of rows. ``freshvec init``
writes a config from them; ``freshvec local up`` attached to a server checks the table with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.errors import PostgresError
from freshvec.sources.postgres.session import primary_key_columns, qualified, quote_ident

SAMPLE_ROWS = 200
REPLICA_IDENTITIES = {"d": "DEFAULT", "f": "FULL", "i": "INDEX", "n": "NOTHING"}


@dataclass(frozen=True)
class PgColumn:
    name: str
    type: str  # as the catalog spells it (format_type): "integer", "character varying(255)", "text[]"
    not_null: bool
    serial: bool = False  # a sequence default (SERIAL) or an identity column: the server numbers new rows

    @property
    def config_type(self) -> str:
        """The type as the config writes it: ``serial``/``bigserial`` for an auto-numbered integer column."""
        if self.serial:
            return {"smallint": "smallserial", "integer": "serial", "bigint": "bigserial"}.get(self.type, self.type)
        return self.type


@dataclass(frozen=True)
class PgTable:
    schema: str
    table: str
    columns: tuple[PgColumn, ...]
    primary_key: tuple[str, ...]
    replica_identity: str  # DEFAULT, FULL, INDEX or NOTHING
    publications: tuple[str, ...]  # the publications that include the table
    wal_level: str
    database: str = ""
    row_estimate: int = 0
    text_lengths: dict[str, float] = field(default_factory=dict)  # column -> mean length over the sample

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    def column(self, name: str) -> PgColumn:
        return next(c for c in self.columns if c.name == name)


def describe_table(conn: Any, schema: str, table: str) -> PgTable:
    """The table as the catalog has it; PostgresError when there is no such table (listing the ones there are)."""
    found = conn.run(
        "SELECT c.oid, c.relreplident, greatest(c.reltuples, 0)::bigint FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relname = :table AND c.relkind IN ('r', 'p')",
        schema=schema,
        table=table,
    )
    if not found:
        tables = [row[0] for row in conn.run(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = :s AND table_type = 'BASE TABLE' "
            "ORDER BY table_name", s=schema)]  # fmt: skip
        there = f"tables in {schema}: {', '.join(tables[:20])}" if tables else f"schema {schema} has no tables"
        raise PostgresError(f"table {schema}.{table} does not exist (or this user cannot see it); {there}")
    oid, identity, estimate = found[0]
    columns = tuple(
        PgColumn(name, type_text, bool(not_null), serial=bool(identity_kind) or "nextval(" in (default or ""))
        for name, type_text, not_null, identity_kind, default in conn.run(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity <> '', "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = :oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            oid=oid,
        )
    )
    key = tuple(primary_key_columns(conn, oid))
    publications = tuple(
        row[0]
        for row in conn.run(
            "SELECT pubname FROM pg_publication_tables WHERE schemaname = :s AND tablename = :t ORDER BY pubname",
            s=schema,
            t=table,
        )
    )
    return PgTable(
        schema=schema,
        table=table,
        columns=columns,
        primary_key=key,
        replica_identity=REPLICA_IDENTITIES.get(identity, identity),
        publications=publications,
        wal_level=str(conn.run("SHOW wal_level")[0][0]),
        database=str(conn.run("SELECT current_database()")[0][0]),
        row_estimate=int(estimate),
    )


def text_lengths(
    conn: Any, table: PgTable, columns: Sequence[str], sample_rows: int = SAMPLE_ROWS
) -> tuple[dict[str, float], int]:
    """Mean character length of each of ``columns`` over the first ``sample_rows`` rows (NULL counts as 0), and
    the number of rows sampled."""
    means = "".join(f", coalesce(avg(coalesce(length({quote_ident(c)}::text), 0)), 0)::float8" for c in columns)
    # Names are quoted identifiers read from the catalog; the limit is an int.
    sql = (
        f"SELECT count(*){means} FROM (SELECT * FROM {qualified(table.schema, table.table)} LIMIT {int(sample_rows)}) s"  # noqa: S608
    )
    sampled, *values = conn.run(sql)[0]
    return {name: float(value) for name, value in zip(columns, values, strict=True)}, int(sampled)


def text_columns(table: PgTable) -> list[str]:
    return [c.name for c in table.columns if pgtypes.is_text_type(c.type)]
