"""The registry's frame: the interface every CQL type implements, the registry itself, and the dispatchers.

A CQL type has four forms of its values (docs/change-event.md):

- the **stream cell**: the member of a ``KeyspacesCellValue`` union as boto3 parses it (``{"intT": "7"}``);
  read with ``from_cell`` (lenient; it may raise, and the dispatcher turns that into an ``$unknown`` value)
  and written with ``to_cell`` (strict; ValueError naming the problem),
- the **driver value**: what the Cassandra driver binds and returns (``to_driver`` from a file value, JSON or
  CSV text, raising CellError; ``from_driver`` back to JSON),
- the **JSON value** of change events (the hub the other forms convert from and to),
- the **metadata value** S3 Vectors filters on (``to_metadata``; TypeError/ValueError when it does not fit,
  None to leave the key out).

The dispatchers below look a type up by its CQL name (``frozen<>`` removed) or, for reading, by its cell
member, and are what the public functions in ``cells``, ``driver`` and ``freshvec.metadata`` are.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from freshvec.sources.keyspaces.cqltypes import CqlType

UNKNOWN_TAG = "$unknown"
SDK_UNKNOWN_MEMBER = "SDK_UNKNOWN_MEMBER"
COMPOSITE_NAMES = frozenset({"list", "set", "tuple", "map", "udt"})

MetadataValue = str | int | float | bool | list[str | int | float | bool]


class CellError(ValueError):
    """One value does not fit its column's CQL type."""


class CqlValueType:
    """One CQL type family and the conversions between the four forms of its values.

    ``names`` are the CQL type names it serves, ``members`` the stream cell union members it reads. Methods
    receive the column's ``CqlType`` with ``frozen<>`` removed, so a family can tell ``int`` from ``bigint``.
    """

    names: tuple[str, ...] = ()
    members: tuple[str, ...] = ()

    def from_cell(self, raw: Any) -> Any:
        """The JSON value of a cell union member's raw value."""
        raise NotImplementedError

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        """The cell union (``{member: raw}``) holding the JSON ``value``."""
        raise NotImplementedError

    def to_driver(self, value: Any, cql: CqlType) -> Any:
        """The driver value of a file value (a JSON value or CSV text)."""
        raise NotImplementedError

    def from_driver(self, value: Any, cql: CqlType) -> Any:
        """The JSON value of a driver value."""
        raise NotImplementedError

    def to_metadata(self, value: Any, cql: CqlType) -> MetadataValue | None:
        """The S3 Vectors metadata value of a JSON value (None: leave the key out)."""
        raise NotImplementedError


REGISTRY: dict[str, CqlValueType] = {}  # CQL type name -> its type
BY_MEMBER: dict[str, CqlValueType] = {}  # stream cell union member -> its type


def register(kind: CqlValueType) -> CqlValueType:
    for name in kind.names:
        if name in REGISTRY:
            raise RuntimeError(f"CQL type {name} is registered twice")
        REGISTRY[name] = kind
    for member in kind.members:
        BY_MEMBER[member] = kind
    return kind


def type_of(cql: CqlType) -> CqlValueType:
    """The registered type of ``cql`` (``frozen<>`` removed); KeyError for a name nobody registered."""
    return REGISTRY[cql.base.name]


# ---- dispatchers: the public conversions -------------------------------------------------------


def cell_to_json(cell: Mapping[str, Any] | None) -> Any:
    """The JSON value of one ``KeyspacesCell`` (``{"value": ..., "metadata": ...}``); None for a null cell."""
    if cell is None:
        return None
    return value_to_json(cell.get("value"))


