"""``freshvec redrive``: parked changes are re-synced from the table (moto + the fake Cassandra session)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from freshvec import versions
from freshvec.cli import keyspaces, parked, redrive
from freshvec.cli import stack as cli_stack
from freshvec.cli.errors import EXIT_CHECK_FAILED
from freshvec.cli.resync import KeyspacesRowReader
from freshvec.config import default_config
from freshvec.events import ChangeEvent, parse_event
from freshvec.local.moto_server import MotoServer
from freshvec.testing.fakes.bedrock import fake_vector
from freshvec.testing.fakes.cassandra import FakeSession
from tests.integration.test_cli_aws import (
    _Cluster,
    _dlq_body,
    _invocation_record,
    _read_stream,
    _recording_clients,
    _seeded_session,
    _visible,
    invoke,
    make_stack,
)

CONFIG = default_config()


@pytest.fixture
def stack(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> cli_stack.StackResources:
    return make_stack(moto, monkeypatch)


def _event(title: str, *, op: str = "UPDATE", overview: str = "an old text", version: int = 1) -> bytes:
    """A change event as the forwarder wrote it, parked long ago with old state."""
    new = None if op == "DELETE" else {"title": title, "overview": overview}
    return ChangeEvent(
        keyspace=CONFIG.keyspace,
        table=CONFIG.table,
        op=op,
        key={"title": title},
        new=new,
        old=None,
        seq="4959",
        shard="shard-1",
        ts="2026-11-22T10:00:00.000Z",
        version=version,
    ).to_bytes()


def _envelope(title: str) -> bytes:
    """The forwarder's error envelope: the raw Keyspaces record (as JSON) with the reason."""
    doc = {
        "v": 1,
        "source": "keyspaces",
        "keyspace": CONFIG.keyspace,
        "table": CONFIG.table,
        "seq": "77",
        "shard": "shard-2",
        "error": "forwarder could not convert this record: unreadable cell",
        "record": {"partitionKeys": {"title": {"textT": title}}, "sequenceNumber": "77", "newImage": {"bad": 1}},
    }
    return json.dumps(doc).encode()


def _current(session: FakeSession, title: str) -> tuple[dict[str, Any], int]:
    row = session.rows[(title,)]
    return row, max(session.write_times[(title,)].values())


def _put_vector(moto: MotoServer, stack: cli_stack.StackResources, key: str, version: int) -> None:
    moto.client("s3vectors").put_vectors(
        vectorBucketName=stack.vector_bucket,
        indexName=stack.vector_index,
        vectors=[{"key": key, "data": {"float32": fake_vector(key, 256)}, "metadata": {"_ver": str(version)}}],
    )


def test_redrive_sends_the_current_row_not_the_parked_payload(
    moto: MotoServer, stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _seeded_session(limit=5)
    monkeypatch.setattr(keyspaces, "connect_table", lambda _region, _ca: (_Cluster(), session))
    titles = sorted(key[0] for key in session.rows)
    first, second = titles[0], titles[1]
    sqs = moto.client("sqs")
    bodies = [
        _dlq_body(_event(first), json.dumps([first])),
        _dlq_body(_event(first, overview="a re-delivered duplicate"), json.dumps([first])),
        _dlq_body(_envelope(second), "shard-2"),
        _dlq_body(_event("Gone Film", op="DELETE"), '["Gone Film"]'),  # no row, a stored vector
        _dlq_body(_event("Never Indexed"), '["Never Indexed"]'),  # no row, no vector
        _dlq_body(json.dumps({"keyspace": "media", "table": "movies"}).encode(), "x"),  # names no key
        "not json at all",
    ]
    ids = [sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body)["MessageId"] for body in bodies]
    _put_vector(moto, stack, '["Gone Film"]', 1_700_000_000_000_123)

    dry = invoke("redrive", "send", "--source", "dlq", "--dry-run")
    assert dry.exit_code == EXIT_CHECK_FAILED, dry.output  # two items would be left in place
    assert "dry run: 7 parked, 5 would be re-synced (4 key(s)), 2 left in place" in dry.output
    assert _read_stream(moto, stack.stream_name) == [] and _visible(moto, stack.dlq_url) == 7

    sent = invoke("redrive", "send", "--source", "dlq")
    assert sent.exit_code == EXIT_CHECK_FAILED, sent.output  # finished, two items left in place
    assert "7 parked, 5 re-synced: 4 key(s) read from the table (2 row(s) sent, 1 removal(s), 1 already gone)" in (
        sent.output
    )
    assert "2 left in place (1 unreadable, 1 without a key)" in sent.output
    events = {record["PartitionKey"]: parse_event(record["Data"]) for record in _read_stream(moto, stack.stream_name)}
    assert sorted(events) == sorted([json.dumps([first]), json.dumps([second]), '["Gone Film"]'])
    for title in (first, second):
        event = events[json.dumps([title])]
        row, _ = _current(session, title)
        assert (event.op, event.origin) == ("UPDATE", "REDRIVE")
        assert isinstance(versions.parse(event.version), versions.KsRead)  # the read's stamp, not a write time
        assert event.new is not None and event.new["overview"] == row["overview"]  # the table's text, not the parked
    assert events[json.dumps([first])].seq == f"redrive:{ids[0]}"
    gone = events['["Gone Film"]']
    assert (gone.op, gone.origin, gone.key) == ("DELETE", "REDRIVE", {"title": "Gone Film"})
    assert isinstance(versions.parse(gone.version), versions.KsRead)  # a removal at the read's stamp too
    left = sorted(m["Body"] for m in sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10)["Messages"])
    assert left == sorted([bodies[5], bodies[6]])  # the duplicates and the re-synced messages are all deleted


