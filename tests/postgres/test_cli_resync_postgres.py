"""`freshvec redrive send`, `freshvec reconcile` and `freshvec status` with a PostgreSQL source: a real PostgreSQL
(TLS verified), the stack's resources in moto, the index filled by the real sink from a real backfill."""

from __future__ import annotations

import json
from typing import Any

import pg8000.native
import pytest

from freshvec import versions
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.cli import app as cli
from freshvec.cli import console, parked
from freshvec.cli import postgres as cli_pg
from freshvec.cli import stack as cli_stack
from freshvec.cli.errors import EXIT_CHECK_FAILED
from freshvec.cli.send import ChangeStreamSender
from freshvec.config import PipelineConfig
from freshvec.events import ChangeEvent, parse_event
from freshvec.local.moto_server import MotoServer
from freshvec.local.resources import create_resources, local_config
from freshvec.retry import RetryPolicy
from freshvec.sink import Sink
from freshvec.sources.postgres.pgoutput import parse_lsn
from freshvec.testing.builders import kinesis_record
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime, fake_vector
from tests.integration.test_cli_aws import _dlq_body, _invocation_record, _read_stream, _visible, invoke

STACK = "freshvec-pg-test"
COLUMNS = {"id": "bigint", "body": "text", "section": "text"}
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _s: None)


@pytest.fixture
def stack(moto: MotoServer, pg: Any, monkeypatch: pytest.MonkeyPatch) -> cli_stack.StackResources:
    """A deployed-looking stack whose pipeline config has a postgres source (the password from the environment,
    as a deployed config holds none)."""
    pg.create_table(COLUMNS)
    config = pg.config(columns=COLUMNS, connection={"password": None})
    created = create_resources(moto.client, local_config(config))
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "marker"}}},
        "Outputs": {name: {"Value": value} for name, value in created.outputs(config).items()},
    }
    moto.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_REGION", moto.region)
    monkeypatch.setenv(cli.STACK_ENV, STACK)
    monkeypatch.setenv(cli_pg.PASSWORD_ENV, pg.server.password)
    monkeypatch.setattr(console.out, "width", 250)
    monkeypatch.setattr(parked, "DLQ_RECEIVE_WAIT_S", 0)  # moto answers short polls with every message
    resources = cli_stack.resolve_stack(moto.client("cloudformation"), STACK, moto.region)
    assert resources.config.source.kind == "postgres"
    return resources


def _lsn(pg: Any) -> int:
    return parse_lsn(pg.run("SELECT pg_current_wal_lsn()::text")[0][0])


def _event(config: PipelineConfig, key: int, *, op: str = "UPDATE", body: str = "a parked old text") -> bytes:
    return ChangeEvent(
        keyspace=config.keyspace,
        table=config.table,
        op=op,
        key={"id": key},
        new=None if op == "DELETE" else {"id": key, "body": body, "section": "old"},
        old=None,
        seq="1234#0",
        shard="postgres",
        ts="2026-11-22T10:00:00.000Z",
        source="postgres",
        version=versions.PgChange(5, 0, 5).text(),
    ).to_bytes()


# ---- redrive ---------------------------------------------------------------------------------------------
def test_redrive_re_syncs_the_current_row_from_postgresql(moto: MotoServer, pg: Any, stack: Any) -> None:
    config = stack.config
    pg.run("INSERT INTO docs (id, body, section) VALUES (1, 'The current text.', 'news'), (2, 'Two.', 'misc')")
    sqs = moto.client("sqs")
    bodies = [
        _dlq_body(_event(config, 1), "[1]"),
        _dlq_body(_event(config, 3, op="DELETE"), "[3]"),  # no row, a stored vector: removed at the snapshot
        _dlq_body(_event(config, 4), "[4]"),  # no row, no vector: nothing to send
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body)
    moto.client("s3vectors").put_vectors(
        vectorBucketName=stack.vector_bucket,
        indexName=stack.vector_index,
        vectors=[{"key": "[3]", "data": {"float32": fake_vector("3", 256)}, "metadata": {"_ver": "777"}}],
    )
    result = invoke("redrive", "send", "--source", "dlq")
    assert result.exit_code == 0, result.output
    assert "3 parked, 3 re-synced: 3 key(s) read from the table (1 row(s) sent, 1 removal(s), 1 already gone)" in (
        " ".join(result.output.split())
    )
    events = {r["PartitionKey"]: parse_event(r["Data"]) for r in _read_stream(moto, stack.stream_name)}
    assert sorted(events) == ["[1]", "[3]"]
    row = events["[1]"]
    assert (row.op, row.origin, row.source) == ("UPDATE", "REDRIVE", "postgres")
    assert row.new == {"id": 1, "body": "The current text.", "section": "news"}  # the table's row, not the parked
    assert isinstance(versions.parse(row.version), versions.PgSnapshot)  # the read's snapshot
    gone = events["[3]"]
    assert (gone.op, gone.origin, gone.version, gone.key) == ("DELETE", "REDRIVE", row.version, {"id": 3})
    assert _visible(moto, stack.dlq_url) == 0


