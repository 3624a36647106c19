"""The CLI against a deployed-looking stack: CloudFormation outputs, SQS, S3, Kinesis and S3 Vectors in moto.

Keyspaces is the Cassandra session stand-in; Bedrock is the Bedrock fake; QueryVectors (absent from moto)
is answered by botocore's Stubber, which checks every request against the service model.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from typer.testing import CliRunner

from freshvec import constants as c
from freshvec import versions
from freshvec.adapters.kinesis import KinesisWriter
from freshvec.cli import app as cli
from freshvec.cli import backfill, console, keyspaces, parked
from freshvec.cli import stack as cli_stack
from freshvec.cli.errors import EXIT_FAILED, EXIT_USAGE, OperatorError
from freshvec.cli.load import CassandraRowWriter, load_rows
from freshvec.cli.load_command import SAMPLE_DATA
from freshvec.config import default_config
from freshvec.datafiles import read_records
from freshvec.events import parse_event
from freshvec.keys import partition_key, vector_key
from freshvec.local.moto_server import MotoServer
from freshvec.local.resources import create_resources, local_config
from freshvec.sources.keyspaces.driver import TableSchema
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime, fake_vector
from freshvec.testing.fakes.cassandra import FakeSession

STACK = "freshvec-test"
# The deployed index name: the configured "movies" plus the hash of its create-only settings.
INDEX = local_config(default_config()).vector_index_name  # the resources here are made by local mode
runner = CliRunner()


@pytest.fixture
def stack(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[cli_stack.StackResources]:
    """Real resources in moto, described by a CloudFormation stack's outputs (with the Titan config)."""
    yield make_stack(moto, monkeypatch)


def make_stack(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> cli_stack.StackResources:
    """The ``stack`` fixture's work, for other modules' fixtures."""
    created = create_resources(moto.client, local_config(default_config()))
    outputs = created.outputs(default_config())
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "marker"}}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    moto.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_REGION", moto.region)
    monkeypatch.setenv(cli.STACK_ENV, STACK)
    monkeypatch.setattr(console.out, "width", 250)  # a wide terminal: tables print without folding
    monkeypatch.setattr(parked, "DLQ_RECEIVE_WAIT_S", 0)  # moto answers short polls with every message
    return cli_stack.resolve_stack(moto.client("cloudformation"), STACK, moto.region)


def invoke(*args: str) -> Any:
    result = runner.invoke(cli.app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def _read_stream(moto: MotoServer, stream: str) -> list[dict[str, Any]]:
    kinesis = moto.client("kinesis")
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend(response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return records


def _dlq_body(payload: bytes, key: str, error: str = "PoisonRecordError") -> str:
    return json.dumps(
        {
            "payload_b64": base64.b64encode(payload).decode(),
            "partition_key": key,
            "error_class": error,
            "error_message": "metadata over 2 KB",
            "kinesis_shard_id": "shardId-000000000000",
            "kinesis_sequence_number": "4959",
            "event_source_arn": "arn:aws:kinesis:us-east-1:123456789012:stream/freshvec-changes",
            "failed_at": "2026-11-22T10:00:00.000Z",
        }
    )


def _visible(moto: MotoServer, url: str) -> int:
    attrs = moto.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


# ---- finding the stack -------------------------------------------------------------------------


def test_stack_outputs_resolve_into_resources(stack: cli_stack.StackResources) -> None:
    assert stack.stream_name == "freshvec-changes"
    assert stack.config.embedding.provider == "titan" and stack.config.key_columns == ("title",)
    assert stack.vector_index == INDEX and stack.dlq_url.endswith("freshvec-sink-dlq")


def test_missing_stack_is_one_clear_line(stack: cli_stack.StackResources) -> None:
    result = invoke("--stack", "nope", "status")
    assert result.exit_code == EXIT_FAILED
    assert (
        result.output.strip()
        == "error: stack 'nope' not found in us-east-1; deploy it with `cdk deploy` or pass --stack/--region"
    )


def test_stack_without_freshvec_outputs_is_explained(moto: MotoServer, stack: cli_stack.StackResources) -> None:
    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "other"}}}}
    moto.client("cloudformation").create_stack(StackName="other", TemplateBody=json.dumps(template))
    result = invoke("--stack", "other", "redrive", "list")
    assert (
        result.exit_code == EXIT_FAILED and "has no output 'PipelineConfig'; is it a freshvec stack?" in result.output
    )


