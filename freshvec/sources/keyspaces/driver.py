"""Table rows as the Cassandra driver binds and returns them: file values -> driver values -> event JSON.

What the loader knows about a Keyspaces table (``TableSchema``) and how a whole row converts; each CQL type's
own conversion lives in the type registry (``freshvec.sources.keyspaces.types``). Decimals stay exact
(``Decimal(str(value))``; JSON Lines numbers are parsed as ``Decimal``), dates and timestamps are parsed,
collections are checked element by element; a value that does not fit raises CellError naming the column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from freshvec.sources.keyspaces.cqltypes import CqlType
from freshvec.sources.keyspaces.types import CellError, to_driver_value, to_json_value

__all__ = ["CellError", "TableSchema", "convert_row", "row_to_json", "to_driver_value", "to_json_value"]


@dataclass(frozen=True)
class TableSchema:
    """What the loader needs to know about the table: names, CQL types and the primary key."""

    keyspace: str
    table: str
    column_types: dict[str, CqlType]
    primary_key: tuple[str, ...]
    partition_key: tuple[str, ...]
    text_column: str  # the embedded text column

    @classmethod
    def from_config(cls, config: Any) -> TableSchema:
        return cls(
            keyspace=config.keyspace,
            table=config.table,
            column_types=config.column_types,
            primary_key=config.primary_key,
            partition_key=config.partition_key,
            text_column=config.embedding_field,
        )


def convert_row(values: Mapping[str, Any], schema: TableSchema) -> dict[str, Any]:
    """Driver values for one file record; CellError names the column that does not fit."""
    missing = [name for name in schema.primary_key if values.get(name) is None]
    if missing:
        raise CellError(f"primary key column {missing[0]!r} is missing or empty")
    row = {}
    for name, value in values.items():
        try:
            row[name] = to_driver_value(value, schema.column_types[name])
        except CellError as exc:
            raise CellError(f"column {name!r}: {exc}") from exc
    return row


def row_to_json(row: Mapping[str, Any], schema: TableSchema) -> dict[str, Any]:
    return {name: to_json_value(value, schema.column_types[name]) for name, value in row.items()}