def test_redrive_shows_the_parked_payload_and_its_key(moto: MotoServer, stack: cli_stack.StackResources) -> None:
    sqs = moto.client("sqs")
    message_id = sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=_dlq_body(_envelope("Jaws"), "s"))["MessageId"]
    doc = json.loads(invoke("redrive", "show", message_id).output)
    assert doc["records"][0]["payload"]["record"]["partitionKeys"] == {"title": {"textT": "Jaws"}}
    assert doc["keys"] == [{"title": "Jaws"}]
    assert _visible(moto, stack.dlq_url) == 1  # showing leaves it parked


def test_redrive_names_a_key_no_vector_can_hold_as_the_reason_it_leaves_the_change_parked(
    moto: MotoServer, stack: cli_stack.StackResources
) -> None:
    title = "K" * 1100  # its vector key is 1,104 characters: over S3 Vectors' 1,024
    sqs = moto.client("sqs")
    message_id = sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=_dlq_body(_event(title), "k"))["MessageId"]
    doc = json.loads(invoke("redrive", "show", message_id).output)
    assert doc["redrive"] == [
        "left in place: its key can be no vector's key (vector key is 1104 characters; S3 Vectors allows at most 1024)"
    ]
    sent = invoke("redrive", "send", "--source", "dlq")
    assert sent.exit_code == EXIT_CHECK_FAILED, sent.output
    assert "vector key is 1104 characters" in sent.output and "1 without a key" in sent.output
    assert _visible(moto, stack.dlq_url) == 1  # left parked, nothing sent
    assert _read_stream(moto, stack.stream_name) == []


