"""Keyspaces Streams cells <-> change-event JSON values, and a stream record -> ``ChangeEvent``.

A cell arrives as boto3 parses the ``keyspacesstreams`` model: ``{"value": <union>, "metadata": {...}}``
where the union has exactly one member (``textT``, ``intT``, ``listT``, ...). Numbers arrive as strings,
``blobT`` as bytes, ``boolT`` as a bool; collections nest cells (``listT``/``setT``/``tupleT``), map
entries (``mapT``: ``{"key": <union>, "value": <union>}``) or named cells (``udtT``). A member this
botocore does not know arrives as ``{"SDK_UNKNOWN_MEMBER": {"name": ...}}``.

Reading never raises: a member this version does not know, or a value it cannot read, becomes
``{"$unknown": "<member>", "value": "<raw text>"}`` so the change still travels and nothing is lost.
Writing (``json_to_cell``) is strict: a value that does not fit the column type raises ValueError.

How each CQL type reads and writes its cells lives in the type registry (``freshvec.sources.keyspaces.types``);
this module works on whole cells, images and records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from freshvec.constants import ORIGINS
from freshvec.errors import PoisonRecordError
from freshvec.events import ChangeEvent, format_timestamp
from freshvec.sources.keyspaces.cqltypes import CqlType
from freshvec.sources.keyspaces.types import UNKNOWN_TAG, as_datetime, cell_to_json, json_to_value, value_to_json
from freshvec.versions import KsChange

STREAM_ORIGINS = tuple(o for o in ORIGINS if o in ("USER", "REPLICATION", "TTL"))  # what Keyspaces writes

__all__ = [
    "UNKNOWN_TAG",
    "cell_to_json",
    "image_to_row",
    "json_to_cell",
    "json_to_value",
    "keys_to_json",
    "record_to_event",
    "row_to_image",
    "value_to_json",
]


# ---------------------------------------------------------------------------------------------
# Reading: Keyspaces images and records -> change-event rows and events
# ---------------------------------------------------------------------------------------------
def image_to_row(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A ``KeyspacesRow`` (static and regular cells) as one row dict; None when there is no image."""
    if not image:
        return None
    row: dict[str, Any] = {}
    for cells_name in ("staticCells", "valueCells"):
        for column, cell in (image.get(cells_name) or {}).items():
            row[column] = cell_to_json(cell)
    return row


def keys_to_json(keys: Mapping[str, Any] | None) -> dict[str, Any]:
    """``partitionKeys``/``clusteringKeys`` (column -> union value) as a dict of JSON values, in order."""
    return {column: value_to_json(value) for column, value in (keys or {}).items()}


def record_to_event(
    record: Mapping[str, Any],
    *,
    keyspace: str,
    table: str,
    shard_id: str,
    key_columns: Sequence[str] | None = None,
    lineage: tuple[str, int] = ("", 0),
) -> ChangeEvent:
    """One Keyspaces Streams record as a change event.

    ``op``: no new image -> EXPIRE for origin TTL, else DELETE; no old image -> INSERT; else UPDATE. A TTL
    record that still carries a new image (a column expired, the row remains) is an UPDATE with origin TTL.
    ``version`` is the row state's order (``record_version``; ``lineage``: the stream label and the shard's
    lineage depth, for the tie-break).
    ``key`` holds the partition then the clustering columns (or ``key_columns`` order when given); the key
    columns are also put into each image so ``new``/``old`` are whole rows. Raises PoisonRecordError for a
    record that cannot become an event (no sequence number, no key, no time, an unknown origin).
    """
    seq = record.get("sequenceNumber")
    if not seq:
        raise PoisonRecordError(f"stream record in shard {shard_id} has no sequenceNumber")
    origin = record.get("origin") or "USER"
    if origin not in STREAM_ORIGINS:
        raise PoisonRecordError(f"stream record {seq} has origin {origin!r}, not one of USER, REPLICATION, TTL")
    key = {**keys_to_json(record.get("partitionKeys")), **keys_to_json(record.get("clusteringKeys"))}
    if not key:
        raise PoisonRecordError(f"stream record {seq} has no partition key")
    if key_columns is not None:
        missing = [column for column in key_columns if column not in key]
        if missing:
            raise PoisonRecordError(f"stream record {seq} lacks key column(s) {', '.join(missing)}")
        key = {column: key[column] for column in key_columns} | key
    created_at = record.get("createdAt")
    if created_at is None:
        raise PoisonRecordError(f"stream record {seq} has no createdAt")
    try:
        ts = format_timestamp(as_datetime(created_at))
    except (ValueError, TypeError, OverflowError) as exc:
        raise PoisonRecordError(f"stream record {seq} has an unreadable createdAt {created_at!r}") from exc

    new = image_to_row(record.get("newImage"))
    old = image_to_row(record.get("oldImage"))
    if new is None:
        op = "EXPIRE" if origin == "TTL" else "DELETE"
    elif old is None:
        op = "INSERT"
    else:
        op = "UPDATE"
    return ChangeEvent(
        keyspace=keyspace,
        table=table,
        op=op,
        key=key,
        new=None if new is None else {**key, **new},
        old=None if old is None else {**key, **old},
        seq=str(seq),
        shard=shard_id,
        ts=ts,
        origin=origin,
        version=record_version(record, lineage).text(),
    )