def value_to_json(value: Mapping[str, Any] | None) -> Any:
    """The JSON value of one ``KeyspacesCellValue`` union (as in ``partitionKeys`` and map entries)."""
    if not value:
        return None
    if not isinstance(value, Mapping) or len(value) != 1:
        # A union carries exactly one member; anything else is kept whole rather than guessed at.
        tag = "+".join(sorted(value)) if isinstance(value, Mapping) else type(value).__name__
        return unknown(tag, value)
    ((member, raw),) = value.items()
    if member == SDK_UNKNOWN_MEMBER:
        name = raw.get("name") if isinstance(raw, Mapping) else None
        return {UNKNOWN_TAG: str(name or SDK_UNKNOWN_MEMBER), "value": None}
    kind = BY_MEMBER.get(member)
    if kind is None:
        return unknown(member, raw)
    try:
        return kind.from_cell(raw)
    except (ValueError, TypeError, ArithmeticError, AttributeError, binascii.Error):
        return unknown(member, raw)


def json_to_value(value: Any, cql_type: CqlType) -> dict[str, Any]:
    """A ``KeyspacesCellValue`` union for ``value``; ValueError naming the problem if it does not fit."""
    base = cql_type.base
    if value is None:
        raise ValueError(f"null is not allowed inside a {cql_type}")
    kind = REGISTRY.get(base.name)
    if kind is None:
        raise ValueError(f"CQL type {cql_type} cannot be written")
    return kind.to_cell(value, base)


def to_driver_value(value: Any, cql: CqlType) -> Any:
    """A file value (JSON value or CSV text) as the Python value the Cassandra driver binds for ``cql``."""
    if value is None:
        return None
    cql = cql.base
    kind = REGISTRY.get(cql.name)
    if kind is None:
        raise CellError(f"type {cql} is not supported by the loader")
    return kind.to_driver(value, cql)


def to_json_value(value: Any, cql: CqlType) -> Any:
    """A driver value as its change-event JSON value (docs/change-event.md)."""
    if value is None:
        return None
    cql = cql.base
    kind = REGISTRY.get(cql.name)
    return value if kind is None else kind.from_driver(value, cql)


def to_metadata_value(value: Any, cql_type: CqlType) -> MetadataValue | None:
    """One event cell value as a metadata value (None: leave the key out); ValueError/TypeError if invalid."""
    if value is None:
        return None
    if isinstance(value, dict) and UNKNOWN_TAG in value:
        return str(value.get("value", ""))
    base = cql_type.base
    kind = REGISTRY.get(base.name)
    if kind is None:
        raise TypeError(f"no metadata conversion for CQL type {cql_type}")
    return kind.to_metadata(value, base)


# ---- helpers shared by the families --------------------------------------------------------------


def unknown(member: str, raw: Any) -> dict[str, Any]:
    """The ``$unknown`` value of a cell that cannot be read: its member and raw text."""
    if isinstance(raw, bytes):
        text = base64.b64encode(raw).decode("ascii")
    elif isinstance(raw, str):
        text = raw
    else:
        text = json.dumps(raw, default=str, ensure_ascii=False, sort_keys=True)
    return {UNKNOWN_TAG: member, "value": text}


def describe(value: Any) -> str:
    """A value in a cell-writing error message: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def describe_input(value: Any) -> str:
    """A file value in a loader error message, in JSON words."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value!r}"


def parse_input_text(value: Any, parse: Callable[[str], Any], what: str) -> Any:
    """A file value that must be text, parsed; CellError naming ``what`` was expected."""
    if not isinstance(value, str):
        raise CellError(f"expected {what}, got {describe_input(value)}")
    try:
        return parse(value.strip())
    except (ValueError, TypeError) as exc:
        raise CellError(f"expected {what}, got {value!r}") from exc


def expect(value: Any, kind: type, type_name: str) -> Any:
    """A JSON value checked to be of ``kind`` (a bool is no number) before it becomes metadata."""
    if isinstance(value, bool) and kind is not bool:
        raise TypeError(f"expected a {type_name} value, got a boolean")
    if not isinstance(value, kind):
        raise TypeError(f"expected a {type_name} value ({kind.__name__}), got {value!r}")
    return value


# One encoder for every call: json.dumps with non-default options builds a new encoder each time, and metadata
# sizes are measured entry by entry (the sink and reconcile call this several times per metadata key).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact_json(value: Any) -> str:
    return _COMPACT.encode(value)
