"""Keyspaces Streams cells <-> change-event JSON values, and a stream record -> ``ChangeEvent``.

A cell arrives as boto3 parses the ``keyspacesstreams`` model: ``{"value": <union>, "metadata": {...}}``
where the union has exactly one member (``textT``, ``intT``, ``listT``, ...). Numbers arrive as strings,
``blobT`` as bytes, ``boolT`` as a bool; collections nest cells (``listT``/``setT``/``tupleT``), map
entries (``mapT``: ``{"key": <union>, "value": <union>}``) or named cells (``udtT``). A member this
botocore does not know arrives as ``{"SDK_UNKNOWN_MEMBER": {"name": ...}}``.

Reading never raises: a member this version does not know, or a value it cannot read, becomes
``{"$unknown": "<member>", "value": "<raw text>"}`` so the change still travels and nothing is lost.
Writing (``json_to_cell``) is strict: a value that does not fit the column type raises ValueError.

Encodings the model leaves open are read leniently and written one way: ``dateT`` is days since
1970-01-01 (an ISO date is read too), ``timestampT`` milliseconds since the epoch (ISO 8601 read too),
``timeT`` nanoseconds since midnight (``HH:MM:SS[.fffffffff]`` read too).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from freshvec.constants import ORIGINS
from freshvec.errors import PoisonRecordError
from freshvec.events import ChangeEvent, format_timestamp
from freshvec.sources.keyspaces.cqltypes import INTEGER_TYPES, TEXT_TYPES, CqlType

UNKNOWN_TAG = "$unknown"
SDK_UNKNOWN_MEMBER = "SDK_UNKNOWN_MEMBER"
TEXT_MEMBERS = frozenset({"textT", "varcharT", "asciiT"})
INTEGER_MEMBERS = frozenset({"intT", "bigintT", "smallintT", "tinyintT", "varintT", "counterT"})
FLOAT_MEMBERS = frozenset({"floatT", "doubleT"})
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANOS_PER_DAY = 86_400 * 10**9
_INTEGER_TEXT = re.compile(r"^-?\d+$")
_TIME_TEXT = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
# CQL duration literals: 1h30m, -2d, 1mo3w, P1Y2M3DT4H5M6S, P2W, P0001-02-03T04:05:06
_DURATION_UNITS = r"(?:\d+(?:y|mo|w|d|h|ms|m|s|us|µs|ns))+"
_DURATION_ISO = r"P(?=\d|T\d)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+S)?)?"
_DURATION_ISO_ALT = r"P\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
_DURATION_TEXT = re.compile(rf"^-?(?:{_DURATION_UNITS}|{_DURATION_ISO}|{_DURATION_ISO_ALT})$", re.IGNORECASE)
INTEGER_BOUNDS = {
    "tinyint": (-(2**7), 2**7 - 1),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
    "counter": (-(2**63), 2**63 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38


# ---------------------------------------------------------------------------------------------
# Reading: Keyspaces cells -> change-event JSON values
# ---------------------------------------------------------------------------------------------
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
        return _unknown(tag, value)
    ((member, raw),) = value.items()
    if member == SDK_UNKNOWN_MEMBER:
        name = raw.get("name") if isinstance(raw, Mapping) else None
        return {UNKNOWN_TAG: str(name or SDK_UNKNOWN_MEMBER), "value": None}
    reader = _READERS.get(member)
    if reader is None:
        return _unknown(member, raw)
    try:
        return reader(raw)
    except (ValueError, TypeError, ArithmeticError, AttributeError, binascii.Error):
        return _unknown(member, raw)


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
) -> ChangeEvent:
    """One Keyspaces Streams record as a change event.

    ``op``: origin TTL -> EXPIRE; no new image -> DELETE; no old image -> INSERT; else UPDATE.
    ``key`` holds the partition then the clustering columns (or ``key_columns`` order when given); the key
    columns are also put into each image so ``new``/``old`` are whole rows. Raises PoisonRecordError for a
    record that cannot become an event (no sequence number, no key, no time, an unknown origin).
    """
    seq = record.get("sequenceNumber")
    if not seq:
        raise PoisonRecordError(f"stream record in shard {shard_id} has no sequenceNumber")
    origin = record.get("origin") or "USER"
    if origin not in ORIGINS:
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
        ts = format_timestamp(_as_datetime(created_at))
    except (ValueError, TypeError, OverflowError) as exc:
        raise PoisonRecordError(f"stream record {seq} has an unreadable createdAt {created_at!r}") from exc

    new = image_to_row(record.get("newImage"))
    old = image_to_row(record.get("oldImage"))
    if origin == "TTL":
        op, new = "EXPIRE", None
    elif new is None:
        op = "DELETE"
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
    )


def _unknown(member: str, raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):
        text = base64.b64encode(raw).decode("ascii")
    elif isinstance(raw, str):
        text = raw
    else:
        text = json.dumps(raw, default=str, ensure_ascii=False, sort_keys=True)
    return {UNKNOWN_TAG: member, "value": text}


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        return _read_timestamp_text(value)
    raise TypeError(f"not a time: {value!r}")


def _read_text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError("text member is not a string")
    return raw


def _read_integer(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise TypeError("integer member is not a string")
    return int(raw)


def _read_float(raw: Any) -> float | str:
    if isinstance(raw, bool):
        raise TypeError("float member is a bool")
    number = float(raw)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number


def _read_decimal(raw: Any) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise TypeError("decimal member is not a string")
    number = Decimal(str(raw).strip())
    if not number.is_finite():
        raise ValueError("decimal is not finite")
    return format(number, "f")  # plain notation, every digit kept


def _read_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise TypeError("bool member is not a boolean")


def _read_date(raw: Any) -> str:
    text = str(raw).strip()
    if _INTEGER_TEXT.match(text):
        return (_EPOCH_DATE + timedelta(days=int(text))).isoformat()
    return date.fromisoformat(text).isoformat()


def _read_timestamp_text(text: str) -> datetime:
    text = text.strip()
    if _INTEGER_TEXT.match(text):
        return _EPOCH + timedelta(milliseconds=int(text))
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _read_timestamp(raw: Any) -> str:
    return format_timestamp(_as_datetime(raw))


def _read_time(raw: Any) -> str:
    text = str(raw).strip()
    nanos = int(text) if _INTEGER_TEXT.match(text) else _parse_time_text(text)
    if not 0 <= nanos < _NANOS_PER_DAY:
        raise ValueError("time out of range")
    return _format_time(nanos)


def _read_blob(raw: Any) -> str:
    if isinstance(raw, bytes | bytearray):
        return base64.b64encode(bytes(raw)).decode("ascii")
    if isinstance(raw, str):  # already base64 (as on the wire): check it, keep one canonical form
        return base64.b64encode(base64.b64decode(raw, validate=True)).decode("ascii")
    raise TypeError("blob member is neither bytes nor base64 text")


def _read_inet(raw: Any) -> str:
    text = _read_text(raw).strip()
    return str(ipaddress.ip_address(text.lstrip("/")))  # Java's InetAddress prints a leading "/"


def _read_uuid(raw: Any) -> str:
    return str(uuid.UUID(_read_text(raw)))


def _read_cells(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise TypeError("collection member is not a list")
    return [cell_to_json(cell) for cell in raw]


def _read_map(raw: Any) -> dict[str, Any] | list[list[Any]]:
    if not isinstance(raw, list):
        raise TypeError("map member is not a list of entries")
    entries = [(entry.get("key") or {}, entry.get("value")) for entry in raw]
    if all(len(key) == 1 and next(iter(key)) in TEXT_MEMBERS for key, _ in entries):
        return {value_to_json(key): value_to_json(value) for key, value in entries}
    return [[value_to_json(key), value_to_json(value)] for key, value in entries]


def _read_udt(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise TypeError("udt member is not a map of fields")
    return {name: cell_to_json(cell) for name, cell in raw.items()}


_READERS: dict[str, Any] = {
    **dict.fromkeys(TEXT_MEMBERS, _read_text),
    **dict.fromkeys(INTEGER_MEMBERS, _read_integer),
    **dict.fromkeys(FLOAT_MEMBERS, _read_float),
    "decimalT": _read_decimal,
    "boolT": _read_bool,
    "dateT": _read_date,
    "timestampT": _read_timestamp,
    "timeT": _read_time,
    "durationT": _read_text,
    "inetT": _read_inet,
    "uuidT": _read_uuid,
    "timeuuidT": _read_uuid,
    "blobT": _read_blob,
    "listT": _read_cells,
    "setT": _read_cells,
    "tupleT": _read_cells,
    "mapT": _read_map,
    "udtT": _read_udt,
}


# ---------------------------------------------------------------------------------------------
# Writing: change-event JSON values -> Keyspaces cells (the local table, tests)
# ---------------------------------------------------------------------------------------------
def json_to_cell(value: Any, cql_type: CqlType) -> dict[str, Any]:
    """A ``KeyspacesCell`` holding ``value`` as a column of ``cql_type``; ValueError if it does not fit.

    ``None`` gives a cell with no value (a null tuple element); columns that are null are simply left out
    of an image.
    """
    if value is None:
        return {}
    return {"value": json_to_value(value, cql_type)}


def json_to_value(value: Any, cql_type: CqlType) -> dict[str, Any]:
    """A ``KeyspacesCellValue`` union for ``value``; ValueError naming the problem if it does not fit."""
    base = cql_type.base
    if value is None:
        raise ValueError(f"null is not allowed inside a {cql_type}")
    writer = _WRITERS.get(base.name)
    if writer is None:
        raise ValueError(f"CQL type {cql_type} cannot be written")
    return writer(value, base)


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


def _write_text(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if not isinstance(value, str):
        raise ValueError(f"expected a string for {cql_type}, got {_describe(value)}")
    if cql_type.name == "ascii" and not value.isascii():
        raise ValueError("ascii text holds non-ASCII characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # CQL text is UTF-8; a lone surrogate cannot be stored
        raise ValueError(f"text is not valid UTF-8: {exc.reason} at position {exc.start}") from exc
    return {f"{cql_type.name}T": value}


def _write_integer(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer for {cql_type}, got {_describe(value)}")
    bounds = INTEGER_BOUNDS.get(cql_type.name)
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{value} is outside the {cql_type} range {bounds[0]}..{bounds[1]}")
    return {f"{cql_type.name}T": str(value)}


def _write_float(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if isinstance(value, str) and value in NON_FINITE:
        return {f"{cql_type.name}T": value}
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"expected a number (or 'NaN', 'Infinity', '-Infinity') for {cql_type}, got {_describe(value)}"
        )
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return {f"{cql_type.name}T": "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")}
    if cql_type.name == "float" and abs(number) > FLOAT32_MAX:
        raise ValueError(f"{value} is outside the 32-bit float range")
    return {f"{cql_type.name}T": repr(number)}


def _write_decimal(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a decimal string for {cql_type}, got {_describe(value)}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite decimal")
    return {"decimalT": format(number, "f")}


def _write_bool(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false for {cql_type}, got {_describe(value)}")
    return {"boolT": value}


def _write_date(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if isinstance(value, datetime) or not isinstance(value, str | date):
        raise ValueError(f"expected a 'YYYY-MM-DD' string for {cql_type}, got {_describe(value)}")
    try:
        day = value if isinstance(value, date) else date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a 'YYYY-MM-DD' date") from None
    return {"dateT": str((day - _EPOCH_DATE).days)}


def _write_timestamp(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # a time without a zone is UTC
    else:
        raise ValueError(f"expected an ISO 8601 timestamp string for {cql_type}, got {_describe(value)}")
    millis = (moment - _EPOCH) // timedelta(milliseconds=1)
    return {"timestampT": str(millis)}


def _write_time(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if not isinstance(value, str):
        raise ValueError(f"expected an 'HH:MM:SS[.fffffffff]' string for {cql_type}, got {_describe(value)}")
    return {"timeT": str(_parse_time_text(value.strip()))}


def _write_duration(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if not isinstance(value, str) or not _DURATION_TEXT.match(value.strip()):
        raise ValueError(f"expected a CQL duration such as '1h30m' or 'P1DT2H' for {cql_type}, got {value!r}")
    return {"durationT": value.strip()}


def _write_inet(value: Any, cql_type: CqlType) -> dict[str, Any]:
    try:
        return {"inetT": str(ipaddress.ip_address(value))}
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def _write_uuid(value: Any, cql_type: CqlType) -> dict[str, Any]:
    try:
        parsed = uuid.UUID(value) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    if not isinstance(parsed, uuid.UUID):
        raise ValueError(f"expected a UUID string for {cql_type}, got {_describe(value)}")
    if cql_type.name == "timeuuid" and parsed.version != 1:
        raise ValueError(f"{value!r} is not a time-based (version 1) UUID")
    return {f"{cql_type.name}T": str(parsed)}


def _write_blob(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if isinstance(value, bytes | bytearray):
        return {"blobT": bytes(value)}
    if not isinstance(value, str):
        raise ValueError(f"expected a base64 string for {cql_type}, got {_describe(value)}")
    try:
        return {"blobT": base64.b64decode(value, validate=True)}
    except (binascii.Error, ValueError):
        raise ValueError(f"{value[:40]!r} is not valid base64") from None


def _write_list(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"expected an array for {cql_type}, got {_describe(value)}")
    element_type = cql_type.params[0]
    items = list(value)
    if cql_type.name == "set":
        items = _unique(items)
    cells = []
    for position, item in enumerate(items):
        if item is None:
            raise ValueError(f"element {position} is null; a {cql_type.name} cannot hold nulls")
        cells.append({"value": _nested(item, element_type, f"element {position}")})
    return {f"{cql_type.name}T": cells}


def _write_tuple(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected an array for {cql_type}, got {_describe(value)}")
    if len(value) != len(cql_type.params):
        raise ValueError(f"{cql_type} takes {len(cql_type.params)} elements, got {len(value)}")
    cells = [
        {} if item is None else {"value": _nested(item, element_type, f"element {position}")}
        for position, (item, element_type) in enumerate(zip(value, cql_type.params, strict=True))
    ]
    return {"tupleT": cells}


def _write_map(value: Any, cql_type: CqlType) -> dict[str, Any]:
    key_type, value_type = cql_type.params
    if isinstance(value, Mapping):
        if value and not key_type.is_text:
            raise ValueError(f"a {cql_type} is written as an array of [key, value] pairs, not an object")
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = []
        for position, pair in enumerate(value):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f"map entry {position} is not a [key, value] pair")
            pairs.append((pair[0], pair[1]))
    else:
        raise ValueError(f"expected an object or an array of [key, value] pairs for {cql_type}, got {_describe(value)}")
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


def _write_udt(value: Any, cql_type: CqlType) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object for {cql_type}, got {_describe(value)}")
    # The config names a UDT but not its fields, so each field's cell type follows its JSON value.
    fields: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise ValueError(f"UDT field name {name!r} is not a string")
        fields[name] = {} if item is None else {"value": _infer_value(item, f"field '{name}'")}
    return {"udtT": fields}


def _infer_value(value: Any, where: str) -> dict[str, Any]:
    """A union for a JSON value with no declared type: text, varint, double, boolean, list or nested UDT."""
    if isinstance(value, bool):
        return {"boolT": value}
    if isinstance(value, int):
        return {"varintT": str(value)}
    if isinstance(value, float):
        return _write_float(value, CqlType("double"))
    if isinstance(value, str):
        return {"textT": value}
    if isinstance(value, list | tuple):
        cells = []
        for position, item in enumerate(value):
            cells.append({} if item is None else {"value": _infer_value(item, f"{where} element {position}")})
        return {"listT": cells}
    if isinstance(value, Mapping):
        return _write_udt(value, CqlType("udt", udt_name="inferred"))
    raise ValueError(f"{where}: {_describe(value)} is not a JSON value")


def _nested(value: Any, cql_type: CqlType, where: str) -> dict[str, Any]:
    try:
        return json_to_value(value, cql_type)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


_WRITERS: dict[str, Any] = {
    **dict.fromkeys(TEXT_TYPES, _write_text),
    **dict.fromkeys(INTEGER_TYPES, _write_integer),
    "float": _write_float,
    "double": _write_float,
    "decimal": _write_decimal,
    "boolean": _write_bool,
    "date": _write_date,
    "timestamp": _write_timestamp,
    "time": _write_time,
    "duration": _write_duration,
    "inet": _write_inet,
    "uuid": _write_uuid,
    "timeuuid": _write_uuid,
    "blob": _write_blob,
    "list": _write_list,
    "set": _write_list,
    "tuple": _write_tuple,
    "map": _write_map,
    "udt": _write_udt,
}


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
def _parse_time_text(text: str) -> int:
    match = _TIME_TEXT.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an 'HH:MM:SS[.fffffffff]' time")
    hours, minutes, seconds = (int(part) for part in match.group(1, 2, 3))
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} is not a time of day")
    fraction = (match.group(4) or "").ljust(9, "0")
    return ((hours * 60 + minutes) * 60 + seconds) * 10**9 + int(fraction or 0)


def _format_time(nanos: int) -> str:
    seconds, fraction = divmod(nanos, 10**9)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{second:02d}.{fraction:09d}"


def _unique(items: list[Any]) -> list[Any]:
    unique: list[Any] = []
    for item in items:
        if item not in unique:
            unique.append(item)
    return unique


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
