"""The CQL type registry: every type parse_cql_type accepts has all four forms, and sample values round-trip.

Expected values are written out by hand (days and milliseconds since the epoch included), never computed
with the code under test.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

import pytest

from freshvec.metadata import convert_value
from freshvec.sources.keyspaces.cells import cell_to_json, json_to_cell
from freshvec.sources.keyspaces.cqltypes import ALL_TYPE_NAMES, parse_cql_type
from freshvec.sources.keyspaces.driver import CellError, to_driver_value, to_json_value
from freshvec.sources.keyspaces.types import BY_MEMBER, REGISTRY, CqlValueType, type_of

METHODS = ("from_cell", "to_cell", "to_driver", "from_driver", "to_metadata")
REFUSED = object()  # the loader refuses the type (counter: INSERT cannot write it; duration: unsupported)


def _list(*unions: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"value": union} for union in unions]


# cql, JSON value, its cell union, the JSON read back from that cell, the driver value, the JSON read back
# from the driver value, the metadata value. ``driver_in`` (when not None) is the file value given to the
# loader instead of the JSON value.
SAMPLES: list[tuple[str, Any, dict[str, Any], Any, Any, Any, Any, Any]] = [
    # cql, json, cell, json from cell, driver_in, driver, json from driver, metadata
    ("text", "Jaws", {"textT": "Jaws"}, "Jaws", None, "Jaws", "Jaws", "Jaws"),
    ("ascii", "abc", {"asciiT": "abc"}, "abc", None, "abc", "abc", "abc"),
    ("varchar", "ünï", {"varcharT": "ünï"}, "ünï", None, "ünï", "ünï", "ünï"),
    ("int", 42, {"intT": "42"}, 42, None, 42, 42, 42),
    (
        "bigint",
        9007199254740993,
        {"bigintT": "9007199254740993"},
        9007199254740993,
        None,
        9007199254740993,
        9007199254740993,
        "9007199254740993",  # beyond 2**53: a metadata double would round it
    ),
    ("smallint", -7, {"smallintT": "-7"}, -7, None, -7, -7, -7),
    ("tinyint", 127, {"tinyintT": "127"}, 127, None, 127, 127, 127),
    (
        "varint",
        123456789012345678901234567890,
        {"varintT": "123456789012345678901234567890"},
        123456789012345678901234567890,
        None,
        123456789012345678901234567890,
        123456789012345678901234567890,
        "123456789012345678901234567890",
    ),
    ("counter", 5, {"counterT": "5"}, 5, None, REFUSED, None, 5),
    ("float", 1.5, {"floatT": "1.5"}, 1.5, None, 1.5, 1.5, 1.5),
    ("double", 0.25, {"doubleT": "0.25"}, 0.25, None, 0.25, 0.25, 0.25),
    ("double", "-Infinity", {"doubleT": "-Infinity"}, "-Infinity", None, float("-inf"), "-Infinity", "-Infinity"),
    ("decimal", "12.50", {"decimalT": "12.50"}, "12.50", None, Decimal("12.50"), "12.50", 12.5),
    ("boolean", True, {"boolT": True}, True, None, True, True, True),
    ("date", "1993-06-11", {"dateT": "8562"}, "1993-06-11", None, date(1993, 6, 11), "1993-06-11", 19930611),
    (
        "timestamp",
        "2026-11-22T10:15:03.120Z",
        {"timestampT": "1795342503120"},
        "2026-11-22T10:15:03.120Z",
        None,
        datetime(2026, 11, 22, 10, 15, 3, 120000, tzinfo=UTC),
        "2026-11-22T10:15:03.120Z",
        1795342503120,
    ),
    (
        "time",
        "12:30:05.500000000",
        {"timeT": "45005500000000"},
        "12:30:05.500000000",
        "12:30:05.500000",
        time_of_day(12, 30, 5, 500000),
        "12:30:05.500000",
        "12:30:05.500000000",
    ),
    ("duration", "1h30m", {"durationT": "1h30m"}, "1h30m", None, REFUSED, None, "1h30m"),
    ("inet", "10.0.0.1", {"inetT": "10.0.0.1"}, "10.0.0.1", None, "10.0.0.1", "10.0.0.1", "10.0.0.1"),
    (
        "uuid",
        "00000000-0000-4000-8000-000000000001",
        {"uuidT": "00000000-0000-4000-8000-000000000001"},
        "00000000-0000-4000-8000-000000000001",
        None,
        uuid.UUID("00000000-0000-4000-8000-000000000001"),
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000001",
    ),
    (
        "timeuuid",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        {"timeuuidT": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        None,
        uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    ),
    ("blob", "AAE=", {"blobT": b"\x00\x01"}, "AAE=", None, b"\x00\x01", "AAE=", "AAE="),
    (
        "list<int>",
        [1, 2, 1],
        {"listT": _list({"intT": "1"}, {"intT": "2"}, {"intT": "1"})},
        [1, 2, 1],
        None,
        [1, 2, 1],
        [1, 2, 1],
        [1, 2, 1],
    ),
    (
        "set<text>",
        ["b", "a", "b"],
        {"setT": _list({"textT": "b"}, {"textT": "a"})},  # written once per element
        ["b", "a"],
        None,
        {"a", "b"},
        ["a", "b"],  # read back from the driver sorted
        ["b", "a", "b"],
    ),
    (
        "tuple<int, text>",
        [1, "a"],
        {"tupleT": _list({"intT": "1"}, {"textT": "a"})},
        [1, "a"],
        None,
        (1, "a"),
        [1, "a"],
        [1, "a"],
    ),
    (
        "map<text, int>",
        {"x": 1},
        {"mapT": [{"key": {"textT": "x"}, "value": {"intT": "1"}}]},
        {"x": 1},
        None,
        {"x": 1},
        {"x": 1},
        ["x=1"],
    ),
    (
        "map<int, text>",
        [[1, "a"]],
        {"mapT": [{"key": {"intT": "1"}, "value": {"textT": "a"}}]},
        [[1, "a"]],
        None,
        {1: "a"},
        [[1, "a"]],
        ["1=a"],
    ),
    (
        "frozen<list<date>>",
        ["2020-01-02"],
        {"listT": _list({"dateT": "18263"})},
        ["2020-01-02"],
        None,
        [date(2020, 1, 2)],
        ["2020-01-02"],
        [20200102],
    ),
    (
        "udt<address>",
        {"city": "Oslo", "zip": 1234},
        {"udtT": {"city": {"value": {"textT": "Oslo"}}, "zip": {"value": {"varintT": "1234"}}}},
        {"city": "Oslo", "zip": 1234},
        None,
        {"city": "Oslo", "zip": 1234},
        {"city": "Oslo", "zip": 1234},
        ["city=Oslo", "zip=1234"],
    ),
]


@pytest.mark.parametrize("name", ALL_TYPE_NAMES)
def test_every_cql_type_has_all_four_forms(name: str) -> None:
    kind = REGISTRY[name]
    assert name in kind.names
    for method in METHODS:
        assert getattr(type(kind), method) is not getattr(CqlValueType, method), f"{name} lacks {method}"


def test_every_cql_type_has_a_sample() -> None:
    assert {parse_cql_type(cql).name for cql, *_ in SAMPLES} == set(ALL_TYPE_NAMES)


def test_every_cell_member_reads_with_its_type() -> None:
    for kind in set(REGISTRY.values()):
        for member in kind.members:
            assert BY_MEMBER[member] is kind
    assert set(BY_MEMBER) >= {f"{name}T" for name in ALL_TYPE_NAMES if name not in ("boolean", "frozen")} | {"boolT"}


@pytest.mark.parametrize(("cql", "value", "cell", "from_cell"), [row[:4] for row in SAMPLES], ids=str)
def test_json_round_trips_through_the_stream_cell(cql: str, value: Any, cell: dict[str, Any], from_cell: Any) -> None:
    written = json_to_cell(value, parse_cql_type(cql))
    assert written == {"value": cell}
    assert cell_to_json(written) == from_cell


@pytest.mark.parametrize(
    ("cql", "value", "driver_in", "driver", "from_driver"),
    [(row[0], row[1], row[4], row[5], row[6]) for row in SAMPLES if row[5] is not REFUSED],
    ids=str,
)
def test_json_round_trips_through_the_driver(
    cql: str, value: Any, driver_in: Any, driver: Any, from_driver: Any
) -> None:
    cql_type = parse_cql_type(cql)
    bound = to_driver_value(value if driver_in is None else driver_in, cql_type)
    assert bound == driver and type(bound) is type(driver)
    assert to_json_value(bound, cql_type) == from_driver


@pytest.mark.parametrize(("cql", "words"), [("counter", "counter columns"), ("duration", "duration columns")])
def test_the_loader_refuses_what_insert_cannot_write(cql: str, words: str) -> None:
    value = next(row[1] for row in SAMPLES if row[0] == cql)
    with pytest.raises(CellError, match=words):
        to_driver_value(value, parse_cql_type(cql))


@pytest.mark.parametrize(("cql", "value", "metadata"), [(row[0], row[1], row[7]) for row in SAMPLES], ids=str)
def test_json_becomes_its_metadata_value(cql: str, value: Any, metadata: Any) -> None:
    converted = convert_value(value, parse_cql_type(cql))
    assert converted == metadata and type(converted) is type(metadata)


def test_frozen_has_the_forms_of_its_inner_type() -> None:
    frozen, inner = parse_cql_type("frozen<set<int>>"), parse_cql_type("set<int>")
    assert type_of(frozen) is type_of(inner)
    assert (
        json_to_cell([3, 1], frozen)
        == json_to_cell([3, 1], inner)
        == {"value": {"setT": _list({"intT": "3"}, {"intT": "1"})}}
    )
    assert to_driver_value([3, 1], frozen) == {1, 3}
    assert to_json_value({3, 1}, frozen) == [1, 3]
    assert convert_value([3, 1], frozen) == [3, 1]
