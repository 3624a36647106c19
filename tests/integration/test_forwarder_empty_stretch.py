"""Empty BEHIND_TIP pages: the stream moved on without change records, and reading goes on at once.

GetRecords' ``iteratorDescription`` (keyspacesstreams model): "BEHIND_TIP with an empty changeRecords list
indicates the stream is progressing but no customer records are available at this position. Continue polling
normally." The Keyspaces stand-in emits such pages (``LocalKeyspacesStreams.progress``); the forwarder must not
take one for the tip, must report its lag while walking them, and must not walk the same stretch twice.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from freshvec.forwarder import STEP_AFTER_PUT, ForwarderStats
from freshvec.sources.keyspaces.streams import KeyspacesStreamsSource
from tests.integration.test_forwarder_stream import Harness, pipeline_config

STRETCH = 40  # empty pages per shard


class CountingStreams:
    """The stand-in, counting GetRecords calls and the empty BEHIND_TIP pages it returned."""

    def __init__(self, streams: Any) -> None:
        self._streams = streams
        self.reads = Counter()

    def get_records(self, **params: Any) -> dict[str, Any]:
        page = self._streams.get_records(**params)
        self.reads["all"] += 1
        if not page["changeRecords"] and page["iteratorDescription"]["iteratorPosition"] == "BEHIND_TIP":
            self.reads["empty_behind_tip"] += 1
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._streams, name)


@pytest.fixture
def harness(moto) -> Harness:
    return Harness.create(moto, shards=1, config=pipeline_config(poll_interval_ms=500))


def test_the_stand_in_walks_an_empty_stretch_as_behind_tip_pages(harness):
    harness.write(3, seed=1, ttl_share=0)
    harness.streams.progress("media", "movies", pages=2)
    harness.write(1, seed=2, ttl_share=0)
    iterator = harness.streams.get_shard_iterator(
        streamArn=harness.stream_arn,
        shardId=harness.streams.shard_ids(harness.stream_arn)[0],
        shardIteratorType="TRIM_HORIZON",
    )["shardIterator"]
    pages = []
    for _ in range(5):
        page = harness.streams.get_records(shardIterator=iterator, maxResults=1000)
        pages.append((len(page["changeRecords"]), page["iteratorDescription"]["iteratorPosition"]))
        iterator = page["nextShardIterator"]
    assert pages == [(3, "BEHIND_TIP"), (0, "BEHIND_TIP"), (0, "BEHIND_TIP"), (1, "AT_TIP"), (0, "AT_TIP")]


def test_an_empty_behind_tip_read_is_not_the_tip(harness):
    harness.write(2, seed=1, ttl_share=0)
    harness.streams.progress("media", "movies", pages=2)  # the last page of a stretch is at the tip
    source = KeyspacesStreamsSource.for_config(harness.streams, harness.config)
    shard_id = harness.streams.shard_ids(harness.stream_arn)[0]
    cursor = source.open(harness.stream_arn, shard_id, None, fresh=True)
    first, stretch, tip = source.read(cursor), source.read(cursor), source.read(cursor)
    assert (len(first.records), first.at_tip) == (2, False)
    assert (len(stretch.records), stretch.at_tip) == (0, False)  # the stream moved on: read on at once
    assert (len(tip.records), tip.at_tip) == (0, True)
    assert stretch.resume is not None and tip.resume is not None


def test_catching_up_through_an_empty_stretch_never_sleeps_before_the_changes_after_it(harness):
    harness.write(5, seed=1, ttl_share=0)
    harness.streams.progress("media", "movies", pages=STRETCH)
    harness.write(5, seed=2, ttl_share=0)
    total = sum(map(len, harness.expected.values()))
    forwarded = Counter()
    sleeps: list[tuple[float, int]] = []

    def hooks(step: str, **details: Any) -> None:
        if step == STEP_AFTER_PUT:
            forwarded["changes"] += details["count"]

    def sleep(seconds: float) -> None:
        sleeps.append((seconds, forwarded["changes"]))
        harness.clock.advance(seconds)

    forwarder = harness.forwarder(hooks=hooks)
    forwarder._sleep = sleep  # the forwarder's sleep between passes, observed
    stats = forwarder.run(harness.clock() + 5)
    assert stats.changes_forwarded == total
    assert sleeps, "at the tip the forwarder polls with its interval"
    assert all(done == total for _, done in sleeps), f"slept while behind the tip: {sleeps}"
    harness.assert_delivered_in_order(exactly_once=True)


def test_the_lag_while_walking_an_empty_stretch_counts_from_the_last_time_at_the_tip(harness):
    harness.write(5, seed=1, ttl_share=0)
    first = harness.forwarder("first")
    first.run(harness.clock() + 2)  # forwards everything, ends at the tip, saves when it was there
    at_tip = harness.clock()
    harness.clock.advance(300)  # five minutes on, the stream moved on without changes
    harness.streams.progress("media", "movies", pages=STRETCH)
    second = harness.forwarder("second", streams=ResumeForgotten(harness.streams))
    passes = ForwarderStats()
    for _ in range(3):  # part of the way through the stretch only
        passes = second.run_once()
    assert passes.changes_forwarded == 0 and not passes.at_tip
    lag = passes.lag_ms(harness.clock())
    assert lag is not None and lag >= 300_000  # never 0 while behind
    assert lag == pytest.approx((harness.clock() - at_tip) * 1000, abs=2_500)


def test_a_later_run_does_not_walk_the_same_empty_stretch_again(harness):
    harness.write(5, seed=1, ttl_share=0)
    harness.streams.progress("media", "movies", pages=STRETCH)
    first_streams = CountingStreams(harness.streams)
    first = harness.forwarder("first", streams=first_streams)
    first.run(harness.clock() + 2)
    assert first_streams.reads["empty_behind_tip"] == STRETCH - 1  # the stretch's last page is at the tip
    harness.clock.advance(60)  # the next scheduled run
    harness.write(3, seed=2, ttl_share=0)
    second_streams = CountingStreams(harness.streams)
    stats = harness.drain(harness.forwarder("second", streams=second_streams))
    assert stats.changes_forwarded == 3
    assert second_streams.reads["empty_behind_tip"] == 0  # resumed past the stretch, where the first run got to
    harness.assert_delivered_in_order(exactly_once=True)


def test_an_expired_saved_iterator_falls_back_to_the_checkpoint_and_loses_nothing(harness):
    harness.write(5, seed=1, ttl_share=0)
    harness.streams.progress("media", "movies", pages=3)
    harness.forwarder("first").run(harness.clock() + 2)
    harness.clock.advance(harness.streams.iterator_ttl_s + 60)  # the saved iterator has expired
    harness.write(3, seed=2, ttl_share=0)
    stats = harness.drain(harness.forwarder("second"))
    assert stats.changes_forwarded == 3
    harness.assert_delivered_in_order(exactly_once=True)


class ResumeForgotten(CountingStreams):
    """A reader whose first iterator comes from the checkpoint: GetRecords on a saved iterator says expired."""

    def __init__(self, streams: Any) -> None:
        super().__init__(streams)
        self._issued: set[str] = set()

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        response = self._streams.get_shard_iterator(**params)
        self._issued.add(response["shardIterator"])
        return response

    def get_records(self, **params: Any) -> dict[str, Any]:
        if not self._issued:
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "expired"}, "errorCode": "ExpiredIterator"},
                "GetRecords",
            )
        page = super().get_records(**params)
        return page
