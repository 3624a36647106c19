"""Attacks on the index-equals-table promise: corrupted stored metadata, hostile orderings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from freshvec import constants as c
from freshvec import versions
from freshvec.local.moto_server import MotoServer
from freshvec.testing.builders import change, key_of, kinesis_record, movie
from tests.integration.test_sink_apply import BUCKET, INDEX, make_pipeline

T0 = datetime.now(UTC) - timedelta(minutes=5)


def _corrupt(pipe, key: str, **meta) -> None:
    stored = pipe.vectors()[key]
    pipe.s3vectors.put_vectors(
        vectorBucketName=BUCKET,
        indexName=INDEX,
        vectors=[{"key": key, "data": {"float32": stored["data"]}, "metadata": {**stored["metadata"], **meta}}],
    )


@pytest.mark.parametrize("count", [10**15, 1e300, -5, "garbage", 2.5])
def test_a_corrupt_chunk_count_does_not_stall_the_sink(moto: MotoServer, count) -> None:
    pipe = make_pipeline(moto)
    doc = change("INSERT", movie("A", "Sharks."))
    doc["version"] = versions.PgChange(10, 0, 5).text()
    assert pipe.sink.process([kinesis_record(doc, 1)]).batch_item_failures == []
    _corrupt(pipe, key_of("A"), _chunks=count)
    upd = change("UPDATE", movie("A", "Whales."))
    upd["version"] = versions.PgChange(11, 0, 6).text()
    assert pipe.sink.process([kinesis_record(upd, 2)]).batch_item_failures == []
    dele = change("DELETE", None, movie("A", "Whales."))
    dele["version"] = versions.PgChange(12, 0, 7).text()
    assert pipe.sink.process([kinesis_record(dele, 3)]).batch_item_failures == []
    assert pipe.vectors() == {}


@pytest.mark.parametrize("legacy", [{"N": "42"}, {"S": "not a version"}, None])
def test_a_tombstone_left_by_an_older_release_does_not_block_a_delete(moto: MotoServer, legacy) -> None:
    """A live tombstone item whose version is a number (written before versions were texts) or missing reads as
    no tombstone; raising it must then take its place, not fail forever (which stalls the shard)."""
    from freshvec.adapters.dynamodb import (
        ATTR_EXPIRES_AT,
        ATTR_TOMBSTONE_VERSION,
        TOMBSTONE_SORT,
        DynamoDbTombstones,
        _key,
        _tombstone_partition,
        create_checkpoint_table,
    )
    from freshvec.retry import RetryPolicy

    dynamodb = moto.client("dynamodb")
    create_checkpoint_table(dynamodb, "checkpoints")
    item = {**_key(_tombstone_partition("k"), TOMBSTONE_SORT), ATTR_EXPIRES_AT: {"N": "5000"}}
    if legacy is not None:
        item[ATTR_TOMBSTONE_VERSION] = legacy
    dynamodb.put_item(TableName="checkpoints", Item=item)
    tombstones = DynamoDbTombstones(dynamodb, "checkpoints", retry=RetryPolicy(attempts=1), clock=lambda: 1000.0)
    version = versions.PgChange(0x900, 0, 9).text()
    tombstones.put({"k": version}, expires_at=6000)
    assert tombstones.get(["k"]) == {"k": version}


def _ks_live(doc: dict, created_s: float, sequence: int) -> dict:
    return {**doc, "version": versions.KsChange(int(created_s * 1_000_000), "label", 0, sequence).text()}


def test_a_repair_read_before_a_fresh_write_was_visible_does_not_replace_it(moto: MotoServer) -> None:
    """Keyspaces: a write lands in the index within a second; reconcile --repair lists it, reads the table
    before the write is visible there (within δ) and sends the older row, stamped read start - B - δ. The
    write it saw in the index is newer than anything the read could vouch for: the repair must not put the
    older row over it."""
    import time

    pipe = make_pipeline(moto)
    now = time.time()
    first = _ks_live(change("INSERT", movie("A", "Sharks.")), now - 60, 1)
    assert pipe.sink.process([kinesis_record(first, 1)]).batch_item_failures == []
    fresh = _ks_live(change("UPDATE", movie("A", "Whales.")), now - 0.2, 2)
    assert pipe.sink.process([kinesis_record(fresh, 2)]).batch_item_failures == []
    seen, _ = versions.unstamp(pipe.vectors()[key_of("A")]["metadata"][c.META_VERSION])
    stamp = versions.keyspaces_read_stamp(now).text()  # the repair's read, just now, still saw "Sharks."
    repair = {**change("UPDATE", movie("A", "Sharks.")), "origin": "RECONCILE", "version": stamp, "if_wid": seen}
    assert pipe.sink.process([kinesis_record(repair, 3)]).batch_item_failures == []
    assert pipe.vectors()[key_of("A")]["metadata"]["overview"] == "Whales."


def test_a_repair_still_replaces_a_corrupt_keyspaces_version_from_the_future(moto: MotoServer) -> None:
    import time

    pipe = make_pipeline(moto)
    now = time.time()
    first = _ks_live(change("INSERT", movie("A", "Sharks.")), now - 60, 1)
    assert pipe.sink.process([kinesis_record(first, 1)]).batch_item_failures == []
    wrong = versions.stamp("feedfacefeedface", versions.KsChange(int((now + 10**6) * 1e6), "x", 0, 1).text())
    _corrupt(pipe, key_of("A"), _ver=wrong, overview="Whales.")
    stamp = versions.keyspaces_read_stamp(now).text()
    repair = {**change("UPDATE", movie("A", "Sharks.")), "origin": "RECONCILE", "version": stamp}
    repair["if_wid"] = "feedfacefeedface"
    assert pipe.sink.process([kinesis_record(repair, 2)]).batch_item_failures == []
    assert pipe.vectors()[key_of("A")]["metadata"]["overview"] == "Sharks."
