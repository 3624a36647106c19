"""Writing rows to a PostgreSQL table over SQL: what ``freshvec load`` and local mode use.

Values come in the change-event JSON forms (``docs/change-event.md``) and are bound as text for
``CAST(:v AS <type>)`` (``types.to_text``), so PostgreSQL itself parses dates, numerics, arrays and JSON.
Rows are written with ``INSERT ... ON CONFLICT (<primary key>) DO UPDATE``: the columns a row names overwrite,
the others keep their values (like a CQL upsert). Each call runs in one transaction and returns the positions
its changes will have in the replication slot (``"<xid>#<index>"``, the ``seq`` of the change events the
reader builds), so a caller can tell when each change reached the index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.errors import server_message, sqlstate
from freshvec.sources.postgres.session import qualified, quote_ident

MAX_ROWS_PER_STATEMENT = 500  # bounds a statement's parameters far below PostgreSQL's 65,535
_XID_MODULUS = 2**32  # pgoutput's Begin carries the 32-bit transaction id; txid_current() adds an epoch
_BAD_VALUE_CLASSES = ("22", "23")  # data exception, integrity constraint violation: the row, not the server


class RowValueError(ValueError):
    """A row cannot be written; the message names the row and column."""


@dataclass(frozen=True)
class PgTableWriter:
    schema: str
    table: str
    columns: Mapping[str, str]  # column -> PostgreSQL type
    primary_key: tuple[str, ...]

    @property
    def name(self) -> str:
        return qualified(self.schema, self.table)

    # ---- DDL (local mode and tests) ------------------------------------------------------------
    def create(self, conn: Any, publication: str) -> None:
        """The table (replica identity FULL) and a publication of it, when missing."""
        body = ", ".join(f"{quote_ident(n)} {t}" for n, t in self.columns.items())
        keys = ", ".join(quote_ident(k) for k in self.primary_key)
        conn.run(f"CREATE TABLE IF NOT EXISTS {self.name} ({body}, PRIMARY KEY ({keys}))")
        conn.run(f"ALTER TABLE {self.name} REPLICA IDENTITY FULL")
        if not conn.run("SELECT 1 FROM pg_publication WHERE pubname = :p", p=publication):
            conn.run(f"CREATE PUBLICATION {quote_ident(publication)} FOR TABLE {self.name}")

    # ---- writes --------------------------------------------------------------------------------
    def upsert(self, conn: Any, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert or update ``rows`` in one transaction; the slot positions of the changes, in order."""
        statements = [self._upsert_statement(group) for group in self._groups(list(rows))]
        return self._in_transaction(conn, statements)

    def delete(self, conn: Any, keys: Iterable[Mapping[str, Any]]) -> list[str]:
        """Delete rows by primary key in one transaction; positions of the rows that existed."""
        keys = list(keys)
        statements = []
        for start in range(0, len(keys), MAX_ROWS_PER_STATEMENT):
            chunk = keys[start : start + MAX_ROWS_PER_STATEMENT]
            params: dict[str, Any] = {}
            matches = []
            for i, key in enumerate(chunk):
                self._check_key(key, i)
                parts = []
                for column in self.primary_key:
                    name = f"k{i}_{len(parts)}"
                    params[name] = self._text(key, column, i)
                    parts.append(
                        f"{quote_ident(column)} = CAST(:{name} AS {pgtypes.storage_type(self.columns[column])})"
                    )
                matches.append("(" + " AND ".join(parts) + ")")
            where = " OR ".join(matches)
            statements.append((f"DELETE FROM {self.name} WHERE {where} RETURNING 1", params))  # noqa: S608 - quoted
        return self._in_transaction(conn, statements)

    def truncate(self, conn: Any) -> list[str]:
        """TRUNCATE the table: one change in the slot."""
        return self._in_transaction(conn, [(f"TRUNCATE {self.name}", {})], counted=False)

    def count(self, conn: Any) -> int:
        return int(conn.run(f"SELECT count(*) FROM {self.name}")[0][0])  # noqa: S608 - a quoted name

    # ---- helpers -------------------------------------------------------------------------------
    def _groups(self, rows: list[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
        """Consecutive rows with the same columns and distinct keys, at most MAX_ROWS_PER_STATEMENT each (one
        INSERT ... ON CONFLICT cannot touch a row twice)."""
        groups: list[list[Mapping[str, Any]]] = []
        seen: set[tuple[Any, ...]] = set()
        shape: tuple[str, ...] | None = None
        for index, row in enumerate(rows):
            unknown = [name for name in row if name not in self.columns]
            if unknown:
                raise RowValueError(f"row {index}: {', '.join(unknown)} not in {self.schema}.{self.table}")
            self._check_key(row, index)
            key = tuple(str(row[k]) for k in self.primary_key)
            columns = tuple(row)
            if not groups or columns != shape or key in seen or len(groups[-1]) >= MAX_ROWS_PER_STATEMENT:
                groups.append([])
                seen, shape = set(), columns
            groups[-1].append(row)
            seen.add(key)
        return groups

    def _upsert_statement(self, rows: list[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
        columns = list(rows[0])
        params: dict[str, Any] = {}
        tuples = []
        for i, row in enumerate(rows):
            cells = []
            for j, column in enumerate(columns):
                params[f"v{i}_{j}"] = self._text(row, column, i)
                cells.append(f"CAST(:v{i}_{j} AS {pgtypes.storage_type(self.columns[column])})")
            tuples.append("(" + ", ".join(cells) + ")")
        names = ", ".join(quote_ident(c) for c in columns)
        keys = ", ".join(quote_ident(k) for k in self.primary_key)
        others = [c for c in columns if c not in self.primary_key]
        # DO UPDATE even with nothing else to set, so every row makes exactly one change (one position).
        assignments = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in others or self.primary_key)
        # Names are quoted identifiers and types come from the config; values are bound parameters.
        sql = (
            f"INSERT INTO {self.name} ({names}) VALUES {', '.join(tuples)} "  # noqa: S608
            f"ON CONFLICT ({keys}) DO UPDATE SET {assignments} RETURNING 1"
        )
        return sql, params

    def _check_key(self, row: Mapping[str, Any], index: int) -> None:
        missing = [k for k in self.primary_key if row.get(k) is None]
        if missing:
            raise RowValueError(f"row {index}: primary key column {', '.join(missing)} has no value")

    def _text(self, row: Mapping[str, Any], column: str, index: int) -> str | None:
        try:
            return pgtypes.to_text(row.get(column), self.columns[column])
        except pgtypes.PgTypeError as exc:
            raise RowValueError(f"row {index}, column {column!r}: {exc}") from exc

    @staticmethod
    def _in_transaction(
        conn: Any, statements: Sequence[tuple[str, dict[str, Any]]], *, counted: bool = True
    ) -> list[str]:
        if not statements:
            return []
        conn.run("BEGIN")
        try:
            xid = int(conn.run("SELECT txid_current()")[0][0]) % _XID_MODULUS
            changes = 0
            for sql, params in statements:
                result = conn.run(sql, **params)
                changes += len(result or []) if counted else 1
            conn.run("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the connection broke: the server rolls back itself
                conn.run("ROLLBACK")
            code = sqlstate(exc)
            if code is not None and code[:2] in _BAD_VALUE_CLASSES:
                raise RowValueError(f"PostgreSQL refused the rows: {server_message(exc)}") from exc
            raise
        return [f"{xid}#{index}" for index in range(changes)]
