"""The sync tracker: when is a write in sync, what does a timeout say, how is freshness measured."""

from __future__ import annotations

import threading

import pytest

from freshvec.local.esm import APPLIED, PARKED
from freshvec.local.tracker import SyncTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_write_is_in_sync_once_every_change_finished_and_freshness_is_write_to_last() -> None:
    clock = Clock()
    tracker = SyncTracker(clock)
    receipt = tracker.written(["11", "12"], at=clock())
    assert receipt.changes == 2
    clock.now = 100.4
    tracker.finished(["11"], APPLIED)
    assert tracker.pending() == ["12"]
    with pytest.raises(ValueError, match="not yet in sync"):
        tracker.freshness_ms(receipt)
    clock.now = 100.9
    tracker.finished(["12"], PARKED)
    tracker.wait(timeout=0, positions=receipt.positions)
    assert tracker.freshness_ms(receipt) == pytest.approx(900)
    assert sorted(tracker.latencies_ms()) == pytest.approx([400, 900])
    assert tracker.outcomes() == {APPLIED: 1, PARKED: 1}


def test_a_change_finished_before_its_write_was_recorded_still_counts() -> None:
    # The forwarder can deliver a change before the writer thread records the write's positions.
    clock = Clock()
    tracker = SyncTracker(clock)
    tracker.finished(["7"], APPLIED)
    receipt = tracker.written(["7"], at=clock())
    tracker.wait(timeout=0, positions=receipt.positions)
    assert tracker.pending() == []


def test_duplicates_keep_the_first_finish_time() -> None:
    clock = Clock()
    tracker = SyncTracker(clock)
    receipt = tracker.written(["5"], at=clock())
    clock.now = 100.2
    tracker.finished(["5"], APPLIED)
    clock.now = 103.0
    tracker.finished(["5"], APPLIED)  # forwarded twice after a crash
    assert tracker.freshness_ms(receipt) == pytest.approx(200)


def test_timeout_names_what_is_still_pending() -> None:
    tracker = SyncTracker()
    tracker.written([str(n) for n in range(8)], at=tracker.now())
    tracker.finished(["0", "1"], APPLIED)
    with pytest.raises(TimeoutError, match=r"6 of 8 change\(s\) not yet applied or parked after 0.05 s") as error:
        tracker.wait(timeout=0.05)
    assert "2, 3, 4, 5, 6, ..." in str(error.value)


def test_wait_wakes_up_when_another_thread_finishes_the_changes() -> None:
    tracker = SyncTracker()
    tracker.written(["1"], at=tracker.now())
    threading.Timer(0.05, tracker.finished, args=(["1"], APPLIED)).start()
    tracker.wait(timeout=10)
    assert tracker.pending() == []


def test_a_later_write_is_pending_until_its_own_changes_finish() -> None:
    tracker = SyncTracker()
    tracker.written(["1"], at=tracker.now())
    tracker.finished(["1"], APPLIED)
    tracker.wait(timeout=0)
    later = tracker.written(["2"], at=tracker.now())
    assert tracker.pending() == ["2"]
    with pytest.raises(TimeoutError):
        tracker.wait(timeout=0, positions=later.positions)
