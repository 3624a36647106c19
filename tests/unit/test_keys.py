"""Vector keys: deterministic, reversible, bounded; partition keys keep a row's changes together."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshvec.errors import PoisonRecordError
from freshvec.keys import parse_vector_key, partition_key, vector_key

COLUMNS = ("shop", "sku", "day")
key_values = st.one_of(st.text(min_size=0, max_size=40), st.integers(), st.booleans())


def test_single_text_key_reads_naturally():
    assert vector_key({"title": "Jurassic Park"}, ("title",)) == '["Jurassic Park"]'


def test_composite_key_follows_the_configured_column_order_not_the_dict_order():
    row = {"day": "2026-01-31", "sku": 42, "shop": "north"}
    assert vector_key(row, COLUMNS) == '["north",42,"2026-01-31"]'


@given(st.tuples(key_values, key_values, key_values))
def test_keys_round_trip_for_any_values(values):
    row = dict(zip(COLUMNS, values, strict=True))
    key = vector_key(row, COLUMNS)
    assert parse_vector_key(key, COLUMNS) == row
    assert vector_key(parse_vector_key(key, COLUMNS), COLUMNS) == key


def test_separators_inside_values_cannot_collide():
    a = vector_key({"shop": 'a","b', "sku": 1, "day": "d"}, COLUMNS)
    b = vector_key({"shop": "a", "sku": 1, "day": "d"}, COLUMNS)
    assert a != b


def test_missing_or_null_key_column_is_poison():
    with pytest.raises(PoisonRecordError, match="'sku' is missing or null"):
        vector_key({"shop": "north", "sku": None, "day": "d"}, COLUMNS)
    with pytest.raises(PoisonRecordError, match="'day' is missing"):
        vector_key({"shop": "north", "sku": 1}, COLUMNS)


def test_over_long_key_is_poison_not_a_crash():
    with pytest.raises(PoisonRecordError, match="at most 1024"):
        vector_key({"title": "x" * 1100}, ("title",))
    assert len(vector_key({"title": "x" * 1000}, ("title",))) <= 1024


def test_parse_rejects_foreign_keys():
    with pytest.raises(ValueError, match="not a vector key"):
        parse_vector_key('["only-one"]', COLUMNS)


def test_partition_key_is_the_vector_key_or_a_stable_hash_when_too_long():
    short = vector_key({"title": "Alien"}, ("title",))
    assert partition_key(short) == short
    long_key = vector_key({"title": "y" * 500}, ("title",))
    hashed = partition_key(long_key)
    assert hashed.startswith("sha256:") and len(hashed) <= 256
    assert partition_key(long_key) == hashed