def test_a_re_sync_read_is_placed_by_its_snapshot_not_by_waiting(pg: Any) -> None:
    """A transaction open while the read takes its snapshot is not seen; the read does not wait for it, and the
    snapshot says so: that transaction's change (arriving through the slot later) is newer than the read."""
    pg.create_table(COLUMNS)
    config = pg.config(columns=COLUMNS)
    pg.run("INSERT INTO docs (id, body) VALUES (1, 'Before.'), (2, 'Two.')")
    other = pg8000.native.Connection(
        "postgres", host="127.0.0.1", port=pg.server.port, password=pg.server.password, database=pg.name
    )
    other.run("BEGIN")
    other.run("UPDATE docs SET body = 'Committed after the read.' WHERE id = 1")
    open_xid = int(other.run("SELECT pg_current_xact_id()::text")[0][0])
    conn = cli_pg.connect_source(config, None)
    try:
        reads = cli_pg.PostgresRowReader(conn, config).read([{"id": 2}, {"id": 1}, {"id": 9}])
        other.run("COMMIT")
        later = cli_pg.PostgresRowReader(conn, config).read([{"id": 1}])
    finally:
        conn.close()
        other.close()
    assert [row for row, _ in reads] == [
        {"id": 2, "body": "Two.", "section": None},
        {"id": 1, "body": "Before.", "section": None},
        None,
    ]
    snapshot = versions.parse(reads[0][1])
    assert isinstance(snapshot, versions.PgSnapshot) and all(version == reads[0][1] for _, version in reads)
    assert not snapshot.visible(open_xid)  # the update is newer than this read: it wins when it arrives
    live = versions.PgChange(lsn=1, position=0, xid=open_xid)  # any LSN: visibility decides, not commit order
    assert versions.verdict(live, snapshot) is versions.Verdict.APPLY
    [(row, version)] = later
    assert row is not None and row["body"] == "Committed after the read."
    assert versions.verdict(live, versions.parse(version)) is versions.Verdict.SKIP  # included in the later read


# ---- reconcile and status --------------------------------------------------------------------------------
def _sink(moto: MotoServer, stack: Any) -> Sink:
    return Sink(
        stack.config,
        make_embedder(stack.config.embedding, FakeBedrockRuntime(), NO_WAIT),
        S3VectorsStore(moto.client("s3vectors"), stack.vector_bucket, stack.vector_index, NO_WAIT),
        SqsDeadLetterQueue(moto.client("sqs"), stack.dlq_url, NO_WAIT),
        tombstones=InProcessTombstones(),
    )


def _apply_stream(moto: MotoServer, stack: Any, sink: Sink, origin: str) -> int:
    """Feed the stream's records of one origin to the sink, as the event source mapping would."""
    records = [r for r in _read_stream(moto, stack.stream_name) if parse_event(r["Data"]).origin == origin]
    batch = [kinesis_record(r["Data"], int(r["SequenceNumber"])) for r in records]
    for start in range(0, len(batch), 100):
        result = sink.process(batch[start : start + 100])
        assert result.batch_item_failures == [] and result.dead_letters == []
    return len(records)


