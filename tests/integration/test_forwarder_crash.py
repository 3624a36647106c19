"""Crashes at every step, and two forwarders on one stream: nothing lost, no row reordered, no shard shared."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from typing import Any, ClassVar

from freshvec.adapters.dynamodb import ATTR_LEASE_EXPIRES_AT, ATTR_LEASE_OWNER
from freshvec.adapters.wiring import keyspaces_forwarder
from freshvec.constants import CHECKPOINT_PK, CHECKPOINT_SK
from freshvec.forwarder import STEP_AFTER_CHECKPOINT, STEP_AFTER_LEASE, STEP_AFTER_PUT, STEP_AFTER_READ
from tests.integration.test_forwarder_stream import CHECKPOINT_TABLE, KINESIS_STREAM, Harness, pipeline_config


class Crash(Exception):
    """The process died right here: nothing after this point ran, nothing was cleaned up."""


def test_crashes_at_random_steps_lose_nothing_and_keep_each_row_in_order(moto):
    h = Harness.create(moto, shards=2)
    crashes: Counter[str] = Counter()
    # Die at every third occurrence of each step in turn, so every step gets its crashes whatever the
    # order in which the shard threads reach their steps.
    targets = itertools.cycle([STEP_AFTER_READ, STEP_AFTER_PUT, STEP_AFTER_CHECKPOINT, STEP_AFTER_LEASE])
    state = {"target": next(targets), "seen": 0, "armed": True}
    lock = threading.Lock()

    def maybe_crash(step: str, **details: Any) -> None:
        with lock:
            if not state["armed"] or step != state["target"]:
                return
            state["seen"] += 1
            if state["seen"] < 3:
                return
            state["target"], state["seen"] = next(targets), 0
            crashes[step] += 1
        raise Crash(f"{step} {details}")

    generation = 0
    forwarder = h.forwarder(f"forwarder-{generation}", hooks=maybe_crash)
    for round_ in range(40):
        h.write(12, rows=15, seed=round_)
        if round_ == 10:
            low, high = h.streams.split_shard(h.stream_arn, h.streams.shard_ids(h.stream_arn, open_only=True)[0])
        if round_ == 22:
            h.streams.merge_shards(h.stream_arn, low, high)
        if round_ == 30:
            h.expire_ttl()
        try:
            forwarder.run_once()
        except Crash:
            # A new process starts; the dead one's leases are free once they expire.
            generation += 1
            h.clock.advance(61)
            forwarder = h.forwarder(f"forwarder-{generation}", hooks=maybe_crash)
    state["armed"] = False
    h.drain(forwarder)

    assert sum(crashes.values()) >= 12
    assert min(crashes[s] for s in (STEP_AFTER_READ, STEP_AFTER_PUT, STEP_AFTER_CHECKPOINT, STEP_AFTER_LEASE)) >= 3
    delivered = h.assert_delivered_in_order()
    # Crashes between put and checkpoint re-send changes: at least once, not exactly once.
    assert sum(map(len, delivered.values())) > sum(map(len, h.expected.values()))


class OwnershipCheck:
    """Wraps one forwarder's Keyspaces Streams client: at every GetRecords, the shard's lease must be its own."""

    # Iterator -> shard, shared by every reader: a lease taken over resumes at the iterator its last owner saved.
    _shard_of: ClassVar[dict[str, str]] = {}

    def __init__(self, streams: Any, owner: str, harness: Harness, violations: list[str], reads: Counter) -> None:
        self._streams = streams
        self._owner = owner
        self._h = harness
        self._violations = violations
        self._reads = reads

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        response = self._streams.get_shard_iterator(**params)
        self._shard_of[response["shardIterator"]] = params["shardId"]
        return response

    def get_records(self, **params: Any) -> dict[str, Any]:
        shard_id = self._shard_of[params["shardIterator"]]
        item = self._h.dynamodb.get_item(
            TableName=CHECKPOINT_TABLE,
            Key={CHECKPOINT_PK: {"S": self._h.stream_arn}, CHECKPOINT_SK: {"S": shard_id}},
            ConsistentRead=True,
        ).get("Item", {})
        owner = item.get(ATTR_LEASE_OWNER, {}).get("S")
        expires = float(item.get(ATTR_LEASE_EXPIRES_AT, {}).get("N", "0"))
        if owner != self._owner or expires < time.time():
            self._violations.append(f"{self._owner} read {shard_id} while the lease was {owner!r} until {expires}")
        self._reads[(self._owner, shard_id)] += 1
        response = self._streams.get_records(**params)
        if response.get("nextShardIterator"):
            self._shard_of[response["nextShardIterator"]] = shard_id
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._streams, name)


def test_two_forwarders_at_once_never_read_the_same_shard_and_lose_nothing(moto):
    h = Harness.create(moto, shards=4, config=pipeline_config(poll_interval_ms=20, lease_duration_s=10), real_time=True)
    violations: list[str] = []
    reads: Counter = Counter()
    stop_writing = threading.Event()
    lock = threading.Lock()

    def writer() -> None:
        seed = 0
        while not stop_writing.is_set():
            with lock:
                h.write(5, rows=40, seed=seed, ttl_share=0)
            seed += 1
            time.sleep(0.01)

    # Each run ends when the test says so (its clock jumps past the deadline), not after a fixed time that a
    # loaded machine may spend before the first read.
    ended = {name: threading.Event() for name in ("early", "late")}

    def monotonic_of(name: str) -> Any:
        return lambda: h.clock() + (3_600 if ended[name].is_set() else 0)

    forwarders = {
        name: h.forwarder(
            name, streams=OwnershipCheck(h.streams, name, h, violations, reads), monotonic=monotonic_of(name)
        )
        for name in ended
    }
    results: dict[str, Any] = {}
    threads = {
        name: threading.Thread(target=lambda n=name: results.__setitem__(n, forwarders[n].run(h.clock() + 120)))
        for name in forwarders
    }

    def has_read(owner: str) -> bool:
        return any(reader == owner for reader, _ in dict(reads))  # a copy: the forwarders' threads add to it

    def wait_for(condition: Any, timeout_s: float = 60) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        return condition()

    writing = threading.Thread(target=writer)
    writing.start()
    threads["early"].start()
    try:
        assert wait_for(lambda: has_read("early")), "the first forwarder never read a shard"
        threads["late"].start()
        time.sleep(1.0)  # both run: "late" keeps trying to take the shards "early" holds
        ended["early"].set()  # "early" reaches its deadline and lets go of its shards...
        assert wait_for(lambda: has_read("late")), "no forwarder took the shards over"  # ...and "late" takes them
        time.sleep(0.5)
    finally:
        stop_writing.set()
        for event in ended.values():
            event.set()
        for thread in (writing, *threads.values()):
            if thread.is_alive() or thread is writing:
                thread.join(timeout=30)
    assert set(results) == {"early", "late"}

    h.drain(h.forwarder("final"))
    assert violations == []
    readers_per_shard = defaultdict(set)
    for owner, shard_id in reads:
        readers_per_shard[shard_id].add(owner)
    # "early" let go of its shards at its deadline and "late" took over: a hand-over, never a shared read.
    assert {owner for owner, _ in reads} == {"early", "late"}
    assert all(len(owners) <= 2 for owners in readers_per_shard.values())
    assert results["early"].changes_forwarded + results["late"].changes_forwarded > 0
    h.assert_delivered_in_order()


class StalledPuts:
    """Kinesis for a forwarder that stalls: PutRecords is throttled, each attempt takes 4 s of the shared clock
    (the forwarder renews its lease between them), and the third hangs for 12 s — longer than the lease —
    while another forwarder takes the shard and runs (``meanwhile``). After a few attempts the throttling
    stops, so a forwarder that kept no fence would write its old records after the new owner's."""

    def __init__(self, harness: Harness, meanwhile: Any, throttled_attempts: int = 6) -> None:
        self._h = harness
        self._meanwhile = meanwhile
        self._left = throttled_attempts
        self.attempts = 0

    def put_records(self, **params: Any) -> dict[str, Any]:
        self.attempts += 1
        self._h.clock.advance(12.0 if self.attempts == 3 else 4.0)
        if self.attempts == 3 and self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()  # the lease (10 s) ran out during the stall: the next owner takes the shard now
        if self._left > 0:
            self._left -= 1
            return {
                "FailedRecordCount": len(params["Records"]),
                "Records": [
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
                    for _ in params["Records"]
                ],
            }
        return self._h.kinesis.put_records(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h.kinesis, name)


def test_an_owner_stalled_in_a_throttled_put_stops_writing_when_the_next_owner_takes_the_shard(moto):
    h = Harness.create(moto, shards=1, config=pipeline_config(lease_duration_s=10))
    h.write(30, rows=6, seed=3, ttl_share=0)
    new_owner = h.forwarder("new-owner")
    stalled = StalledPuts(h, meanwhile=lambda: h.drain(new_owner))
    old_owner = keyspaces_forwarder(
        h.config,
        h.streams,
        stalled,
        h.dynamodb,
        stream_name=KINESIS_STREAM,
        checkpoint_table=CHECKPOINT_TABLE,
        owner_id="old-owner",
        clock=h.clock,
        sleep=h.clock.advance,
        monotonic=h.clock,
    )
    stats = old_owner.run_once()
    assert stats.changes_forwarded == 0  # it lost the lease before any of its calls went through
    assert old_owner.owned_shards == []  # and dropped the shard at once
    assert stalled.attempts < 6  # it stopped inside its retries, not when Kinesis let it through
    h.write(20, rows=6, seed=4, ttl_share=0)
    h.drain(new_owner)
    h.assert_delivered_in_order()
