"""The Keyspaces stand-in's scan segments: which token range a row key falls in, and each range's keys in order.

A parallel scan reads segment ``i`` of ``n`` a page at a time, in key order after a cursor. Walking every key
of the table for every page made a full scan quadratic in the table's size (100,000 rows: 100 pages per
segment, each a pass over all rows); the keys of a segment are kept sorted instead, per segment count asked
for, and a page starts at the cursor by bisection.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools


class SegmentIndex:
    """Row key ids by scan segment, sorted; keys are only ever added (rows ever written stay, as tokens do)."""

    def __init__(self) -> None:
        self._hashes: dict[str, int] = {}  # key id -> its token, computed once
        self._by_count: dict[int, list[list[str]]] = {}  # segment count -> sorted key ids of each segment

    def add(self, key_id: str) -> None:
        if key_id in self._hashes:
            return
        token = self._hashes[key_id] = _token(key_id)
        for count, segments in self._by_count.items():
            bisect.insort(segments[token % count], key_id)

    def page(self, segment: int, segments: int, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` key ids of ``segment`` of ``segments`` after ``after``, in order."""
        ordered = self._segments(segments)[segment]
        start = 0 if after is None else bisect.bisect_right(ordered, after)
        return list(itertools.islice(ordered, start, start + limit))

    def _segments(self, count: int) -> list[list[str]]:
        found = self._by_count.get(count)
        if found is None:
            found = [[] for _ in range(count)]
            for key_id, token in self._hashes.items():
                found[token % count].append(key_id)
            for keys in found:
                keys.sort()
            self._by_count[count] = found
        return found


def _token(key_id: str) -> int:
    return int.from_bytes(hashlib.sha256(key_id.encode("utf-8")).digest()[:8], "big")
