"""Vector keys and Kinesis partition keys, both derived from a row's whole primary key.

A vector key is the compact JSON array of the key column values in the configured order, e.g.
``["Jurassic Park"]`` or ``["shop-1",42,"2026-01-31"]``: deterministic (same row -> same key), reversible
with the config's key columns, and unambiguous for any value (quotes and commas are escaped by JSON).
Because the key always ends with ``]``, a suffix is free for chunked rows: chunk 0 of a row is stored under
the row's key, chunk *n* > 0 under ``<row key>#<n>`` (``chunk_key``), and ``split_chunk_key`` reads both back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from freshvec.constants import CHUNK_KEY_SEPARATOR, KINESIS_MAX_PARTITION_KEY_CHARS, S3V_MAX_KEY_CHARS
from freshvec.errors import PoisonRecordError


def vector_key(key_values: Mapping[str, Any], key_columns: Sequence[str]) -> str:
    """The vector key of a row; PoisonRecordError if a key column is missing/null or the key is too long."""
    values = []
    for column in key_columns:
        value = key_values.get(column)
        if value is None:
            raise PoisonRecordError(f"primary key column '{column}' is missing or null")
        values.append(value)
    key = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    if len(key) > S3V_MAX_KEY_CHARS:
        raise PoisonRecordError(f"vector key is {len(key)} characters; S3 Vectors allows at most {S3V_MAX_KEY_CHARS}")
    return key


def parse_vector_key(key: str, key_columns: Sequence[str]) -> dict[str, Any]:
    """The primary key values a vector key was built from (ValueError if it was not built by ``vector_key``:
    JSON in another spelling, such as ``[ 1 ]`` or ``["\\u0041"]``, names no row — the sink never writes it)."""
    values = json.loads(key)
    if not isinstance(values, list) or len(values) != len(key_columns):
        raise ValueError(f"{key!r} is not a vector key for columns {', '.join(key_columns)}")
    parsed = dict(zip(key_columns, values, strict=True))
    try:
        canonical = vector_key(parsed, key_columns)
    except PoisonRecordError as exc:
        raise ValueError(f"{key!r} is not a vector key: {exc}") from exc
    if canonical != key:
        raise ValueError(f"{key!r} is not a vector key as the sink writes it ({canonical!r})")
    return parsed


STRAY_KEY_FIELD = "$vector"  # a repair's key naming a stored vector key that names no row: {"$vector": "<key>"}


def stray_vector_key(event_key: Mapping[str, Any], key_columns: Sequence[str]) -> str | None:
    """The vector key a repair names directly (``{"$vector": key}``), or None when the event names a row.

    Reconcile names a key this way only when the table says no row's vectors live under it: a key in another
    spelling than the sink writes, or one whose row the table returns under another key (``["7"]`` for the
    integer 7). The removal is compare-and-set on the write reconcile saw (``if_wid``), like every repair."""
    if set(event_key) != {STRAY_KEY_FIELD}:
        return None
    key = event_key[STRAY_KEY_FIELD]
    if not isinstance(key, str) or not key:
        raise PoisonRecordError(f"'{STRAY_KEY_FIELD}' must name a vector key")
    return key


def chunk_key(row_key: str, number: int) -> str:
    """The vector key of chunk ``number`` of the row ``row_key``; PoisonRecordError past the key length limit."""
    if number < 0:
        raise ValueError(f"chunk numbers start at 0, got {number}")
    key = row_key if number == 0 else f"{row_key}{CHUNK_KEY_SEPARATOR}{number}"
    if len(key) > S3V_MAX_KEY_CHARS:
        raise PoisonRecordError(
            f"vector key of chunk {number} is {len(key)} characters; S3 Vectors allows at most {S3V_MAX_KEY_CHARS}"
        )
    return key


def split_chunk_key(key: str) -> tuple[str, int]:
    """``(row key, chunk number)`` of a stored vector key (a key without a suffix is chunk 0)."""
    row_key, separator, suffix = key.rpartition(CHUNK_KEY_SEPARATOR)
    if separator and row_key.endswith("]") and suffix.isdigit() and not suffix.startswith("0"):
        return row_key, int(suffix)
    return key, 0


def partition_key(vector_key_text: str) -> str:
    """Kinesis partition key for a row: its vector key, hashed when longer than Kinesis allows.

    All changes of one row share it, so they land on one Kinesis shard in order.
    """
    if len(vector_key_text) <= KINESIS_MAX_PARTITION_KEY_CHARS:
        return vector_key_text
    return "sha256:" + hashlib.sha256(vector_key_text.encode("utf-8")).hexdigest()
