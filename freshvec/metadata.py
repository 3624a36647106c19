"""Row image -> S3 Vectors metadata: the configured columns converted for filtering, within the index limits.

Conversions (event cell value, see docs/change-event.md -> metadata value):

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

import json
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.errors import MisconfigurationError, PoisonRecordError
from freshvec.events import parse_timestamp
from freshvec.sources.keyspaces.cqltypes import FLOAT_TYPES, INTEGER_TYPES, TEXT_TYPES, CqlType

MAX_STORED_TEXT_BYTES = 32 * 1024  # leaves at least 8 KB of the 40 KB total for the other columns
S3V_MAX_METADATA_KEYS = 50  # metadata keys per vector
_MAX_EXACT_INT = 2**53
_STRING_TYPES = TEXT_TYPES | {"time", "duration", "inet", "uuid", "timeuuid", "blob"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MetadataValue = str | int | float | bool | list[str | int | float | bool]


class MetadataBuilder:
    """Builds the metadata of one vector from a row image, checking S3 Vectors' size limits."""

    def __init__(self, config: PipelineConfig) -> None:
        types = config.column_types
        self._fields = [(name, types[name]) for name in config.metadata_fields if name != config.embedding_field]
        self._text_field = config.embedding_field
        self._non_filterable = frozenset(config.non_filterable_keys)
        if len(config.metadata_keys) > S3V_MAX_METADATA_KEYS:
            raise MisconfigurationError(
                f"{len(config.metadata_keys)} metadata keys configured; S3 Vectors allows {S3V_MAX_METADATA_KEYS}"
            )

    def build(self, row: Mapping[str, Any], *, seq: str, changed_at: datetime) -> dict[str, MetadataValue]:
        """Metadata for ``row``; PoisonRecordError naming the column or limit when it cannot be stored."""
        metadata: dict[str, MetadataValue] = {}
        for name, cql_type in self._fields:
            value = row.get(name)
            try:
                converted = convert_value(value, cql_type)
            except (TypeError, ValueError) as exc:
                raise PoisonRecordError(f"column '{name}' ({cql_type}): {exc}") from exc
            if converted is not None:
                metadata[name] = converted
        metadata[c.META_SEQUENCE] = seq
        metadata[c.META_CHANGED_AT] = epoch_millis(changed_at)
        text = row.get(self._text_field)
        if isinstance(text, str) and text:
            budget = min(MAX_STORED_TEXT_BYTES, c.S3V_MAX_TOTAL_METADATA_BYTES - metadata_bytes(metadata))
            metadata[self._text_field] = text_prefix(self._text_field, text, budget)
        self.check_limits(metadata)
        return metadata

    def check_limits(self, metadata: Mapping[str, Any]) -> None:
        filterable = {k: v for k, v in metadata.items() if k not in self._non_filterable}
        filterable_size = metadata_bytes(filterable)
        if filterable_size > c.S3V_MAX_FILTERABLE_METADATA_BYTES:
            largest = sorted(filterable, key=lambda k: -entry_bytes(k, filterable[k]))[:3]
            raise PoisonRecordError(
                f"filterable metadata is {filterable_size} bytes; S3 Vectors allows "
                f"{c.S3V_MAX_FILTERABLE_METADATA_BYTES} (largest: {', '.join(largest)}; list long columns in "
                "vector_store.non_filterable_keys)"
            )
        total = metadata_bytes(metadata)
        if total > c.S3V_MAX_TOTAL_METADATA_BYTES:
            raise PoisonRecordError(
                f"metadata is {total} bytes; S3 Vectors allows {c.S3V_MAX_TOTAL_METADATA_BYTES} in total"
            )

    @property
    def text_field(self) -> str:
        return self._text_field


def convert_value(value: Any, cql_type: CqlType) -> MetadataValue | None:  # noqa: PLR0911, PLR0912 - one branch per type
    """One event cell value as a metadata value (None: leave the key out); ValueError/TypeError if invalid."""
    if value is None:
        return None
    if isinstance(value, dict) and "$unknown" in value:
        return str(value.get("value", ""))
    base = cql_type.base
    name = base.name
    if name in _STRING_TYPES:
        return _expect(value, str, name)
    if name in INTEGER_TYPES:
        number = _expect(value, int, name)
        return number if abs(number) <= _MAX_EXACT_INT else str(number)
    if name in FLOAT_TYPES:
        if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if name == "decimal":
        return decimal_number(value)
    if name == "boolean":
        return _expect(value, bool, name)
    if name == "date":
        return date_number(_expect(value, str, name))
    if name == "timestamp":
        return epoch_millis(parse_timestamp(_expect(value, str, name)))
    if name in ("list", "set", "tuple"):
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        params = base.params if name == "tuple" else base.params * len(value)
        items = [_element(item, param) for item, param in zip(value, params, strict=False)]
        return [item for item in items if item is not None] or None
    if name in ("map", "udt"):
        if isinstance(value, dict):
            pairs: list[Any] = list(value.items())
        elif isinstance(value, list):
            pairs = value
        else:
            raise TypeError(f"expected an object or an array of pairs, got {type(value).__name__}")
        entries = []
        for pair in pairs:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise TypeError(f"expected [key, value] pairs, got {pair!r}")
            entries.append(f"{_cell_text(pair[0])}={_cell_text(pair[1])}")
        return entries or None
    raise TypeError(f"no metadata conversion for CQL type {cql_type}")


def _element(value: Any, cql_type: CqlType) -> str | int | float | bool | None:
    """A collection element: scalars converted like columns, nested collections as compact JSON text."""
    if cql_type.base.name in ("list", "set", "tuple", "map", "udt") or isinstance(value, list | dict):
        return _compact_json(value)
    converted = convert_value(value, cql_type)
    if isinstance(converted, list):  # unreachable for scalar types; keeps the element type honest
        return _compact_json(converted)
    return converted


def _expect(value: Any, kind: type, type_name: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise TypeError(f"expected a {type_name} value, got a boolean")
    if not isinstance(value, kind):
        raise TypeError(f"expected a {type_name} value ({kind.__name__}), got {value!r}")
    return value


def _cell_text(value: Any) -> str:
    return value if isinstance(value, str) else _compact_json(value)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decimal_number(value: Any) -> float:
    """An exact decimal string as a metadata number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"expected a decimal string, got {value!r}")
    try:
        number = float(Decimal(str(value)))
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a decimal") from exc
    if not math.isfinite(number):
        raise ValueError(f"{value!r} does not fit a metadata number")
    return number


def date_number(text: str) -> int:
    """``"1993-06-11"`` -> ``19930611``."""
    day = date.fromisoformat(text)
    return day.year * 10_000 + day.month * 100 + day.day


def date_from_metadata(number: int) -> date:
    """The inverse of ``date_number``."""
    return date(number // 10_000, number // 100 % 100, number % 100)


def epoch_millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def timestamp_from_metadata(millis: int) -> datetime:
    """The inverse of the timestamp conversion (UTC)."""
    return _EPOCH + timedelta(milliseconds=millis)


def entry_bytes(key: str, value: Any) -> int:
    """Size of one metadata entry as JSON text (key and value), the measure the limits are checked with."""
    return len(_compact_json(key).encode("utf-8")) + 1 + len(_compact_json(value).encode("utf-8"))


def metadata_bytes(metadata: Mapping[str, Any]) -> int:
    return sum(entry_bytes(k, v) for k, v in metadata.items())


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
