"""Stream record -> change event: op derivation, key order, position, time, and what cannot be converted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from freshvec import versions
from freshvec.errors import PoisonRecordError
from freshvec.events import parse_event
from freshvec.sources.keyspaces.cells import record_to_event, to_micros

SEQ = "100000000000000000042"
SHARD = "shardId-00000001795000000000-0a1b2c3d"
CREATED = datetime(2026, 11, 22, 10, 15, 3, 120000, tzinfo=UTC)


def image(**cells) -> dict:
    return {"valueCells": {name: {"value": value} for name, value in cells.items()}, "rowMetadata": {"writeTime": "1"}}


def record(**changes) -> dict:
    doc = {
        "eventVersion": "1",
        "createdAt": CREATED,
        "origin": "USER",
        "partitionKeys": {"shop": {"textT": "s-1"}},
        "clusteringKeys": {"day": {"dateT": "20779"}, "n": {"intT": "7"}},
        "newImage": image(shop={"textT": "s-1"}, day={"dateT": "20779"}, n={"intT": "7"}, note={"textT": "new"}),
        "oldImage": image(shop={"textT": "s-1"}, day={"dateT": "20779"}, n={"intT": "7"}, note={"textT": "old"}),
        "sequenceNumber": SEQ,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def convert(doc: dict, **kwargs):
    return record_to_event(doc, keyspace="shop", table="sales", shard_id=SHARD, **kwargs)


def test_both_images_make_an_update_with_position_time_and_origin():
    event = convert(record())
    assert event.op == "UPDATE"
    assert event.key == {"shop": "s-1", "day": "2026-11-22", "n": 7}
    assert list(event.key) == ["shop", "day", "n"]  # partition columns, then clustering columns
    assert event.new["note"] == "new"
    assert event.old["note"] == "old"
    assert (event.seq, event.shard, event.ts, event.origin) == (SEQ, SHARD, "2026-11-22T10:15:03.120Z", "USER")
    assert (event.keyspace, event.table, event.source) == ("shop", "sales", "keyspaces")


def test_no_old_image_is_an_insert():
    event = convert(record(oldImage=None))
    assert (event.op, event.old) == ("INSERT", None)


def test_no_new_image_is_a_delete():
    event = convert(record(newImage=None))
    assert (event.op, event.new, event.old["note"]) == ("DELETE", None, "old")


def test_keys_only_record_is_a_delete_of_the_key():
    event = convert(record(newImage=None, oldImage=None))
    assert (event.op, event.new, event.old, event.key["n"]) == ("DELETE", None, None, 7)


def test_a_ttl_record_with_a_new_image_is_an_update_a_column_expired_the_row_remains():
    event = convert(record(origin="TTL"))
    assert (event.op, event.new["note"], event.origin, event.old["note"]) == ("UPDATE", "new", "TTL", "old")


def test_a_ttl_record_without_a_new_image_is_an_expiry():
    event = convert(record(origin="TTL", newImage=None))
    assert (event.op, event.new, event.origin) == ("EXPIRE", None, "TTL")


def test_the_version_is_created_at_then_the_stream_position_never_a_cell_write_time():
    """Client write times are another clock, and an expiring or nulled cell takes its time with it."""
    cells = {"shop": {"value": {"textT": "s-1"}, "metadata": {"writeTime": "1900000000000042"}}}
    new = {"valueCells": cells, "rowMetadata": {"writeTime": "1900000000000001"}}
    event = convert(record(newImage=new), lineage=("2026-11-01T00:00:00.000", 2))
    assert versions.parse(event.version) == versions.KsChange(
        created_us=1_795_342_503_120_000,
        label="2026-11-01T00:00:00.000",
        depth=2,
        sequence=int(record()["sequenceNumber"]),
    )


def test_a_removal_and_a_write_share_one_clock_and_the_position_breaks_ties():
    """DELETE then re-INSERT in one batch, with the client's clock behind the service's: the insert is newer."""
    delete = convert(record(newImage=None, sequenceNumber="100"))
    insert = convert(record(oldImage=None, sequenceNumber="101"))
    assert versions.verdict(insert.position, delete.position) is versions.Verdict.APPLY
    assert versions.verdict(delete.position, insert.position) is versions.Verdict.SKIP
    assert insert.version != delete.version  # never a tie between two records of one key


def test_a_record_without_a_readable_time_or_position_is_refused():
    with pytest.raises(PoisonRecordError, match="sequence number"):
        convert(record(sequenceNumber="shard-7:abc"))


def test_write_times_in_other_units_are_read_as_microseconds():
    assert to_micros("1795000000") == to_micros("1795000000000") == to_micros(1_795_000_000_000_000)


def test_replication_origin_is_kept():
    event = convert(record(origin="REPLICATION", oldImage=None))
    assert (event.op, event.origin) == ("INSERT", "REPLICATION")


def test_images_without_key_cells_still_hold_the_whole_row():
    event = convert(record(newImage=image(note={"textT": "new"}), oldImage=None))
    assert event.new == {"shop": "s-1", "day": "2026-11-22", "n": 7, "note": "new"}


def test_key_columns_reorder_the_key():
    event = convert(record(), key_columns=["n", "shop", "day"])
    assert list(event.key) == ["n", "shop", "day"]
    with pytest.raises(PoisonRecordError, match="lacks key column"):
        convert(record(), key_columns=["shop", "missing"])


def test_created_at_as_text_or_naive_datetime_is_read_as_utc():
    assert convert(record(createdAt="1795342503120")).ts == "2026-11-22T10:15:03.120Z"
    assert convert(record(createdAt=datetime(2026, 11, 22, 10, 15, 3, 120000))).ts == "2026-11-22T10:15:03.120Z"


def test_every_converted_record_passes_the_sinks_gate():
    for doc in (record(), record(oldImage=None), record(newImage=None), record(origin="TTL")):
        event = convert(doc)
        assert parse_event(event.to_bytes()) == event


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sequenceNumber": None}, "no sequenceNumber"),
        ({"origin": "SDK_UNKNOWN"}, "origin 'SDK_UNKNOWN'"),
        ({"partitionKeys": None, "clusteringKeys": None}, "no partition key"),
        ({"createdAt": None}, "no createdAt"),
        ({"createdAt": "last tuesday"}, "unreadable createdAt"),
    ],
)
def test_records_that_cannot_become_events_are_poison_with_a_reason(changes, message):
    with pytest.raises(PoisonRecordError, match=message):
        convert(record(**changes))
