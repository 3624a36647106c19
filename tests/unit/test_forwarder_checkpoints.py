"""Checkpoints and leases against moto DynamoDB: every write conditional, leases exclusive until they expire."""

from __future__ import annotations

import pytest

from freshvec.adapters.dynamodb import CheckpointStore, create_checkpoint_table
from freshvec.forwarder import lineage_depth
from freshvec.ports import LeaseLostError, Partition, ShardCheckpoint, StreamView

STREAM = "arn:aws:cassandra:us-east-1:111122223333:/keyspace/media/table/movies/stream/2026-11-22T00:00:00.000"
SHARD = "shardId-00000001-0000000000000000000001"
TABLE = "freshvec-checkpoints"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dynamodb(moto):
    client = moto.client("dynamodb")
    create_checkpoint_table(client, TABLE)
    return client


def store(dynamodb, owner: str, clock: Clock, lease_s: float = 60) -> CheckpointStore:
    return CheckpointStore(dynamodb, TABLE, owner_id=owner, lease_duration_s=lease_s, clock=clock)


def test_a_free_shard_is_leased_and_a_held_one_is_refused(dynamodb):
    clock = Clock()
    a, b = store(dynamodb, "a", clock), store(dynamodb, "b", clock)
    lease = a.try_acquire(STREAM, SHARD)
    assert lease is not None
    assert lease.lease_owner == "a"
    assert lease.lease_expires_at == pytest.approx(clock.now + 60)
    assert lease.sequence_number is None
    assert b.try_acquire(STREAM, SHARD) is None
    assert a.try_acquire(STREAM, SHARD) is not None  # taking one's own lease again is fine


def test_an_expired_lease_is_taken_over_and_the_old_owner_can_no_longer_checkpoint(dynamodb):
    clock = Clock()
    a, b = store(dynamodb, "a", clock), store(dynamodb, "b", clock)
    a.try_acquire(STREAM, SHARD)
    a.checkpoint(STREAM, SHARD, "100")
    clock.now += 59
    assert b.try_acquire(STREAM, SHARD) is None
    clock.now += 2  # a's last write renewed its lease at t+0, so it ran out at t+60
    taken = b.try_acquire(STREAM, SHARD)
    assert taken is not None
    assert taken.sequence_number == "100"  # the new owner resumes from the checkpoint
    with pytest.raises(LeaseLostError):
        a.checkpoint(STREAM, SHARD, "200")
    with pytest.raises(LeaseLostError):
        a.renew(STREAM, SHARD)
    assert not a.release(STREAM, SHARD)
    assert store(dynamodb, "x", clock).load_stream(STREAM)[SHARD].sequence_number == "100"


def test_checkpoint_renews_the_lease(dynamodb):
    clock = Clock()
    a, b = store(dynamodb, "a", clock), store(dynamodb, "b", clock)
    a.try_acquire(STREAM, SHARD)
    clock.now += 50
    assert a.checkpoint(STREAM, SHARD, "7") == pytest.approx(clock.now + 60)
    clock.now += 50
    assert b.try_acquire(STREAM, SHARD) is None


def test_release_frees_the_shard_at_once_and_keeps_the_checkpoint(dynamodb):
    clock = Clock()
    a, b = store(dynamodb, "a", clock), store(dynamodb, "b", clock)
    a.try_acquire(STREAM, SHARD)
    a.checkpoint(STREAM, SHARD, "42")
    assert a.release(STREAM, SHARD)
    lease = b.try_acquire(STREAM, SHARD)
    assert lease is not None
    assert lease.sequence_number == "42"


def test_an_ended_shard_cannot_be_leased_again(dynamodb):
    clock = Clock()
    a, b = store(dynamodb, "a", clock), store(dynamodb, "b", clock)
    a.try_acquire(STREAM, SHARD)
    a.mark_ended(STREAM, SHARD, "99")
    saved = a.load_stream(STREAM)[SHARD]
    assert saved.ended
    assert saved.sequence_number == "99"
    assert saved.lease_owner is None
    assert b.try_acquire(STREAM, SHARD) is None
    assert a.try_acquire(STREAM, SHARD) is None


def test_mark_ended_needs_the_lease(dynamodb):
    clock = Clock()
    a, b = store(dynamodb, "a", clock), store(dynamodb, "b", clock)
    a.try_acquire(STREAM, SHARD)
    with pytest.raises(LeaseLostError):
        b.mark_ended(STREAM, SHARD, None)
    assert not a.load_stream(STREAM)[SHARD].ended


def test_load_stream_pages_through_many_shards(dynamodb):
    clock = Clock()
    a = store(dynamodb, "a", clock)
    shard_ids = [f"shardId-{i:08d}-0000000000000000000001" for i in range(120)]
    padding = "x" * 8000  # large items force DynamoDB to page the query
    for shard_id in shard_ids:
        a.try_acquire(STREAM, shard_id)
        a.checkpoint(STREAM, shard_id, "1" + padding)
    loaded = a.load_stream(STREAM)
    assert sorted(loaded) == shard_ids


def test_stream_registry_registers_once_and_orders_by_label(dynamodb):
    clock = Clock()
    a, b = store(dynamodb, "a", clock), store(dynamodb, "b", clock)
    newer = STREAM.replace("2026-11-22", "2026-11-23")
    assert a.register_stream("media", "movies", newer, "2026-11-23T00:00:00.000")
    assert a.register_stream("media", "movies", STREAM, "2026-11-22T00:00:00.000")
    assert not b.register_stream("media", "movies", STREAM, "2026-11-22T00:00:00.000")
    entries = b.load_streams("media", "movies")
    assert [e.stream_arn for e in entries] == [STREAM, newer]
    assert not any(e.done for e in entries)
    a.mark_stream_done("media", "movies", STREAM)
    assert [e.done for e in b.load_streams("media", "movies")] == [True, False]
    assert b.load_streams("media", "other") == []
    assert b.load_stream(STREAM) == {}  # registry items never show up as shards


def test_a_shards_lineage_depth_is_stored_once_and_the_first_one_stays(dynamodb):
    clock = Clock()
    a, b = store(dynamodb, "a", clock), store(dynamodb, "b", clock)
    assert a.try_acquire(STREAM, SHARD, 3).depth == 3
    a.release(STREAM, SHARD)
    again = b.try_acquire(STREAM, SHARD, 0)  # counted later from a listing that lost the shard's parents
    assert again is not None and again.depth == 3
    assert a.load_stream(STREAM)[SHARD].depth == 3


def test_lineage_depth_counts_from_stored_depths_and_the_listing():
    """Stored depths win (a parent trimmed from the listing keeps its own); a merge is one deeper than its deepest
    parent; a parent neither listed nor stored counts as depth 0."""
    view = StreamView(
        STREAM,
        closed=False,
        partitions={
            "b": Partition("b", named_parents=("a",)),  # a: trimmed from the listing, its depth stored
            "c": Partition("c", parents=("b",), named_parents=("b",)),
            "x": Partition("x", named_parents=("gone",)),  # gone: trimmed before anything read it
            "m": Partition("m", parents=("c", "x"), named_parents=("c", "x")),
        },
    )
    stored = {"a": ShardCheckpoint(STREAM, "a", "9", True, None, None, depth=4)}
    assert [lineage_depth(p, view, stored) for p in ("b", "c", "x", "m")] == [5, 6, 1, 7]
    assert lineage_depth("b", view, {}) == 1  # without a's stored depth: it counts as 0