def record_version(record: Mapping[str, Any], lineage: tuple[str, int] = ("", 0)) -> KsChange:
    """Where a record's row state sits in the key's order: its ``createdAt`` (the service's clock, µs), then its
    stream position (stream label, lineage depth, sequence number) as the tie-break, so a duplicate or a stray
    re-send of one record has the same version and two records of one key never tie.

    Cell write times are not used: a client's ``USING TIMESTAMP`` is another clock, an expiring or nulled cell
    takes its write time with it, and key columns and collections have none a re-sync could read.
    """
    created_at = record.get("createdAt")
    seq = str(record.get("sequenceNumber") or "")
    try:
        created_us = to_micros(created_at)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PoisonRecordError(f"stream record {seq} has an unreadable createdAt {created_at!r}") from exc
    if not seq.isdigit():
        raise PoisonRecordError(f"stream record sequence number {seq!r} is not a decimal number")
    label, depth = lineage
    return KsChange(created_us, label, depth, int(seq))


def to_micros(value: Any) -> int:
    """A write time as microseconds since the epoch: CQL's WRITETIME unit.

    Accepts an integer or digit string in microseconds (WRITETIME), an ISO 8601 text or a datetime
    (``createdAt``); digit strings too short to be microseconds are read as milliseconds or seconds.
    """
    if isinstance(value, int | str) and str(value).lstrip("-").isdigit():
        number = int(value)
        if abs(number) < 10**11:  # seconds (until the year 5138)
            return number * 1_000_000
        if abs(number) < 10**14:  # milliseconds
            return number * 1_000
        return number
    moment = as_datetime(value)
    return int(moment.timestamp() * 1_000_000)


# ---------------------------------------------------------------------------------------------
# Writing: change-event JSON values -> Keyspaces cells and images (the local table, tests)
# ---------------------------------------------------------------------------------------------
def json_to_cell(value: Any, cql_type: CqlType) -> dict[str, Any]:
    """A ``KeyspacesCell`` holding ``value`` as a column of ``cql_type``; ValueError if it does not fit.

    ``None`` gives a cell with no value (a null tuple element); columns that are null are simply left out
    of an image.
    """
    if value is None:
        return {}
    return {"value": json_to_value(value, cql_type)}


def row_to_image(
    row: Mapping[str, Any],
    column_types: Mapping[str, CqlType],
    *,
    static_columns: Sequence[str] = (),
) -> dict[str, Any]:
    """A ``KeyspacesRow`` for a row of JSON values; null columns are left out.

    Raises ValueError naming the column for an unknown column or a value that does not fit its type.
    """
    value_cells: dict[str, Any] = {}
    static_cells: dict[str, Any] = {}
    for column, value in row.items():
        cql_type = column_types.get(column)
        if cql_type is None:
            raise ValueError(f"column '{column}' is not a column of the table")
        if value is None:
            continue
        try:
            cell = json_to_cell(value, cql_type)
        except ValueError as exc:
            raise ValueError(f"column '{column}' ({cql_type}): {exc}") from exc
        (static_cells if column in static_columns else value_cells)[column] = cell
    image: dict[str, Any] = {"valueCells": value_cells}
    if static_cells:
        image["staticCells"] = static_cells
    return image
