"""Event cell values -> S3 Vectors metadata: every CQL type, the reversible forms, and the size limits."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshvec import constants as c
from freshvec.config import PipelineConfig, default_config
from freshvec.errors import MisconfigurationError, PoisonRecordError
from freshvec.metadata import (
    MAX_STORED_TEXT_BYTES,
    MetadataBuilder,
    convert_value,
    date_from_metadata,
    date_number,
    entry_bytes,
    epoch_millis,
    metadata_bytes,
    text_prefix,
    timestamp_from_metadata,
)
from freshvec.sources.keyspaces.cqltypes import parse_cql_type

CHANGED_AT = datetime(2026, 11, 22, 10, 15, 3, 120000, tzinfo=UTC)


def convert(value: object, type_text: str) -> object:
    return convert_value(value, parse_cql_type(type_text))


@pytest.mark.parametrize(
    ("type_text", "value", "expected"),
    [
        ("text", "Jurassic Park", "Jurassic Park"),
        ("ascii", "abc", "abc"),
        ("varchar", "ü", "ü"),
        ("int", 42, 42),
        ("bigint", -(2**40), -(2**40)),
        ("smallint", 7, 7),
        ("tinyint", -3, -3),
        ("counter", 10, 10),
        ("varint", 2**53, 2**53),
        ("varint", 2**80, str(2**80)),  # beyond a double's exact range: kept as text, not rounded
        ("float", 1.5, 1.5),
        ("double", 3, 3.0),
        ("double", "NaN", "NaN"),
        ("double", "-Infinity", "-Infinity"),
        ("decimal", "12.50", 12.5),
        ("decimal", "-0.001", -0.001),
        ("boolean", True, True),
        ("boolean", False, False),
        ("date", "1993-06-11", 19930611),
        ("date", "0001-01-01", 10101),
        ("timestamp", "2026-11-22T10:15:03.120Z", 1795342503120),
        ("timestamp", "1969-12-31T23:59:59.999Z", -1),
        ("time", "10:15:03.123456789", "10:15:03.123456789"),
        ("duration", "1h30m", "1h30m"),
        ("inet", "10.0.0.1", "10.0.0.1"),
        ("uuid", "5f0c3d52-4f3a-4c55-a1e1-6c1c1e1c1e1c", "5f0c3d52-4f3a-4c55-a1e1-6c1c1e1c1e1c"),
        ("timeuuid", "e3b0c442-98fc-11ee-b9d1-0242ac120002", "e3b0c442-98fc-11ee-b9d1-0242ac120002"),
        ("blob", "AAEC", "AAEC"),
        ("list<text>", ["a", "b"], ["a", "b"]),
        ("set<int>", [1, 2], [1, 2]),
        ("list<date>", ["2026-01-31"], [20260131]),
        ("frozen<list<decimal>>", ["1.5"], [1.5]),
        ("tuple<int, text, boolean>", [1, "x", True], [1, "x", True]),
        ("list<frozen<list<int>>>", [[1, 2], [3]], ["[1,2]", "[3]"]),
        ("map<text, int>", {"en": 1, "fr": 2}, ["en=1", "fr=2"]),
        ("map<int, text>", [[1, "one"], [2, "two"]], ["1=one", "2=two"]),
        ("map<text, frozen<list<int>>>", {"a": [1]}, ["a=[1]"]),
        ("udt<address>", {"city": "Lyon", "zip": 69000}, ["city=Lyon", "zip=69000"]),
        ("int", None, None),
        ("list<text>", [], None),  # Cassandra stores an empty collection as null
        ("map<text, int>", {}, None),
        ("text", {"$unknown": "custom", "value": "0xCAFE"}, "0xCAFE"),
    ],
)
def test_every_cell_type_converts(type_text: str, value: object, expected: object) -> None:
    assert convert(value, type_text) == expected


@pytest.mark.parametrize(
    ("type_text", "value"),
    [
        ("int", "42"),
        ("int", True),
        ("int", 1.5),
        ("text", 5),
        ("decimal", "twelve"),
        ("decimal", "1e400"),
        ("decimal", False),
        ("double", "1.5"),
        ("boolean", "true"),
        ("date", "1993-13-45"),
        ("date", 19930611),
        ("timestamp", "2026-11-22T10:15:03"),  # no zone
        ("list<int>", "1,2"),
        ("map<text, int>", "a=1"),
        ("map<int, text>", [[1, "one", "extra"]]),
    ],
)
def test_values_that_do_not_match_their_type_are_rejected(type_text: str, value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        convert(value, type_text)


@given(st.dates())
def test_date_numbers_read_back_and_sort_like_dates(day: date) -> None:
    number = date_number(day.isoformat())
    assert date_from_metadata(number) == day
    if day > date.min:
        assert date_number((day - timedelta(days=1)).isoformat()) < number


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_timestamps_read_back_to_the_millisecond(moment: datetime) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert timestamp_from_metadata(epoch_millis(moment)) == moment


def test_builder_adds_the_source_position_and_the_text() -> None:
    builder = MetadataBuilder(default_config())
    row = {
        "title": "Jurassic Park",
        "overview": "Dinosaurs.",
        "original_lang": "en",
        "rel_date": "1993-06-11",
        "popularity": "12.50",
        "vote_count": None,
        "vote_average": "7.10",
    }
    metadata = builder.build(row, seq="4965", changed_at=CHANGED_AT)
    assert metadata == {
        "title": "Jurassic Park",
        "original_lang": "en",
        "rel_date": 19930611,
        "popularity": 12.5,
        "vote_average": 7.1,
        "overview": "Dinosaurs.",
        c.META_SEQUENCE: "4965",
        c.META_CHANGED_AT: 1795342503120,
    }


def test_a_bad_value_names_its_column() -> None:
    builder = MetadataBuilder(default_config())
    with pytest.raises(PoisonRecordError, match=r"column 'vote_count' \(int\)"):
        builder.build({"title": "X", "overview": "y", "vote_count": "many"}, seq="1", changed_at=CHANGED_AT)


def test_filterable_metadata_over_2kb_is_poison_with_the_largest_columns_named() -> None:
    builder = MetadataBuilder(default_config())
    with pytest.raises(PoisonRecordError, match=r"filterable metadata is .* bytes.*original_lang"):
        builder.build({"title": "X", "overview": "y", "original_lang": "e" * 2100}, seq="1", changed_at=CHANGED_AT)


def test_long_columns_fit_when_declared_non_filterable_but_not_beyond_40kb() -> None:
    raw = default_config().to_dict()
    raw["columns"]["notes"] = "text"
    raw["metadata_fields"] = [*raw["metadata_fields"], "notes"]
    raw["vector_store"]["non_filterable_keys"] = ["overview", "notes"]
    builder = MetadataBuilder(PipelineConfig.from_dict(raw))
    metadata = builder.build({"title": "X", "overview": "y", "notes": "n" * 20_000}, seq="1", changed_at=CHANGED_AT)
    assert len(metadata["notes"]) == 20_000
    with pytest.raises(PoisonRecordError, match=f"allows {c.S3V_MAX_TOTAL_METADATA_BYTES} in total"):
        builder.build({"title": "X", "overview": "y", "notes": "n" * 41_000}, seq="1", changed_at=CHANGED_AT)


def test_long_text_is_stored_as_a_prefix_that_keeps_the_total_under_40kb() -> None:
    raw = default_config().to_dict()
    raw["columns"]["notes"] = "text"
    raw["metadata_fields"] = [*raw["metadata_fields"], "notes"]
    raw["vector_store"]["non_filterable_keys"] = ["overview", "notes"]
    builder = MetadataBuilder(PipelineConfig.from_dict(raw))
    text = "déjà vu " * 10_000  # 90,000 bytes of UTF-8
    alone = builder.build({"title": "X", "overview": text}, seq="1", changed_at=CHANGED_AT)
    assert text.startswith(alone["overview"])
    assert MAX_STORED_TEXT_BYTES - 100 < entry_bytes("overview", alone["overview"]) <= MAX_STORED_TEXT_BYTES
    crowded = builder.build({"title": "X", "overview": text, "notes": "n" * 20_000}, seq="1", changed_at=CHANGED_AT)
    assert metadata_bytes(crowded) <= c.S3V_MAX_TOTAL_METADATA_BYTES
    assert len(crowded["overview"]) < len(alone["overview"])


@given(st.text(min_size=0, max_size=300), st.integers(min_value=0, max_value=400))
def test_text_prefix_always_fits_and_is_a_prefix(text: str, budget: int) -> None:
    prefix = text_prefix("overview", text, budget)
    assert text.startswith(prefix)
    assert prefix == "" or entry_bytes("overview", prefix) <= budget


def test_more_than_50_metadata_keys_is_a_misconfiguration() -> None:
    raw = default_config().to_dict()
    extra = {f"c{i}": "int" for i in range(50)}
    raw["columns"].update(extra)
    raw["metadata_fields"] = [*raw["metadata_fields"], *extra]
    with pytest.raises(MisconfigurationError, match="50"):
        MetadataBuilder(PipelineConfig.from_dict(raw))


@given(
    st.one_of(
        st.text(),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.none(),
        st.lists(st.text(max_size=5), max_size=4),
    )
)
def test_an_entry_measures_as_its_compact_json(value: object) -> None:
    # The S3 Vectors limits count the JSON text of each entry; measured here independently of freshvec.
    expected = len(
        json.dumps({"col": value}, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    try:
        assert entry_bytes("col", value) == expected - 2  # the braces are not part of an entry
    except UnicodeEncodeError:  # lone surrogates cannot be UTF-8 and never arrive from JSON events
        assert isinstance(value, str | list)
