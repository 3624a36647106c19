"""The forwarder end to end: the Keyspaces Streams stand-in in front, moto Kinesis and DynamoDB behind.

Every scenario checks the same promise from Kinesis itself: each change arrives at least once, and the
changes of one row arrive in source order (a repeat may restart from an earlier change, never skip ahead).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from freshvec.adapters.dynamodb import ATTR_LEASE_OWNER, CheckpointStore, create_checkpoint_table
from freshvec.adapters.wiring import keyspaces_forwarder
from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.constants import CHECKPOINT_PK
from freshvec.errors import MisconfigurationError
from freshvec.events import ChangeEvent, parse_event
from freshvec.forwarder import STEP_AFTER_READ, STEP_AFTER_SHARD_END, Forwarder, ForwarderStats, LostRange
from freshvec.keys import parse_vector_key, vector_key
from freshvec.local.keyspaces import LocalKeyspacesStreams, LocalTable, ManualClock
from freshvec.sources.keyspaces import streams as keyspaces_streams

KINESIS_STREAM = "freshvec-changes"
CHECKPOINT_TABLE = "freshvec-checkpoints"
KEY_COLUMNS = ("title",)


def pipeline_config(**forwarder: Any) -> PipelineConfig:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["forwarder"] = {"poll_interval_ms": 100, "lease_duration_s": 60, **forwarder}
    return PipelineConfig.from_dict(raw)


@dataclass
class Harness:
    """One table with CDC on, its stream stand-in, and the Kinesis stream and checkpoint table in moto."""

    moto: Any
    config: PipelineConfig
    clock: ManualClock
    streams: LocalKeyspacesStreams
    table: LocalTable
    kinesis: Any
    dynamodb: Any
    expected: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    written: int = 0

    @classmethod
    def create(
        cls, moto: Any, *, shards: int = 2, config: PipelineConfig | None = None, real_time: bool = False
    ) -> Harness:
        """``real_time``: wall clock and real sleeps (for forwarders running side by side in threads)."""
        config = config or pipeline_config()
        clock: Any = RealClock() if real_time else ManualClock()
        streams = LocalKeyspacesStreams(clock=clock, seed=1)
        streams.enable_stream(config.keyspace, config.table, shard_count=shards)
        table = LocalTable(
            config.keyspace, config.table, config.columns, config.partition_key, streams=streams, clock=clock
        )
        kinesis = SerializedPuts(moto.client("kinesis"))
        kinesis.create_stream(StreamName=KINESIS_STREAM, ShardCount=2)
        kinesis.get_waiter("stream_exists").wait(StreamName=KINESIS_STREAM, WaiterConfig={"Delay": 0.1})
        dynamodb = moto.client("dynamodb")
        create_checkpoint_table(dynamodb, CHECKPOINT_TABLE)
        return cls(moto, config, clock, streams, table, kinesis, dynamodb)

    @property
    def stream_arn(self) -> str:
        arn = self.streams.stream_arn(self.config.keyspace, self.config.table)
        assert arn is not None
        return arn

    def forwarder(self, owner: str = "forwarder-1", *, streams: Any = None, **options: Any) -> Forwarder:
        return keyspaces_forwarder(
            self.config,
            streams or self.streams,
            self.kinesis,
            self.dynamodb,
            stream_name=KINESIS_STREAM,
            checkpoint_table=CHECKPOINT_TABLE,
            owner_id=owner,
            clock=self.clock,
            sleep=self.clock.advance,
            **({"monotonic": self.clock} | options),
        )

    def store(self, owner: str = "observer") -> CheckpointStore:
        return CheckpointStore(self.dynamodb, CHECKPOINT_TABLE, owner_id=owner, lease_duration_s=60, clock=self.clock)

    # ---- writing ------------------------------------------------------------------------
    def write(self, count: int, *, rows: int = 20, seed: int = 0, ttl_share: float = 0.1) -> None:
        """Random inserts, updates, deletes and TTL'd writes; remembers each row's sequence numbers."""
        rng = random.Random(seed)
        for _ in range(count):
            self.written += 1
            title = f"Movie {rng.randrange(rows)}"
            roll = rng.random()
            if roll < 0.15 and self.table.get({"title": title}) is not None:
                sequences = self.table.delete([{"title": title}])
            else:
                row = {
                    "title": title,
                    "overview": f"Overview number {self.written}",
                    "vote_count": self.written,
                    "popularity": f"{rng.randrange(10_000) / 100:.2f}",
                    "rel_date": "2026-01-02",
                }
                ttl = 30 if roll > 1 - ttl_share else None
                sequences = self.table.upsert([row], ttl_s=ttl)
            self.remember({"title": title}, sequences)

    def expire_ttl(self) -> None:
        """Let every TTL run out and emit the expiries (TTL records carry the row's old image)."""
        self.clock.advance(31)
        now = self.clock()
        due = []
        for key in self.expected:
            expires_at = self.table.expires_at(parse_vector_key(key, KEY_COLUMNS))
            if expires_at is not None and expires_at <= now:
                due.append((expires_at, key))
        sequences = self.table.expire_due()
        assert len(sequences) == len(due) > 0
        # The table expires rows in (expiry time, primary key) order; a one-column vector key sorts the same way.
        for (_, key), seq in zip(sorted(due), sequences, strict=True):
            self.expected[key].append(seq)

    def remember(self, key: dict[str, Any], sequences: list[Any]) -> None:
        for seq in sequences:
            if seq is not None:
                self.expected[vector_key(key, KEY_COLUMNS)].append(seq)

    # ---- reading back -------------------------------------------------------------------
    def drain(self, forwarder: Forwarder, max_passes: int = 200) -> ForwarderStats:
        """Passes until every owned shard is at its tip and a pass forwards nothing."""
        total = ForwarderStats()
        for _ in range(max_passes):
            stats = forwarder.run_once()
            total.merge(stats)
            if stats.at_tip and stats.changes_forwarded == 0:
                return total
        raise AssertionError(f"the forwarder did not reach the tip in {max_passes} passes")

    def kinesis_events(self) -> list[ChangeEvent]:
        events = []
        for shard in self.kinesis.list_shards(StreamName=KINESIS_STREAM)["Shards"]:
            iterator = self.kinesis.get_shard_iterator(
                StreamName=KINESIS_STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                events.extend(parse_event(record["Data"]) for record in page["Records"])
                iterator = page.get("NextShardIterator") if page["Records"] else None
        return events

    def delivered(self) -> dict[str, list[str]]:
        per_key: dict[str, list[str]] = defaultdict(list)
        for event in self.kinesis_events():
            per_key[vector_key(event.key, KEY_COLUMNS)].append(event.seq)
        return per_key

    def assert_delivered_in_order(self, *, exactly_once: bool = False) -> dict[str, list[str]]:
        delivered = self.delivered()
        assert_in_order_at_least_once(delivered, self.expected)
        if exactly_once:
            assert sum(map(len, delivered.values())) == sum(map(len, self.expected.values()))
        return delivered


class SerializedPuts:
    """moto's Kinesis shard assigns sequence numbers without a lock ("not safe for concurrency"): two PutRecords
    at once can overwrite each other's records. Real Kinesis has no such problem, so the forwarder's shard
    threads may put concurrently; in tests their calls to moto take turns."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def put_records(self, **params: Any) -> dict[str, Any]:
        with self._lock:
            return self._client.put_records(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class RealClock:
    """The wall clock with ManualClock's interface; ``advance`` really waits."""

    def __call__(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> float:
        time.sleep(seconds)
        return time.time()


def assert_in_order_at_least_once(delivered: dict[str, list[str]], expected: dict[str, list[str]]) -> None:
    """Every change arrived; within a row, a change never arrives before every earlier change did."""
    assert set(delivered) == set(expected), "rows missing from or unknown to Kinesis"
    for key, changes in expected.items():
        index = {seq: i for i, seq in enumerate(changes)}
        highest = -1
        for seq in delivered[key]:
            assert seq in index, f"{key}: {seq} is not a change of this row"
            assert index[seq] <= highest + 1, f"{key}: {seq} arrived before an earlier change of the row"
            highest = max(highest, index[seq])
        assert highest == len(changes) - 1, f"{key}: {len(changes) - 1 - highest} changes never arrived"
        assert delivered[key][-1] == changes[-1], f"{key}: an older change arrived after the newest"


@pytest.fixture
def harness(moto) -> Harness:
    return Harness.create(moto)


# ---------------------------------------------------------------------------------------------
def test_every_change_is_forwarded_once_in_order_as_a_valid_change_event(harness):
    harness.write(150)
    harness.expire_ttl()
    forwarder = harness.forwarder()
    stats = harness.drain(forwarder)
    total = sum(map(len, harness.expected.values()))
    assert stats.changes_forwarded == total
    assert stats.shards_owned == 2
    assert stats.throttles == 0
    assert stats.lag_ms(harness.clock()) is not None
    harness.assert_delivered_in_order(exactly_once=True)
    events = harness.kinesis_events()
    assert {e.op for e in events} == {"INSERT", "UPDATE", "DELETE", "EXPIRE"}
    assert all(e.origin == "TTL" for e in events if e.op == "EXPIRE")
    assert all(e.keyspace == "media" and e.table == "movies" and e.shard for e in events)
    # The checkpoint of each shard is the last sequence number Kinesis received from it.
    checkpoints = harness.store().load_stream(harness.stream_arn)
    last_per_shard: dict[str, str] = {}
    for event in events:
        last_per_shard[event.shard] = max(last_per_shard.get(event.shard, "0"), event.seq, key=int)
    assert {s: cp.sequence_number for s, cp in checkpoints.items()} == last_per_shard


def test_a_second_run_resumes_from_the_checkpoints(harness):
    harness.write(40, seed=1)
    first = harness.forwarder("first")
    harness.drain(first)
    first.release()
    harness.write(40, seed=2)
    stats = harness.drain(harness.forwarder("second"))
    assert stats.changes_forwarded == 40
    harness.assert_delivered_in_order(exactly_once=True)


def test_run_loops_until_the_deadline_then_releases_its_leases(harness):
    harness.write(30)
    forwarder = harness.forwarder()
    stats = forwarder.run(deadline_monotonic=harness.clock() + 5)
    assert stats.changes_forwarded == 30
    assert stats.passes > 1  # it kept polling at the tip until the deadline
    leases = harness.store().load_stream(harness.stream_arn)
    assert leases and all(cp.lease_owner is None for cp in leases.values())
    assert forwarder.owned_shards == []


def test_a_held_lease_blocks_a_second_reader_until_it_expires(harness):
    harness.write(20)
    dead = harness.forwarder("dies")
    dead.run_once()  # takes the leases, then its process "dies" without releasing them
    harness.write(20, seed=5)
    other = harness.forwarder("takes-over")
    assert other.run_once().changes_forwarded == 0
    assert other.owned_shards == []
    harness.clock.advance(61)
    harness.drain(other)
    assert len(other.owned_shards) == 2
    harness.assert_delivered_in_order()


def test_children_are_read_only_after_their_parents_ended(harness):
    order: list[tuple[str, str]] = []

    def record_steps(step: str, **details: Any) -> None:
        if step in (STEP_AFTER_READ, STEP_AFTER_SHARD_END):
            order.append((step, details["shard_id"]))

    harness.write(40, seed=1)
    forwarder = harness.forwarder(hooks=record_steps)
    forwarder.run_once()
    first, second = harness.streams.shard_ids(harness.stream_arn, open_only=True)
    low, high = harness.streams.split_shard(harness.stream_arn, first)
    harness.write(60, seed=2)
    merged = harness.streams.merge_shards(harness.stream_arn, high, second)
    harness.write(60, seed=3)
    harness.drain(forwarder)
    harness.assert_delivered_in_order(exactly_once=True)
    parents = {low: [first], high: [first], merged: [high, second]}
    for child, its_parents in parents.items():
        first_read = order.index((STEP_AFTER_READ, child))
        for parent in its_parents:
            assert order.index((STEP_AFTER_SHARD_END, parent)) < first_read, f"{child} read before {parent} ended"
    ended = {s for s, cp in harness.store().load_stream(harness.stream_arn).items() if cp.ended}
    assert ended == {first, second, high}


def test_a_re_enabled_stream_is_read_after_the_old_one_is_finished(harness):
    harness.write(50, seed=1)
    forwarder = harness.forwarder()
    forwarder.run_once()  # part of the old stream
    old_arn = harness.stream_arn
    harness.write(30, seed=2)  # more changes in the old stream, not yet read
    harness.streams.disable_stream("media", "movies")
    harness.streams.enable_stream("media", "movies", shard_count=3)
    new_arn = harness.stream_arn
    assert new_arn != old_arn
    harness.write(50, seed=3)
    harness.drain(forwarder)
    delivered = harness.assert_delivered_in_order(exactly_once=True)
    assert sum(map(len, delivered.values())) == sum(map(len, harness.expected.values()))
    events = harness.kinesis_events()
    old_shards = set(harness.streams.shard_ids(old_arn))
    last_old = max(i for i, e in enumerate(events) if e.shard in old_shards)
    assert all(e.shard not in old_shards for e in events[last_old + 1 :])
    registry = harness.store().load_streams("media", "movies")
    assert [(e.stream_arn, e.done) for e in registry] == [(old_arn, True), (new_arn, False)]


def test_a_first_start_follows_the_newest_enabled_stream_only(moto):
    h = Harness.create(moto)
    h.write(10, seed=1)
    h.streams.disable_stream("media", "movies")
    h.streams.enable_stream("media", "movies", shard_count=1)
    h.expected.clear()  # changes from before the forwarder's first start on a disabled stream are not followed
    h.write(10, seed=2)
    h.drain(h.forwarder())
    h.assert_delivered_in_order(exactly_once=True)
    assert [e.stream_arn for e in h.store().load_streams("media", "movies")] == [h.stream_arn]


def test_latest_starting_position_skips_what_was_there_before(moto):
    h = Harness.create(moto, config=pipeline_config(starting_position="LATEST"))
    h.write(20, seed=1)
    forwarder = h.forwarder()
    forwarder.run_once()
    h.expected.clear()
    h.write(20, seed=2)
    h.drain(forwarder)
    h.assert_delivered_in_order(exactly_once=True)


@pytest.mark.parametrize("restart", [False, True], ids=["held-iterator", "from-checkpoint"])
def test_trimmed_data_is_reported_with_the_lost_range_and_reading_goes_on(harness, caplog, restart):
    harness.write(30, seed=1)
    forwarder = harness.forwarder()
    harness.drain(forwarder)
    if restart:  # a new reader meets the trim through GetShardIterator, a running one through GetRecords
        forwarder.release()
        forwarder = harness.forwarder("next")
    shard = harness.streams.shard_ids(harness.stream_arn)[0]
    checkpoint = harness.store().load_stream(harness.stream_arn)[shard].sequence_number
    assert checkpoint is not None
    harness.write(40, seed=2)
    waiting = harness.streams.get_records(
        shardIterator=harness.streams.get_shard_iterator(
            streamArn=harness.stream_arn,
            shardId=shard,
            shardIteratorType="AFTER_SEQUENCE_NUMBER",
            sequenceNumber=checkpoint,
        )["shardIterator"],
        maxResults=1000,
    )["changeRecords"]
    assert len(waiting) > 3
    harness.streams.trim(harness.stream_arn, shard, waiting[2]["sequenceNumber"])  # the reader fell 24 h behind
    lost = {record["sequenceNumber"] for record in waiting[:3]}
    harness.expected = defaultdict(
        list, {k: kept for k, v in harness.expected.items() if (kept := [s for s in v if s not in lost])}
    )
    with caplog.at_level(logging.ERROR, logger="freshvec.forwarder"):
        stats = harness.drain(forwarder)
    assert stats.trimmed_events == 1
    assert stats.lost_ranges == [LostRange(harness.stream_arn, shard, checkpoint, waiting[3]["sequenceNumber"])]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "TrimmedDataAccess" in r.getMessage()]
    assert len(errors) == 1
    assert checkpoint in errors[0].getMessage()
    assert waiting[3]["sequenceNumber"] in errors[0].getMessage()
    delivered = harness.delivered()
    assert not lost & {seq for seqs in delivered.values() for seq in seqs}
    harness.assert_delivered_in_order()


def test_throttling_and_expired_iterators_lose_nothing(harness):
    harness.write(120, seed=4)
    harness.streams.throttle(0.3, seed=11)
    forwarder = harness.forwarder()
    total = ForwarderStats()
    for round_ in range(6):
        total.merge(forwarder.run_once())
        harness.streams.expire_iterators()
        harness.write(20, seed=100 + round_)
    harness.streams.throttle(0.0)
    total.merge(harness.drain(forwarder))
    assert total.throttles > 0
    assert harness.streams.counters()["throttled"]
    harness.assert_delivered_in_order(exactly_once=True)


def test_leases_show_the_owner_while_reading_and_none_after_release(harness):
    harness.write(10)
    forwarder = harness.forwarder("owner-a")
    forwarder.run_once()
    items = harness.dynamodb.scan(TableName=CHECKPOINT_TABLE)["Items"]
    shard_items = [i for i in items if i[CHECKPOINT_PK]["S"] == harness.stream_arn]
    assert {i[ATTR_LEASE_OWNER]["S"] for i in shard_items} == {"owner-a"}
    forwarder.release()
    items = harness.dynamodb.scan(TableName=CHECKPOINT_TABLE)["Items"]
    assert not [i for i in items if ATTR_LEASE_OWNER in i]


def test_an_expired_listing_token_starts_the_listing_over(harness):
    harness.write(20)
    forwarder = harness.forwarder()
    forwarder.run_once()
    harness.streams.inject_error("GetStream", "ValidationException", "ExpiredNextToken")
    harness.streams.inject_error("ListStreams", "ValidationException", "ExpiredNextToken")
    harness.clock.advance(30)  # time to look for new shards again
    harness.write(20, seed=1)
    harness.drain(forwarder)
    assert harness.streams.counters()["calls"]["ListStreams"] >= 3
    harness.assert_delivered_in_order(exactly_once=True)


def test_server_errors_while_reading_are_retried_without_loss(harness):
    harness.write(60)
    harness.streams.inject_error("GetRecords", "InternalServerException", count=3)
    harness.streams.inject_error("GetShardIterator", "ThrottlingException", count=2)
    stats = harness.drain(harness.forwarder())
    assert stats.throttles == 2
    harness.assert_delivered_in_order(exactly_once=True)


def test_missing_permissions_fail_the_run_loudly(harness):
    harness.write(5)
    harness.streams.deny_access()
    with pytest.raises(MisconfigurationError, match="AccessDeniedException"):
        harness.forwarder().run_once()
    harness.streams.deny_access([])
    forwarder = harness.forwarder()
    forwarder.run_once()
    harness.streams.deny_access(["GetRecords"])
    with pytest.raises(MisconfigurationError, match="AccessDeniedException"):
        forwarder.run_once()


def test_every_page_of_streams_and_shards_is_read(moto, monkeypatch):
    monkeypatch.setattr(keyspaces_streams, "SHARD_PAGE", 2)
    h = Harness.create(moto, shards=5)
    h.write(40, seed=1)
    forwarder = h.forwarder()
    forwarder.run_once()
    assert len(forwarder.owned_shards) == 5  # three GetStream pages
    for seed in (2, 3):
        h.write(40, seed=seed)
        h.streams.disable_stream("media", "movies")
        h.streams.enable_stream("media", "movies", shard_count=5)
    h.write(40, seed=4)
    h.drain(forwarder)
    h.assert_delivered_in_order(exactly_once=True)
    registry = h.store().load_streams("media", "movies")
    assert [e.done for e in registry] == [True, True, False]  # three streams: two ListStreams pages
