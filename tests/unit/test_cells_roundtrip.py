"""Property tests: any JSON value that fits a CQL type survives json_to_cell -> cell_to_json unchanged."""

from __future__ import annotations

import base64
import math
import string
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshvec.events import format_timestamp
from freshvec.sources.keyspaces.cells import cell_to_json, image_to_row, json_to_cell, row_to_image
from freshvec.sources.keyspaces.cqltypes import CqlType

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SCALARS: dict[str, st.SearchStrategy] = {
    "text": st.text(max_size=30),
    "varchar": st.text(max_size=30),
    "ascii": st.text(alphabet=string.printable, max_size=30),
    "int": st.integers(-(2**31), 2**31 - 1),
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "smallint": st.integers(-(2**15), 2**15 - 1),
    "tinyint": st.integers(-(2**7), 2**7 - 1),
    "varint": st.integers(-(10**38), 10**38),
    "counter": st.integers(-(2**63), 2**63 - 1),
    "double": st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(["NaN", "Infinity", "-Infinity"]),
    "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "decimal": st.decimals(allow_nan=False, allow_infinity=False, places=6).map(lambda d: format(d, "f")),
    "boolean": st.booleans(),
    "date": st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
    "timestamp": st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))
    .map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000, tzinfo=UTC))
    .map(format_timestamp),
    "time": st.integers(0, 86_400 * 10**9 - 1).map(
        lambda n: f"{n // 3_600_000_000_000:02d}:{n // 60_000_000_000 % 60:02d}:{n // 10**9 % 60:02d}.{n % 10**9:09d}"
    ),
    "duration": st.sampled_from(["1h30m", "P1Y2M3DT4H5M6S", "-2d", "12ms", "P2W"]),
    "inet": st.ip_addresses().map(str),
    "uuid": st.uuids().map(str),
    "timeuuid": st.uuids(version=1).map(str),
    "blob": st.binary(max_size=40).map(lambda raw: base64.b64encode(raw).decode()),
}


def _scalar_type() -> st.SearchStrategy[CqlType]:
    return st.sampled_from(sorted(_SCALARS)).map(CqlType)


def _types() -> st.SearchStrategy[CqlType]:
    return st.recursive(
        _scalar_type(),
        lambda inner: st.one_of(
            inner.map(lambda t: CqlType("list", (t,))),
            _scalar_type().map(lambda t: CqlType("set", (t,))),
            st.tuples(_scalar_type(), inner).map(lambda kv: CqlType("map", kv)),
            st.lists(inner, min_size=1, max_size=3).map(lambda ts: CqlType("tuple", tuple(ts))),
            inner.map(lambda t: CqlType("frozen", (t,))),
        ),
        max_leaves=4,
    )


def _values(cql_type: CqlType) -> st.SearchStrategy:
    base = cql_type.base
    if base.name in _SCALARS:
        return _SCALARS[base.name]
    if base.name == "list":
        return st.lists(_values(base.params[0]), max_size=4)
    if base.name == "set":
        return st.lists(_values(base.params[0]), max_size=4, unique_by=_identity)
    if base.name == "tuple":
        return st.tuples(*(st.none() | _values(p) for p in base.params)).map(list)
    key_type, value_type = base.params
    if key_type.is_text:
        return st.dictionaries(_values(key_type), _values(value_type), max_size=4)
    pairs = st.lists(
        st.tuples(_values(key_type), _values(value_type)), min_size=1, max_size=4, unique_by=lambda p: _identity(p[0])
    )
    return pairs.map(lambda items: [list(pair) for pair in items])


def _identity(value):
    # What counts as "the same" element once converted: floats compare by value, so 0.0 and -0.0 are one.
    return repr(value) if not isinstance(value, float) else ("float", value if value != 0 else 0.0)


def _same(left, right) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return left == right and type(left) is type(right)


@st.composite
def typed_values(draw):
    cql_type = draw(_types())
    return cql_type, draw(_values(cql_type))


@SETTINGS
@given(typed_values())
def test_every_fitting_value_round_trips(typed):
    cql_type, value = typed
    assert _same(cell_to_json(json_to_cell(value, cql_type)), value), (str(cql_type), value)


@SETTINGS
@given(
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), st.tuples(_types(), st.data()), max_size=5)
)
def test_rows_round_trip_through_images(columns):
    types = {name: cql_type for name, (cql_type, _) in columns.items()}
    row = {name: data.draw(_values(cql_type)) for name, (cql_type, data) in columns.items()}
    assert _same(image_to_row(row_to_image(row, types)), row)


@SETTINGS
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    ).filter(lambda v: isinstance(v, dict))
)
def test_udt_objects_round_trip(value):
    assert _same(cell_to_json(json_to_cell(value, CqlType("udt", udt_name="any"))), value)


def test_decimal_digits_are_never_lost():
    value = "1234567890123456789012345678901234567890.000000000000000000001"
    assert cell_to_json(json_to_cell(value, CqlType("decimal"))) == value
    assert Decimal(value) == Decimal(cell_to_json(json_to_cell(value, CqlType("decimal"))))


def test_timeuuid_and_uuid_round_trip_in_canonical_form():
    value = str(uuid.uuid1())
    assert cell_to_json(json_to_cell(value.upper(), CqlType("timeuuid"))) == value


def test_date_far_from_the_epoch_round_trips():
    for day in (date(1, 1, 1), date(9999, 12, 31), date(1970, 1, 1) - timedelta(days=1)):
        assert cell_to_json(json_to_cell(day.isoformat(), CqlType("date"))) == day.isoformat()
