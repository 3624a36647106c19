"""The PostgreSQL reader against a real server: every type, every kind of change, transactions, TOAST."""

from __future__ import annotations

import base64
from typing import Any

from freshvec.events import parse_event
from freshvec.forwarder import Forwarder

INSERT_ALL = (
    "INSERT INTO docs VALUES (1, 'hello world', 'Title', 'abc', 7, -42, 12.5000, 1.5, 2.25, true, '2024-02-29', "
    "'2024-01-02 03:04:05.123', '2024-01-02 03:04:05.5+02', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', "
    """'{"k": [1, "x"], "n": null}', ARRAY['a', 'b c', NULL], ARRAY[1, 2], '\\xdeadbeef')"""
)


def drain(forwarder: Forwarder, passes: int = 50) -> None:
    for _ in range(passes):
        stats = forwarder.run_once()
        if stats.at_tip and stats.changes_forwarded == 0:
            return
    raise AssertionError("the forwarder did not reach the tip")


def events(p: Any) -> list[Any]:
    return [parse_event(record) for record in p.records()]


def test_every_type_arrives_as_its_change_event_value(pg, pipeline):
    pg.create_table()
    p = pipeline()
    forwarder = p.forwarder()
    drain(forwarder)  # creates the slot, sets replica identity
    pg.run(INSERT_ALL)
    drain(forwarder)
    (event,) = events(p)
    assert event.op == "INSERT" and event.source == "postgres"
    assert (event.keyspace, event.table, event.key) == ("public", "docs", {"id": 1})
    assert event.new == {
        "id": 1,
        "body": "hello world",
        "title": "Title",
        "code": "abc",
        "small": 7,
        "count": -42,
        "price": "12.5000",
        "ratio": 1.5,
        "score": 2.25,
        "active": True,
        "day": "2024-02-29",
        "at": "2024-01-02T03:04:05.123Z",
        "at_tz": "2024-01-02T01:04:05.500Z",
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "doc": {"k": [1, "x"], "n": None},
        "tags": ["a", "b c", None],
        "nums": [1, 2],
        "raw": base64.b64encode(bytes.fromhex("deadbeef")).decode(),
    }
    commit_lsn = pg.run("SELECT confirmed_flush_lsn::text FROM pg_replication_slots")[0][0]
    assert event.version is not None and event.version > 0
    high, low = commit_lsn.split("/")
    assert event.version < (int(high, 16) << 32 | int(low, 16))  # the slot moved past the commit
