"""Row image -> S3 Vectors metadata: the configured columns converted for filtering, within the index limits.

Conversions (event cell value, see docs/change-event.md -> metadata value; each CQL type's ``to_metadata`` in
``freshvec.sources.keyspaces.types``):

- text, ascii, varchar, time, duration, inet, uuid, timeuuid, blob (base64) -> string, unchanged
- int, bigint, smallint, tinyint, varint, counter -> number; beyond +-2**53 a decimal string, because
  metadata numbers are doubles and would silently round
- float, double -> number (``"NaN"``/``"Infinity"`` stay strings: JSON has no number for them)
- decimal -> number (``"12.50"`` -> ``12.5``)
- boolean -> boolean
- date -> integer ``YYYYMMDD`` (``"1993-06-11"`` -> ``19930611``): sorts like the date, works with
  ``$gt/$lt``, and reads back digit by digit (``date_from_metadata``)
- timestamp -> integer epoch milliseconds UTC (``timestamp_from_metadata`` reads it back)
- list, set, tuple -> list of the converted elements (nested collections as compact JSON text)
- map, udt -> list of ``"key=value"`` strings (value as its event text), so ``{"$eq": "lang=en"}`` matches
- empty collections and nulls -> the key is left out (Cassandra stores an empty collection as null)
- an unknown cell type (``{"$unknown": tag, "value": text}``) -> its raw text

The sink adds ``_seq`` (source sequence number, string) and ``_changed_at`` (epoch milliseconds): provenance,
not filters, so both are always non-filterable (``c.PIPELINE_NON_FILTERABLE_KEYS``) and never count against
the 2 KB of filterable metadata. The
embedded text is stored under the embedding field's name as a prefix of at most ``MAX_STORED_TEXT_BYTES``
(and never more than what the other fields leave of the 40 KB total), so a long text can never make a row
unstorable; the whole text stays in the table, which the vector key points back to.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.errors import MisconfigurationError, PoisonRecordError
from freshvec.sources.keyspaces.cqltypes import CqlType
from freshvec.sources.keyspaces.types import (
    MetadataValue,
    compact_json,
    date_from_metadata,
    date_number,
    decimal_number,
    epoch_millis,
    timestamp_from_metadata,
    to_metadata_value,
)
from freshvec.sources.postgres.types import to_metadata as pg_to_metadata

__all__ = [
    "MAX_STORED_TEXT_BYTES",
    "S3V_MAX_METADATA_KEYS",
    "MetadataBuilder",
    "MetadataValue",
    "convert_value",
    "date_from_metadata",
    "date_number",
    "decimal_number",
    "entry_bytes",
    "epoch_millis",
    "metadata_bytes",
    "passages_cut",
    "text_prefix",
    "timestamp_from_metadata",
]

MAX_STORED_TEXT_BYTES = 32 * 1024  # leaves at least 8 KB of the 40 KB total for the other columns
S3V_MAX_METADATA_KEYS = 50  # metadata keys per vector


class MetadataBuilder:
    """Builds the metadata of one vector from a row image, checking S3 Vectors' size limits."""

    def __init__(self, config: PipelineConfig) -> None:
        types = config.column_types
        pg_types = config.pg_column_types  # a PostgreSQL source: each column converts by its own type
        self._fields: list[tuple[str, Any]] = [
            (name, pg_types[name] if pg_types is not None else types[name])
            for name in config.metadata_fields
            if name != config.embedding_field
        ]
        self._text_field = config.embedding_field
        self._non_filterable = frozenset(config.non_filterable_keys)
        if len(config.metadata_keys) > S3V_MAX_METADATA_KEYS:
            raise MisconfigurationError(
                f"{len(config.metadata_keys)} metadata keys configured; S3 Vectors allows {S3V_MAX_METADATA_KEYS}"
            )

    def build(
        self,
        row: Mapping[str, Any],
        *,
        seq: str,
        changed_at: datetime,
        fingerprint: str | None = None,
        version: str | None = None,
        chunk: tuple[int, int] | None = None,
        text: str | None = None,
    ) -> dict[str, MetadataValue]:
        """Metadata for ``row``; PoisonRecordError naming the column or limit when it cannot be stored.

        ``fingerprint`` and ``version`` (``freshvec.plan``; the version is the ``_ver`` text, write id and
        version, ``freshvec.versions.stamp``) are what keeps the index exact; the sink always passes them.
        For one chunk of a row (``freshvec.chunking``), ``chunk`` is (its number, the row's chunk count) and
        ``text`` its own text, stored in place of the row's; chunk 0 also carries the count.
        """
        metadata: dict[str, MetadataValue] = {}
        for name, column_type in self._fields:
            value = row.get(name)
            try:
                if isinstance(column_type, str):
                    converted = pg_to_metadata(value, column_type)
                else:
                    converted = convert_value(value, column_type)
            except (TypeError, ValueError) as exc:
                raise PoisonRecordError(f"column '{name}' ({column_type}): {exc}") from exc
            if converted is not None:
                metadata[name] = converted
        metadata[c.META_SEQUENCE] = seq
        metadata[c.META_CHANGED_AT] = epoch_millis(changed_at)
        if fingerprint is not None:
            metadata[c.META_FINGERPRINT] = fingerprint
        if version is not None:
            metadata[c.META_VERSION] = version
        if chunk is not None:
            number, count = chunk
            metadata[c.META_CHUNK] = number
            if number == 0:
                metadata[c.META_CHUNKS] = count
        sizes = {k: entry_bytes(k, v) for k, v in metadata.items()}  # each entry measured once
        if text is None:
            text = row.get(self._text_field)
        if isinstance(text, str) and text:
            budget = min(MAX_STORED_TEXT_BYTES, c.S3V_MAX_TOTAL_METADATA_BYTES - sum(sizes.values()))
            stored_text = text_prefix(self._text_field, text, budget)
            metadata[self._text_field] = stored_text
            sizes[self._text_field] = entry_bytes(self._text_field, stored_text)
        self.check_limits(metadata, sizes)
        return metadata

    def check_limits(self, metadata: Mapping[str, Any], sizes: Mapping[str, int] | None = None) -> None:
        """PoisonRecordError if ``metadata`` exceeds S3 Vectors' limits; ``sizes``: its ``entry_bytes``, if known."""
        if sizes is None:
            sizes = {k: entry_bytes(k, v) for k, v in metadata.items()}
        filterable = [k for k in metadata if k not in self._non_filterable]
        filterable_size = sum(sizes[k] for k in filterable)
        if filterable_size > c.S3V_MAX_FILTERABLE_METADATA_BYTES:
            largest = sorted(filterable, key=lambda k: -sizes[k])[:3]
            raise PoisonRecordError(
                f"filterable metadata is {filterable_size} bytes; S3 Vectors allows "
                f"{c.S3V_MAX_FILTERABLE_METADATA_BYTES} (largest: {', '.join(largest)}; list long columns in "
                "vector_store.non_filterable_keys)"
            )
        total = sum(sizes.values())
        if total > c.S3V_MAX_TOTAL_METADATA_BYTES:
            raise PoisonRecordError(
                f"metadata is {total} bytes; S3 Vectors allows {c.S3V_MAX_TOTAL_METADATA_BYTES} in total"
            )

    @property
    def text_field(self) -> str:
        return self._text_field


