"""The local table: CQL upsert semantics, deletes, TTL expiry, and the stream records each change emits."""

from __future__ import annotations

import threading

import pytest

from freshvec.local.keyspaces import LocalKeyspacesStreams, LocalTable, ManualClock
from freshvec.sources.keyspaces.cells import record_to_event
from freshvec.testing.botocore_shapes import assert_matches_output_shape

COLUMNS = {
    "shop": "text",
    "day": "date",
    "n": "int",
    "note": "text",
    "price": "decimal",
    "sold_at": "timestamp",
    "tags": "set<text>",
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def streams(clock) -> LocalKeyspacesStreams:
    streams = LocalKeyspacesStreams(clock=clock, seed=5)
    streams.enable_stream("shop", "sales", shard_count=2)
    return streams


@pytest.fixture
def sales(streams, clock) -> LocalTable:
    return LocalTable("shop", "sales", COLUMNS, ["shop"], ["day", "n"], streams, clock)


def events(streams) -> list:
    """Every record of the table's stream, through the real API, as change events in sequence order."""
    arn = streams.stream_arn("shop", "sales")
    out = []
    for shard_id in streams.shard_ids(arn):
        iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")
        page = streams.get_records(shardIterator=iterator["shardIterator"], maxResults=1000)
        assert_matches_output_shape("keyspacesstreams", "GetRecords", page)
        out.extend(record_to_event(r, keyspace="shop", table="sales", shard_id=shard_id) for r in page["changeRecords"])
    return sorted(out, key=lambda e: int(e.seq))


ROW = {"shop": "s-1", "day": "2026-11-22", "n": 1, "note": "first", "price": "9.90", "tags": ["a"]}
KEY = {"shop": "s-1", "day": "2026-11-22", "n": 1}


def test_insert_emits_a_new_image_only(sales, streams):
    (seq,) = sales.upsert([ROW])
    (event,) = events(streams)
    assert (event.op, event.seq, event.origin, event.old) == ("INSERT", seq, "USER", None)
    assert event.key == KEY
    assert event.new == ROW


def test_update_overwrites_given_columns_and_keeps_the_others(sales, streams):
    sales.upsert([ROW])
    sales.upsert([{**KEY, "note": "second", "price": None}])
    assert sales.get(KEY) == {**KEY, "note": "second", "tags": ["a"]}
    insert, update = events(streams)
    assert update.op == "UPDATE"
    assert update.old == ROW
    assert update.new == {**KEY, "note": "second", "tags": ["a"]}
    assert int(update.seq) > int(insert.seq)


def test_values_are_stored_as_the_stream_carries_them(sales):
    sales.upsert([{**KEY, "price": "1.5E+3", "sold_at": "2026-11-22T11:15:03.12+01:00"}])
    stored = sales.get(KEY)
    assert stored["price"] == "1500"
    assert stored["sold_at"] == "2026-11-22T10:15:03.120Z"
    assert sales.get({**KEY, "day": "2026-11-22"}) == stored


def test_a_bad_value_names_the_column_and_nothing_of_the_call_is_applied(sales, streams):
    with pytest.raises(ValueError, match=r"row 1: column 'n' \(int\): expected an integer"):
        sales.upsert([ROW, {**KEY, "n": "two"}])
    with pytest.raises(ValueError, match=r"row 0: column 'price' \(decimal\): 'cheap' is not a decimal"):
        sales.upsert([{**KEY, "price": "cheap"}])
    with pytest.raises(ValueError, match="row 0: primary key column 'day' is missing"):
        sales.upsert([{"shop": "s-1", "n": 1}])
    with pytest.raises(ValueError, match=r"row 0: column 'colour' is not a column of shop\.sales"):
        sales.upsert([{**KEY, "colour": "red"}])
    assert sales.count() == 0
    assert events(streams) == []


def test_delete_emits_the_old_image_and_a_missing_row_emits_nothing(sales, streams):
    sales.upsert([ROW])
    assert sales.delete([{"shop": "s-9", "day": "2026-01-01", "n": 5}]) == []
    (seq,) = sales.delete([KEY])
    assert sales.get(KEY) is None
    assert sales.count() == 0
    insert, delete = events(streams)
    assert insert.op == "INSERT"
    assert (delete.op, delete.seq, delete.new, delete.old) == ("DELETE", seq, None, ROW)


def test_ttl_expiry_removes_the_row_with_an_origin_ttl_record(sales, streams, clock):
    written = clock()
    sales.upsert([ROW], ttl_s=60)
    assert sales.expires_at(KEY) == written + 60
    arn = streams.stream_arn("shop", "sales")
    clock.advance(59)
    assert sales.expire_due() == []
    clock.advance(1)
    (seq,) = sales.expire_due()
    assert sales.get(KEY) is None
    insert, expire = events(streams)
    assert insert.op == "INSERT"
    assert (expire.op, expire.origin, expire.seq, expire.new, expire.old) == ("EXPIRE", "TTL", seq, None, ROW)
    raw = []
    for shard_id in streams.shard_ids(arn):
        iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")
        raw.extend(streams.get_records(shardIterator=iterator["shardIterator"])["changeRecords"])
    (inserted,) = [r for r in raw if r["origin"] == "USER"]
    assert inserted["newImage"]["rowMetadata"]["expirationTime"] == str(int(written + 60))
    assert inserted["newImage"]["rowMetadata"]["writeTime"] == str(int(written * 1_000_000))


def test_an_insert_without_ttl_keeps_the_row_but_not_the_older_cells_ttl(sales, streams, clock):
    # TTL is per cell: the second INSERT writes a permanent row marker and note; price and tags keep theirs.
    sales.upsert([ROW], ttl_s=10)
    sales.upsert([{**KEY, "note": "kept"}])
    assert sales.expires_at(KEY) is None
    clock.advance(3600)
    (seq,) = sales.expire_due()
    assert sales.get(KEY) == {**KEY, "note": "kept"}
    expire = events(streams)[-1]
    assert (expire.op, expire.origin, expire.seq) == ("UPDATE", "TTL", seq)
    assert expire.new == {**KEY, "note": "kept"}
    assert expire.old == {**ROW, "note": "kept"}


def test_rows_count_and_get_return_copies(sales):
    sales.upsert([{**ROW, "n": n} for n in range(5)])
    assert sales.count() == 5
    assert sorted(row["n"] for row in sales.rows()) == [0, 1, 2, 3, 4]
    row = sales.get({**KEY, "n": 3})
    row["tags"].append("mutated")
    assert sales.get({**KEY, "n": 3})["tags"] == ["a"]


def test_without_cdc_changes_are_applied_but_not_captured(streams, clock):
    table = LocalTable("shop", "quiet", COLUMNS, ["shop"], ["day", "n"], streams, clock)
    assert table.upsert([ROW]) == [None]
    assert table.count() == 1
    standalone = LocalTable("shop", "alone", COLUMNS, ["shop"], ["day", "n"])
    assert standalone.upsert([ROW]) == [None]


def test_table_definition_is_checked(streams):
    with pytest.raises(ValueError, match="no type"):
        LocalTable("shop", "sales", {"n": "int"}, ["shop"], (), streams)
    with pytest.raises(ValueError, match="at least one partition key"):
        LocalTable("shop", "sales", COLUMNS, [], (), streams)


def test_writers_in_threads_lose_nothing_and_keep_per_row_order(sales, streams):
    def write(worker: int) -> None:
        for version in range(50):
            sales.upsert([{**KEY, "n": worker, "note": f"v{version}"}])

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sales.count() == 8
    recorded = events(streams)
    assert len(recorded) == 8 * 50
    for worker in range(8):
        notes = [e.new["note"] for e in recorded if e.key["n"] == worker]
        assert notes == [f"v{version}" for version in range(50)]
        assert sum(1 for e in recorded if e.key["n"] == worker and e.op == "INSERT") == 1


def test_replicated_writes_keep_their_origin(sales, streams):
    sales.upsert([ROW], origin="REPLICATION")
    sales.delete([KEY], origin="REPLICATION")
    assert [(e.op, e.origin) for e in events(streams)] == [("INSERT", "REPLICATION"), ("DELETE", "REPLICATION")]
    with pytest.raises(ValueError, match="not USER or REPLICATION"):
        sales.upsert([ROW], origin="TTL")


def test_deletes_of_missing_rows_can_be_recorded_as_keys_only_changes(streams, clock):
    table = LocalTable("shop", "sales", COLUMNS, ["shop"], ["day", "n"], streams, clock, record_missing_deletes=True)
    (seq,) = table.delete([KEY])
    (event,) = events(streams)
    assert (event.op, event.seq, event.key, event.new, event.old) == ("DELETE", seq, KEY, None, None)
