"""Scalar CQL types: text, integers, floats, decimal, boolean, inet, uuid/timeuuid, blob.

Stream cells carry numbers as strings, ``blobT`` as bytes, ``boolT`` as a bool. In change events decimals
are exact strings, non-finite floats the strings ``"NaN"``/``"Infinity"``/``"-Infinity"``, blobs base64.
In metadata integers beyond +-2**53 become decimal strings (metadata numbers are doubles), decimals
numbers, and the text-like types (text, inet, uuid, blob) strings.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from freshvec.sources.keyspaces.cqltypes import CqlType
from freshvec.sources.keyspaces.types.base import (
    CellError,
    CqlValueType,
    describe,
    describe_input,
    expect,
    parse_input_text,
    register,
)

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
INTEGER_BOUNDS = {
    "tinyint": (-(2**7), 2**7 - 1),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
    "counter": (-(2**63), 2**63 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38
MAX_EXACT_INT = 2**53
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def read_text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError("text member is not a string")
    return raw


class TextType(CqlValueType):
    names = ("text", "varchar", "ascii")
    members = ("textT", "varcharT", "asciiT")

    def from_cell(self, raw: Any) -> str:
        return read_text(raw)

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if not isinstance(value, str):
            raise ValueError(f"expected a string for {cql}, got {describe(value)}")
        if cql.name == "ascii" and not value.isascii():
            raise ValueError("ascii text holds non-ASCII characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # CQL text is UTF-8; a lone surrogate cannot be stored
            raise ValueError(f"text is not valid UTF-8: {exc.reason} at position {exc.start}") from exc
        return {f"{cql.name}T": value}

    def to_driver(self, value: Any, cql: CqlType) -> str:
        if not isinstance(value, str):
            raise CellError(f"expected text, got {describe_input(value)}")
        if cql.name == "ascii" and not value.isascii():
            raise CellError("ascii column holds non-ASCII characters")
        return value

    def from_driver(self, value: Any, cql: CqlType) -> Any:
        return value

    def to_metadata(self, value: Any, cql: CqlType) -> str:
        return expect(value, str, cql.name)


class IntegerType(CqlValueType):
    names = ("int", "bigint", "smallint", "tinyint", "varint", "counter")
    members = ("intT", "bigintT", "smallintT", "tinyintT", "varintT", "counterT")

    def from_cell(self, raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise TypeError("integer member is not a string")
        return int(raw)

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer for {cql}, got {describe(value)}")
        bounds = INTEGER_BOUNDS.get(cql.name)
        if bounds and not bounds[0] <= value <= bounds[1]:
            raise ValueError(f"{value} is outside the {cql} range {bounds[0]}..{bounds[1]}")
        return {f"{cql.name}T": str(value)}

    def to_driver(self, value: Any, cql: CqlType) -> int:
        name = cql.name
        if name == "counter":
            raise CellError("counter columns cannot be written with INSERT; update them with cqlsh")
        if isinstance(value, bool):
            raise CellError(f"expected a whole number, got {describe_input(value)}")
        if isinstance(value, Decimal | float):
            integral = value == value.to_integral_value() if isinstance(value, Decimal) else value.is_integer()
            if not integral:
                raise CellError(f"expected a whole number, got {value}")
            value = int(value)
        elif isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError as exc:
                raise CellError(f"expected a whole number, got {value!r}") from exc
        elif not isinstance(value, int):
            raise CellError(f"expected a whole number, got {describe_input(value)}")
        bounds = INTEGER_BOUNDS.get(name)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise CellError(f"{value} is out of range for {name}")
        return value

    def from_driver(self, value: Any, cql: CqlType) -> Any:
        return value

    def to_metadata(self, value: Any, cql: CqlType) -> int | str:
        number = expect(value, int, cql.name)
        return number if abs(number) <= MAX_EXACT_INT else str(number)


def float_text(number: float) -> str:
    """The event text of a non-finite float."""
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


class FloatType(CqlValueType):
    names = ("float", "double")
    members = ("floatT", "doubleT")

    def from_cell(self, raw: Any) -> float | str:
        if isinstance(raw, bool):
            raise TypeError("float member is a bool")
        number = float(raw)
        return number if math.isfinite(number) else float_text(number)

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if isinstance(value, str) and value in NON_FINITE:
            return {f"{cql.name}T": value}
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number (or 'NaN', 'Infinity', '-Infinity') for {cql}, got {describe(value)}")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            return {f"{cql.name}T": float_text(number)}
        if cql.name == "float" and abs(number) > FLOAT32_MAX:
            raise ValueError(f"{value} is outside the 32-bit float range")
        return {f"{cql.name}T": repr(number)}

    def to_driver(self, value: Any, cql: CqlType) -> float:
        if isinstance(value, bool):
            raise CellError(f"expected a number, got {describe_input(value)}")
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise CellError(f"expected a number, got {value!r}") from exc

    def from_driver(self, value: Any, cql: CqlType) -> float | str:
        number = float(value)
        return number if math.isfinite(number) else str(number).replace("inf", "Infinity").replace("nan", "NaN")

    def to_metadata(self, value: Any, cql: CqlType) -> float | str:
        if isinstance(value, str) and value in NON_FINITE:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)


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


class DecimalType(CqlValueType):
    names = ("decimal",)
    members = ("decimalT",)

    def from_cell(self, raw: Any) -> str:
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise TypeError("decimal member is not a string")
        number = Decimal(str(raw).strip())
        if not number.is_finite():
            raise ValueError("decimal is not finite")
        return format(number, "f")  # plain notation, every digit kept

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected a decimal string for {cql}, got {describe(value)}")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a finite decimal")
        return {"decimalT": format(number, "f")}

    def to_driver(self, value: Any, cql: CqlType) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            raise CellError(f"expected a decimal, got {describe_input(value)}")
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise CellError(f"expected a decimal, got {value!r}") from exc
        if not result.is_finite():
            raise CellError(f"{value!r} is not a finite decimal")
        return result

    def from_driver(self, value: Any, cql: CqlType) -> str:
        return str(value)

    def to_metadata(self, value: Any, cql: CqlType) -> float:
        return decimal_number(value)


class BooleanType(CqlValueType):
    names = ("boolean",)
    members = ("boolT",)

    def from_cell(self, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise TypeError("bool member is not a boolean")

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false for {cql}, got {describe(value)}")
        return {"boolT": value}

    def to_driver(self, value: Any, cql: CqlType) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise CellError(f"expected true or false, got {value!r}")

    def from_driver(self, value: Any, cql: CqlType) -> Any:
        return value

    def to_metadata(self, value: Any, cql: CqlType) -> bool:
        return expect(value, bool, cql.name)


class InetType(CqlValueType):
    names = ("inet",)
    members = ("inetT",)

    def from_cell(self, raw: Any) -> str:
        text = read_text(raw).strip()
        return str(ipaddress.ip_address(text.lstrip("/")))  # Java's InetAddress prints a leading "/"

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        try:
            return {"inetT": str(ipaddress.ip_address(value))}
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None

    def to_driver(self, value: Any, cql: CqlType) -> str:
        return str(parse_input_text(value, ipaddress.ip_address, "an IP address"))

    def from_driver(self, value: Any, cql: CqlType) -> str:
        return str(value)

    def to_metadata(self, value: Any, cql: CqlType) -> str:
        return expect(value, str, cql.name)


class UuidType(CqlValueType):
    names = ("uuid", "timeuuid")
    members = ("uuidT", "timeuuidT")

    def from_cell(self, raw: Any) -> str:
        return str(uuid.UUID(read_text(raw)))

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        try:
            parsed = uuid.UUID(value) if isinstance(value, str) else value
        except ValueError:
            raise ValueError(f"{value!r} is not a UUID") from None
        if not isinstance(parsed, uuid.UUID):
            raise ValueError(f"expected a UUID string for {cql}, got {describe(value)}")
        if cql.name == "timeuuid" and parsed.version != 1:
            raise ValueError(f"{value!r} is not a time-based (version 1) UUID")
        return {f"{cql.name}T": str(parsed)}

    def to_driver(self, value: Any, cql: CqlType) -> uuid.UUID:
        parsed = parse_input_text(value, uuid.UUID, "a UUID")
        if cql.name == "timeuuid" and parsed.version != 1:
            raise CellError(f"{parsed} is not a time-based (version 1) UUID")
        return parsed

    def from_driver(self, value: Any, cql: CqlType) -> str:
        return str(value)

    def to_metadata(self, value: Any, cql: CqlType) -> str:
        return expect(value, str, cql.name)


class BlobType(CqlValueType):
    names = ("blob",)
    members = ("blobT",)

    def from_cell(self, raw: Any) -> str:
        if isinstance(raw, bytes | bytearray):
            return base64.b64encode(bytes(raw)).decode("ascii")
        if isinstance(raw, str):  # already base64 (as on the wire): check it, keep one canonical form
            return base64.b64encode(base64.b64decode(raw, validate=True)).decode("ascii")
        raise TypeError("blob member is neither bytes nor base64 text")

    def to_cell(self, value: Any, cql: CqlType) -> dict[str, Any]:
        if isinstance(value, bytes | bytearray):
            return {"blobT": bytes(value)}
        if not isinstance(value, str):
            raise ValueError(f"expected a base64 string for {cql}, got {describe(value)}")
        try:
            return {"blobT": base64.b64decode(value, validate=True)}
        except (binascii.Error, ValueError):
            raise ValueError(f"{value[:40]!r} is not valid base64") from None

    def to_driver(self, value: Any, cql: CqlType) -> bytes:
        return parse_input_text(value, lambda text: base64.b64decode(text, validate=True), "base64 text")

    def from_driver(self, value: Any, cql: CqlType) -> str:
        return base64.b64encode(bytes(value)).decode("ascii")

    def to_metadata(self, value: Any, cql: CqlType) -> str:
        return expect(value, str, cql.name)


TEXT = register(TextType())
INTEGER = register(IntegerType())
FLOAT = register(FloatType())
DECIMAL = register(DecimalType())
BOOLEAN = register(BooleanType())
INET = register(InetType())
UUID = register(UuidType())
BLOB = register(BlobType())