def test_redrive_on_failure_batch_re_syncs_each_key_once(
    moto: MotoServer, stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _seeded_session(limit=3)
    monkeypatch.setattr(keyspaces, "connect_table", lambda _region, _ca: (_Cluster(), session))
    a, b = sorted(key[0] for key in session.rows)[:2]
    s3 = moto.client("s3")
    key = "aws/lambda/1f2e-esm/shardId-000000000000/2026/11/22/2026-11-22T10.00.06-c9b8fa9f"
    batch = [("300", _event(b), "pb"), ("100", _event(a, version=5), "pa"), ("200", _event(a, version=9), "pa")]
    s3.put_object(Bucket=stack.on_failure_bucket, Key=key, Body=_invocation_record(batch))
    keyless = "aws/lambda/x/keyless"
    s3.put_object(Bucket=stack.on_failure_bucket, Key=keyless, Body=_invocation_record([("1", b"garbage", "k")]))
    s3.put_object(Bucket=stack.on_failure_bucket, Key="aws/lambda/x/meta-only", Body=json.dumps({"version": "1.0"}))

    listed = invoke("redrive", "list", "--source", "on-failure")
    assert "RetryAttemptsExhausted after 6 invocation(s) (Unhandled)" in listed.output and "no payload" in listed.output

    sent = invoke("redrive", "send", "--source", "on-failure")
    assert sent.exit_code == EXIT_CHECK_FAILED, sent.output
    assert "3 parked, 1 re-synced: 2 key(s)" in sent.output and "(1 unreadable, 1 without a key)" in sent.output
    stream = _read_stream(moto, stack.stream_name)
    assert sorted(r["PartitionKey"] for r in stream) == sorted([json.dumps([a]), json.dumps([b])])
    for record in stream:
        event = parse_event(record["Data"])
        assert isinstance(versions.parse(event.version), versions.KsRead)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=stack.on_failure_bucket)["Contents"]}
    assert keys == {parked.REDRIVEN_PREFIX + key, keyless, "aws/lambda/x/meta-only"}
    again = invoke("redrive", "send", "--source", "on-failure")
    assert "2 parked, 0 re-synced" in again.output  # moved objects are not re-synced twice


def test_redrive_collapses_duplicates_across_the_dlq_and_the_bucket(
    moto: MotoServer, stack: cli_stack.StackResources
) -> None:
    session = _seeded_session(limit=3)
    a, b = sorted(key[0] for key in session.rows)[:2]
    batch = [("100", _event(a), "pa"), ("200", _event(b), "pb"), ("300", _event(a), "pa")]
    moto.client("s3").put_object(Bucket=stack.on_failure_bucket, Key="aws/lambda/x/b", Body=_invocation_record(batch))
    sqs = moto.client("sqs")
    for _ in range(3):
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=_dlq_body(_event(a), json.dumps([a])))
    kinesis, clients = _recording_clients(moto)
    report = redrive.redrive(clients, stack, KeyspacesRowReader(session, stack.config), source="all")
    assert (report.found, report.resynced_items, report.keys, report.updates) == (4, 4, 2, 2)
    assert sorted(key for call in kinesis.calls for key in call) == sorted([json.dumps([a]), json.dumps([b])])
    assert _visible(moto, stack.dlq_url) == 0


def test_a_parked_truncate_on_a_keyspaces_stack_stays_parked_and_is_reported_in_one_line(
    moto: MotoServer, stack: cli_stack.StackResources
) -> None:
    """A TRUNCATE comes from PostgreSQL only: on a Keyspaces table the sink would park it again, so redrive leaves
    it in the queue, says why on one line, and exits 1; ``list`` and ``show`` name it as a TRUNCATE."""
    truncate = ChangeEvent(
        keyspace=CONFIG.keyspace, table=CONFIG.table, op="TRUNCATE",
        key={"$table": f"{CONFIG.keyspace}.{CONFIG.table}"}, new=None, old=None, seq="1#0", shard="postgres",
        ts="2026-11-22T10:00:00.000Z", source="postgres", version=versions.PgChange(0x100, 0, 7).text(),
    ).to_bytes()  # fmt: skip
    sqs = moto.client("sqs")
    message_id = sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=_dlq_body(truncate, "$table"))["MessageId"]
    sent = invoke("redrive", "send", "--source", "dlq")
    assert sent.exit_code == EXIT_CHECK_FAILED, sent.output
    [line] = [line for line in sent.output.splitlines() if message_id in line]
    assert "cannot apply" in line and "TRUNCATE comes from PostgreSQL" in line
    assert "1 left in place (0 unreadable, 0 without a key, 1 TRUNCATE(s) the sink cannot apply)" in sent.output
    assert _read_stream(moto, stack.stream_name) == [] and _visible(moto, stack.dlq_url) == 1
    listed = invoke("redrive", "list", "--source", "dlq")
    assert f"TRUNCATE {CONFIG.keyspace}.{CONFIG.table}" in " ".join(listed.output.split()), listed.output
    shown = json.loads(invoke("redrive", "show", message_id).output)
    assert shown["redrive"] == [
        "left in place: a TRUNCATE the sink cannot apply: TRUNCATE comes from PostgreSQL; this sink serves a "
        "keyspaces table"
    ]
