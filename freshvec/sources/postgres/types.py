"""PostgreSQL column types: their text form (what pgoutput sends and ``col::text`` reads) -> change-event JSON
value -> S3 Vectors metadata value, and a JSON value back to text for the loader's ``CAST(... AS type)``.

One place per type, like the Keyspaces registry (``freshvec.sources.keyspaces.types``). The reader's
session sets ``TimeZone = UTC`` and ``DateStyle = ISO`` so that the text forms are the ones parsed here.

==========================  ==========================================  =====================================
PostgreSQL type             change-event JSON value                     metadata value
==========================  ==========================================  =====================================
text, varchar, char, name   string                                      string
smallint, integer, bigint   integer                                     number (beyond +-2**53: string)
smallserial/serial/bigserial  (and ``... GENERATED ... AS IDENTITY``): the integer of that width
numeric / decimal           exact decimal string ``"12.50"``            number (``NaN``/infinite: string)
real, double precision      number (``"NaN"``, ``"Infinity"`` strings)  number (non-finite: string)
boolean                     bool                                        bool
date                        ``"YYYY-MM-DD"``                            integer ``YYYYMMDD``
timestamp                   ISO 8601, taken as UTC, ``Z``               integer epoch milliseconds
timestamptz                 ISO 8601 UTC, ``Z``                         integer epoch milliseconds
uuid                        string                                      string
json, jsonb                 the JSON value itself                       compact JSON text
bytea                       base64 string                               base64 string
<type>[]                    array (nested for multi-dimensional)        list of the elements' values
anything else               ``{"$unknown": "<type>", "value": text}``   its raw text
==========================  ==========================================  =====================================
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

UNKNOWN_TAG = "$unknown"
_MAX_EXACT = 2**53
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MetadataValue = str | int | float | bool | list[str | int | float | bool]

# Canonical name of every supported type (and of its spellings) -> family.
_ALIASES = {
    "text": "text",
    "varchar": "text",
    "character varying": "text",
    "char": "text",
    "character": "text",
    "bpchar": "text",
    "name": "text",
    "citext": "text",
    "smallint": "integer",
    "int2": "integer",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "integer",
    "int8": "integer",
    "numeric": "numeric",
    "decimal": "numeric",
    "real": "float",
    "float4": "float",
    "double precision": "float",
    "float8": "float",
    "boolean": "boolean",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz",
    "timestamp with time zone": "timestamptz",
    "uuid": "uuid",
    "json": "json",
    "jsonb": "json",
    "bytea": "bytea",
}
# The built-in type OIDs pgoutput's Relation message names (pg_type.dat), for checking a table against the config.
TYPE_OIDS = {
    16: "boolean",
    17: "bytea",
    18: "char",
    19: "name",
    20: "bigint",
    21: "smallint",
    23: "integer",
    25: "text",
    114: "json",
    700: "real",
    701: "double precision",
    1042: "character",
    1043: "character varying",
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
    1700: "numeric",
    2950: "uuid",
    3802: "jsonb",
}
ARRAY_OIDS = {1000: 16, 1001: 17, 1005: 21, 1007: 23, 1009: 25, 1014: 1042, 1015: 1043, 1016: 20, 1021: 700}
ARRAY_OIDS |= {1022: 701, 1182: 1082, 1115: 1114, 1185: 1184, 1231: 1700, 2951: 2950, 3807: 3802, 199: 114}
_MODIFIER = re.compile(r"\s*\(.*\)\s*$")  # varchar(80), numeric(10,2), timestamp(3)
# What a user writes in a CREATE TABLE for an auto-numbered key: SERIAL types are integers with a sequence
# default, an identity column is its integer type with GENERATED ... AS IDENTITY (the server stores either as
# the plain integer, which is what the slot and the catalog report).
_SERIALS = {
    "smallserial": "smallint",
    "serial2": "smallint",
    "serial": "integer",
    "serial4": "integer",
    "bigserial": "bigint",
    "serial8": "bigint",
}
_IDENTITY = re.compile(r"\s+generated\s+(always|by\s+default)\s+as\s+identity.*$", re.IGNORECASE | re.DOTALL)


class PgTypeError(ValueError):
    """A type name the pipeline does not know, or a value that does not fit its type."""


def normalize_type(type_text: str) -> str:
    """``" VARCHAR(80) "`` -> ``"varchar"``; ``"INT[]"`` -> ``"int[]"``; arrays keep one ``[]``; ``serial`` ->
    ``integer``, ``bigint generated always as identity`` -> ``bigint``."""
    text = _IDENTITY.sub("", type_text.strip().lower())
    is_array = text.endswith("[]")
    base = text.rstrip("[] ").strip()
    base = _MODIFIER.sub("", base).replace("(", "").strip()
    base = re.sub(r"\s+", " ", base)
    base = _SERIALS.get(base, base)
    return f"{base}[]" if is_array else base


def storage_type(type_text: str) -> str:
    """The type a value is stored as, for ``CAST(... AS <type>)``: a serial or identity column's integer type,
    every other type as written (its modifiers kept: ``varchar(80)``, ``numeric(10,2)``)."""
    text = _IDENTITY.sub("", type_text.strip()).strip()
    return _SERIALS.get(text.lower(), text)


def unknown_type_message(type_text: str) -> str:
    """What an error says about a type the pipeline does not know (docs/sources.md lists the known ones)."""
    return f"unknown PostgreSQL type {type_text!r} (the accepted types are listed in docs/sources.md)"


def family(type_text: str) -> str | None:
    """The family of a type (``text``, ``integer``, ...), ``array`` for arrays, None when unknown."""
    name = normalize_type(type_text)
    if name.endswith("[]"):
        return "array" if _ALIASES.get(name[:-2]) else None
    return _ALIASES.get(name)


def element_type(type_text: str) -> str:
    return normalize_type(type_text)[:-2]


def is_known(type_text: str) -> bool:
    return family(type_text) is not None


def is_text_type(type_text: str) -> bool:
    return family(type_text) == "text"


def type_name_of_oid(oid: int) -> str | None:
    if oid in TYPE_OIDS:
        return TYPE_OIDS[oid]
    if oid in ARRAY_OIDS:
        return TYPE_OIDS[ARRAY_OIDS[oid]] + "[]"
    return None


def same_type(declared: str, actual: str) -> bool:
    """Whether two spellings name the same type family and arrayness (``int4`` = ``integer``)."""
    a, b = normalize_type(declared), normalize_type(actual)
    if a.endswith("[]") != b.endswith("[]"):
        return False
    a, b = a.removesuffix("[]"), b.removesuffix("[]")
    if _ALIASES.get(a) == _ALIASES.get(b) == "integer":
        return _int_width(a) == _int_width(b)
    if _ALIASES.get(a) == _ALIASES.get(b) == "float":
        return (a in ("real", "float4")) == (b in ("real", "float4"))
    return _ALIASES.get(a) is not None and _ALIASES.get(a) == _ALIASES.get(b)


def _int_width(name: str) -> int:
    return {"smallint": 2, "int2": 2, "bigint": 8, "int8": 8}.get(name, 4)


# ---- text form -> JSON value -------------------------------------------------------------------------
def from_text(text: str | None, type_text: str) -> Any:
    """The change-event JSON value of a column's text form; an unknown type or unparsable text is tagged."""
    if text is None:
        return None
    kind = family(type_text)
    try:
        if kind is None:
            raise PgTypeError("unknown type")
        if kind == "array":
            return array_from_text(text, type_text)
        return _SCALAR_FROM_TEXT[kind](text)
    except (ValueError, KeyError, binascii.Error):
        return {UNKNOWN_TAG: normalize_type(type_text), "value": text}


