"""The ways the index used to end up different from the table, each as a regression test.

Keyspaces cases go through the forwarder's record conversion (``RecordConverter``, records shaped as the
``keyspacesstreams`` botocore model returns them: key columns only in ``partitionKeys``, per-cell write times
from the client's clock, ``createdAt`` from the service's) and then the real sink against moto. The
PostgreSQL TRUNCATE race goes through the sink with a store that lets a TRUNCATE from another shard land in
the middle of a chunked put.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from freshvec import constants as c
from freshvec import versions
from freshvec.adapters.dynamodb import DynamoDbTombstones, create_checkpoint_table
from freshvec.config import ChunkingConfig, PipelineConfig, default_config
from freshvec.local.moto_server import MotoServer
from freshvec.retry import RetryPolicy
from freshvec.sources.keyspaces.cells import row_to_image
from freshvec.sources.keyspaces.convert import RecordConverter
from freshvec.testing.builders import change, key_of, kinesis_record, movie
from tests.integration.test_sink_apply import BUCKET, INDEX, make_pipeline, vec
from tests.integration.test_sink_truncate import event, pg_config, stored

T0 = datetime.now(UTC) - timedelta(minutes=5)  # recent: the sink refuses re-syncs older than the tombstones
LINEAGE = ("2026-11-01T00:00:00.000", 0)
WITH_GENRES = PipelineConfig.from_dict(
    {
        **json.loads(default_config().to_json()),
        "columns": {**default_config().columns, "genres": "list<text>"},
        "metadata_fields": [*default_config().metadata_fields, "genres"],
    }
)


def ks_record(
    config: PipelineConfig,
    seq: int,
    created: datetime,
    new: dict[str, Any] | None,
    old: dict[str, Any] | None,
    *,
    origin: str = "USER",
    client_time_us: int = 1,
) -> dict[str, Any]:
    """A Keyspaces Streams record: regular cells in the images (each with the client's write time), the key in
    ``partitionKeys`` only."""
    types = config.column_types

    def image(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        cells = row_to_image({k: v for k, v in row.items() if k != "title"}, types)
        for cell in cells["valueCells"].values():
            cell["metadata"] = {"writeTime": str(client_time_us)}
        return {**cells, "rowMetadata": {"writeTime": str(client_time_us)}}

    title = (new or old or {})["title"]
    record = {
        "eventVersion": "1",
        "createdAt": created,
        "origin": origin,
        "partitionKeys": {"title": {"textT": title}},
        "newImage": image(new),
        "oldImage": image(old),
        "sequenceNumber": str(10**20 + seq),
    }
    return {k: v for k, v in record.items() if v is not None}


def forwarded(config: PipelineConfig, records: list[dict[str, Any]], first: int = 1) -> list[dict[str, Any]]:
    """What the sink receives for these stream records: the forwarder's change events on Kinesis."""
    converter = RecordConverter.for_config(config)
    out = []
    for i, record in enumerate(records):
        outgoing, ok = converter.convert(record, "shardId-1", LINEAGE)
        assert ok, outgoing.data
        out.append(kinesis_record(json.loads(outgoing.data), first + i))
    return out


def test_a_column_that_expires_takes_its_value_out_of_the_index(moto: MotoServer) -> None:
    """UPDATE ... USING TTL 60 SET vote_count = 99 on an existing row, then the cell expires: the TTL record's
    image no longer holds the cell; it is newer (createdAt) although its newest remaining cell is older."""
    pipe = make_pipeline(moto)
    base = movie("A", "Sharks.", vote_count=5)
    ttl = {**base, "vote_count": 99}
    expired = {k: v for k, v in base.items() if k != "vote_count"}
    records = [
        ks_record(pipe.config, 1, T0, base, None, client_time_us=1_000),
        ks_record(pipe.config, 2, T0 + timedelta(seconds=1), ttl, base, client_time_us=9_000),
        ks_record(pipe.config, 3, T0 + timedelta(seconds=61), expired, ttl, origin="TTL", client_time_us=1_000),
    ]
    for record in forwarded(pipe.config, records):
        assert pipe.sink.process([record]).batch_item_failures == []
    stored = pipe.vectors()[key_of("A")]
    assert "vote_count" not in stored["metadata"]


def test_a_lost_collection_only_change_is_brought_in_by_a_redrive(moto: MotoServer) -> None:
    """The newest change touched only a list<text> and its record was lost: the redrive's read is placed by its
    stamp, not by WRITETIME (which misses collections), and replaces the older stored state."""
    pipe = make_pipeline(moto, WITH_GENRES)
    row = movie("A", "Sharks.", genres=["drama"])
    changed = {**row, "genres": ["drama", "horror"]}
    [insert] = forwarded(pipe.config, [ks_record(pipe.config, 1, T0, row, None, client_time_us=5_000)])
    assert pipe.sink.process([insert]).batch_item_failures == []
    # The UPDATE of genres at T0 + 1 s is lost; a redrive reads the row 10 s later.
    stamp = versions.keyspaces_read_stamp((T0 + timedelta(seconds=10)).timestamp()).text()
    redrive = {**change("UPDATE", changed, config=pipe.config), "origin": "REDRIVE", "version": stamp}
    assert pipe.sink.process([kinesis_record(redrive, 2)]).batch_item_failures == []
    assert pipe.vectors()[key_of("A")]["metadata"]["genres"] == ["drama", "horror"]


def test_delete_then_reinsert_in_one_batch_with_the_client_clock_behind_keeps_the_row(moto: MotoServer) -> None:
    """A removal and a write share one clock (createdAt) and the stream position breaks ties: the client's
    clock being behind the service's does not make the re-insert look older than the delete."""
    pipe = make_pipeline(moto)
    row = movie("A", "Sharks.")
    again = movie("A", "Sharks again.")
    first = forwarded(pipe.config, [ks_record(pipe.config, 1, T0, row, None, client_time_us=1)])
    assert pipe.sink.process(first).batch_item_failures == []
    client_behind_us = int((T0 + timedelta(seconds=1)).timestamp() * 1e6) - 5_000
    batch = forwarded(
        pipe.config,
        [
            ks_record(pipe.config, 2, T0 + timedelta(seconds=1), None, row),
            ks_record(pipe.config, 3, T0 + timedelta(seconds=1), again, None, client_time_us=client_behind_us),
        ],
        first=2,
    )
    assert pipe.sink.process(batch).batch_item_failures == []
    stored = pipe.vectors()
    assert key_of("A") in stored and stored[key_of("A")]["data"] == vec("Sharks again.")


def test_a_truncate_racing_a_chunked_put_removes_every_chunk(moto: MotoServer) -> None:
    """A chunked put of a row written before the TRUNCATE, on one shard; the TRUNCATE applied from another shard
    between the put's floor check and its write: the re-check removes chunk 0 and every other chunk."""
    config = dataclasses.replace(pg_config(), chunking=ChunkingConfig(max_chars=400))
    pipe = make_pipeline(moto, config)
    text = "\n\n".join(f"Paragraph {i}. " + "A shark swims far out at sea. " * 10 for i in range(6))
    put = event("INSERT", 1, versions.PgChange(0x100, 0, 50).text(), body=text)
    truncate = event("TRUNCATE", None, versions.PgChange(0x200, 0, 51).text())
    store, done = pipe.sink.store, []
    real_put = store.put

    def put_after_the_truncate(vectors: list[dict[str, Any]]) -> None:
        if not done:  # the TRUNCATE lands on its own shard just before the put's first write
            done.append(True)
            assert pipe.sink.process([kinesis_record(truncate, 99)]).batch_item_failures == []
        real_put(vectors)

    store.put = put_after_the_truncate  # type: ignore[method-assign]
    assert pipe.sink.process([kinesis_record(put, 1)]).batch_item_failures == []
    assert done and stored(pipe) == {}


def test_a_lower_tombstone_never_replaces_a_higher_one_in_dynamodb(moto: MotoServer) -> None:
    dynamodb = moto.client("dynamodb")
    create_checkpoint_table(dynamodb, "checkpoints")
    tombstones = DynamoDbTombstones(dynamodb, "checkpoints", retry=RetryPolicy(attempts=1), clock=lambda: 1000.0)
    high, low = versions.PgChange(0x900, 0, 9).text(), versions.PgChange(0x500, 3, 5).text()
    tombstones.put({"k": high}, expires_at=5000)
    tombstones.put({"k": low}, expires_at=5000)
    assert tombstones.get(["k"]) == {"k": high}
    higher = versions.PgChange(0x900, 1, 9).text()
    tombstones.put({"k": higher, "other": low}, expires_at=5000)
    assert tombstones.get(["k", "other"]) == {"k": higher, "other": low}
    # An expired tombstone no longer counts, and a lower one may take its place.
    late = DynamoDbTombstones(dynamodb, "checkpoints", retry=RetryPolicy(attempts=1), clock=lambda: 6000.0)
    late.put({"k": low}, expires_at=9000)
    assert late.get(["k"]) == {"k": low}


def test_a_tombstone_expiring_at_this_very_moment_is_replaced_not_left_to_fail_every_attempt(
    moto: MotoServer,
) -> None:
    """``get`` no longer counts a tombstone at its expiry, so the compare-and-set must treat it as expired too
    (else raising it failed every attempt until the clock moved: a TRUNCATE went back to re-delivery, and with
    a stopped clock was parked, redriven and parked again)."""
    dynamodb = moto.client("dynamodb")
    create_checkpoint_table(dynamodb, "checkpoints")
    before = DynamoDbTombstones(dynamodb, "checkpoints", retry=RetryPolicy(attempts=1), clock=lambda: 1000.0)
    older, newer = versions.PgChange(0x500, 1, 5).text(), versions.PgChange(0x900, 2, 9).text()
    for key, now in (("exactly", 5000.0), ("within_its_second", 5000.4)):
        before.put({key: older}, expires_at=5000)
        at = DynamoDbTombstones(dynamodb, "checkpoints", retry=RetryPolicy(attempts=1), clock=lambda now=now: now)
        assert at.get([key]) == {}
        at.put({key: newer}, expires_at=now + 4000)
        assert at.get([key]) == {key: newer}
        at.put({key: older}, expires_at=now + 4000)  # a lower one still never replaces a live higher one
        assert at.get([key]) == {key: newer}


def test_a_repair_replaces_a_corrupt_version_that_would_refuse_any_ordered_change(moto: MotoServer) -> None:
    """Another row's vector and metadata (its _fp and _ver) copied over a row: ordered changes are refused by
    the foreign, newer _ver; the compare-and-set repair on the write reconcile saw is not."""
    pipe = make_pipeline(moto)
    live = [
        {**change("INSERT", movie("A", "Sharks.")), "version": versions.PgChange(0x10, 0, 10).text()},
        {**change("INSERT", movie("B", "Whales.")), "version": versions.PgChange(0x90, 0, 90).text()},
    ]
    assert pipe.sink.process([kinesis_record(d, i + 1) for i, d in enumerate(live)]).batch_item_failures == []
    b = pipe.vectors()[key_of("B")]
    pipe.s3vectors.put_vectors(
        vectorBucketName=BUCKET,
        indexName=INDEX,
        vectors=[{"key": key_of("A"), "data": {"float32": b["data"]}, "metadata": b["metadata"]}],
    )
    seen, _ = versions.unstamp(pipe.vectors()[key_of("A")]["metadata"][c.META_VERSION])
    snapshot = versions.PgSnapshot(50, 50, frozenset()).text()  # read after A's write, before B's
    redrive = {**change("UPDATE", movie("A", "Sharks.")), "origin": "REDRIVE", "version": snapshot}
    pipe.sink.process([kinesis_record(redrive, 3)])
    assert pipe.vectors()[key_of("A")]["data"] == vec("Whales.")  # refused: the copied _ver is "newer"
    repair = {**change("UPDATE", movie("A", "Sharks.")), "origin": "RECONCILE", "version": snapshot, "if_wid": seen}
    assert pipe.sink.process([kinesis_record(repair, 4)]).batch_item_failures == []
    assert pipe.vectors()[key_of("A")]["data"] == vec("Sharks.")


def test_a_poison_resync_the_stored_state_makes_ambiguous_is_parked_not_planned_forever(moto: MotoServer) -> None:
    """A re-sync whose row the sink refuses (metadata over the limit) stands as a removal; when its read stamp
    cannot be ordered against the stored write, that removal is parked as ambiguous. The poison change itself
    must leave the plan then: were only the removal rebuilt from it marked, every pass would rebuild and park it
    again and the batch would never finish."""
    pipe = make_pipeline(moto)
    [insert] = forwarded(pipe.config, [ks_record(pipe.config, 1, T0, movie("A", "Sharks."), None)])
    assert pipe.sink.process([insert]).batch_item_failures == []
    stamp = versions.keyspaces_read_stamp((T0 - timedelta(seconds=10)).timestamp()).text()  # read before T0
    poison = movie("A", "Sharks again.", original_lang="y" * 3000)
    redrive = {**change("UPDATE", poison, config=pipe.config), "origin": "REDRIVE", "version": stamp}
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(pipe.sink.process([kinesis_record(redrive, 2)])))
    worker.daemon = True
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the sink kept planning the batch"
    [result] = results
    assert result.batch_item_failures == [] and len(result.dead_letters) == 1
    assert pipe.vectors()[key_of("A")]["metadata"]["overview"] == "Sharks."  # the stored write stands
