"""Crashes at every step of the PostgreSQL forwarder, many times: every change reaches Kinesis at least once,
each row's changes in order, and the slot never moves past what Kinesis holds."""

from __future__ import annotations

import contextlib
import itertools
import random
from collections import Counter, defaultdict
from typing import Any

from freshvec.adapters.postgres import connect
from freshvec.adapters.wiring import postgres_forwarder
from freshvec.events import parse_event
from freshvec.forwarder import STEP_AFTER_CHECKPOINT, STEP_AFTER_PUT, STEP_AFTER_READ
from tests.integration.test_forwarder_stream import assert_in_order_at_least_once
from tests.postgres.conftest import CHECKPOINT_TABLE, KINESIS_STREAM

SMALL = {"id": "bigint", "body": "text", "n": "integer"}
STEPS = (STEP_AFTER_READ, STEP_AFTER_PUT, STEP_AFTER_CHECKPOINT, "slot_advance")


class Crash(Exception):
    """The process died right here."""


class Connections:
    """Makes the forwarder's connections; can make the next slot advance fail, and closes them all at the end."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.made: list[Any] = []
        self.fail_advance = False

    def __call__(self) -> Any:
        conn = connect(self.config.postgres.connection, self.config.postgres.connection.password)
        self.made.append(conn)
        outer = self

        class Guarded:
            def run(self, sql: str, **params: Any) -> Any:
                if "pg_replication_slot_advance" in sql and outer.fail_advance:
                    outer.fail_advance = False
                    raise Crash("between the checkpoint and the slot advance")
                return conn.run(sql, **params)

            def close(self) -> None:
                conn.close()

        return Guarded()

    def close(self) -> None:
        for conn in self.made:
            with contextlib.suppress(Exception):  # a connection a crashed forwarder left behind
                conn.close()


def test_crashes_at_every_step_lose_nothing_and_keep_each_row_in_order(pg, pipeline):
    pg.create_table(SMALL)
    config = pg.config(columns=SMALL, max_changes_per_read=40)
    p = pipeline(config)
    connections = Connections(config)
    crashes: Counter[str] = Counter()
    targets = itertools.cycle(STEPS)
    state = {"target": next(targets), "seen": 0, "armed": True}

    def maybe_crash(step: str, **details: Any) -> None:
        if not state["armed"]:
            return
        if state["target"] == "slot_advance" and step == STEP_AFTER_PUT:
            connections.fail_advance = True  # the advance right after this put fails
            crashes["slot_advance"] += 1
            state["target"] = next(targets)
            return
        if step != state["target"]:
            return
        state["seen"] += 1
        if state["seen"] < 2:
            return
        state["target"], state["seen"] = next(targets), 0
        crashes[step] += 1
        raise Crash(step)

    def new_forwarder() -> Any:
        return postgres_forwarder(
            config, connections, p.kinesis, p.dynamodb, stream_name=KINESIS_STREAM,
            checkpoint_table=CHECKPOINT_TABLE, owner_id="forwarder-1", hooks=maybe_crash,
        )  # fmt: skip

    rng = random.Random(7)
    expected: dict[int, list[str]] = defaultdict(list)
    live: dict[int, int] = {}
    counter = itertools.count(1)
    forwarder = new_forwarder()
    forwarder.run_once()  # creates the slot
    for _ in range(30):
        pg.run("BEGIN")
        for _ in range(rng.randint(1, 25)):
            key = rng.randrange(30)
            n = next(counter)
            if key in live and rng.random() < 0.25:
                pg.run("DELETE FROM docs WHERE id = :k", k=key)
                expected[key].append(f"D{live.pop(key)}")
            elif key in live:
                pg.run("UPDATE docs SET n = :n, body = :b WHERE id = :k", n=n, b=f"text {n}", k=key)
                expected[key].append(f"U{n}")
                live[key] = n
            else:
                pg.run("INSERT INTO docs VALUES (:k, :b, :n)", k=key, b=f"text {n}", n=n)
                expected[key].append(f"I{n}")
                live[key] = n
        pg.run("COMMIT")
        for _ in range(2):
            try:
                forwarder.run_once()
            except Crash:
                forwarder = new_forwarder()  # a new process; the same identity takes its lease back
    state["armed"] = False
    for _ in range(100):
        stats = forwarder.run_once()
        if stats.at_tip and stats.changes_forwarded == 0:
            break
    forwarder.release()
    connections.close()

    assert min(crashes[step] for step in STEPS) >= 3, crashes
    delivered: dict[int, list[str]] = defaultdict(list)
    for record in p.records():
        event = parse_event(record)
        image = event.new if event.new is not None else event.old
        delivered[event.key["id"]].append(f"{event.op[0]}{image['n']}")
    assert_in_order_at_least_once(delivered, expected)
    assert sum(map(len, delivered.values())) > sum(map(len, expected.values()))  # repeats after crashes
    # The slot ends where the last transaction ended: nothing left to read, nothing skipped.
    lag = pg.run("SELECT pg_current_wal_flush_lsn() - confirmed_flush_lsn FROM pg_replication_slots")[0][0]
    assert int(lag) < 10_000
