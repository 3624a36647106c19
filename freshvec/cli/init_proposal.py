"""What ``freshvec init`` proposes for a table: the column to embed, the metadata, and the config that says so.

Works on a source-neutral ``TableShape`` (the PostgreSQL catalog or Keyspaces ``system_schema`` turned into
columns), so both sources choose by the same rules, each with its reason:

- the embedded text: the longest text column (mean length over a sample of rows) that is not a key column; an
  empty table has nothing to measure, so the first unbounded text column (``text``), else the first text column;
- the metadata: every other column a filter can use, except text that is too long to be filterable (a
  vector's filterable metadata is at most 2 KiB: S3 Vectors limits) and binary or unknown columns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from freshvec import constants as c
from freshvec.cli.errors import OperatorError

# A text column longer than this on average would take an eighth of a vector's filterable metadata on its own.
LONG_TEXT_CHARS = c.S3V_MAX_FILTERABLE_METADATA_BYTES // 8


@dataclass(frozen=True)
class ShapeColumn:
    name: str
    type: str  # as the config writes it
    is_text: bool
    is_key: bool = False
    filterable: bool = True  # False: binary, unknown or unsupported; never proposed as metadata
    bounded: bool = False  # a length limit in the type (varchar(255)): a title, rarely a passage
    note: str = ""  # what the source says besides the type (NOT NULL, SERIAL, ...)


@dataclass(frozen=True)
class TableShape:
    source: str  # postgres, keyspaces
    name: str  # schema.table or keyspace.table
    columns: tuple[ShapeColumn, ...]
    lengths: dict[str, float] = field(default_factory=dict)  # text column -> mean length over the sample
    sampled_rows: int = 0

    def column(self, name: str) -> ShapeColumn | None:
        return next((col for col in self.columns if col.name == name), None)


@dataclass(frozen=True)
class Proposal:
    embedding_field: str
    metadata_fields: tuple[str, ...]
    reasons: tuple[str, ...]  # one line per choice, for the terminal


def propose(shape: TableShape, embedding_field: str | None = None, metadata: Sequence[str] | None = None) -> Proposal:
    """The embedded text and metadata (the given ones, checked, else chosen), with one reason line per choice."""
    reasons: list[str] = []
    embed = _embedding_field(shape, embedding_field, reasons)
    fields = _metadata(shape, embed, metadata, reasons)
    return Proposal(embed, fields, tuple(reasons))


def _embedding_field(shape: TableShape, given: str | None, reasons: list[str]) -> str:
    texts = [col for col in shape.columns if col.is_text and not col.is_key]
    if given is not None:
        column = shape.column(given)
        if column is None:
            raise OperatorError(
                f"--embedding-field {given!r}: {shape.name} has no such column; columns: {_names(shape)}"
            )
        if not column.is_text:
            raise OperatorError(f"--embedding-field {given!r} is {column.type}, not text; text columns: "
                                f"{', '.join(col.name for col in texts) or 'none'}")  # fmt: skip
        if column.is_key:
            raise OperatorError(f"--embedding-field {given!r} is a primary key column; the embedded text cannot be one")
        reasons.append(f"embedding field: {given} (given)")
        return given
    if not texts:
        raise OperatorError(
            f"{shape.name} has no text column outside the primary key to embed; columns: {_names(shape)}"
        )
    measured = {col.name: shape.lengths.get(col.name, 0.0) for col in texts}
    if shape.sampled_rows and any(measured.values()):
        best = max(texts, key=lambda col: measured[col.name])  # the first of equals: max keeps the earliest
        others = ", ".join(f"{col.name} {measured[col.name]:,.0f}" for col in texts if col is not best)
        reasons.append(
            f"embedding field: {best.name}, the longest text: {measured[best.name]:,.0f} characters on average over "
            f"{shape.sampled_rows} sampled row(s)" + (f" (other text columns: {others})" if others else "")
        )
        return best.name
    unbounded = [col for col in texts if not col.bounded]
    best = (unbounded or texts)[0]
    why = "the first text column without a length limit" if unbounded else "the first text column"
    reasons.append(f"embedding field: {best.name}, {why} (the table has no rows to measure yet)")
    return best.name


def _metadata(shape: TableShape, embed: str, given: Sequence[str] | None, reasons: list[str]) -> tuple[str, ...]:
    if given is not None:
        unknown = [name for name in given if shape.column(name) is None]
        if unknown:
            raise OperatorError(
                f"--metadata {', '.join(unknown)}: not columns of {shape.name}; columns: {_names(shape)}"
            )
        chosen = tuple(dict.fromkeys(name for name in given if name != embed))
        reasons.append(f"metadata: {', '.join(chosen) or 'none'} (given)")
        return chosen
    chosen_list: list[str] = []
    skipped: list[str] = []
    for col in shape.columns:
        if col.name == embed:
            continue
        if not col.filterable:
            skipped.append(f"{col.name} ({col.type}: not filterable)")
        elif col.is_text and shape.lengths.get(col.name, 0.0) > LONG_TEXT_CHARS:
            skipped.append(f"{col.name} ({shape.lengths[col.name]:,.0f} characters on average: too long to filter on)")
        else:
            chosen_list.append(col.name)
    reasons.append(f"metadata: {', '.join(chosen_list) or 'none'} (every other column a query can filter on)")
    if skipped:
        reasons.append(f"left out of metadata: {'; '.join(skipped)}")
    return tuple(chosen_list)


def _names(shape: TableShape) -> str:
    return ", ".join(col.name for col in shape.columns)


def index_name(table: str) -> str:
    """An S3 Vectors index name from a table name: lowercase letters, digits and hyphens, 3 characters at least."""
    name = re.sub(r"[^a-z0-9]+", "-", table.lower()).strip("-")
    return (name or "index").ljust(3, "0")[:40].rstrip("-")


def build_config(
    shape: TableShape,
    proposal: Proposal,
    *,
    source: dict[str, Any] | None = None,
    keyspaces: dict[str, Any] | None = None,
    stack_name: str = "freshvec",
) -> dict[str, Any]:
    """The config document: ``source`` (a postgres source object) or ``keyspaces`` (keyspace, table, columns,
    keys), the proposal, and the defaults a first run needs spelled out."""
    table = shape.name.split(".", 1)[1]
    document: dict[str, Any] = {"stack_name": stack_name}
    if source is not None:
        document["source"] = source
    if keyspaces is not None:
        document.update(keyspaces)
    document["embedding_field"] = proposal.embedding_field
    document["metadata_fields"] = list(proposal.metadata_fields)
    document["embedding"] = {"provider": "titan"}
    document["vector_store"] = {"index_name": index_name(table), "distance_metric": "cosine"}
    return document
