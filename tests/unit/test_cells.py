"""Keyspaces cells -> change-event values: one case per cell type, nesting, unknown members, bad values."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from freshvec.sources.keyspaces.cells import (
    UNKNOWN_TAG,
    cell_to_json,
    image_to_row,
    json_to_cell,
    json_to_value,
    row_to_image,
    value_to_json,
)
from freshvec.sources.keyspaces.cqltypes import parse_cql_type


def cell(**value) -> dict:
    return {"value": value, "metadata": {"writeTime": "1795000000000000"}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"textT": "Jurassic Park"}, "Jurassic Park"),
        ({"varcharT": "Amélie"}, "Amélie"),
        ({"asciiT": "plain"}, "plain"),
        ({"intT": "-42"}, -42),
        ({"bigintT": "9223372036854775807"}, 9223372036854775807),
        ({"smallintT": "-32768"}, -32768),
        ({"tinyintT": "127"}, 127),
        ({"varintT": "123456789012345678901234567890"}, 123456789012345678901234567890),
        ({"counterT": "17"}, 17),
        ({"floatT": "3.5"}, 3.5),
        ({"doubleT": "-0.125"}, -0.125),
        ({"doubleT": "NaN"}, "NaN"),
        ({"floatT": "Infinity"}, "Infinity"),
        ({"doubleT": "-Infinity"}, "-Infinity"),
        ({"decimalT": "12.50"}, "12.50"),
        ({"decimalT": "1.5E+3"}, "1500"),
        ({"decimalT": "0.000000000000000000000000000001"}, "0.000000000000000000000000000001"),
        ({"boolT": True}, True),
        ({"boolT": False}, False),
        ({"dateT": "0"}, "1970-01-01"),
        ({"dateT": "8562"}, "1993-06-11"),
        ({"dateT": "-1"}, "1969-12-31"),
        ({"dateT": "1993-06-11"}, "1993-06-11"),
        ({"timestampT": "1795342503120"}, "2026-11-22T10:15:03.120Z"),
        ({"timestampT": "-1000"}, "1969-12-31T23:59:59.000Z"),
        ({"timestampT": "2026-11-22T11:15:03.12+01:00"}, "2026-11-22T10:15:03.120Z"),
        ({"timeT": "36903500000001"}, "10:15:03.500000001"),
        ({"timeT": "10:15:03"}, "10:15:03.000000000"),
        ({"durationT": "1h30m"}, "1h30m"),
        ({"inetT": "192.168.0.1"}, "192.168.0.1"),
        ({"inetT": "/10.0.0.7"}, "10.0.0.7"),
        ({"inetT": "2001:DB8::1"}, "2001:db8::1"),
        ({"uuidT": "6F1E2C3A-8B6F-4C1E-9C5E-2D3B4A5F6E7D"}, "6f1e2c3a-8b6f-4c1e-9c5e-2d3b4a5f6e7d"),
        ({"timeuuidT": "d2177dd0-eaa2-11de-a572-001b779c76e3"}, "d2177dd0-eaa2-11de-a572-001b779c76e3"),
        ({"blobT": b"\x00\x01\xfe\xff"}, base64.b64encode(b"\x00\x01\xfe\xff").decode()),
        ({"blobT": "AAH+/w=="}, "AAH+/w=="),
    ],
)
def test_scalar_cells_convert_to_their_json_value(value, expected):
    assert cell_to_json(cell(**value)) == expected


def test_integers_are_exact_beyond_float_precision():
    assert cell_to_json(cell(bigintT="9007199254740993")) == 9007199254740993


def test_list_set_and_tuple_become_arrays_with_null_tuple_elements():
    assert cell_to_json(cell(listT=[cell(intT="1"), cell(intT="2"), cell(intT="2")])) == [1, 2, 2]
    assert cell_to_json(cell(setT=[cell(textT="a"), cell(textT="b")])) == ["a", "b"]
    assert cell_to_json(cell(tupleT=[cell(textT="x"), {}, cell(boolT=True)])) == ["x", None, True]
    assert cell_to_json(cell(listT=[])) == []


def test_map_with_text_keys_becomes_an_object():
    value = cell(
        mapT=[
            {"key": {"textT": "director"}, "value": {"textT": "Spielberg"}},
            {"key": {"textT": "composer"}, "value": {"textT": "Williams"}},
        ]
    )
    assert cell_to_json(value) == {"director": "Spielberg", "composer": "Williams"}


def test_map_with_non_text_keys_becomes_an_array_of_pairs():
    value = cell(
        mapT=[
            {"key": {"intT": "1993"}, "value": {"decimalT": "914.7"}},
            {"key": {"intT": "1997"}, "value": {"decimalT": "618.6"}},
        ]
    )
    assert cell_to_json(value) == [[1993, "914.7"], [1997, "618.6"]]


def test_nested_collections_and_udts_convert_all_the_way_down():
    nested = cell(
        mapT=[
            {
                "key": {"textT": "cast"},
                "value": {
                    "listT": [
                        cell(udtT={"name": cell(textT="Laura Dern"), "born": cell(dateT="-1084")}),
                        cell(udtT={"name": cell(textT="Sam Neill"), "aliases": cell(setT=[cell(textT="Nigel")])}),
                    ]
                },
            },
            {
                "key": {"textT": "ratings"},
                "value": {
                    "mapT": [{"key": {"uuidT": "00000000-0000-4000-8000-000000000001"}, "value": {"tinyintT": "9"}}]
                },
            },
        ]
    )
    assert cell_to_json(nested) == {
        "cast": [
            {"name": "Laura Dern", "born": "1967-01-13"},
            {"name": "Sam Neill", "aliases": ["Nigel"]},
        ],
        "ratings": [["00000000-0000-4000-8000-000000000001", 9]],
    }


def test_udt_becomes_an_object_with_null_fields_kept():
    assert cell_to_json(cell(udtT={"street": cell(textT="Main St"), "zip": {}})) == {"street": "Main St", "zip": None}


def test_sdk_unknown_member_is_tagged_not_a_crash():
    value = {"value": {"SDK_UNKNOWN_MEMBER": {"name": "vectorT"}}}
    assert cell_to_json(value) == {UNKNOWN_TAG: "vectorT", "value": None}


def test_member_this_version_does_not_know_is_tagged_with_its_raw_text():
    assert cell_to_json(cell(geoT="POINT(1 2)")) == {UNKNOWN_TAG: "geoT", "value": "POINT(1 2)"}
    assert cell_to_json(cell(pairT=[1, 2])) == {UNKNOWN_TAG: "pairT", "value": "[1, 2]"}


@pytest.mark.parametrize(
    "value",
    [{"intT": "forty"}, {"decimalT": "NaN"}, {"dateT": "1993-13-45"}, {"blobT": "not base64!"}, {"inetT": "999.1.1.1"}],
)
def test_unreadable_value_of_a_known_member_is_tagged_with_its_raw_text(value):
    ((member, raw),) = value.items()
    assert cell_to_json(cell(**value)) == {UNKNOWN_TAG: member, "value": raw}


def test_union_with_two_members_is_kept_whole_not_guessed():
    converted = value_to_json({"textT": "a", "intT": "1"})
    assert converted[UNKNOWN_TAG] == "intT+textT"
    assert '"textT": "a"' in converted["value"]


def test_a_value_that_is_not_a_union_is_tagged_with_its_type():
    assert value_to_json("plain") == {UNKNOWN_TAG: "str", "value": "plain"}
    assert cell_to_json({"value": ["a"]}) == {UNKNOWN_TAG: "list", "value": '["a"]'}


def test_null_and_empty_cells_are_null():
    assert cell_to_json(None) is None
    assert cell_to_json({"metadata": {"writeTime": "1"}}) is None
    assert value_to_json({}) is None


def test_image_to_row_merges_static_and_value_cells():
    image = {
        "valueCells": {"title": cell(textT="Jaws"), "year": cell(intT="1975")},
        "staticCells": {"studio": cell(textT="Universal")},
        "rowMetadata": {"writeTime": "1795000000000000"},
    }
    assert image_to_row(image) == {"studio": "Universal", "title": "Jaws", "year": 1975}
    assert image_to_row(None) is None
    assert image_to_row({}) is None
    assert image_to_row({"rowMetadata": {"writeTime": "1"}}) == {}


# ---- writing: json_to_cell / row_to_image ----------------------------------------------------
@pytest.mark.parametrize(
    ("value", "type_text", "expected"),
    [
        ("Jaws", "text", {"textT": "Jaws"}),
        ("Jaws", "varchar", {"varcharT": "Jaws"}),
        (1975, "int", {"intT": "1975"}),
        (2**70, "varint", {"varintT": str(2**70)}),
        (1.5, "double", {"doubleT": "1.5"}),
        ("NaN", "float", {"floatT": "NaN"}),
        (float("inf"), "double", {"doubleT": "Infinity"}),
        ("7.25", "decimal", {"decimalT": "7.25"}),
        (3, "decimal", {"decimalT": "3"}),
        (True, "boolean", {"boolT": True}),
        ("1993-06-11", "date", {"dateT": "8562"}),
        ("2026-11-22T10:15:03.120Z", "timestamp", {"timestampT": "1795342503120"}),
        ("2026-11-22T10:15:03.120", "timestamp", {"timestampT": "1795342503120"}),
        ("10:15:03.5", "time", {"timeT": "36903500000000"}),
        ("P1DT2H", "duration", {"durationT": "P1DT2H"}),
        ("-3w2d", "duration", {"durationT": "-3w2d"}),
        ("::1", "inet", {"inetT": "::1"}),
        ("AAH+/w==", "blob", {"blobT": b"\x00\x01\xfe\xff"}),
        (["b", "a", "b"], "set<text>", {"setT": [{"value": {"textT": "b"}}, {"value": {"textT": "a"}}]}),
        ([1, None], "tuple<int, text>", {"tupleT": [{"value": {"intT": "1"}}, {}]}),
        ([[1, "x"]], "map<int, text>", {"mapT": [{"key": {"intT": "1"}, "value": {"textT": "x"}}]}),
        ({}, "map<int, text>", {"mapT": []}),
        ([1], "frozen<list<int>>", {"listT": [{"value": {"intT": "1"}}]}),
    ],
)
def test_json_to_value_writes_the_model_encoding(value, type_text, expected):
    assert json_to_value(value, parse_cql_type(type_text)) == expected


def test_udt_fields_are_typed_from_their_json_values():
    written = json_to_value(
        {"name": "x", "n": 2, "r": 0.5, "ok": False, "tags": ["a"], "sub": {"z": None}}, parse_cql_type("udt<person>")
    )
    assert written == {
        "udtT": {
            "name": {"value": {"textT": "x"}},
            "n": {"value": {"varintT": "2"}},
            "r": {"value": {"doubleT": "0.5"}},
            "ok": {"value": {"boolT": False}},
            "tags": {"value": {"listT": [{"value": {"textT": "a"}}]}},
            "sub": {"value": {"udtT": {"z": {}}}},
        }
    }


@pytest.mark.parametrize(
    ("value", "type_text", "message"),
    [
        (5, "text", "expected a string"),
        ("é", "ascii", "non-ASCII"),
        ("broken \udcff text", "text", "not valid UTF-8"),
        ("5", "int", "expected an integer"),
        (True, "int", "expected an integer"),
        (2**31, "int", "outside the int range"),
        (128, "tinyint", "outside the tinyint range"),
        (1e39, "float", "32-bit float range"),
        ("abc", "decimal", "not a decimal"),
        ("Infinity", "decimal", "not a finite decimal"),
        (1, "boolean", "expected true or false"),
        ("11/06/1993", "date", "not a 'YYYY-MM-DD' date"),
        ("yesterday", "timestamp", "not an ISO 8601 timestamp"),
        ("25:00:00", "time", "not a time of day"),
        ("soon", "duration", "expected a CQL duration"),
        ("localhost", "inet", "not an IPv4 or IPv6 address"),
        ("xyz", "uuid", "not a UUID"),
        ("6f1e2c3a-8b6f-4c1e-9c5e-2d3b4a5f6e7d", "timeuuid", "version 1"),
        ("@@@", "blob", "not valid base64"),
        ("abc", "list<text>", "expected an array"),
        (["a", None], "list<text>", "element 1 is null"),
        ([1, "x"], "list<int>", "element 1: expected an integer"),
        ([1], "tuple<int, int>", "takes 2 elements"),
        ({"1": "x"}, "map<int, text>", "array of [key, value] pairs"),
        ([[1]], "map<int, text>", "not a [key, value] pair"),
        ([[1, "a"], [1, "b"]], "map<int, text>", "appears twice"),
        ({"a": 1}, "map<text, text>", "value of entry 0: expected a string"),
        ("x", "udt<person>", "expected an object"),
    ],
)
def test_json_to_cell_names_the_problem(value, type_text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        json_to_cell(value, parse_cql_type(type_text))


def test_json_to_cell_of_null_is_a_cell_without_value():
    assert json_to_cell(None, parse_cql_type("int")) == {}


def test_row_to_image_leaves_nulls_out_and_names_bad_columns():
    types = {"title": parse_cql_type("text"), "year": parse_cql_type("int"), "studio": parse_cql_type("text")}
    image = row_to_image({"title": "Jaws", "year": 1975, "studio": None}, types)
    assert image == {"valueCells": {"title": {"value": {"textT": "Jaws"}}, "year": {"value": {"intT": "1975"}}}}
    with_static = row_to_image({"title": "Jaws", "studio": "Universal"}, types, static_columns=["studio"])
    assert with_static["staticCells"] == {"studio": {"value": {"textT": "Universal"}}}
    assert image_to_row(with_static) == {"title": "Jaws", "studio": "Universal"}
    with pytest.raises(ValueError, match=r"column 'year' \(int\): expected an integer"):
        row_to_image({"title": "Jaws", "year": "1975"}, types)
    with pytest.raises(ValueError, match="column 'budget' is not a column"):
        row_to_image({"title": "Jaws", "budget": 7}, types)


def test_timestamps_with_offsets_and_datetimes_land_on_the_same_millisecond():
    moment = datetime(2026, 11, 22, 10, 15, 3, 120000, tzinfo=UTC)
    east = moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert json_to_value(east, parse_cql_type("timestamp")) == json_to_value(moment, parse_cql_type("timestamp"))
    assert cell_to_json(json_to_cell(east, parse_cql_type("timestamp"))) == "2026-11-22T10:15:03.120Z"