def convert_value(value: Any, cql_type: CqlType) -> MetadataValue | None:
    """One event cell value as a metadata value (None: leave the key out); ValueError/TypeError if invalid.

    Each CQL type's conversion is its ``to_metadata`` in the type registry (``freshvec.sources.keyspaces.types``).
    """
    return to_metadata_value(value, cql_type)


def entry_bytes(key: str, value: Any) -> int:
    """Size of one metadata entry as JSON text (key and value), the measure the limits are checked with."""
    return _key_bytes(key) + 1 + _json_bytes(value)


@functools.lru_cache(maxsize=1024)  # the keys are the config's few columns and the pipeline's own
def _key_bytes(key: str) -> int:
    return _json_bytes(key)


_encode_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) encodes a str with


def _json_bytes(value: Any) -> int:
    """``len(compact_json(value).encode())``, with the common scalars encoded as json does without its setup."""
    kind = type(value)
    if kind is str:
        text = _encode_string(value)
    elif kind is int:
        text = int.__repr__(value)
    elif kind is float and math.isfinite(value):
        text = float.__repr__(value)
    else:
        text = compact_json(value)
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def metadata_bytes(metadata: Mapping[str, Any]) -> int:
    return sum(entry_bytes(k, v) for k, v in metadata.items())


def passages_cut(written: Iterable[Mapping[str, Any]], chunks: Iterable[Any], text_field: str) -> int:
    """Chunks among the ``written`` vectors whose passage ``build`` stored as a prefix to fit the metadata limits;
    the sink counts them (``SearchableTextCut``), so a cut is never silent. ``chunks``: objects with ``key`` and
    ``text`` (the sink's chunk plans)."""
    stored = {v["key"]: (v.get("metadata") or {}).get(text_field) for v in written}
    return sum(1 for chunk in chunks if chunk.key in stored and stored[chunk.key] != chunk.text)


def text_prefix(key: str, text: str, budget_bytes: int) -> str:
    """The longest prefix of ``text`` whose metadata entry fits ``budget_bytes`` (empty if nothing fits)."""
    if entry_bytes(key, text) <= budget_bytes:
        return text
    overhead = entry_bytes(key, "")
    room = max(0, budget_bytes - overhead)
    prefix = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    # JSON escaping (quotes, control characters) can make the entry larger than its UTF-8 bytes.
    while prefix and entry_bytes(key, prefix) > budget_bytes:
        excess = entry_bytes(key, prefix) - budget_bytes
        prefix = prefix[: max(0, len(prefix) - max(1, excess // 2))]
    return prefix