def _integer(text: str) -> int:
    return int(text)


def _numeric(text: str) -> str:
    if text in ("NaN", "Infinity", "-Infinity"):
        return text
    Decimal(text)  # raises InvalidOperation (a ValueError) when it is not a number
    return text


def _float(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else text


def _boolean(text: str) -> bool:
    if text in ("t", "true"):
        return True
    if text in ("f", "false"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def _date(text: str) -> str:
    return date.fromisoformat(text).isoformat()


def _timestamp(text: str) -> str:
    moment = datetime.fromisoformat(text)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return format_timestamp(moment)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z``; microseconds kept when there are any (PostgreSQL stores microseconds)."""
    spec = "microseconds" if moment.microsecond % 1000 else "milliseconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _bytea(text: str) -> str:
    if not text.startswith("\\x"):
        raise ValueError("bytea text is not in hex form")
    return base64.b64encode(bytes.fromhex(text[2:])).decode("ascii")


_SCALAR_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "text": str,
    "integer": _integer,
    "numeric": _numeric,
    "float": _float,
    "boolean": _boolean,
    "date": _date,
    "timestamp": _timestamp,
    "timestamptz": _timestamp,
    "uuid": lambda text: str(text).lower(),
    "json": json.loads,
    "bytea": _bytea,
}


def parse_array(text: str) -> list[Any]:
    """A PostgreSQL array literal (``{1,2}``, ``{"a b",NULL}``, ``{{1,2},{3,4}}``) as nested lists of element
    texts (None for NULL); ValueError when it is not one. A ``[1:2]=`` bounds prefix is dropped."""
    if text.startswith("["):
        text = text[text.index("=") + 1 :]
    pos = 0

    def parse() -> list[Any]:
        nonlocal pos
        if text[pos] != "{":
            raise ValueError(f"array literal {text!r} does not start with '{{'")
        pos += 1
        items: list[Any] = []
        if text[pos] == "}":
            pos += 1
            return items
        while True:
            if text[pos] == "{":
                items.append(parse())
            elif text[pos] == '"':
                pos += 1
                chunk = []
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    chunk.append(text[pos])
                    pos += 1
                pos += 1
                items.append("".join(chunk))
            else:
                start = pos
                while text[pos] not in ",}":
                    pos += 1
                raw = text[start:pos].strip()
                items.append(None if raw.upper() == "NULL" else raw)
            if text[pos] == ",":
                pos += 1
                continue
            if text[pos] == "}":
                pos += 1
                return items
            raise ValueError(f"unexpected {text[pos]!r} in array literal")

    try:
        result = parse()
    except IndexError as exc:
        raise ValueError(f"array literal {text!r} ends early") from exc
    if pos != len(text):
        raise ValueError(f"array literal {text!r} has trailing text")
    return result


def _from_array_element(item: Any, element: str) -> Any:
    if isinstance(item, list):
        return [_from_array_element(inner, element) for inner in item]
    return from_text(item, element)


def array_from_text(text: str, type_text: str) -> list[Any]:
    return [_from_array_element(item, element_type(type_text)) for item in parse_array(text)]


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


# ---- JSON value -> metadata ----------------------------------------------------------------------------
def to_metadata(value: Any, type_text: str) -> MetadataValue | None:
    """The metadata value of a change-event JSON value (None: leave the key out); TypeError/ValueError when
    the value does not fit the type."""
    if value is None:
        return None
    if isinstance(value, dict) and UNKNOWN_TAG in value:
        return str(value.get("value"))
    kind = family(type_text)
    if kind is None:
        raise ValueError(f"unknown PostgreSQL type {type_text!r}")
    if kind == "array":
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {value!r}")
        items: list[str | int | float | bool] = []
        for item in value:
            converted = compact_json(item) if isinstance(item, list) else to_metadata(item, element_type(type_text))
            if converted is None:
                continue
            items.append(converted if not isinstance(converted, list) else compact_json(converted))
        return items or None
    return _SCALAR_TO_METADATA[kind](value)


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise TypeError(f"expected {what}, got {value!r}")
    if not isinstance(value, kind):
        raise TypeError(f"expected {what}, got {value!r}")
    return value


def _integer_metadata(value: Any) -> int | str:
    number = _expect(value, int, "an integer")
    return number if abs(number) <= _MAX_EXACT else str(number)


def _numeric_metadata(value: Any) -> float | str:
    text = str(_expect(value, (str, int), "a decimal string"))
    try:
        number = float(Decimal(text))
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a decimal") from exc
    return number if math.isfinite(number) else text


def _float_metadata(value: Any) -> float | str:
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return value
    return float(_expect(value, (int, float), "a number"))


def _date_metadata(value: Any) -> int:
    day = date.fromisoformat(_expect(value, str, "a date string"))
    return day.year * 10_000 + day.month * 100 + day.day


def _timestamp_metadata(value: Any) -> int:
    moment = datetime.fromisoformat(_expect(value, str, "an ISO 8601 time").replace("Z", "+00:00"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_SCALAR_TO_METADATA: dict[str, Callable[[Any], MetadataValue]] = {
    "text": lambda v: _expect(v, str, "a string"),
    "integer": _integer_metadata,
    "numeric": _numeric_metadata,
    "float": _float_metadata,
    "boolean": lambda v: _expect(v, bool, "a boolean"),
    "date": _date_metadata,
    "timestamp": _timestamp_metadata,
    "timestamptz": _timestamp_metadata,
    "uuid": lambda v: _expect(v, str, "a uuid string"),
    "json": compact_json,
    "bytea": lambda v: _expect(v, str, "a base64 string"),
}


# ---- JSON (file) value -> text for CAST(... AS type) -----------------------------------------------------
def to_text(value: Any, type_text: str) -> str | None:
    """The text a loader binds for ``CAST(:v AS <type>)``; PgTypeError naming the problem."""
    if value is None:
        return None
    kind = family(type_text)
    if kind is None:
        raise PgTypeError(f"unknown PostgreSQL type {type_text!r}")
    if kind == "array":
        if not isinstance(value, list):
            raise PgTypeError(f"expected a list for {type_text}, got {value!r}")
        return _array_literal(value, element_type(type_text))
    if kind == "json":
        return json.dumps(value, ensure_ascii=False)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise PgTypeError(f"expected true or false, got {value!r}")
        return "true" if value else "false"
    if kind == "bytea":
        try:
            return "\\x" + base64.b64decode(_expect(value, str, "a base64 string"), validate=True).hex()
        except (binascii.Error, TypeError) as exc:
            raise PgTypeError(f"expected a base64 string, got {value!r}") from exc
    whole = isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()))
    if kind == "integer" and (isinstance(value, bool) or not whole):
        raise PgTypeError(f"expected a whole number, got {value!r}")
    if isinstance(value, bool | dict | list):
        raise PgTypeError(f"expected a {kind} value, got {value!r}")
    return str(value)


def _array_literal(values: list[Any], element: str) -> str:
    parts = []
    for item in values:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list):
            parts.append(_array_literal(item, element))
        else:
            text = to_text(item, element) or ""
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"