# ---- redrive -----------------------------------------------------------------------------------


def test_redrive_show_prints_the_payload(moto: MotoServer, stack: cli_stack.StackResources) -> None:
    sqs = moto.client("sqs")
    message_id = sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=_dlq_body(b'{"title": "Jaws"}', '["Jaws"]'))[
        "MessageId"
    ]
    shown = invoke("redrive", "show", message_id)
    assert shown.exit_code == 0
    doc = json.loads(shown.output)
    assert doc["records"] == [{"partition_key": '["Jaws"]', "payload": {"title": "Jaws"}}]
    assert doc["reason"] == "PoisonRecordError: metadata over 2 KB"
    missing = invoke("redrive", "show", "no-such-id")
    assert missing.exit_code == EXIT_FAILED and "no parked item 'no-such-id'" in missing.output


def _invocation_record(records: list[tuple[str, bytes, str]], *, as_string: bool = True) -> bytes:
    """The document Lambda writes to an S3 on-failure destination for a discarded Kinesis batch."""
    event = {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": seq,
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": 1763800000.123,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{seq}",
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/freshvec-changes",
            }
            for seq, data, key in records
        ]
    }
    doc = {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-4e0c-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:freshvec-sink",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 6,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-22T10:00:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": records[0][0],
            "endSequenceNumber": records[-1][0],
            "approximateArrivalOfFirstRecord": "2026-11-22T10:00:04.835Z",
            "approximateArrivalOfLastRecord": "2026-11-22T10:00:05.580Z",
            "batchSize": len(records),
            "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/freshvec-changes",
        },
        "payload": json.dumps(event) if as_string else event,
    }
    return json.dumps(doc).encode()


