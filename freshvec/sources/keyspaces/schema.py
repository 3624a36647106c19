"""What an Amazon Keyspaces table says about itself: columns, partition and clustering keys, whether CDC is on.

Read with CQL from the system keyspaces (https://docs.aws.amazon.com/keyspaces/latest/devguide/working-with-keyspaces.html):
``system_schema.columns`` (name, ``kind`` partition_key/clustering/regular/static, ``position``, ``type``),
``system_schema.tables`` (does the table exist) and ``system_schema_mcs.tables``, whose ``custom_properties``
hold the ``cdc_specification`` (status and view type) of a table's CDC stream
(https://docs.aws.amazon.com/keyspaces/latest/devguide/keyspaces-enable-cdc-alter-table.html). ``session``
is a cassandra-driver session whose rows are dicts (``dict_factory``), as the CLI's is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from freshvec.errors import MisconfigurationError
from freshvec.sources.keyspaces.cqltypes import CqlTypeError, parse_cql_type

SAMPLE_ROWS = 200
CDC_VIEW_TYPE = "NEW_AND_OLD_IMAGES"  # what the forwarder needs: the old image tells deletes and TTL expiries apart


class KeyspacesTableMissing(MisconfigurationError):
    """No such keyspace or table (the message lists what there is)."""


@dataclass(frozen=True)
class KsColumn:
    name: str
    type: str  # as the config writes it (parsed and re-spelled), or the raw system_schema type when unsupported
    kind: str  # partition_key, clustering, regular, static
    position: int
    supported: bool = True


@dataclass(frozen=True)
class KsTable:
    keyspace: str
    table: str
    columns: tuple[KsColumn, ...]
    cdc_status: str  # ENABLED, ENABLING, DISABLED, DISABLING, or "unknown" (no system_schema_mcs)
    cdc_view_type: str | None

    @property
    def name(self) -> str:
        return f"{self.keyspace}.{self.table}"

    @property
    def partition_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in sorted(self.columns, key=lambda c: c.position) if c.kind == "partition_key")

    @property
    def clustering_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in sorted(self.columns, key=lambda c: c.position) if c.kind == "clustering")


def describe_table(session: Any, keyspace: str, table: str) -> KsTable:
    """The table as ``system_schema`` has it; KeyspacesTableMissing naming the tables there are."""
    rows = list(
        session.execute(
            "SELECT column_name, kind, position, type FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, table),
        )
    )
    if not rows:
        tables = sorted(
            str(row["table_name"])
            for row in session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
            )
        )
        there = f"tables in {keyspace}: {', '.join(tables[:20])}" if tables else f"keyspace {keyspace} has no tables"
        raise KeyspacesTableMissing(f"table {keyspace}.{table} does not exist (or this role cannot see it); {there}")
    columns = tuple(_column(row) for row in rows)
    status, view_type = _cdc(session, keyspace, table)
    return KsTable(keyspace, table, columns, status, view_type)


def _column(row: Mapping[str, Any]) -> KsColumn:
    raw = str(row["type"])
    try:
        spelled, supported = str(parse_cql_type(raw)), True
    except CqlTypeError:
        spelled, supported = raw, False
    return KsColumn(str(row["column_name"]), spelled, str(row["kind"]), int(row["position"]), supported)


def _cdc(session: Any, keyspace: str, table: str) -> tuple[str, str | None]:
    try:
        found = list(
            session.execute(
                "SELECT custom_properties FROM system_schema_mcs.tables WHERE keyspace_name = %s AND table_name = %s",
                (keyspace, table),
            )
        )
    except Exception:  # noqa: BLE001 - not Amazon Keyspaces (no system_schema_mcs): the status is unknown
        return "unknown", None
    properties = (found[0].get("custom_properties") or {}) if found else {}
    spec = properties.get("cdc_specification") or {}
    status = str(spec.get("status", "DISABLED")).upper()
    view_type = spec.get("view_type")
    return status, str(view_type).upper() if view_type else None


def text_lengths(
    session: Any, table: KsTable, columns: Sequence[str], sample_rows: int = SAMPLE_ROWS
) -> tuple[dict[str, float], int]:
    """Mean character length of each of ``columns`` over the first ``sample_rows`` rows (a null counts as 0), and
    the number of rows sampled."""
    if not columns:
        return {}, 0
    names = ", ".join(f'"{name}"' for name in columns)
    # Names come from system_schema (quoted); the limit is an int.
    rows = list(session.execute(f'SELECT {names} FROM "{table.keyspace}"."{table.table}" LIMIT {int(sample_rows)}'))  # noqa: S608
    if not rows:
        return dict.fromkeys(columns, 0.0), 0
    return {name: sum(len(str(row.get(name) or "")) for row in rows) / len(rows) for name in columns}, len(rows)
