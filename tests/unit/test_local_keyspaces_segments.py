"""The stand-in's scan segments: every key in exactly one segment, pages in key order, late keys included."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from freshvec.local.keyspaces.segments import SegmentIndex


def _segment_of(key_id: str, count: int) -> int:  # the token rule, written out independently
    return int.from_bytes(hashlib.sha256(key_id.encode()).digest()[:8], "big") % count


def _walk(index: SegmentIndex, segment: int, count: int, limit: int) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        page = index.page(segment, count, after, limit)
        seen += page
        if len(page) < limit:
            return seen
        after = page[-1]


@given(
    early=st.lists(st.text(min_size=1, max_size=6), max_size=40),
    late=st.lists(st.text(min_size=1, max_size=6), max_size=40),
    count=st.integers(1, 5),
    limit=st.integers(1, 7),
)
def test_paged_segments_cover_every_key_once_in_order(
    early: list[str], late: list[str], count: int, limit: int
) -> None:
    index = SegmentIndex()
    for key_id in early:
        index.add(key_id)
    index.page(0, count, None, 1)  # the segmentation for ``count`` now exists; later keys must join it
    for key_id in late:
        index.add(key_id)
    for segment in range(count):
        expected = sorted({k for k in early + late if _segment_of(k, count) == segment})
        assert _walk(index, segment, count, limit) == expected


def test_a_cursor_between_keys_resumes_after_it() -> None:
    index = SegmentIndex()
    for key_id in ("a", "c", "e"):
        index.add(key_id)
    assert index.page(0, 1, "b", 10) == ["c", "e"]
    assert index.page(0, 1, "e", 10) == []
