"""The Keyspaces stand-in keeps Cassandra's and Keyspaces' documented semantics (docs/local-mode.md lists the
page behind each rule): per-cell write times and TTLs, null writes, collections, static columns, range and
partition deletes, key columns only in the key maps, and ``createdAt`` from the service's clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from freshvec.local.keyspaces import LocalKeyspacesStreams, LocalTable, ManualClock
from freshvec.sources.keyspaces.cells import record_to_event
from freshvec.testing.botocore_shapes import assert_matches_output_shape

COLUMNS = {
    "shop": "text",
    "day": "date",
    "n": "int",
    "note": "text",
    "votes": "int",
    "tags": "list<text>",
    "labels": "set<text>",
    "attrs": "map<text, int>",
    "owner": "text",  # static
}
KEY = {"shop": "s-1", "day": "2026-11-22", "n": 1}
T0 = 1_795_000_000.0  # ManualClock's start
US = 1_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def streams(clock) -> LocalKeyspacesStreams:
    streams = LocalKeyspacesStreams(clock=clock, seed=7)
    streams.enable_stream("shop", "sales", shard_count=1)
    return streams


@pytest.fixture
def sales(streams, clock) -> LocalTable:
    return LocalTable("shop", "sales", COLUMNS, ["shop"], ["day", "n"], streams, clock, static_columns=["owner"])


def raw_records(streams) -> list[dict]:
    """Every record through the real API, each checked against the botocore model."""
    arn = streams.stream_arn("shop", "sales")
    (shard_id,) = streams.shard_ids(arn)
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")
    page = streams.get_records(shardIterator=iterator["shardIterator"], maxResults=1000)
    assert_matches_output_shape("keyspacesstreams", "GetRecords", page)
    return page["changeRecords"]


def events(streams) -> list:
    return [record_to_event(r, keyspace="shop", table="sales", shard_id="s") for r in raw_records(streams)]


def test_key_columns_travel_only_in_the_key_maps(sales, streams):
    sales.upsert([{**KEY, "note": "a"}])
    sales.update([{**KEY, "votes": 3}])
    for record in raw_records(streams):
        assert record["partitionKeys"] == {"shop": {"textT": "s-1"}}
        assert set(record["clusteringKeys"]) == {"day", "n"}
        assert not set(record["newImage"]["valueCells"]) & set(KEY)
    assert sales.get(KEY) == {**KEY, "note": "a", "votes": 3}


def test_last_write_wins_per_cell_by_client_timestamp(sales, streams, clock):
    now_us = int(T0 * US)
    sales.update([{**KEY, "note": "newer", "votes": 1}], timestamp_us=now_us)
    sales.update([{**KEY, "note": "older"}], timestamp_us=now_us - 5)  # arrives later, written earlier: loses
    assert sales.get(KEY)["note"] == "newer"
    assert sales.writetimes(KEY) == {"note": now_us, "votes": now_us, "owner": None}
    losing = events(streams)[-1]
    assert losing.new == losing.old == {**KEY, "note": "newer", "votes": 1}  # a mutation still makes a record
    sales.update([{**KEY, "note": "aaa"}], timestamp_us=now_us)  # a tie between values: the greater one wins
    assert sales.get(KEY)["note"] == "newer"
    sales.update([{**KEY, "note": None}], timestamp_us=now_us)  # a tie with a deletion: the deletion wins
    assert "note" not in sales.get(KEY)


def test_a_column_ttl_expires_only_that_column_with_an_origin_ttl_record(sales, streams, clock):
    sales.upsert([{**KEY, "note": "stays", "votes": 1}])
    sales.update([{**KEY, "votes": 99}], ttl_s=60)
    clock.advance(60)
    assert sales.get(KEY) == {**KEY, "note": "stays"}  # filtered from reads at once ...
    assert events(streams)[-1].origin == "USER"  # ... while the TTL record waits for the purge
    (seq,) = sales.expire_due()
    expire = events(streams)[-1]
    assert (expire.seq, expire.op, expire.origin) == (seq, "UPDATE", "TTL")
    assert expire.old == {**KEY, "note": "stays", "votes": 99}
    assert expire.new == {**KEY, "note": "stays"}
    raw = raw_records(streams)[-1]
    assert "votes" not in raw["newImage"]["valueCells"]
    assert raw["oldImage"]["valueCells"]["votes"]["metadata"]["expirationTime"] == str(int(T0 + 60))
    assert sales.expire_due() == []


def test_an_update_only_row_goes_when_its_cells_go_an_inserted_row_stays(sales, streams, clock):
    other = {**KEY, "n": 2}
    sales.update([{**KEY, "votes": 1}], ttl_s=10)
    sales.upsert([{**other, "votes": 1}])
    sales.update([{**other, "votes": None}])
    assert sales.get(other) == other  # the INSERT's row marker keeps the row alive with its key only
    clock.advance(10)
    assert sales.get(KEY) is None
    (seq,) = sales.expire_due()
    expire = events(streams)[-1]
    assert (expire.seq, expire.op, expire.new) == (seq, "EXPIRE", None)


def test_a_null_write_is_a_tombstone_with_no_writetime(sales, clock):
    now_us = int(T0 * US)
    sales.upsert([{**KEY, "note": "x", "votes": 5}], timestamp_us=now_us)
    sales.update([{**KEY, "votes": None}], timestamp_us=now_us + 10)
    assert sales.writetimes(KEY)["votes"] is None
    assert sales.read(KEY) == ({**KEY, "note": "x"}, now_us)  # the re-sync version forgets the nulled cell
    sales.update([{**KEY, "votes": 6}], timestamp_us=now_us + 5)  # older than the tombstone: shadowed
    assert "votes" not in sales.get(KEY)


def test_collections_change_element_by_element(sales, streams):
    sales.upsert([{**KEY, "note": "x", "tags": ["a", "b"], "labels": ["z", "y"], "attrs": {"b": 2}}])
    scalar_version = sales.read(KEY)[1]
    sales.update([{**KEY, "$add": {"tags": ["c"], "labels": ["x"], "attrs": {"a": 1}}}])
    assert sales.get(KEY) == {
        **KEY,
        "note": "x",
        "tags": ["a", "b", "c"],
        "labels": ["x", "y", "z"],  # sets read in order
        "attrs": {"a": 1, "b": 2},
    }
    assert sales.read(KEY)[1] == scalar_version  # WRITETIME cannot see collection cells
    assert "tags" not in sales.writetimes(KEY)
    update = events(streams)[-1]
    assert (update.op, update.new["tags"], update.old["tags"]) == ("UPDATE", ["a", "b", "c"], ["a", "b"])
    newest = raw_records(streams)[-1]["newImage"]["valueCells"]["tags"]["metadata"]["writeTime"]
    assert int(newest) > scalar_version  # the stream's cell carries the element's write time
    sales.update([{**KEY, "$remove": {"tags": ["a"], "labels": ["x", "y", "z"], "attrs": ["b"]}}])
    assert sales.get(KEY) == {**KEY, "note": "x", "tags": ["b", "c"], "attrs": {"a": 1}}  # empty set: null
    sales.update([{**KEY, "tags": ["q"]}])  # a whole-collection write replaces it
    assert sales.get(KEY)["tags"] == ["q"]
    with pytest.raises(ValueError, match="non-frozen list, set or map"):
        sales.update([{**KEY, "$add": {"note": ["x"]}}])
    with pytest.raises(ValueError, match="for updates"):
        sales.upsert([{**KEY, "$add": {"tags": ["x"]}}])


def test_collection_elements_expire_on_their_own(sales, streams, clock):
    sales.upsert([{**KEY, "tags": ["a"]}])
    sales.update([{**KEY, "$add": {"tags": ["b"]}}], ttl_s=5)
    clock.advance(5)
    sales.expire_due()
    expire = events(streams)[-1]
    assert (expire.origin, expire.old["tags"], expire.new["tags"]) == ("TTL", ["a", "b"], ["a"])


def test_static_columns_change_in_records_of_their_own(sales, streams):
    sales.upsert([{**KEY, "note": "x", "owner": "ana"}])
    sales.upsert([{"shop": "s-1", "owner": "bo"}])  # a static-only write names the partition only
    row_record, static_record, static_only = raw_records(streams)
    assert "owner" not in row_record["newImage"]["valueCells"]
    assert "staticCells" not in row_record["newImage"]
    assert static_record["newImage"]["staticCells"]["owner"]["value"] == {"textT": "ana"}
    assert "clusteringKeys" not in static_record
    assert static_only["oldImage"]["staticCells"]["owner"]["value"] == {"textT": "ana"}
    assert static_only["newImage"]["staticCells"]["owner"]["value"] == {"textT": "bo"}
    assert sales.get(KEY) == {**KEY, "note": "x", "owner": "bo"}  # SELECT * shows statics on every row


def test_range_and_partition_deletes_apply_row_by_row(sales, streams, clock):
    rows = [{**KEY, "day": day, "n": n, "note": f"{day}/{n}"} for day in ("2026-11-22", "2026-11-23") for n in (1, 2)]
    sales.upsert([*rows, {"shop": "s-1", "owner": "ana"}])
    deleted = sales.delete_range({"shop": "s-1"}, {"day": "2026-11-22"})
    assert len(deleted) == 2
    assert [e.op for e in events(streams)[-2:]] == ["DELETE", "DELETE"]
    assert sales.count() == 2
    stamp = int(T0 * US) + 10**6
    deleted = sales.delete_partition({"shop": "s-1"}, timestamp_us=stamp)
    assert len(deleted) == 3  # the two rows left, then the static columns
    assert raw_records(streams)[-1]["oldImage"]["staticCells"]["owner"]["value"] == {"textT": "ana"}
    sales.upsert([{**KEY, "note": "late but older"}], timestamp_us=stamp - 1)  # shadowed by the partition tombstone
    assert sales.get(KEY) is None
    sales.upsert([{**KEY, "note": "newer"}], timestamp_us=stamp + 1)
    assert sales.get(KEY) == {**KEY, "note": "newer"}


def test_a_delete_with_an_older_timestamp_leaves_newer_cells(sales, streams):
    now_us = int(T0 * US)
    sales.upsert([{**KEY, "note": "x"}], timestamp_us=now_us)
    sales.update([{**KEY, "votes": 2}], timestamp_us=now_us + 100)
    sales.delete([KEY], timestamp_us=now_us + 50)
    assert sales.get(KEY) == {**KEY, "votes": 2}
    change = events(streams)[-1]
    assert (change.op, change.new, change.old) == ("UPDATE", {**KEY, "votes": 2}, {**KEY, "note": "x", "votes": 2})


def test_created_at_comes_from_the_service_clock_with_skew_and_lag(streams, clock):
    table = LocalTable(
        "shop",
        "sales",
        COLUMNS,
        ["shop"],
        ["day", "n"],
        streams,
        clock,
        client_skew_s=-3.0,  # the client's clock runs 3 s behind the service's
        created_at_lag_s=0.25,
        created_at_precision_s=0.1,
    )
    clock.advance(0.1234)
    table.upsert([{**KEY, "note": "x"}])
    (record,) = raw_records(streams)
    service = T0 + 0.1234
    assert record["newImage"]["valueCells"]["note"]["metadata"]["writeTime"] == str(int((service - 3.0) * US))
    created = record["createdAt"]
    assert created == datetime.fromtimestamp(int((service - 0.25) * 10) / 10, tz=UTC)


def test_client_timestamps_are_checked_against_the_service_window(sales):
    now_us = int(T0 * US)
    with pytest.raises(ValueError, match="2 days in the past to 5 minutes in the future"):
        sales.upsert([{**KEY, "note": "x"}], timestamp_us=now_us + 301 * US)
    with pytest.raises(ValueError, match="2 days in the past"):
        sales.upsert([{**KEY, "note": "x"}], timestamp_us=now_us - 2 * 86_400 * US - 1)
    with pytest.raises(ValueError, match="ttl_s"):
        sales.update([{**KEY, "note": "x"}], ttl_s=0)


def test_default_timestamps_never_repeat_like_the_drivers(sales):
    sales.upsert([{**KEY, "note": "a"}, {**KEY, "note": "b"}])  # one call, one clock reading
    assert sales.get(KEY)["note"] == "b"


def test_without_client_side_timestamps_cells_carry_no_write_time(streams, clock):
    table = LocalTable("shop", "sales", COLUMNS, ["shop"], ["day", "n"], streams, clock, client_side_timestamps=False)
    table.upsert([{**KEY, "note": "x"}])
    (record,) = raw_records(streams)
    assert record["newImage"]["valueCells"]["note"]["metadata"] == {}
    with pytest.raises(ValueError, match="client-side timestamps"):
        table.upsert([{**KEY, "note": "y"}], timestamp_us=int(T0 * US))


def test_an_empty_single_column_partition_key_is_refused_an_empty_clustering_value_is_not(sales, streams, clock):
    """Cassandra and Keyspaces refuse ``INSERT ... VALUES ('', ...)`` on a one-column partition key ("Key may not be
    empty"); an empty clustering value is a value like any."""
    with pytest.raises(ValueError, match="Key may not be empty"):
        sales.upsert([{**KEY, "shop": "", "note": "x"}])
    assert raw_records(streams) == []
    items = LocalTable(
        "shop", "items", {"shop": "text", "name": "text", "note": "text"}, ["shop"], ["name"], streams, clock
    )
    items.upsert([{"shop": "s-1", "name": "", "note": "x"}])
    assert items.get({"shop": "s-1", "name": ""}) == {"shop": "s-1", "name": "", "note": "x"}
    pair = LocalTable("shop", "pairs", {"a": "text", "b": "text", "note": "text"}, ["a", "b"], [], streams, clock)
    pair.upsert([{"a": "", "b": "", "note": "x"}])  # parts of a composite partition key may be empty
    assert pair.get({"a": "", "b": ""}) == {"a": "", "b": "", "note": "x"}