def test_reconcile_finds_drift_in_a_postgres_backed_index_and_repairs_it(moto: MotoServer, pg: Any, stack: Any) -> None:
    pg.run(
        "INSERT INTO docs (id, body, section) SELECT i, 'Article ' || i || '.', 'news' "
        "FROM generate_series(1, 1205) AS i"  # more than one 1,000-row page of the cursor
    )
    conn = cli_pg.connect_source(stack.config, None)
    try:
        sent, _ = cli_pg.backfill(conn, stack.config, ChangeStreamSender.for_kinesis(moto.client("kinesis"),
                                                                                     stack.stream_name))  # fmt: skip
    finally:
        conn.close()
    assert sent == 1205
    sink = _sink(moto, stack)
    assert _apply_stream(moto, stack, sink, "BACKFILL") == 1205

    clean = invoke("reconcile", "--json")
    assert clean.exit_code == 0, clean.output
    report = json.loads(clean.stdout)
    assert (report["rows"], report["vectors"], report["in_sync"], report["drift"]) == (1205, 1205, 1205, 0)

    # Drift the pipeline never saw (no forwarder runs here): a new row, a row gone, a changed text.
    pg.run("INSERT INTO docs (id, body, section) VALUES (5000, 'Never indexed.', 'news')")
    pg.run("DELETE FROM docs WHERE id = 7")
    pg.run("UPDATE docs SET body = 'Rewritten.' WHERE id = 9")
    found = invoke("reconcile", "--json")
    assert found.exit_code == EXIT_CHECK_FAILED, found.output
    report = json.loads(found.stdout)
    assert (report["missing"], report["orphan"], report["stale"], report["metadata"]) == (1, 1, 1, 0)
    assert report["examples"]["missing"] == ["[5000]"] and report["examples"]["orphan"] == ["[7]"]
    assert report["examples"]["stale"] == ["[9]"]

    repaired = invoke("reconcile", "--repair", "--json")
    assert repaired.exit_code == EXIT_CHECK_FAILED, repaired.output  # it reports the drift it repaired
    assert json.loads(repaired.stdout)["repaired"] == {"update": 2, "delete": 1, "none": 0, "stray": 0}
    repairs = [parse_event(r["Data"]) for r in _read_stream(moto, stack.stream_name)]
    repairs = [e for e in repairs if e.origin != "BACKFILL"]
    assert sorted((e.key["id"], e.op, e.origin) for e in repairs) == [
        (7, "DELETE", "RECONCILE"),
        (9, "UPDATE", "RECONCILE"),
        (5000, "UPDATE", "RECONCILE"),
    ]
    assert all(e.if_wid is not None for e in repairs)  # compare-and-set on what reconcile saw
    assert next(e for e in repairs if e.key["id"] == 5000).if_wid == ""  # no vector was stored
    rewritten = next(e for e in repairs if e.key["id"] == 9)
    assert rewritten.new is not None and rewritten.new["body"] == "Rewritten." and rewritten.source == "postgres"
    assert _apply_stream(moto, stack, sink, "RECONCILE") == 3
    again = invoke("reconcile", "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert (report["rows"], report["vectors"], report["drift"]) == (1205, 1205, 0)

    status = invoke("status", "--count-rows", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["rows"] == 1205
    assert json.loads(status.stdout)["rows_estimated"] is False


def _committed(pg: Any, *statements: str) -> tuple[int, int]:
    """Run ``statements`` in one transaction; its xid and the WAL position after its commit."""
    conn = pg8000.native.Connection(
        "postgres", host="127.0.0.1", port=pg.server.port, password=pg.server.password, database=pg.name
    )
    try:
        conn.run("BEGIN")
        for statement in statements:
            conn.run(statement)
        xid = int(conn.run("SELECT pg_current_xact_id()::text")[0][0])
        conn.run("COMMIT")
    finally:
        conn.close()
    return xid, _lsn(pg)


def _truncate_event(config: PipelineConfig, version: str, *, table: str | None = None) -> bytes:
    table = table or config.table
    return ChangeEvent(
        keyspace=config.keyspace, table=table, op="TRUNCATE", key={"$table": f"{config.keyspace}.{table}"},
        new=None, old=None, seq="9#0", shard="postgres", ts="2026-11-22T10:00:00.000Z", source="postgres",
        version=version,
    ).to_bytes()  # fmt: skip


def test_redrive_re_sends_a_parked_truncate_and_the_sink_applies_it(moto: MotoServer, pg: Any, stack: Any) -> None:
    """A TRUNCATE parked in the DLQ (its rows still in the index) is re-sent as it was parked, and removes exactly
    the rows written before it; a row written after it stays. A TRUNCATE of another table cannot be applied here:
    it stays in the queue, reported on one line, and the command exits 1."""
    config = stack.config
    sink = _sink(moto, stack)
    live = [
        kinesis_record(_event(config, key, body=f"Row {key} before the truncate."), key) for key in (1, 2, 3)
    ]  # live changes at PgChange(5, 0, 5): before everything below
    assert sink.process(live).batch_item_failures == []
    truncate_xid, truncate_lsn = _committed(pg, "TRUNCATE docs")
    insert_xid, insert_lsn = _committed(pg, "INSERT INTO docs (id, body, section) VALUES (2, 'Written after.', 'n')")
    after = ChangeEvent(
        keyspace=config.keyspace, table=config.table, op="INSERT", key={"id": 2},
        new={"id": 2, "body": "Written after.", "section": "n"}, old=None, seq="10#0", shard="postgres",
        ts="2026-11-22T10:00:01.000Z", source="postgres",
        version=versions.PgChange(insert_lsn, 0, insert_xid).text(),
    ).to_bytes()  # fmt: skip
    assert sink.process([kinesis_record(after, 10)]).batch_item_failures == []
    truncate = _truncate_event(config, versions.PgChange(truncate_lsn, 0, truncate_xid).text())
    sqs = moto.client("sqs")
    ids = [
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body)["MessageId"]
        for body in (
            _dlq_body(truncate, f"{config.keyspace}.{config.table}"),
            _dlq_body(truncate, f"{config.keyspace}.{config.table}"),  # parked twice: sent once
            _dlq_body(_truncate_event(config, versions.PgChange(7, 0, 7).text(), table="other"), "public.other"),
        )
    ]
    shown = json.loads(invoke("redrive", "show", ids[0]).output)
    assert shown["redrive"] == [
        f"re-send this TRUNCATE of {config.keyspace}.{config.table} as parked "
        f"(version {versions.PgChange(truncate_lsn, 0, truncate_xid).text()})"
    ]
    listed = " ".join(invoke("redrive", "list", "--source", "dlq").output.split())
    assert f"TRUNCATE {config.keyspace}.{config.table}" in listed and f"TRUNCATE {config.keyspace}.other" in listed

    result = invoke("redrive", "send", "--source", "dlq")
    assert result.exit_code == EXIT_CHECK_FAILED, result.output  # one item left in place
    output = " ".join(result.output.split())
    assert "3 parked, 2 re-synced: 0 key(s) read from the table" in output
    assert "and 1 TRUNCATE(s) re-sent as parked" in output
    assert "1 left in place (0 unreadable, 0 without a key, 1 TRUNCATE(s) the sink cannot apply)" in output
    [line] = [line for line in result.output.splitlines() if ids[2] in line]
    assert "TRUNCATE is for public.other" in line
    [sent] = _read_stream(moto, stack.stream_name)
    assert (sent["Data"], sent["PartitionKey"]) == (truncate, f"{config.keyspace}.{config.table}")  # as parked
    assert _visible(moto, stack.dlq_url) == 1

    assert _apply_stream(moto, stack, sink, "USER") == 1
    stored = moto.client("s3vectors").list_vectors(
        vectorBucketName=stack.vector_bucket, indexName=stack.vector_index, returnMetadata=True
    )["vectors"]
    assert [v["key"] for v in stored] == ["[2]"]  # rows 1 and 3 gone; the row written after the TRUNCATE stays
    clean = invoke("reconcile", "--json")
    assert clean.exit_code == 0, clean.output


def test_an_on_failure_batch_with_writes_around_a_truncate_is_redriven_whole(
    moto: MotoServer, pg: Any, stack: Any
) -> None:
    """A discarded batch ``UPDATE id=1; TRUNCATE; INSERT id=5`` (the sink never applied it): redrive re-syncs rows 1
    and 5 from the table and re-sends the TRUNCATE; applied in any order, the index holds row 5 only."""
    config = stack.config
    sink = _sink(moto, stack)
    assert sink.process([kinesis_record(_event(config, 1, body="Row 1 before."), 1)]).batch_item_failures == []
    pg.run("INSERT INTO docs (id, body, section) VALUES (1, 'Row 1 before.', 'n')")
    truncate_xid, truncate_lsn = _committed(pg, "UPDATE docs SET body = 'Row 1 again.' WHERE id = 1", "TRUNCATE docs")
    insert_xid, insert_lsn = _committed(pg, "INSERT INTO docs (id, body, section) VALUES (5, 'Row 5.', 'n')")
    truncate = _truncate_event(config, versions.PgChange(truncate_lsn, 1, truncate_xid).text())
    batch = [
        ("100", _event(config, 1, body="Row 1 again."), "[1]"),
        ("200", truncate, f"{config.keyspace}.{config.table}"),
        ("300", _event(config, 5, body="Row 5."), "[5]"),
    ]
    s3 = moto.client("s3")
    key = "aws/lambda/esm/shardId-000000000000/2026/12/07/batch"
    s3.put_object(Bucket=stack.on_failure_bucket, Key=key, Body=_invocation_record(batch))

    result = invoke("redrive", "send", "--source", "on-failure")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "1 parked, 1 re-synced: 2 key(s) read from the table (1 row(s) sent, 1 removal(s)" in output
    assert "and 1 TRUNCATE(s) re-sent as parked" in output
    sent = {r["PartitionKey"]: r["Data"] for r in _read_stream(moto, stack.stream_name)}
    assert sent[f"{config.keyspace}.{config.table}"] == truncate
    assert {parse_event(sent[k]).op for k in ("[1]", "[5]")} == {"DELETE", "UPDATE"}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=stack.on_failure_bucket)["Contents"]] == ["redriven/" + key]

    for origin in ("REDRIVE", "USER"):  # the re-syncs first, then the TRUNCATE: it must not remove row 5
        _apply_stream(moto, stack, sink, origin)
    stored = moto.client("s3vectors").list_vectors(vectorBucketName=stack.vector_bucket, indexName=stack.vector_index)
    assert [v["key"] for v in stored["vectors"]] == ["[5]"]
    assert insert_xid and insert_lsn > truncate_lsn
    assert invoke("reconcile", "--json").exit_code == 0
