"""The run-time check of per-row createdAt monotonicity on one page of a Keyspaces shard."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshvec.sources.keyspaces.streams import created_at_regressions

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def record(seq: int, title: str, offset_ms: float, **extra: Any) -> dict[str, Any]:
    return {
        "sequenceNumber": str(seq),
        "createdAt": T0 + timedelta(milliseconds=offset_ms),
        "partitionKeys": {"title": {"textT": title}},
        "newImage": {"valueCells": {"overview": {"value": {"textT": "row text"}}}},
        **extra,
    }


def test_only_a_row_whose_created_at_goes_backwards_counts(caplog: pytest.LogCaptureFixture) -> None:
    page = [
        record(1, "A", 10),
        record(2, "B", 5),  # another row, earlier: no regression
        record(3, "A", 10),  # equal: the stream position orders it
        record(4, "A", 9.999),  # 1 µs earlier than A's previous: a regression
        record(5, "A", 3),  # earlier again: another
        record(6, "B", 6),
        record(7, "C", 0, createdAt="not a time"),  # unreadable: the converter parks it
        record(8, "A", 1, clusteringKeys={"year": {"intT": "1975"}}),  # another row (clustering key)
    ]
    with caplog.at_level(logging.WARNING):
        assert created_at_regressions(page, "shardId-1") == 2
    [message] = [r.getMessage() for r in caplog.records]
    assert "shardId-1" in message and "2 record(s)" in message and "sequence number 4" in message
    assert "row text" not in message and "textT" not in message  # no key, no row data


def test_a_page_in_order_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert created_at_regressions([record(1, "A", 0), record(2, "A", 0), record(3, "A", 1)], "s") == 0
        assert created_at_regressions([], "s") == 0
    assert not caplog.records


@given(st.lists(st.tuples(st.sampled_from("ABC"), st.integers(0, 5)), max_size=30))
def test_the_count_equals_brute_force_over_any_page(page: list[tuple[str, int]]) -> None:
    """Against a direct count: each record compared with the previous record of its row."""
    records = [record(seq, title, offset) for seq, (title, offset) in enumerate(page)]
    expected = 0
    for i, (title, offset) in enumerate(page):
        before = [o for t, o in page[:i] if t == title]
        expected += bool(before) and offset < before[-1]
    assert created_at_regressions(records, "s") == expected
