"""The PostgreSQL source: forwarder throughput from a real replication slot, and freshness in local mode.

A throwaway PostgreSQL on 127.0.0.1 (``freshvec.local.pgserver``, plain TCP on loopback) holds a table
whose changes wait in two slots, created before the writes: one for the forwarder, one for the baseline.
Kinesis and DynamoDB are an in-process moto server; PutRecords gets 30 ms of service-like latency
(``bench.forwarder.SlowKinesis``). Figures, all from this one run:

- ``pg_forwarder_changes_per_s``: the forwarder (``postgres_forwarder``: peek a read of up to
  ``max_changes_per_read`` changes, PutRecords calls of up to 500, checkpoint, advance the slot) draining
  ``CHANGES`` changes written in transactions of ``ROWS_PER_TRANSACTION`` rows;
- ``pg_forwarder_baseline_changes_per_s``: the naive way on the same server: for each change one PutRecord,
  one checkpoint and one slot advance, in sequence (over ``BASELINE_CHANGES`` changes);
- ``pg_local_freshness_p50_ms`` (and p99): ``LocalPipeline`` with the sample articles in a local PostgreSQL,
  a steady ``RATE_PER_S`` changes/s for ``DURATION_S`` s (body rewrites, other-column updates, deletes,
  re-inserts), write call -> searchable, with the config's 1 s batching window as in AWS.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.forwarder import PUT_RECORDS_LATENCY_S, SlowKinesis, drain_rate
from bench.local_freshness import steady_writes
from freshvec.adapters.dynamodb import CheckpointStore, create_checkpoint_table
from freshvec.adapters.postgres import connect
from freshvec.adapters.wiring import postgres_forwarder
from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.local.demo import read_rows
from freshvec.local.moto_server import MotoServer
from freshvec.local.pgserver import LocalPostgres
from freshvec.local.pipeline import LocalPipeline
from freshvec.local.postgres import with_local_connection
from freshvec.sources.postgres.reader import PostgresSlotSource
from freshvec.sources.postgres.session import prepare_session
from freshvec.sources.postgres.writer import PgTableWriter

CHANGES = 5_000
ROWS_PER_TRANSACTION = 50
BASELINE_CHANGES = 100
RATE_PER_S = 50
DURATION_S = 20
SYNC_TIMEOUT_S = 120
KINESIS_STREAM = "bench-pg-changes"
CHECKPOINT_TABLE = "bench-pg-checkpoints"
BASELINE_SLOT = "baseline"
COLUMNS = {"id": "bigint", "body": "text", "n": "integer"}
EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"


def _config(server: LocalPostgres) -> PipelineConfig:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    for name in ("keyspace", "table", "columns", "partition_key", "clustering_key"):
        raw.pop(name)
    raw["embedding_field"] = "body"
    raw["metadata_fields"] = ["n"]
    raw["source"] = {"kind": "postgres", "postgres": {"table": "docs", "columns": COLUMNS, "primary_key": ["id"]}}
    return with_local_connection(PipelineConfig.from_dict(raw), server)


def _connect(config: PipelineConfig) -> Any:
    conn = connect(config.postgres.connection, config.postgres.connection.password)
    prepare_session(conn)
    return conn


def _write_changes(config: PipelineConfig) -> None:
    """The table, both slots, then CHANGES changes: inserts of CHANGES / 2 rows, then an update of each."""
    conn = _connect(config)
    try:
        writer = PgTableWriter("public", "docs", COLUMNS, ("id",))
        writer.create(conn, config.postgres.publication)
        for slot in (config.postgres.slot, BASELINE_SLOT):
            conn.run("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')", s=slot)
        rows = CHANGES // 2
        for revision in range(2):
            for start in range(0, rows, ROWS_PER_TRANSACTION):
                batch = [
                    {"id": i, "body": f"Document {i}, revision {revision}: a paragraph of ordinary length.", "n": i}
                    for i in range(start, min(rows, start + ROWS_PER_TRANSACTION))
                ]
                writer.upsert(conn, batch)
    finally:
        conn.close()


def _kinesis_and_dynamodb(server: MotoServer) -> tuple[SlowKinesis, Any]:
    server.reset()
    kinesis = server.client("kinesis")
    kinesis.create_stream(StreamName=KINESIS_STREAM, ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName=KINESIS_STREAM, WaiterConfig={"Delay": 0.1})
    dynamodb = server.client("dynamodb")
    create_checkpoint_table(dynamodb, CHECKPOINT_TABLE)
    return SlowKinesis(kinesis), dynamodb


def _forwarder_rate(server: MotoServer, config: PipelineConfig) -> float:
    kinesis, dynamodb = _kinesis_and_dynamodb(server)
    forwarder = postgres_forwarder(
        config,
        lambda: _connect(config),
        kinesis,
        dynamodb,
        stream_name=KINESIS_STREAM,
        checkpoint_table=CHECKPOINT_TABLE,
        owner_id="bench",
    )
    return drain_rate(forwarder, CHANGES)[0]


def _baseline_rate(server: MotoServer, config: PipelineConfig) -> float:
    """One change at a time: PutRecord, checkpoint, slot advance, in sequence (the same reader and converter)."""
    kinesis, dynamodb = _kinesis_and_dynamodb(server)
    pg = config.postgres
    source = PostgresSlotSource(
        lambda: _connect(config),
        schema=pg.schema,
        table=pg.table,
        columns=pg.columns,
        primary_key=pg.primary_key,
        key_columns=config.key_columns,
        publication=pg.publication,
        slot=BASELINE_SLOT,
        database=pg.connection.database,
    )
    store = CheckpointStore(dynamodb, CHECKPOINT_TABLE, owner_id="baseline", lease_duration_s=60, clock=time.time)
    started = time.perf_counter()
    stream, _ = source.current_stream(store)
    assert stream is not None
    store.try_acquire(stream.stream_arn, "slot")
    cursor = source.open(stream.stream_arn, "slot", None, fresh=True)
    forwarded = 0
    while forwarded < BASELINE_CHANGES:
        for record in source.read(cursor).records[: BASELINE_CHANGES - forwarded]:
            out, _ = source.convert(record, "slot")
            kinesis.put_record(StreamName=KINESIS_STREAM, Data=out.data, PartitionKey=out.partition_key)
            store.checkpoint(stream.stream_arn, "slot", out.sequence_number)
            source.committed(cursor, out.sequence_number)
            cursor.position = out.sequence_number
            forwarded += 1
    elapsed = time.perf_counter() - started
    source.close()
    return forwarded / elapsed


def _change(rng: random.Random, rows: list[dict[str, Any]], step: int) -> tuple[str, dict[str, Any]]:
    row = rows[rng.randrange(len(rows))]
    kind = rng.random()
    if kind < 0.45:
        return "upsert", {**row, "body": f"{row['body']} Revision {step}."}
    if kind < 0.9:
        return "upsert", {"id": row["id"], "word_count": step}
    if kind < 0.95:
        return "delete", {"id": row["id"]}
    return "upsert", row


def _local_freshness() -> dict[str, Any]:
    config = PipelineConfig.from_file(EXAMPLES / "articles.config.json")
    with LocalPipeline.start(config) as pipeline:
        rows = read_rows(EXAMPLES / "articles.jsonl", pipeline.config)
        pipeline.wait_synced(SYNC_TIMEOUT_S, pipeline.upsert(rows))
        started = time.monotonic()
        receipts = steady_writes(pipeline, rows, RATE_PER_S, DURATION_S, _change)
        elapsed = time.monotonic() - started
        pipeline.wait_synced(SYNC_TIMEOUT_S)
        freshness = np.array([pipeline.freshness_ms(r) for r in receipts])
        window = pipeline.config.sink.batching_window_s
    return {
        "pg_local_freshness_p50_ms": round(float(np.percentile(freshness, 50)), 1),
        "pg_local_freshness_p99_ms": round(float(np.percentile(freshness, 99)), 1),
        "pg_local_freshness_changes": len(receipts),
        "pg_local_freshness_rate_per_s": round(len(receipts) / elapsed, 1),
        "pg_local_freshness_batching_window_s": window,
    }


def run() -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("freshvec.sources.postgres.session").setLevel(logging.ERROR)
    database = LocalPostgres(wal_level="logical").start()
    server = MotoServer.start()
    try:
        config = _config(database)
        _write_changes(config)
        rate = _forwarder_rate(server, config)
        baseline = _baseline_rate(server, config)
    finally:
        server.stop()
        database.stop()
    return {
        "pg_forwarder_changes_per_s": round(rate, 1),
        "pg_forwarder_baseline_changes_per_s": round(baseline, 1),
        "pg_forwarder_speedup_vs_baseline": round(rate / baseline, 1),
        "pg_forwarder_changes": CHANGES,
        "pg_forwarder_put_records_latency_ms": PUT_RECORDS_LATENCY_S * 1000,
        **_local_freshness(),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
