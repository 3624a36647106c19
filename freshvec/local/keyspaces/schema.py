"""A stand-in table's columns and keys, and how a write's values are checked and put in canonical form.

Values are change-event JSON values; each is read with its CQL type and written back
(``json_to_value`` then ``value_to_json``), so what is stored is exactly what the stream carries. A value
that does not fit its column raises ValueError naming the row and column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from freshvec.local.keyspaces.storage import ADD, COLLECTION_KINDS, REMOVE
from freshvec.sources.keyspaces.cells import json_to_value, value_to_json
from freshvec.sources.keyspaces.cqltypes import CqlType, parse_cql_type

Write = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]


class LocalSchema:
    """Columns (with CQL types), partition and clustering keys, and static columns of a stand-in table."""

    def __init__(  # noqa: PLR0917 - mirrors CREATE TABLE: names, columns, keys, statics
        self,
        keyspace: str,
        table: str,
        column_types: Mapping[str, CqlType | str],
        partition_key: Sequence[str],
        clustering_key: Sequence[str] = (),
        static_columns: Sequence[str] = (),
    ) -> None:
        self.keyspace = keyspace
        self.table = table
        self.column_types = {
            name: cql_type if isinstance(cql_type, CqlType) else parse_cql_type(cql_type)
            for name, cql_type in column_types.items()
        }
        self.partition_key = tuple(partition_key)
        self.clustering_key = tuple(clustering_key)
        self.static_columns = frozenset(static_columns)
        if not self.partition_key:
            raise ValueError("a table needs at least one partition key column")
        missing = [column for column in (*self.primary_key, *self.static_columns) if column not in self.column_types]
        if missing:
            raise ValueError(f"column(s) {', '.join(missing)} have no type in column_types")
        if self.static_columns and not self.clustering_key:
            raise ValueError("static columns need a table with clustering columns")
        if self.static_columns & set(self.primary_key):
            raise ValueError("a key column cannot be static")

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.partition_key + self.clustering_key

    def canonical_write(self, row: Mapping[str, Any], where: str, *, insert: bool) -> Write:
        """(key, regular cells, static cells, collection ops) of one row to write; ValueError naming the column."""
        ops: dict[str, dict[str, Any]] = {}
        for op in (ADD, REMOVE):
            given = row.get(op) or {}
            if given and insert:
                raise ValueError(f"{where}: {op} is for updates (an INSERT replaces collections whole)")
            if not isinstance(given, Mapping):
                raise ValueError(f"{where}: {op} must map collection columns to elements")
            for column, elements in given.items():
                cql_type = self.column_types.get(column)
                if cql_type is None or cql_type.name not in COLLECTION_KINDS:
                    raise ValueError(f"{where}: {op} needs a non-frozen list, set or map column, not '{column}'")
                if op == REMOVE and cql_type.name == "map":
                    key_type = cql_type.params[0]
                    ops.setdefault(op, {})[column] = [
                        self.canonical_typed(k, key_type, column, where) for k in elements
                    ]
                else:
                    ops.setdefault(op, {})[column] = self.canonical_value(column, elements, where)
        columns = {column: value for column, value in row.items() if column not in (ADD, REMOVE)}
        static_only = (
            bool(self.static_columns)
            and not ops
            and any(row.get(column) is None for column in self.clustering_key)
            and all(column in self.partition_key or column in self.static_columns for column in columns)
        )  # a write of static columns alone names the partition only
        key = self.canonical_columns(row, self.partition_key if static_only else self.primary_key, where)
        regular: dict[str, Any] = {}
        static: dict[str, Any] = {}
        for column, value in columns.items():
            if column in key:
                continue
            if column in self.primary_key:
                raise ValueError(f"{where}: key column '{column}' needs the whole primary key")
            if column not in self.column_types:
                raise ValueError(f"{where}: column '{column}' is not a column of {self.keyspace}.{self.table}")
            target = static if column in self.static_columns else regular
            target[column] = None if value is None else self.canonical_value(column, value, where)
        return key, regular, static, ops

    def canonical_key(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        return self.canonical_columns(row, self.primary_key, where)

    def canonical_columns(self, row: Mapping[str, Any], columns: Sequence[str], where: str) -> dict[str, Any]:
        key: dict[str, Any] = {}
        for column in columns:
            value = row.get(column)
            if value is None:
                raise ValueError(f"{where}: primary key column '{column}' is missing or null")
            key[column] = self.canonical_value(column, value, where)
            if (column,) == self.partition_key and _empty(json_to_value(value, self.column_types[column])):
                # Cassandra and Keyspaces refuse an empty partition key of one column ("Key may not be empty");
                # an empty clustering column, or an empty part of a composite partition key, is a value like any
                raise ValueError(f"{where}: Key may not be empty (partition key column '{column}')")
        return key

    def canonical_value(self, column: str, value: Any, where: str) -> Any:
        return self.canonical_typed(value, self.column_types[column], column, where)

    @staticmethod
    def canonical_typed(value: Any, cql_type: CqlType, column: str, where: str) -> Any:
        try:
            return value_to_json(json_to_value(value, cql_type))
        except ValueError as exc:
            raise ValueError(f"{where}: column '{column}' ({cql_type}): {exc}") from exc

    @staticmethod
    def id_of(values: Mapping[str, Any], columns: Sequence[str]) -> str:
        return json.dumps([values[column] for column in columns], separators=(",", ":"), ensure_ascii=False)

    def key_from_id(self, key_id: str) -> dict[str, Any]:
        return dict(zip(self.primary_key, json.loads(key_id), strict=True))


def _empty(cell: Mapping[str, Any]) -> bool:
    """An empty text or blob cell (``{"textT": ""}``)."""
    return list(cell.values()) in ([""], [b""])
