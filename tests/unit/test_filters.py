"""Filter validation (what S3 Vectors accepts) and local evaluation (what it means)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshvec.filters import FilterError, matches, parse_filter, validate_filter

MOVIE = {"title": "Jurassic Park", "original_lang": "en", "vote_count": 9000, "vote_average": 7.9, "tags": ["dino"]}


@pytest.mark.parametrize(
    "doc",
    [
        {"genre": "documentary"},
        {"genre": {"$eq": "documentary"}},
        {"genre": {"$ne": "drama"}},
        {"year": {"$gt": 2019}},
        {"year": {"$gte": 2020, "$lte": 2024}},
        {"score": {"$lt": 7.5}},
        {"genre": {"$in": ["comedy", "documentary"]}},
        {"genre": {"$nin": ["comedy", 3, True]}},
        {"genre": {"$exists": False}},
        {"flag": True},
        {"$and": [{"genre": "drama"}, {"year": {"$gte": 2020}}]},
        {"$or": [{"genre": "drama"}, {"$and": [{"a": 1}, {"b": {"$exists": True}}]}]},
        {"genre": "drama", "year": 2020},
    ],
)
def test_valid_filters_pass(doc: dict) -> None:
    validate_filter(doc)


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        ([], "", "must be a JSON object"),
        ({}, "", "must not be empty"),
        ({"year": {"$gt": "2020"}}, "year.$gt", "takes a number, got a string"),
        ({"year": {"$gte": True}}, "year.$gte", "takes a number, got a boolean"),
        ({"genre": {"$in": []}}, "genre.$in", "non-empty array"),
        ({"genre": {"$in": "drama"}}, "genre.$in", "non-empty array"),
        ({"genre": {"$in": ["a", ["b"]]}}, "genre.$in[1]", "got an array"),
        ({"genre": {"$exists": 1}}, "genre.$exists", "true or false"),
        ({"genre": {"$regex": "dr.*"}}, "genre.$regex", "unknown operator '$regex'"),
        ({"genre": {}}, "genre", "must not be empty"),
        ({"genre": None}, "genre", "got null"),
        ({"genre": ["a", "b"]}, "genre", "got an array"),
        ({"genre": {"$eq": {"x": 1}}}, "genre.$eq", "got an object"),
        ({"$and": {"genre": "drama"}}, "$and", "non-empty array of filters"),
        ({"$or": []}, "$or", "non-empty array of filters"),
        ({"$and": [{"genre": "drama"}, "x"]}, "$and[1]", "must be a JSON object"),
        ({"$eq": {"genre": "drama"}}, "$eq", "cannot be used a field"),
        ({"$not": {"genre": "drama"}}, "$not", "cannot be used here"),
        ({"$or": [{"a": {"$gt": float("inf")}}]}, "$or[0].a.$gt", "not a finite number"),
    ],
)
def test_invalid_filters_name_the_bad_part(doc: object, path: str, words: str) -> None:
    with pytest.raises(FilterError) as info:
        validate_filter(doc)
    assert info.value.path == path
    assert words in str(info.value)


def test_parse_filter_reports_bad_json_position() -> None:
    with pytest.raises(FilterError, match=r"not valid JSON .*line 1 column"):
        parse_filter('{"genre": drama}')
    assert parse_filter('{"vote_count": {"$gte": 100}}') == {"vote_count": {"$gte": 100}}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"original_lang": "en"}, True),
        ({"original_lang": "fr"}, False),
        ({"original_lang": {"$ne": "fr"}}, True),
        ({"vote_count": {"$gte": 9000, "$lt": 9001}}, True),
        ({"vote_count": {"$gt": 9000}}, False),
        ({"vote_average": {"$lte": 7.9}}, True),
        ({"title": {"$gt": 1}}, False),  # strings never satisfy a numeric range
        ({"original_lang": {"$in": ["de", "en"]}}, True),
        ({"original_lang": {"$nin": ["de", "en"]}}, False),
        ({"tags": "dino"}, True),  # array metadata: any element
        ({"tags": {"$ne": "dino"}}, False),
        ({"tags": {"$in": ["shark", "dino"]}}, True),
        ({"missing": {"$exists": False}}, True),
        ({"title": {"$exists": True}}, True),
        ({"missing": {"$ne": "x"}}, False),  # a missing key matches only $exists: false
        ({"missing": {"$nin": ["x"]}}, False),
        ({"$and": [{"original_lang": "en"}, {"vote_count": {"$lt": 10}}]}, False),
        ({"$or": [{"original_lang": "fr"}, {"vote_count": {"$gt": 10}}]}, True),
        ({"original_lang": "en", "vote_count": 1}, False),  # several keys: all must match
        ({"vote_count": 9000.0}, True),
    ],
)
def test_matches_follows_filter_semantics(doc: dict, expected: bool) -> None:
    validate_filter(doc)
    assert matches(doc, MOVIE) is expected


def test_booleans_and_numbers_never_compare_equal() -> None:
    assert matches({"flag": True}, {"flag": True})
    assert not matches({"flag": True}, {"flag": 1})
    assert not matches({"count": 1}, {"count": True})
    assert not matches({"count": {"$gte": 0}}, {"count": True})


def test_no_filter_matches_everything() -> None:
    assert matches(None, {})


_scalars = st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans())
_metadata = st.dictionaries(st.sampled_from(["a", "b", "c"]), _scalars, max_size=3)
_leaf = st.builds(lambda k, v: {k: v}, st.sampled_from(["a", "b", "c"]), _scalars)


@given(_metadata, st.lists(_leaf, min_size=1, max_size=4))
def test_and_or_agree_with_all_any(metadata: dict, leaves: list[dict]) -> None:
    validate_filter({"$and": leaves})
    assert matches({"$and": leaves}, metadata) == all(matches(leaf, metadata) for leaf in leaves)
    assert matches({"$or": leaves}, metadata) == any(matches(leaf, metadata) for leaf in leaves)


@given(_metadata, st.sampled_from(["a", "b", "c"]), st.lists(_scalars, min_size=1, max_size=4))
def test_in_and_nin_are_complements_when_the_key_exists(metadata: dict, key: str, values: list) -> None:
    in_result = matches({key: {"$in": values}}, metadata)
    nin_result = matches({key: {"$nin": values}}, metadata)
    if key in metadata:
        assert in_result != nin_result
    else:
        assert not in_result and not nin_result


def test_starts_with_matches_string_prefixes_and_array_elements() -> None:
    validate_filter({"sku": {"$startsWith": "XR-"}})
    assert matches({"sku": {"$startsWith": "XR-"}}, {"sku": "XR-2250"})
    assert not matches({"sku": {"$startsWith": "XR-"}}, {"sku": "RX-100"})
    assert matches({"tags": {"$startsWith": "tr"}}, {"tags": ["road", "trail"]})
    assert not matches({"n": {"$startsWith": "1"}}, {"n": 12})
    assert not matches({"sku": {"$startsWith": "X"}}, {})


def test_starts_with_needs_a_string_and_an_enhanced_index() -> None:
    with pytest.raises(FilterError, match=r"sku.\$startsWith: \$startsWith takes a non-empty string"):
        validate_filter({"sku": {"$startsWith": ""}})
    with pytest.raises(FilterError, match=r"at \$or\[1\].sku.\$startsWith: \$startsWith needs an ENHANCED index"):
        validate_filter({"$or": [{"a": 1}, {"sku": {"$startsWith": "X"}}]}, enhanced=False)
    validate_filter({"sku": {"$eq": "X"}}, enhanced=False)


def test_an_enhanced_filter_takes_at_most_100_conditions() -> None:
    validate_filter({"$and": [{"a": i} for i in range(100)]})
    with pytest.raises(FilterError, match="101 conditions"):
        validate_filter({"$and": [{"a": {"$gte": 0, "$lte": i}} for i in range(50)] + [{"b": 1}]})
