"""The operator commands against a local stack on a real PostgreSQL, through the CLI as a user runs them:
``freshvec --local reconcile`` (and ``--repair``), ``redrive send`` and ``status``, with their exit codes; and a
TRUNCATE inside a transaction with writes before and after it, made straight in SQL."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec import truncate
from freshvec.adapters.dynamodb import tombstone_item_key
from freshvec.adapters.postgres import connect
from freshvec.cli.errors import EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK
from freshvec.command import app
from freshvec.config import PipelineConfig
from freshvec.keys import chunk_key, vector_key
from freshvec.local import LocalPipeline
from freshvec.local.demo import read_rows
from freshvec.local.pgserver import PostgresNotAvailable, find_bin_dir
from freshvec.state import write_local_state
from freshvec.testing.local_cli import attached_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
SYNC_S = 60
runner = CliRunner()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    try:
        find_bin_dir()
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    raw = PipelineConfig.from_file(EXAMPLES / "articles.config.json").to_dict()
    raw["sink"] = {**raw.get("sink", {}), "batching_window_s": 0}
    state = tmp_path_factory.mktemp("local") / "state.json"
    with LocalPipeline.start(PipelineConfig.from_dict(raw)) as running, attached_cli(running, state):
        receipt = running.upsert(read_rows(EXAMPLES / "articles.jsonl", running.config))
        running.wait_synced(timeout=SYNC_S, receipt=receipt)
        yield running


def freshvec(*args: str) -> Any:
    return runner.invoke(app, ["--local", *args])


def key(row_id: int) -> str:
    return vector_key({"id": row_id}, ("id",))


def keys(pipeline: LocalPipeline) -> set[str]:
    client = pipeline.server.client("s3vectors")
    params: dict[str, Any] = {
        "vectorBucketName": pipeline.resources.vector_bucket,
        "indexName": pipeline.resources.vector_index,
    }
    found: set[str] = set()
    while True:
        page = client.list_vectors(**params)
        found.update(v["key"] for v in page["vectors"])
        if not page.get("nextToken"):
            return found
        params["nextToken"] = page["nextToken"]


def eventually(check: Callable[[], bool], what: str, timeout_s: float = SYNC_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.3)


def test_reconcile_and_status_work_on_a_postgres_stack(pipeline: LocalPipeline) -> None:
    found = freshvec("reconcile", "--json")
    assert found.exit_code == EXIT_OK, found.output
    assert json.loads(found.stdout)["in_sync"] == 30
    status = freshvec("status")
    assert status.exit_code == EXIT_OK, status.output


def test_drift_of_every_shape_is_found_and_repaired_and_the_next_reconcile_reports_0(pipeline: LocalPipeline) -> None:
    s3vectors = pipeline.server.client("s3vectors")
    where = {"vectorBucketName": pipeline.resources.vector_bucket, "indexName": pipeline.resources.vector_index}
    [other] = s3vectors.get_vectors(**where, keys=[key(2)], returnData=True, returnMetadata=True)["vectors"]
    s3vectors.put_vectors(
        **where,
        vectors=[
            # another row's vector and metadata (its _fp and _ver) copied over row 3
            {"key": key(3), "data": other["data"], "metadata": other["metadata"]},
            # a chunk beyond row 4's count, and a key that names no row
            {"key": chunk_key(key(4), 5), "data": other["data"], "metadata": {"_chunk": 5}},
            {"key": "not-a-row", "data": other["data"], "metadata": {}},
        ],
    )
    s3vectors.delete_vectors(**where, keys=[key(5)])  # a row missing from the index
    found = freshvec("reconcile", "--json")
    assert found.exit_code == EXIT_CHECK_FAILED, found.output
    report = json.loads(found.stdout)
    assert (report["missing"], report["stale"], report["orphan"]) == (1, 1, 2)
    repaired = freshvec("reconcile", "--repair")
    assert repaired.exit_code == EXIT_CHECK_FAILED, repaired.output  # it reports the drift it repaired
    assert "1 vector key(s) that name no row removed" in repaired.output

    def in_sync() -> bool:
        return freshvec("reconcile").exit_code == EXIT_OK

    eventually(in_sync, "reconcile reports 0 once the repairs went through the pipeline")
    assert "not-a-row" not in keys(pipeline) and chunk_key(key(4), 5) not in keys(pipeline)


def test_redrive_send_reads_the_current_row_from_postgresql(pipeline: LocalPipeline) -> None:
    row = next(r for r in read_rows(EXAMPLES / "articles.jsonl", pipeline.config) if r["id"] == 9)
    parked = {
        "v": 1, "source": "postgres", "keyspace": "public", "table": "articles", "op": "UPDATE", "key": {"id": 9},
        "new": {**row, "body": "an old parked body that must not come back"}, "old": None, "seq": "1#0",
        "shard": "freshvec", "ts": "2026-01-01T00:00:00.000Z", "origin": "USER",
    }  # fmt: skip
    body = {"payload_b64": base64.b64encode(json.dumps(parked).encode()).decode(), "partition_key": key(9)}
    pipeline.server.client("sqs").send_message(QueueUrl=pipeline.resources.dlq_url, MessageBody=json.dumps(body))
    sent = freshvec("redrive", "send", "--source", "dlq")
    assert sent.exit_code == EXIT_OK, sent.output
    assert "1 row(s) sent" in sent.output
    eventually(lambda: freshvec("reconcile").exit_code == EXIT_OK, "the index still equals the table")


def test_a_truncate_between_writes_of_one_transaction_leaves_only_the_rows_written_after_it(
    pipeline: LocalPipeline,
) -> None:
    """BEGIN; UPDATE id=1; INSERT id=31; TRUNCATE; INSERT id=32; COMMIT: the table holds 32 only."""
    server = pipeline.postgres.server
    conn = connect(pipeline.postgres.config.postgres.connection, server.password)
    try:
        conn.run("BEGIN")
        conn.run("UPDATE public.articles SET body = 'rewritten before the truncate' WHERE id = 1")
        conn.run("INSERT INTO public.articles (id, title, body) VALUES (31, 'Before', 'inserted before the truncate')")
        conn.run("TRUNCATE public.articles")
        conn.run("INSERT INTO public.articles (id, title, body) VALUES (32, 'After', 'inserted after the truncate')")
        conn.run("COMMIT")
    finally:
        conn.close()
    eventually(lambda: keys(pipeline) == {key(32)}, "the index holds row 32 only")
    found = freshvec("reconcile", "--json")
    assert found.exit_code == EXIT_OK and json.loads(found.stdout)["in_sync"] == 1, found.output


def _stream_events(pipeline: LocalPipeline) -> list[tuple[dict[str, Any], str]]:
    """Every change event on the local change stream, with its partition key."""
    kinesis = pipeline.server.client("kinesis")
    name = pipeline.resources.stream_name
    found = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            found += [(json.loads(r["Data"]), r["PartitionKey"]) for r in page["Records"]]
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return found


def test_a_parked_truncate_is_redriven_and_the_index_equals_the_table_again(pipeline: LocalPipeline) -> None:
    """A TRUNCATE the sink parked instead of applying (the index still holds the rows it removed) is re-sent by
    ``redrive send`` as it was parked; the index empties and reconcile reports 0 without a repair."""
    server = pipeline.postgres.server
    conn = connect(pipeline.postgres.config.postgres.connection, server.password)
    try:
        conn.run("INSERT INTO public.articles (id, title, body) VALUES (51, 'One', 'first row'), (52, 'Two', 'second')")
        eventually(lambda: {key(51), key(52)} <= keys(pipeline), "rows 51 and 52 indexed")
        s3vectors = pipeline.server.client("s3vectors")
        where = {"vectorBucketName": pipeline.resources.vector_bucket, "indexName": pipeline.resources.vector_index}
        held = s3vectors.get_vectors(**where, keys=sorted(keys(pipeline)), returnData=True, returnMetadata=True)
        conn.run("TRUNCATE public.articles")
    finally:
        conn.close()
    eventually(lambda: keys(pipeline) == set(), "the live TRUNCATE applied")
    # As if the sink had parked the TRUNCATE: this index never started or finished it (its progress tombstones
    # gone), its rows back in the index, the TRUNCATE in the DLQ.
    dynamodb = pipeline.server.client("dynamodb")
    for progress in truncate.progress_keys(pipeline.config):
        item = tombstone_item_key(progress)
        dynamodb.delete_item(TableName=pipeline.resources.checkpoint_table, Key=item)
    s3vectors.put_vectors(**where, vectors=[{k: v[k] for k in ("key", "data", "metadata")} for v in held["vectors"]])
    truncates = [(event, pk) for event, pk in _stream_events(pipeline) if event["op"] == "TRUNCATE"]
    event, partition = max(truncates, key=lambda pair: pair[0]["version"])  # the last one ("pg:" + 16 hex LSN)
    body = {
        "payload_b64": base64.b64encode(json.dumps(event).encode()).decode(), "partition_key": partition,
        "error_class": "PoisonRecordError", "error_message": "parked", "kinesis_shard_id": "shardId-000000000000",
        "kinesis_sequence_number": "1", "failed_at": "2026-12-07T00:00:00.000Z",
    }  # fmt: skip
    sqs = pipeline.server.client("sqs")
    sqs.send_message(QueueUrl=pipeline.resources.dlq_url, MessageBody=json.dumps(body))
    assert freshvec("reconcile").exit_code == EXIT_CHECK_FAILED  # the index holds rows the table does not

    sent = freshvec("redrive", "send", "--source", "dlq")
    assert sent.exit_code == EXIT_OK, sent.output
    assert "1 TRUNCATE(s) re-sent as parked" in " ".join(sent.output.split()), sent.output
    eventually(lambda: keys(pipeline) == set(), "the redriven TRUNCATE applied")
    eventually(lambda: freshvec("reconcile").exit_code == EXIT_OK, "reconcile reports 0")
    assert "0 parked item(s)" in freshvec("redrive", "list", "--source", "dlq").output


def test_reconcile_that_cannot_reach_the_stack_exits_3_not_1(tmp_path: Path) -> None:
    state = tmp_path / "gone.json"
    write_local_state(state, {"endpoint": "http://127.0.0.1:9", "region": "us-east-1", "control": "http://127.0.0.1:9",
                              "outputs": {}})  # fmt: skip
    result = runner.invoke(app, ["--local-state", str(state), "--local", "reconcile"])
    assert result.exit_code == EXIT_FAILED, result.output