class _RecordingKinesis:
    """A moto Kinesis client that notes the partition keys of every PutRecords call."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[list[str]] = []

    def put_records(self, **kwargs: Any) -> Any:
        self.calls.append([entry["PartitionKey"] for entry in kwargs["Records"]])
        return self._client.put_records(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _recording_clients(moto: MotoServer) -> tuple[_RecordingKinesis, Any]:
    kinesis = _RecordingKinesis(moto.client("kinesis"))
    return kinesis, lambda service: kinesis if service == "kinesis" else moto.client(service)


def _assert_one_change_per_row_per_call(kinesis: _RecordingKinesis) -> None:
    assert kinesis.calls
    for call in kinesis.calls:
        assert len(call) == len(set(call)), f"two changes of one row in one PutRecords call: {call}"


def test_backfill_sends_one_change_per_row_per_call(
    moto: MotoServer, stack: cli_stack.StackResources, tmp_path: Any
) -> None:
    session = _seeded_session(limit=30)
    kinesis, _clients = _recording_clients(moto)
    state = backfill.BackfillState.open(tmp_path / "state.json", 2)
    report = backfill.backfill(session, kinesis, stack, state, workers=2, page_rows=7)
    assert report.sent == 30 and state.complete
    _assert_one_change_per_row_per_call(kinesis)
    assert sum(len(call) for call in kinesis.calls) == 30


def test_object_payload_form_is_accepted() -> None:
    item = parked.read_on_failure_object(_invocation_record([("1", b"x", "k")], as_string=False), "key")
    assert item.unreadable is None and [(r.data, r.partition_key, r.sequence_number) for r in item.records] == [
        (b"x", "k", "1")
    ]


# ---- status ------------------------------------------------------------------------------------


def test_status_one_screen(moto: MotoServer, stack: cli_stack.StackResources) -> None:
    moto.client("sqs").send_message(QueueUrl=stack.dlq_url, MessageBody=_dlq_body(b"{}", '["x"]'))
    moto.client("s3vectors").put_vectors(
        vectorBucketName=stack.vector_bucket,
        indexName=stack.vector_index,
        vectors=[{"key": f'["m{i}"]', "data": {"float32": fake_vector(str(i), 256)}} for i in range(7)],
    )
    moto.client("cloudwatch").put_metric_data(
        Namespace=c.METRICS_NAMESPACE,
        MetricData=[
            {
                "MetricName": c.M_FORWARDER_LAG_MS,
                "Dimensions": [{"Name": "service", "Value": c.SERVICE_FORWARDER}],
                "Timestamp": datetime.now(UTC),
                "Value": 2500.0,
                "Unit": "Milliseconds",
            }
        ],
    )
    result = invoke("status", "--count-vectors")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "forwarder lag │ 2.5 s" in text
    assert "sink DLQ │ 1 waiting, 0 in flight" in text
    assert "vectors in index │ 7" in text and "rows in table │ not counted" in text
    assert "PoisonRecordError: metadata over 2 KB" in text

    as_json = json.loads(invoke("status", "--count-vectors", "--json").output)
    assert as_json["vectors"] == 7 and as_json["dlq_visible"] == 1 and as_json["forwarder_lag_ms"] == 2500.0


def test_status_counts_rows_through_the_session(
    moto: MotoServer, stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _seeded_session(limit=40)
    monkeypatch.setattr(keyspaces, "connect_table", lambda _region, _ca: (_Cluster(), session))
    result = invoke("status", "--count-rows", "--json")
    assert json.loads(result.output)["rows"] == 40


# ---- backfill ----------------------------------------------------------------------------------


class _Cluster:
    def shutdown(self) -> None:
        pass


def _seeded_session(limit: int | None = None) -> FakeSession:
    schema = TableSchema.from_config(default_config())
    session = FakeSession(primary_key=schema.primary_key, partition_key=schema.partition_key, latency_s=0)
    report = load_rows(
        read_records(SAMPLE_DATA, schema.column_types), schema, CassandraRowWriter(session, schema), limit=limit
    )
    assert report.ok
    return session


def test_backfill_sends_every_row_as_a_backfill_event(
    moto: MotoServer, stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    session = _seeded_session()
    monkeypatch.setattr(keyspaces, "connect_table", lambda _region, _ca: (_Cluster(), session))
    state = tmp_path / "backfill.json"
    started = time.time()
    result = invoke("backfill", "--segments", "8", "--workers", "3", "--rate", "100000", "--state", str(state))
    assert result.exit_code == 0, result.output
    finished = time.time()
    stream = _read_stream(moto, stack.stream_name)
    assert len(stream) == len(session.rows) >= 100
    config = stack.config
    seqs = set()
    for record in stream:
        event = parse_event(record["Data"])
        assert (event.op, event.origin, event.shard, event.old) == ("UPDATE", "BACKFILL", "backfill", None)
        assert record["PartitionKey"] == partition_key(vector_key(event.key, config.key_columns))
        # the version is the read's stamp (its start minus the clock and visibility bounds), never a write time
        stamp = versions.parse(event.version)
        bound = c.KEYSPACES_READER_CLOCK_BOUND_S + c.KEYSPACES_VISIBILITY_BOUND_S
        assert isinstance(stamp, versions.KsRead)
        assert (started - bound) * 1e6 <= stamp.stamp_us <= (finished - bound) * 1e6
        assert event.new is not None and isinstance(event.new["popularity"], str)  # decimals stay exact
        seqs.add(int(event.seq))
    assert len(seqs) == len(stream)
    jurassic = next(parse_event(r["Data"]) for r in stream if r["PartitionKey"] == '["Jurassic Park"]')
    assert jurassic.new["rel_date"] == "1993-06-11" and jurassic.new["vote_count"] == 16210
    again = invoke("backfill", "--segments", "8", "--state", str(state))
    assert "already complete" in again.output


def test_backfill_resumes_after_an_interruption(
    moto: MotoServer, stack: cli_stack.StackResources, tmp_path: Any
) -> None:
    session = _seeded_session()
    kinesis = moto.client("kinesis")

    class Interrupted(Exception):
        pass

    class FlakyWriter(KinesisWriter):
        calls = 0

        def put(self, records: Any) -> int:
            FlakyWriter.calls += 1
            if FlakyWriter.calls == 4:
                raise Interrupted
            return super().put(records)

    path = tmp_path / "state.json"
    state = backfill.BackfillState.open(path, 4)
    with pytest.raises(Interrupted):
        backfill.backfill(
            session, kinesis, stack, state, workers=1, page_rows=10, writer=FlakyWriter(kinesis, stack.stream_name)
        )
    saved = json.loads(path.read_text())
    assert saved["sent"] == 30 and saved["positions"]

    resumed = backfill.BackfillState.open(path, 4)
    report = backfill.backfill(session, kinesis, stack, resumed, workers=2, page_rows=10)
    assert report.resumed and resumed.complete
    sent_keys = [r["PartitionKey"] for r in _read_stream(moto, stack.stream_name)]
    expected = {f'["{key[0]}"]' for key in session.rows}
    assert set(sent_keys) == expected  # nothing lost
    assert len(sent_keys) <= len(expected) + 1  # at most the row at the saved position is sent twice
    with pytest.raises(OperatorError, match="pass --segments 4 to resume"):
        backfill.BackfillState.open(path, 8)


# ---- query -------------------------------------------------------------------------------------


def _query_clients(moto: MotoServer, bedrock: FakeBedrockRuntime, stubbed: Any) -> Any:
    def factory(service: str) -> Any:
        if service == "bedrock-runtime":
            return bedrock
        if service == "s3vectors":
            return stubbed
        return moto.client(service)

    return factory


def _stubbed_s3vectors(moto: MotoServer, dimension: int = 256, mode: str | None = None) -> tuple[Any, Stubber]:
    client = moto.client("s3vectors")
    stubber = Stubber(client)
    index = {
        "vectorBucketName": "freshvec-local",
        "indexName": INDEX,
        "indexArn": f"arn:aws:s3vectors:us-east-1:123456789012:bucket/freshvec-local/index/{INDEX}",
        "creationTime": datetime(2026, 11, 22, tzinfo=UTC),
        "dataType": "float32",
        "dimension": dimension,
        "distanceMetric": "cosine",
        **({"indexMode": mode} if mode else {}),
    }
    stubber.add_response("get_index", {"index": index}, {"vectorBucketName": "freshvec-local", "indexName": INDEX})
    return client, stubber


def test_query_embeds_like_the_sink_and_prints_a_table(
    moto: MotoServer, stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    bedrock = FakeBedrockRuntime()
    client, stubber = _stubbed_s3vectors(moto)
    park = {"original_lang": "en", "vote_count": 16210}
    hits = [  # chunks, best first: two of one row, then another row, then one past the k rows asked for
        {"key": '["Jurassic Park"]#2', "distance": 0.1234, "metadata": {**park, "overview": "Raptors in the kitchen."}},
        {"key": '["Jurassic Park"]', "distance": 0.2, "metadata": {**park, "overview": "A theme park."}},
        {"key": '["Jaws"]', "distance": 0.3, "metadata": {"original_lang": "en", "vote_count": 9000}},
        {"key": '["Alien"]', "distance": 0.4, "metadata": {"original_lang": "en", "vote_count": 1}},
    ]
    expected_request = {
        "vectorBucketName": "freshvec-local",
        "indexName": INDEX,
        "topK": 8,  # over-fetched: k rows may need several chunks each
        "queryVector": {"float32": ANY},
        "returnMetadata": True,
        "returnDistance": True,
        "filter": {"vote_count": {"$gte": 100}},
    }
    stubber.add_response("query_vectors", {"vectors": hits, "distanceMetric": "cosine"}, expected_request)
    monkeypatch.setattr(cli_stack, "make_client_factory", lambda *_a, **_k: _query_clients(moto, bedrock, client))
    with stubber:
        result = invoke("query", "dinosaurs escape", "--k", "2", "--filter", '{"vote_count": {"$gte": 100}}')
    assert result.exit_code == 0, result.output
    assert "title=Jurassic Park" in result.output and "0.1234" in result.output
    assert "Raptors in the kitchen." in result.output and "Alien" not in result.output
    assert "2 result(s)" in result.output
    assert "by cosine distance (0 = identical, lower = closer)" in result.output
    [call] = bedrock.calls
    assert call["modelId"] == c.TITAN_V2 and call["body"] == {
        "inputText": "dinosaurs escape",
        "dimensions": 256,
        "normalize": True,
    }
    stubber.assert_no_pending_responses()


def test_query_json_output(moto: MotoServer, stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch) -> None:
    bedrock = FakeBedrockRuntime()
    client, stubber = _stubbed_s3vectors(moto)
    vectors = [
        {"key": '["Jaws"]#1', "distance": 0.5, "metadata": {"overview": "The shark returns."}},
        {"key": '["Jaws"]', "distance": 0.7, "metadata": {"overview": "A beach town."}},
    ]
    stubber.add_response("query_vectors", {"vectors": vectors, "distanceMetric": "cosine"})
    monkeypatch.setattr(cli_stack, "make_client_factory", lambda *_a, **_k: _query_clients(moto, bedrock, client))
    with stubber:
        result = invoke("query", "shark", "--json")
    doc = json.loads(result.output)
    assert doc["distance_metric"] == "cosine" and doc["score"] == "distance" and doc["mode"] == "vector"
    assert doc["hits"] == [
        {
            "rank": 1,
            "key": '["Jaws"]',
            "key_values": {"title": "Jaws"},
            "distance": 0.5,
            "metadata": {"overview": "The shark returns."},
            "chunk": 1,
            "passage": "The shark returns.",
            "chunks": [
                {"chunk": 1, "key": '["Jaws"]#1', "distance": 0.5, "passage": "The shark returns.", "scores": None},
                {"chunk": 0, "key": '["Jaws"]', "distance": 0.7, "passage": "A beach town.", "scores": None},
            ],
            "scores": {"distance": 0.5, "bm25": {}, "fused": None},
        }
    ]


def test_starts_with_is_refused_in_one_line_on_a_classic_index(
    moto: MotoServer, stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    bedrock = FakeBedrockRuntime()
    client, stubber = _stubbed_s3vectors(moto, mode="CLASSIC")  # GetIndex only: nothing else may be sent
    monkeypatch.setattr(cli_stack, "make_client_factory", lambda *_a, **_k: _query_clients(moto, bedrock, client))
    with stubber:
        result = invoke("query", "park", "--filter", '{"title": {"$startsWith": "Jurassic"}}')
    assert result.exit_code != 0 and bedrock.calls == []
    assert result.output.strip() == (
        "error: invalid filter at title.$startsWith: $startsWith needs an ENHANCED index; this index is CLASSIC"
    )
    stubber.assert_no_pending_responses()


def test_query_dimension_mismatch(
    moto: MotoServer, stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stubber = _stubbed_s3vectors(moto, dimension=1024)
    monkeypatch.setattr(
        cli_stack, "make_client_factory", lambda *_a, **_k: _query_clients(moto, FakeBedrockRuntime(), client)
    )
    with stubber:
        result = invoke("query", "shark")
    assert result.exit_code == EXIT_FAILED
    assert result.output.strip() == (
        f"error: dimension mismatch: index '{INDEX}' has 1024 dimensions "
        "but amazon.titan-embed-text-v2:0 is configured for 256"
    )


def test_query_index_missing(moto: MotoServer, stack: cli_stack.StackResources) -> None:
    moto.client("s3vectors").delete_index(vectorBucketName=stack.vector_bucket, indexName=stack.vector_index)
    result = invoke("query", "shark")
    assert result.exit_code == EXIT_FAILED
    assert result.output.strip() == f"error: vector index '{INDEX}' not found in bucket 'freshvec-local'"


def test_query_bad_filter_fails_before_any_call(stack: cli_stack.StackResources) -> None:
    result = invoke("query", "shark", "--filter", '{"vote_count": {"$gte": "100"}}')
    assert result.exit_code == EXIT_USAGE
    assert result.output.strip() == "error: invalid filter at vote_count.$gte: $gte takes a number, got a string"
    assert invoke("query", "shark", "--filter", "{oops").output.startswith("error: invalid filter: not valid JSON")
    assert invoke("query", "shark", "--k", "101").exit_code == 2


# ---- load --------------------------------------------------------------------------------------


def test_load_update_and_delete_through_the_session(
    stack: cli_stack.StackResources, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    schema = TableSchema.from_config(stack.config)
    session = FakeSession(primary_key=schema.primary_key, partition_key=schema.partition_key, latency_s=0)
    monkeypatch.setattr(keyspaces, "connect_table", lambda _region, _ca: (_Cluster(), session))
    loaded = invoke("load", "--limit", "5")
    assert (
        loaded.exit_code == 0 and "5 row(s) written to media.movies in us-east-1; 0 skipped, 0 failed" in loaded.output
    )
    before = session.rows[("Jurassic Park",)]
    invoke("load", "--limit", "1", "--update", "ratings")
    after = session.rows[("Jurassic Park",)]
    assert after["overview"] == before["overview"] and after["vote_count"] == 16211
    deleted = invoke("load", "--limit", "2", "--delete")
    assert "2 row(s) deleted" in deleted.output and len(session.rows) == 3

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "A"}\n{"title": "B", "rel_date": "soon"}\n')
    partial = invoke("load", str(bad))
    assert partial.exit_code == 0
    assert "skipped bad.jsonl:2: column 'rel_date': expected a date YYYY-MM-DD, got 'soon'" in partial.output
    assert ("A",) in session.rows and ("B",) not in session.rows
    missing = invoke("load", str(tmp_path / "none.csv"))
    assert missing.exit_code == EXIT_USAGE and missing.output.strip().startswith("error: ")
    assert "no such file" in missing.output
    both = invoke("load", "--update", "text", "--delete")
    assert both.exit_code == 2


# ---- the operator's first hour -------------------------------------------------------------------


def test_stack_and_region_are_accepted_after_the_command(moto: MotoServer, stack: cli_stack.StackResources) -> None:
    after = invoke("status", "--stack", "nope")
    assert after.exit_code == EXIT_FAILED and "stack 'nope' not found in us-east-1" in after.output
    wins = invoke("--stack", "nope", "redrive", "list", "--stack", STACK)  # the one after the command wins
    assert wins.exit_code == 0 and "0 parked item(s)" in wins.output
    region = invoke("query", "x", "--region", "eu-west-1")
    assert region.exit_code == EXIT_FAILED and "not found in eu-west-1" in region.output


def test_redrive_show_leaves_every_other_message_receivable(moto: MotoServer, stack: cli_stack.StackResources) -> None:
    sqs = moto.client("sqs")
    ids = [
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=_dlq_body(f'{{"n": {n}}}'.encode(), f'["m{n}"]'))[
            "MessageId"
        ]
        for n in range(25)
    ]
    shown = invoke("redrive", "show", ids[17], "--source", "dlq")
    assert shown.exit_code == 0 and json.loads(shown.output)["records"][0]["payload"] == {"n": 17}
    assert _visible(moto, stack.dlq_url) == 25  # at once, not after a visibility timeout
    received: set[str] = set()
    for _ in range(5):
        batch = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=30)
        received.update(m["MessageId"] for m in batch.get("Messages", []))
    assert received == set(ids)
    # The old name of --limit still works; an unknown --source is refused by the enum with the choices.
    sqs.purge_queue(QueueUrl=stack.dlq_url)
    assert invoke("redrive", "list", "--max", "5").exit_code == 0
    refused = invoke("redrive", "list", "--source", "elsewhere")
    assert refused.exit_code == 2 and "'dlq', 'on-failure', 'all'" in refused.output


def test_status_counts_nothing_expensive_unless_asked(moto: MotoServer, stack: cli_stack.StackResources) -> None:
    calls: list[str] = []
    real = cli_stack.make_client_factory

    def factory(*args: Any, **kwargs: Any) -> Any:
        clients = real(*args, **kwargs)

        def client(service: str) -> Any:
            made = clients(service)
            if service == "s3vectors":
                made.meta.events.register("before-call.s3vectors.*", lambda model, **_: calls.append(model.name))
            return made

        return client

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_stack, "make_client_factory", factory)
        result = invoke("status")
    assert result.exit_code == 0 and calls == ["GetIndex"]  # one cheap read: the index mode and its analyzers
    text = " ".join(result.output.split())
    assert "index search │ ENHANCED; full-text search off" in text
    assert "vectors in index │ not counted (--count-vectors)" in text
    assert "rows in table │ not counted (--count-rows)" in text
