"""Crashes at every step, and two forwarders on one stream: nothing lost, no row reordered, no shard shared."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from freshvec.adapters.dynamodb import ATTR_LEASE_EXPIRES_AT, ATTR_LEASE_OWNER
from freshvec.constants import CHECKPOINT_PK, CHECKPOINT_SK
from freshvec.forwarder import STEP_AFTER_CHECKPOINT, STEP_AFTER_LEASE, STEP_AFTER_PUT, STEP_AFTER_READ
from tests.integration.test_forwarder_stream import CHECKPOINT_TABLE, Harness, pipeline_config


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

    def __init__(self, streams: Any, owner: str, harness: Harness, violations: list[str], reads: Counter) -> None:
        self._streams = streams
        self._owner = owner
        self._h = harness
        self._violations = violations
        self._reads = reads
        self._shard_of: dict[str, str] = {}

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        response = self._streams.get_shard_iterator(**params)
        self._shard_of[response["shardIterator"]] = params["shardId"]
        return response

    def get_records(self, **params: Any) -> dict[str, Any]:
        shard_id = self._shard_of.pop(params["shardIterator"])
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

    forwarders = {
        name: h.forwarder(name, streams=OwnershipCheck(h.streams, name, h, violations, reads))
        for name in ("early", "late")
    }
    started = time.time()
    deadlines = {"early": started + 1.5, "late": started + 4.0}
    results: dict[str, Any] = {}
    threads = {
        name: threading.Thread(target=lambda n=name: results.__setitem__(n, forwarders[n].run(deadlines[n])))
        for name in forwarders
    }
    writing = threading.Thread(target=writer)
    writing.start()
    threads["early"].start()
    time.sleep(0.3)  # "early" holds every shard by now; "late" keeps trying while both run
    threads["late"].start()
    time.sleep(2.7)
    stop_writing.set()
    for thread in (writing, *threads.values()):
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
