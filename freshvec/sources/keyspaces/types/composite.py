"""Composite CQL types: list, set, tuple, map, udt, and frozen (which changes storage, not values).

Stream cells nest cells (``listT``/``setT``/``tupleT``), map entries (``mapT``: ``{"key": <union>,
"value": <union>}``) or named cells (``udtT``). In change events lists, sets and tuples are arrays (a set
sorted), a map with text keys an object and any other map an array of ``[key, value]`` pairs, a UDT an
object. In metadata lists, sets and tuples are lists of their converted elements (nested collections as
compact JSON text); maps and UDTs lists of ``"key=value"`` strings, so ``{"$eq": "lang=en"}`` matches; an
empty collection leaves the key out (Cassandra stores an empty collection as null).

The config names a UDT but not its fields, so a UDT field is written by its JSON value's kind and read
back from the driver as plain JSON.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

from freshvec.events import format_timestamp
from freshvec.sources.keyspaces.cqltypes import CqlType
from freshvec.sources.keyspaces.types.base import (
    COMPOSITE_NAMES,
    CellError,
    CqlValueType,
    MetadataValue,
    cell_to_json,
    compact_json,
    describe,
    describe_input,
    json_to_value,
    register,
    to_driver_value,
    to_json_value,
    to_metadata_value,
    value_to_json,
)
from freshvec.sources.keyspaces.types.scalar import FLOAT, TEXT


class CompositeType(CqlValueType):
    """What the composite types share: nested cells, CSV text holding JSON, elements as metadata."""

    def _decoded(self, value: Any, cql: CqlType) -> Any:
        if isinstance(value, str):  # collections in CSV are written as JSON
            try:
                return json.loads(value, parse_float=Decimal)
            except json.JSONDecodeError as exc:
                raise CellError(f"expected JSON for a {cql} value: {exc.msg}") from exc
        return value


def _read_cells(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise TypeError("collection member is not a list")
    return [cell_to_json(cell) for cell in raw]


def _nested(value: Any, cql: CqlType, where: str) -> dict[str, Any]:
    try:
        return json_to_value(value, cql)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _element_metadata(value: Any, cql: CqlType) -> str | int | float | bool | None:
    """A collection element: scalars converted like columns, nested collections as compact JSON text."""
    if cql.base.name in COMPOSITE_NAMES or isinstance(value, list | dict):
        return compact_json(value)
    converted = to_metadata_value(value, cql)
    if isinstance(converted, list):  # unreachable for scalar types; keeps the element type honest
        return compact_json(converted)
    return converted


def _sequence_metadata(value: Any, params: tuple[CqlType, ...]) -> MetadataValue | None:
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    items = [_element_metadata(item, param) for item, param in zip(value, params, strict=False)]
    return [item for item in items if item is not None] or None


def _pairs_metadata(value: Any) -> MetadataValue | None:
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


def _cell_text(value: Any) -> str:
    return value if isinstance(value, str) else compact_json(value)


class ListType(CompositeType):
    names: tuple[str, ...] = ("list",)
    members: tuple[str, ...] = ("listT",)

    def from_cell(self, raw: Any) -> list[Any]:
        return _read_cells(raw)

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if not isinstance(value, list | tuple | set | frozenset):
            raise ValueError(f"expected an array for {cql}, got {describe(value)}")
        element_type = cql.params[0]
        cells = []
        for position, item in enumerate(self._items(value)):
            if item is None:
                raise ValueError(f"element {position} is null; a {cql.name} cannot hold nulls")
            cells.append({"value": _nested(item, element_type, f"element {position}")})
        return {f"{cql.name}T": cells}

    def _items(self, value: Any) -> list[Any]:
        return list(value)

    def to_driver(self, value: Any, cql: CqlType) -> Any:
        value = self._decoded(value, cql)
        if not isinstance(value, list):
            raise CellError(f"expected an array for {cql}, got {describe_input(value)}")
        return [to_driver_value(item, cql.params[0]) for item in value]

    def from_driver(self, value: Any, cql: CqlType) -> list[Any]:
        return [to_json_value(item, cql.params[0]) for item in value]

    def to_metadata(self, value: Any, cql: CqlType) -> MetadataValue | None:
        return _sequence_metadata(value, cql.params * len(value) if isinstance(value, list) else ())


class SetType(ListType):
    """A list without repeats: written once per element, bound as a Python set, read back sorted."""

    names = ("set",)
    members = ("setT",)

    def _items(self, value: Any) -> list[Any]:
        unique: list[Any] = []
        for item in value:
            if item not in unique:
                unique.append(item)
        return unique

    def to_driver(self, value: Any, cql: CqlType) -> set[Any]:
        return set(super().to_driver(value, cql))

    def from_driver(self, value: Any, cql: CqlType) -> list[Any]:
        return sorted(super().from_driver(value, cql), key=json.dumps)


class TupleType(CompositeType):
    names = ("tuple",)
    members = ("tupleT",)

    def from_cell(self, raw: Any) -> list[Any]:
        return _read_cells(raw)

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected an array for {cql}, got {describe(value)}")
        if len(value) != len(cql.params):
            raise ValueError(f"{cql} takes {len(cql.params)} elements, got {len(value)}")
        cells = [
            {} if item is None else {"value": _nested(item, element_type, f"element {position}")}
            for position, (item, element_type) in enumerate(zip(value, cql.params, strict=True))
        ]
        return {"tupleT": cells}

    def to_driver(self, value: Any, cql: CqlType) -> tuple[Any, ...]:
        value = self._decoded(value, cql)
        if not isinstance(value, list) or len(value) != len(cql.params):
            raise CellError(f"expected an array of {len(cql.params)} values for {cql}")
        return tuple(to_driver_value(item, param) for item, param in zip(value, cql.params, strict=True))

    def from_driver(self, value: Any, cql: CqlType) -> list[Any]:
        return [to_json_value(item, param) for item, param in zip(value, cql.params, strict=False)]

    def to_metadata(self, value: Any, cql: CqlType) -> MetadataValue | None:
        return _sequence_metadata(value, cql.params)


class MapType(CompositeType):
    names = ("map",)
    members = ("mapT",)

    def from_cell(self, raw: Any) -> dict[str, Any] | list[list[Any]]:
        if not isinstance(raw, list):
            raise TypeError("map member is not a list of entries")
        entries = [(entry.get("key") or {}, entry.get("value")) for entry in raw]
        if all(len(key) == 1 and next(iter(key)) in TEXT.members for key, _ in entries):
            return {value_to_json(key): value_to_json(value) for key, value in entries}
        return [[value_to_json(key), value_to_json(value)] for key, value in entries]

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        key_type, value_type = cql.params
        if isinstance(value, Mapping):
            if value and not key_type.is_text:
                raise ValueError(f"a {cql} is written as an array of [key, value] pairs, not an object")
            pairs = list(value.items())
        elif isinstance(value, list | tuple):
            pairs = []
            for position, pair in enumerate(value):
                if not isinstance(pair, list | tuple) or len(pair) != 2:
                    raise ValueError(f"map entry {position} is not a [key, value] pair")
                pairs.append((pair[0], pair[1]))
        else:
            raise ValueError(f"expected an object or an array of [key, value] pairs for {cql}, got {describe(value)}")
        entries = []
        seen: list[Any] = []
        for position, (key, item) in enumerate(pairs):
            if key is None or item is None:
                raise ValueError(f"map entry {position} has a null key or value")
            if key in seen:
                raise ValueError(f"map key {key!r} appears twice")
            seen.append(key)
            entries.append(
                {
                    "key": _nested(key, key_type, f"key of entry {position}"),
                    "value": _nested(item, value_type, f"value of entry {position}"),
                }
            )
        return {"mapT": entries}

    def to_driver(self, value: Any, cql: CqlType) -> dict[Any, Any]:
        value = self._decoded(value, cql)
        pairs = list(value.items()) if isinstance(value, dict) else value
        if not isinstance(pairs, list):
            raise CellError(f"expected an object or an array of [key, value] pairs for {cql}")
        result = {}
        for pair in pairs:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise CellError(f"expected [key, value] pairs for {cql}")
            result[to_driver_value(pair[0], cql.params[0])] = to_driver_value(pair[1], cql.params[1])
        return result

    def from_driver(self, value: Any, cql: CqlType) -> dict[str, Any] | list[list[Any]]:
        key_type, value_type = cql.params
        if key_type.is_text:
            return {key: to_json_value(item, value_type) for key, item in value.items()}
        return [[to_json_value(k, key_type), to_json_value(v, value_type)] for k, v in value.items()]

    def to_metadata(self, value: Any, cql: CqlType) -> MetadataValue | None:
        return _pairs_metadata(value)


class UdtType(CompositeType):
    names = ("udt",)
    members = ("udtT",)

    def from_cell(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise TypeError("udt member is not a map of fields")
        return {name: cell_to_json(cell) for name, cell in raw.items()}

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected an object for {cql}, got {describe(value)}")
        # The config names a UDT but not its fields, so each field's cell type follows its JSON value.
        fields: dict[str, Any] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise ValueError(f"UDT field name {name!r} is not a string")
            fields[name] = {} if item is None else {"value": _infer_value(item, f"field '{name}'")}
        return {"udtT": fields}

    def to_driver(self, value: Any, cql: CqlType) -> dict[str, Any]:
        value = self._decoded(value, cql)
        if not isinstance(value, dict):
            raise CellError(f"expected an object for {cql}, got {describe_input(value)}")
        return dict(value)

    def from_driver(self, value: Any, cql: CqlType) -> dict[str, Any]:
        items = value.items() if isinstance(value, Mapping) else value._asdict().items()
        return {key: plain_json(item) for key, item in items}

    def to_metadata(self, value: Any, cql: CqlType) -> MetadataValue | None:
        return _pairs_metadata(value)


def _infer_value(value: Any, where: str) -> dict[str, Any]:
    """A union for a JSON value with no declared type: text, varint, double, boolean, list or nested UDT."""
    if isinstance(value, bool):
        return {"boolT": value}
    if isinstance(value, int):
        return {"varintT": str(value)}
    if isinstance(value, float):
        return FLOAT.to_cell(value, CqlType("double"))
    if isinstance(value, str):
        return {"textT": value}
    if isinstance(value, list | tuple):
        cells = []
        for position, item in enumerate(value):
            cells.append({} if item is None else {"value": _infer_value(item, f"{where} element {position}")})
        return {"listT": cells}
    if isinstance(value, Mapping):
        return UDT.to_cell(value, CqlType("udt", udt_name="inferred"))
    raise ValueError(f"{where}: {describe(value)} is not a JSON value")


def plain_json(value: Any) -> Any:  # noqa: PLR0911 - one branch per value kind
    """Best-effort JSON for UDT fields, whose types the config does not describe."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date | time_of_day):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain_json(v) for v in value]
    return value


class FrozenType(CqlValueType):
    """``frozen<T>`` has T's values in every form; the dispatchers remove it before looking a type up."""

    names = ("frozen",)

    def from_cell(self, raw: Any) -> Any:
        raise TypeError("a frozen value arrives as its inner type's cell")

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        return json_to_value(value, cql.params[0])

    def to_driver(self, value: Any, cql: CqlType) -> Any:
        return to_driver_value(value, cql.params[0])

    def from_driver(self, value: Any, cql: CqlType) -> Any:
        return to_json_value(value, cql.params[0])

    def to_metadata(self, value: Any, cql: CqlType) -> MetadataValue | None:
        return to_metadata_value(value, cql.params[0])


LIST = register(ListType())
SET = register(SetType())
TUPLE = register(TupleType())
MAP = register(MapType())
UDT = register(UdtType())
FROZEN = register(FrozenType())
