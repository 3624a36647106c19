"""The documented rules the oracle judges the index by, written out for the soak's columns.

Nothing here calls the code under test (``freshvec.metadata``, the CQL type registry, ``freshvec.keys``,
``freshvec.plan``): each rule is written from its documentation, so a mistake in the pipeline cannot hide in
the oracle as well.

- vector key: the compact JSON array of the key values in key order (``freshvec/keys.py``'s docstring,
  docs/sink.md); over S3 Vectors' 1,024 characters it is poison;
- metadata: docs/sink.md "Metadata (what filters see)": strings stay strings; integers are numbers, beyond
  ±2^53 decimal strings; float/double numbers; decimal a number; boolean; date an integer YYYYMMDD; timestamp
  epoch milliseconds UTC; list/set/tuple a list (nested collections as compact JSON text); map/udt a list of
  ``"key=value"`` strings (the value as its change-event text); empty collections and nulls left out; the
  embedded text under its column as a prefix of at most 32 KB; filterable metadata over 2 KB is poison;
- fingerprint (``_fp``): sha256 over ``json.dumps([model_id, dimensions, normalize, max_input_chars, text],
  ensure_ascii=False)``, the first 32 hex characters; version (``_ver``): the row's version as a decimal string.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from freshvec import constants as c
from freshvec.local.embedder import LOCAL_MAX_INPUT_CHARS

MAX_KEY_CHARS = 1024  # https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-limitations.html
MAX_FILTERABLE_BYTES = 2048  # same page: filterable metadata per vector
MAX_TOTAL_METADATA_BYTES = 40 * 1024  # same page: all metadata per vector
MAX_STORED_TEXT_BYTES = 32 * 1024  # docs/sink.md: the embedded text is stored as a prefix of at most 32 KB
MAX_EXACT_INTEGER = 2**53  # a metadata number is a double: integers beyond this would round
_NON_FINITE = ("NaN", "Infinity", "-Infinity")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Local mode: WordLlama at 256 dimensions, normalised, texts cut like Titan's (docs/local.md).
LOCAL_EMBEDDING = {"model_id": c.LOCAL_WORDLLAMA, "dimensions": 256, "normalize": True}

Converter = Callable[[Any], Any]


class Poison(ValueError):
    """The row cannot be stored: the sink must refuse it (and park its change)."""


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---- scalar conversions (docs/sink.md's table, one line each) -------------------------------------
def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _integer(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value if abs(value) <= MAX_EXACT_INTEGER else str(value)


def _number(value: Any) -> float | str:
    if isinstance(value, str) and value in _NON_FINITE:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _decimal(value: Any) -> float:
    return float(Decimal(_string(value)))


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {value!r}")
    return value


def _date(value: Any) -> int:
    day = date.fromisoformat(_string(value))
    return day.year * 10_000 + day.month * 100 + day.day


def _timestamp(value: Any) -> int:
    moment = datetime.fromisoformat(_string(value).replace("Z", "+00:00"))
    return (moment - _EPOCH) // timedelta(milliseconds=1)


# ---- collections -------------------------------------------------------------------------------
def _elements(*converters: Converter, nested: bool = False) -> Converter:
    """list/set (one converter for every element) and tuple (one per position): a list, empty left out."""

    def convert(value: Any) -> list[Any] | None:
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {value!r}")
        each = converters * len(value) if len(converters) == 1 else converters
        items = [compact_json(item) if nested else to(item) for item, to in zip(value, each, strict=False)]
        return [item for item in items if item is not None] or None

    return convert


def _event_text(value: Any) -> str:
    return value if isinstance(value, str) else compact_json(value)


def _pairs(value: Any) -> list[str] | None:
    """map (an object, or an array of [key, value] pairs for non-text keys) and udt: "key=value" strings."""
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(pairs, list):
        raise TypeError(f"expected an object or pairs, got {value!r}")
    return [f"{_event_text(k)}={_event_text(v)}" for k, v in pairs] or None


# The conversion of every column type the soak's table has (freshvec/testing/soak/config.py). A type not listed
# here fails the oracle loudly: a new column needs its documented rule written here first.
COLUMN_RULES: dict[str, Converter] = {
    "text": _string,
    "varchar": _string,
    "ascii": _string,
    "time": _string,
    "duration": _string,
    "inet": _string,
    "uuid": _string,
    "timeuuid": _string,
    "blob": _string,  # base64, as the change event carries it
    "int": _integer,
    "bigint": _integer,
    "smallint": _integer,
    "tinyint": _integer,
    "varint": _integer,
    "float": _number,
    "double": _number,
    "decimal": _decimal,
    "boolean": _boolean,
    "date": _date,
    "timestamp": _timestamp,
    "list<text>": _elements(_string),
    "set<int>": _elements(_integer),
    "map<text, int>": _pairs,
    "map<int, text>": _pairs,
    "tuple<double, double>": _elements(_number, _number),
    "frozen<list<frozen<list<int>>>>": _elements(_string, nested=True),
    "udt<person>": _pairs,
}


def convert(value: Any, type_text: str) -> Any:
    """One column value as metadata (None: the key is left out)."""
    if value is None:
        return None
    rule = COLUMN_RULES.get(type_text)
    if rule is None:
        raise KeyError(f"the oracle has no documented metadata rule for column type {type_text!r}")
    return rule(value)


def entry_bytes(key: str, value: Any) -> int:
    """One metadata entry's size as JSON text (key, colon, value), UTF-8."""
    return len(compact_json(key).encode("utf-8")) + 1 + len(compact_json(value).encode("utf-8"))


