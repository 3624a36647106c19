"""The PostgreSQL reader against a real server: every type, every kind of change, transactions, TOAST."""

from __future__ import annotations

import base64
from typing import Any

from freshvec.events import parse_event
from freshvec.forwarder import Forwarder
from freshvec.versions import PgChange, parse

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
    position = parse(event.version)
    assert isinstance(position, PgChange) and position.lsn > 0 and position.position == 0
    high, low = commit_lsn.split("/")
    assert position.lsn < (int(high, 16) << 32 | int(low, 16))  # the slot moved past the commit
    # the transaction's 64-bit xid: what places the change against a re-sync's snapshot
    assert position.xid >= int(pg.run("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")[0][0]) - 10


SMALL = {"id": "bigint", "body": "text", "n": "integer"}


def small(pg, pipeline, **options: Any):
    pg.create_table(SMALL)
    p = pipeline(pg.config(columns=SMALL, **options))
    forwarder = p.forwarder()
    drain(forwarder)
    return p, forwarder


def test_updates_deletes_and_a_changed_primary_key(pg, pipeline):
    p, forwarder = small(pg, pipeline)
    pg.run("INSERT INTO docs VALUES (1, 'one', 1), (2, 'two', 2)")
    pg.run("UPDATE docs SET body = 'uno' WHERE id = 1")
    pg.run("UPDATE docs SET n = 20 WHERE id = 2")
    pg.run("UPDATE docs SET id = 3 WHERE id = 2")
    pg.run("DELETE FROM docs WHERE id = 1")
    drain(forwarder)
    got = [(e.op, e.key, e.new, e.old) for e in sorted(events(p), key=lambda e: (e.version, e.seq))]
    assert got == [
        ("INSERT", {"id": 1}, {"id": 1, "body": "one", "n": 1}, None),
        ("INSERT", {"id": 2}, {"id": 2, "body": "two", "n": 2}, None),
        ("UPDATE", {"id": 1}, {"id": 1, "body": "uno", "n": 1}, {"id": 1, "body": "one", "n": 1}),
        ("UPDATE", {"id": 2}, {"id": 2, "body": "two", "n": 20}, {"id": 2, "body": "two", "n": 2}),
        ("DELETE", {"id": 2}, None, {"id": 2, "body": "two", "n": 20}),
        ("INSERT", {"id": 3}, {"id": 3, "body": "two", "n": 20}, None),
        ("DELETE", {"id": 1}, None, {"id": 1, "body": "uno", "n": 1}),
    ]
    # One commit LSN per transaction, increasing in commit order; positions number a transaction's changes.
    positions = [parse(e.version) for e in events(p)]
    assert len({v.lsn for v in positions if isinstance(v, PgChange)}) == 5
    assert sorted(
        v.position for v in positions if isinstance(v, PgChange) and v.lsn == max(x.lsn for x in positions)
    ) == [0]


def test_an_unchanged_toasted_text_is_carried_whole(pg, pipeline):
    p, forwarder = small(pg, pipeline)
    long_text = "".join(f"word{i} " for i in range(3000))  # ~25 KB of varied text: stored out of line (TOAST)
    pg.run("INSERT INTO docs VALUES (1, :t, 1)", t=long_text)
    pg.run("UPDATE docs SET n = 2 WHERE id = 1")
    toasted = pg.run(
        "SELECT pg_column_size(body) < octet_length(body) OR reltoastrelid <> 0 FROM docs, pg_class "
        "WHERE relname = 'docs'"
    )[0][0]
    assert toasted
    drain(forwarder)
    _insert, update = sorted(events(p), key=lambda e: e.version)
    assert update.op == "UPDATE" and update.new == {"id": 1, "body": long_text, "n": 2}
    assert update.old == {"id": 1, "body": long_text, "n": 1}
    identity = pg.run("SELECT relreplident FROM pg_class WHERE relname = 'docs'")[0][0]
    assert identity == "f"


def test_a_transaction_of_many_rows_is_forwarded_whole_and_in_order(pg, pipeline):
    p, forwarder = small(pg, pipeline, max_changes_per_read=50)
    pg.run("BEGIN")
    for i in range(1200):  # more than two PutRecords calls; rows repeat, so one call cannot hold them all
        pg.run(
            "INSERT INTO docs VALUES (:i, :b, 0) ON CONFLICT (id) DO UPDATE SET n = docs.n + 1", i=i % 400, b=f"t{i}"
        )
    pg.run("COMMIT")
    drain(forwarder)
    got = events(p)
    assert len(got) == 1200
    per_key: dict[int, list[int]] = {}
    for event in got:
        per_key.setdefault(event.key["id"], []).append(event.new["n"])
    assert all(ns == [0, 1, 2] for ns in per_key.values()) and len(per_key) == 400
    positions = [parse(e.version) for e in got]
    assert len({v.lsn for v in positions if isinstance(v, PgChange)}) == 1  # one transaction
    # every change its own position in the transaction, in the order made (per row, the stream keeps it)
    assert sorted(v.position for v in positions if isinstance(v, PgChange)) == list(range(1200))
    for ns in per_key.values():
        assert ns == sorted(ns)


def test_changes_to_other_tables_do_not_hold_back_the_slot(pg, pipeline):
    p, forwarder = small(pg, pipeline)
    pg.run("CREATE TABLE other (id int PRIMARY KEY, x text)")
    before = pg.run("SELECT confirmed_flush_lsn::text FROM pg_replication_slots")[0][0]
    pg.run("INSERT INTO other SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g")
    drain(forwarder)
    after = pg.run("SELECT confirmed_flush_lsn::text FROM pg_replication_slots")[0][0]
    lag = pg.run("SELECT pg_current_wal_flush_lsn() - confirmed_flush_lsn FROM pg_replication_slots")[0][0]
    assert after != before and int(lag) < 10_000
    assert events(p) == []
