"""TRUNCATE through the real sink against moto S3 Vectors: what it removes, what it keeps, where it splits a batch."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

from freshvec import constants as c
from freshvec import versions
from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.keys import vector_key
from freshvec.local.moto_server import MotoServer
from freshvec.sink import Sink
from freshvec.testing.builders import kinesis_record
from tests.integration.test_sink_apply import BUCKET, INDEX, Pipeline, make_pipeline

COLUMNS = {"id": "bigint", "body": "text", "section": "text"}
_seq = iter(range(1, 1_000_000))


def pg_config() -> PipelineConfig:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    for name in ("keyspace", "table", "columns", "partition_key", "clustering_key"):
        raw.pop(name)
    raw["embedding_field"] = "body"
    raw["metadata_fields"] = ["section"]
    raw["source"] = {
        "kind": "postgres",
        "postgres": {"table": "articles", "columns": COLUMNS, "primary_key": ["id"], "connection": {"host": "db"}},
    }
    return PipelineConfig.from_dict(raw)


def at(lsn: int, position: int = 0) -> str:
    """The version of a change at ``position`` in the transaction committed at ``lsn`` (its xid is ``lsn``)."""
    return versions.PgChange(lsn, position, lsn).text()


def event(op: str, row_id: int | None, version: int | str | None, *, body: str = "", origin: str = "USER", **over: Any):
    """A change event; an integer version is a transaction of its own committed at that LSN (``at``)."""
    doc: dict[str, Any] = {
        "v": 1,
        "source": "postgres",
        "keyspace": "public",
        "table": "articles",
        "op": op,
        "key": {"$table": "public.articles"} if op == "TRUNCATE" else {"id": row_id},
        "new": {"id": row_id, "body": body, "section": "news"} if op in ("INSERT", "UPDATE") else None,
        "old": None,
        "seq": f"{next(_seq)}#0",
        "shard": "freshvec",
        "ts": "2026-11-22T00:15:03.120Z",
        "origin": origin,
    }
    if version is not None:
        doc["version"] = at(version) if isinstance(version, int) else version
    doc.update(over)
    return doc


def records(*docs: dict[str, Any], start: int = 1) -> list[dict[str, Any]]:
    return [kinesis_record(doc, start + i) for i, doc in enumerate(docs)]


def key(row_id: int) -> str:
    return vector_key({"id": row_id}, ("id",))


def stored(pipe: Pipeline) -> dict[str, str | None]:
    """Every vector's key and the commit LSN of its version (as text), listed page by page with the test's own
    client."""
    found: dict[str, str | None] = {}
    params: dict[str, Any] = {"vectorBucketName": BUCKET, "indexName": INDEX, "returnMetadata": True}

    def lsn(vector: dict[str, Any]) -> str | None:
        position = versions.parse(versions.unstamp((vector.get("metadata") or {}).get(c.META_VERSION))[1])
        return str(position.lsn) if isinstance(position, versions.PgChange) else None

    while True:
        page = pipe.s3vectors.list_vectors(**params)
        found.update({v["key"]: lsn(v) for v in page["vectors"]})
        if not page.get("nextToken"):
            return found
        params["nextToken"] = page["nextToken"]


def put_raw(pipe: Pipeline, lsns: dict[int, int | None]) -> None:
    """Vectors as an earlier sink run left them (with ``_ver`` where given), written straight to the index."""
    vectors = [
        {
            "key": key(row_id),
            "data": {"float32": [0.5] * 256},
            "metadata": {"section": "news"} | ({c.META_VERSION: versions.stamp("w0", at(v))} if v is not None else {}),
        }
        for row_id, v in lsns.items()
    ]
    for start in range(0, len(vectors), 500):
        pipe.s3vectors.put_vectors(vectorBucketName=BUCKET, indexName=INDEX, vectors=vectors[start : start + 500])


def test_truncate_removes_what_is_older_and_splits_the_batch(moto: MotoServer) -> None:
    pipe = make_pipeline(moto, pg_config())
    put_raw(pipe, {7: 50, 8: None, 9: 900})  # 9 was written after the TRUNCATE (applied from another shard)
    result = pipe.sink.process(
        records(
            event("INSERT", 1, 100, body="first"),
            event("INSERT", 2, 200, body="second"),
            event("TRUNCATE", None, 300),
            event("INSERT", 3, 400, body="third"),
        )
    )
    assert result.batch_item_failures == []
    assert stored(pipe) == {key(3): "400", key(9): "900"}
    assert result.stats.vectors_put == 3
    assert result.stats.vectors_deleted == 4  # 1, 2 (from this batch), 7 (older), 8 (no version)
    assert result.stats.tombstones_written == 1  # the floor: it covers every key as long as a key's own would
    assert result.stats.changes_received == 4


def test_a_resync_read_before_the_truncate_does_not_bring_a_row_back(moto: MotoServer) -> None:
    pipe = make_pipeline(moto, pg_config())
    pipe.sink.process(records(event("INSERT", 1, 100, body="first")))
    pipe.sink.process(records(event("TRUNCATE", None, 300), start=10))
    read_before = versions.PgSnapshot(250, 250, frozenset()).text()  # does not see the TRUNCATE's xid 300
    late = pipe.sink.process(records(event("INSERT", 1, read_before, body="first", origin="BACKFILL"), start=20))
    assert stored(pipe) == {}
    assert late.stats.stale_skipped == 1
    newer = pipe.sink.process(records(event("INSERT", 1, 350, body="again"), start=30))
    assert newer.batch_item_failures == []
    assert stored(pipe) == {key(1): "350"}


def test_truncate_lists_in_pages_and_deletes_in_calls_of_at_most_500(moto: MotoServer) -> None:
    pipe = make_pipeline(moto, pg_config())
    put_raw(pipe, dict.fromkeys(range(1, 1_201), 10))
    pipe.tap.calls.clear()
    pipe.tap.sizes.clear()
    result = pipe.sink.process(records(event("TRUNCATE", None, 20)))
    assert result.batch_item_failures == []
    assert stored(pipe) == {}
    assert pipe.tap.calls["ListVectors"] >= 2  # 1,200 vectors do not fit one page of 1,000
    assert pipe.tap.sizes["DeleteVectors"] == [500, 500, 200]
    assert result.stats.vectors_deleted == 1_200


def test_a_transient_failure_leaves_the_truncate_and_what_follows_to_redelivery(moto: MotoServer) -> None:
    pipe = make_pipeline(moto, pg_config())
    batch = records(
        event("INSERT", 1, 100, body="first"), event("TRUNCATE", None, 300), event("INSERT", 2, 400, body="second")
    )
    pipe.tap.fail("ListVectors", "ServiceUnavailableException", 503, times=3)  # more than the retries
    result = pipe.sink.process(batch)
    assert result.batch_item_failures == [{"itemIdentifier": batch[1]["kinesis"]["sequenceNumber"]}]
    assert result.stats.transient_failures == 2
    assert stored(pipe) == {key(1): "100"}  # applied before the TRUNCATE; nothing after it
    again = pipe.sink.process(batch[1:])  # the event source mapping re-delivers from the TRUNCATE
    assert again.batch_item_failures == []
    assert stored(pipe) == {key(2): "400"}


def test_a_truncate_it_cannot_apply_goes_to_the_dlq(moto: MotoServer) -> None:
    pipe = make_pipeline(moto, pg_config())
    pipe.sink.process(records(event("INSERT", 1, 100, body="first")))
    result = pipe.sink.process(
        records(
            event("TRUNCATE", None, None),  # no version: what it removes cannot be told
            event("TRUNCATE", None, 300, table="other"),
            event("TRUNCATE", None, 300, key={"$table": "public.other"}),
            start=10,
        )
    )
    assert result.batch_item_failures == []
    assert stored(pipe) == {key(1): "100"}
    reasons = [letter["error_message"] for letter in pipe.dead_letters()]
    assert len(reasons) == 3
    for expected in ("has no 'version'", "this sink serves public.articles", "TRUNCATE key must be"):
        assert sum(expected in reason for reason in reasons) == 1, (expected, reasons)
    assert result.stats.dlq_records == 3


def test_a_truncate_on_a_keyspaces_table_is_parked_and_removes_nothing(moto: MotoServer) -> None:
    """Its PostgreSQL version cannot be ordered against Keyspaces versions (any pair of sources compares as
    APPLY), so applied it would remove every vector: the sink parks it with the reason instead."""
    from freshvec.testing.builders import batch, change, movie

    pipe = make_pipeline(moto)
    assert pipe.sink.process(batch(change("INSERT", movie("Heat", "A heist.")))).batch_item_failures == []
    truncate = event("TRUNCATE", None, 300, keyspace=pipe.config.keyspace, table=pipe.config.table,
                     key={"$table": f"{pipe.config.keyspace}.{pipe.config.table}"})  # fmt: skip
    result = pipe.sink.process(records(truncate, start=10))
    assert result.batch_item_failures == [] and result.stats.dlq_records == 1
    [letter] = pipe.dead_letters()
    assert "TRUNCATE comes from PostgreSQL" in letter["error_message"]
    assert len(pipe.vectors()) == 1


def test_a_change_from_before_the_truncate_arriving_later_is_set_aside(moto: MotoServer) -> None:
    """The TRUNCATE travels on the table's shard; a row's older change (or its re-sent copy) may come after it."""
    pipe = make_pipeline(moto, pg_config())
    pipe.sink.process(records(event("TRUNCATE", None, 300)))
    late = pipe.sink.process(records(event("INSERT", 1, 100, body="first"), start=10))
    assert late.batch_item_failures == []
    assert late.stats.stale_skipped == 1
    assert late.stats.vectors_put == 0
    assert stored(pipe) == {}
    newer = pipe.sink.process(records(event("UPDATE", 1, 400, body="after"), start=20))
    assert stored(pipe) == {key(1): "400"}
    assert newer.stats.stale_skipped == 0


def test_a_put_that_slipped_past_the_truncate_is_removed_when_its_change_comes_again(moto: MotoServer) -> None:
    pipe = make_pipeline(moto, pg_config())
    pipe.sink.process(records(event("TRUNCATE", None, 300)))
    put_raw(pipe, {1: 100})  # written by a sink that read no floor yet, after the TRUNCATE listed the index
    again = pipe.sink.process(records(event("INSERT", 1, 100, body="first"), start=10))  # its re-delivery
    assert again.batch_item_failures == []
    assert stored(pipe) == {}


def test_keyspaces_batches_do_not_read_a_floor(moto: MotoServer) -> None:
    from freshvec.testing.builders import batch, change, movie

    pipe = make_pipeline(moto)
    reads: list[list[str]] = []
    original = pipe.sink.tombstones.get
    pipe.sink.tombstones.get = lambda keys: reads.append(list(keys)) or original(keys)  # type: ignore[method-assign]
    pipe.sink.process(batch(change("INSERT", movie("Heat", "A heist."))))
    assert not any(k.startswith("$table") for keys in reads for k in keys)


def test_writes_before_a_truncate_in_its_own_transaction_go_and_writes_after_it_stay(moto: MotoServer) -> None:
    """BEGIN; UPDATE id=1; INSERT id=4; TRUNCATE; INSERT id=5; COMMIT: the table holds 5 only, so must the
    index — in one batch, and with the TRUNCATE applied first from its own shard."""
    for truncate_first in (False, True):
        moto.reset()
        pipe = make_pipeline(moto, pg_config())
        pipe.sink.process(records(event("INSERT", 1, 100, body="one")))
        tx = [
            event("UPDATE", 1, at(500, 0), body="one again"),
            event("INSERT", 4, at(500, 1), body="four"),
            event("TRUNCATE", None, at(500, 2)),
            event("INSERT", 5, at(500, 3), body="five"),
        ]
        if truncate_first:
            pipe.sink.process(records(tx[2], start=10))
            result = pipe.sink.process(records(tx[0], tx[1], tx[3], start=20))
        else:
            result = pipe.sink.process(records(*tx, start=10))
        assert result.batch_item_failures == []
        assert stored(pipe) == {key(5): "500"}, truncate_first


def test_the_floor_only_rises_a_re_delivered_older_truncate_does_not_lower_it(moto: MotoServer) -> None:
    pipe = make_pipeline(moto, pg_config())
    pipe.sink.process(records(event("TRUNCATE", None, 300)))
    pipe.sink.process(records(event("TRUNCATE", None, 200), start=10))  # an older TRUNCATE, re-delivered
    late = pipe.sink.process(records(event("INSERT", 1, 250, body="first"), start=20))
    assert late.stats.stale_skipped == 1 and stored(pipe) == {}


def _listing_then(pipe: Pipeline, between: Any) -> None:
    """Run ``between`` once, after the TRUNCATE's listing of the index and before its deletes (another shard's
    sink at work at that moment)."""
    real_scan = pipe.sink.store.scan

    def scan(**kwargs: Any) -> Any:
        pages = list(real_scan(**kwargs))
        between()
        yield from pages

    pipe.sink.store.scan = scan  # type: ignore[method-assign]


def test_a_newer_put_between_the_truncate_listing_and_its_deletes_goes_back_to_redelivery(moto: MotoServer) -> None:
    """BEGIN; UPDATE id=1; TRUNCATE; INSERT id=1; COMMIT, the TRUNCATE on its own shard: the re-insert is put
    after the TRUNCATE listed the index (row 1 at its old version) and before it deleted by that listing. The
    put's re-check sees the floor still applying: the record goes back to re-delivery (no DLQ), and comes
    back after the TRUNCATE is done."""
    pipe = make_pipeline(moto, pg_config())
    assert pipe.sink.process(records(event("INSERT", 1, 100, body="old"))).batch_item_failures == []
    tx = 300
    shard0 = records(event("UPDATE", 1, at(tx, 0), body="updated"), event("INSERT", 1, at(tx, 2), body="again"))
    pipe.sink.truncate_wait_s = 0  # the TRUNCATE cannot finish while this runs: no wait
    results: list[Any] = []
    _listing_then(pipe, lambda: results.append(pipe.sink.process(shard0)))
    assert pipe.sink.process(records(event("TRUNCATE", None, at(tx, 1)), start=50)).batch_item_failures == []
    (raced,) = results
    # The UPDATE is older than the floor (set aside); the re-insert goes back.
    assert raced.batch_item_failures == [{"itemIdentifier": shard0[1]["kinesis"]["sequenceNumber"]}]
    assert raced.dead_letters == [] and pipe.sqs.receive_message(QueueUrl=pipe.queue_url).get("Messages") is None
    assert stored(pipe) == {}  # the stale listing removed the put ...
    again = pipe.sink.process(shard0[1:])  # ... and the re-delivery brings it back
    assert again.batch_item_failures == []
    assert stored(pipe) == {key(1): str(tx)}


def test_a_newer_put_racing_the_truncate_deletes_waits_for_them_and_is_put_again(moto: MotoServer) -> None:
    """The same race with the TRUNCATE finishing while the put waits: the row is put again, no re-delivery."""
    pipe = make_pipeline(moto, pg_config())
    assert pipe.sink.process(records(event("INSERT", 1, 100, body="old"))).batch_item_failures == []
    tx = 300
    shard0 = records(event("INSERT", 1, at(tx, 2), body="again"))
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(pipe.sink.process(shard0)))

    def put_on_another_shard() -> None:
        worker.start()
        deadline = time.monotonic() + 30
        while stored(pipe).get(key(1)) != str(tx) and time.monotonic() < deadline:
            time.sleep(0.02)  # until the put is in the index; then the TRUNCATE deletes by its stale listing

    _listing_then(pipe, put_on_another_shard)
    assert pipe.sink.process(records(event("TRUNCATE", None, at(tx, 1)), start=50)).batch_item_failures == []
    worker.join(60)
    (raced,) = results
    assert raced.batch_item_failures == [] and raced.dead_letters == []
    assert stored(pipe) == {key(1): str(tx)}


def test_each_index_has_its_own_truncate_progress(moto: MotoServer) -> None:
    """Two generations' sinks share the table's floor but not its progress: one index done with a TRUNCATE says
    nothing of another still deleting by its listing, so a put racing the second is still not confirmed."""
    pipe = make_pipeline(moto, pg_config())
    g1 = pipe.sink
    config2 = dataclasses.replace(
        pipe.config, vector_store=dataclasses.replace(pipe.config.vector_store, index_name="g2")
    )
    assert config2.vector_index_name != pipe.config.vector_index_name
    g2 = Sink(config2, g1.embedder, g1.store, g1.dlq, tombstones=g1.tombstones, truncate_wait_s=0)
    assert g2.process(records(event("INSERT", 1, 100, body="old"))).batch_item_failures == []
    tx = 300
    assert g1.process(records(event("TRUNCATE", None, at(tx, 1)), start=50)).batch_item_failures == []  # g1 done
    later = records(event("INSERT", 1, at(tx, 2), body="again"))
    results: list[Any] = []
    pipe.sink = g2
    _listing_then(pipe, lambda: results.append(g2.process(later)))
    pipe.sink = g1
    assert g2.process(records(event("TRUNCATE", None, at(tx, 1)), start=50)).batch_item_failures == []
    (raced,) = results
    assert raced.batch_item_failures == [{"itemIdentifier": later[0]["kinesis"]["sequenceNumber"]}]
    assert g2.process(later).batch_item_failures == [] and stored(pipe) == {key(1): str(tx)}