# ---- the table's settings the rules need ----------------------------------------------------------
class SoakRules:
    """The rules applied to the soak's table: from the config dict (SOAK_CONFIG), not the parsed config."""

    def __init__(self, config: Mapping[str, Any], *, max_input_chars: int = LOCAL_MAX_INPUT_CHARS) -> None:
        self.columns: dict[str, str] = dict(config["columns"])
        self.key_columns: list[str] = [*config["partition_key"], *config.get("clustering_key", [])]
        self.text_field: str = config["embedding_field"]
        self.metadata_fields: list[str] = [f for f in config["metadata_fields"] if f != self.text_field]
        self.non_filterable = {*config["vector_store"].get("non_filterable_keys", []), self.text_field}
        self.max_input_chars = max_input_chars
        for name in self.metadata_fields:
            if self.columns[name] not in COLUMN_RULES:
                raise KeyError(f"column {name}: no documented metadata rule for {self.columns[name]!r}")

    def vector_key(self, row: Mapping[str, Any]) -> str:
        """The vector key; Poison when a key column is null or the key is over 1,024 characters."""
        values = [row.get(column) for column in self.key_columns]
        if any(value is None for value in values):
            raise Poison("a primary key column is missing or null")
        key = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
        if len(key) > MAX_KEY_CHARS:
            raise Poison(f"vector key is {len(key)} characters, over {MAX_KEY_CHARS}")
        return key

    def metadata(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row's configured columns as metadata (without the text and the pipeline's keys); Poison when the
        filterable part is over 2 KB."""
        metadata = {}
        for name in self.metadata_fields:
            value = convert(row.get(name), self.columns[name])
            if value is not None:
                metadata[name] = value
        filterable = sum(entry_bytes(k, v) for k, v in metadata.items() if k not in self.non_filterable)
        if filterable > MAX_FILTERABLE_BYTES:
            raise Poison(f"filterable metadata is {filterable} bytes, over {MAX_FILTERABLE_BYTES}")
        text = row.get(self.text_field)
        total = sum(entry_bytes(k, v) for k, v in metadata.items())
        if total + (entry_bytes(self.text_field, "") if text else 0) > MAX_TOTAL_METADATA_BYTES:
            raise Poison(f"metadata is {total} bytes, over {MAX_TOTAL_METADATA_BYTES}")
        return metadata

    def stored_text_ok(self, text: str, stored: Any) -> bool:
        """The stored text is the whole text when it fits 32 KB, else a non-empty prefix that fits."""
        if entry_bytes(self.text_field, text) <= MAX_STORED_TEXT_BYTES:
            return stored == text
        return (
            isinstance(stored, str)
            and bool(stored)
            and text.startswith(stored)
            and (entry_bytes(self.text_field, stored) <= MAX_STORED_TEXT_BYTES)
        )

    def fingerprint(self, text: str, embedding: Mapping[str, Any] = LOCAL_EMBEDDING) -> str:
        material = [embedding["model_id"], embedding["dimensions"], embedding["normalize"], self.max_input_chars, text]
        return hashlib.sha256(json.dumps(material, ensure_ascii=False).encode("utf-8")).hexdigest()[:32]

    def key_of(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {column: values.get(column) for column in self.key_columns}

    def canonical_key(self, values: Mapping[str, Any] | Sequence[Any]) -> str:
        """A primary key as text, whatever its length (poison keys included), to match DLQ payloads by."""
        items = list(values) if not isinstance(values, Mapping) else [values.get(k) for k in self.key_columns]
        return json.dumps(items, separators=(",", ":"), ensure_ascii=False)
