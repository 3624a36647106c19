"""The sink Lambda handler end to end: a Kinesis event as Lambda builds it, moto, the Bedrock fake, EMF out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from freshvec import constants as c
from freshvec.adapters.dynamodb import create_checkpoint_table
from freshvec.config import default_config
from freshvec.errors import MisconfigurationError
from freshvec.local.moto_server import MotoServer
from freshvec.retry import RetryPolicy
from freshvec.testing.builders import batch, change, key_of, movie
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime, fake_vector
from lambdas.sink import handler as sink_handler

BUCKET = "freshvec-handler-vectors"
INDEX = "movies"


@dataclass
class Context:
    function_name: str = "freshvec-sink"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:freshvec-sink"
    aws_request_id: str = "5b7e1c9a-0000-4000-8000-000000000001"


CHECKPOINT_TABLE = "freshvec-checkpoints"


@pytest.fixture
def deployed(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    s3vectors, sqs = moto.client("s3vectors"), moto.client("sqs")
    s3vectors.create_vector_bucket(vectorBucketName=BUCKET)
    s3vectors.create_index(
        vectorBucketName=BUCKET, indexName=INDEX, dataType="float32", dimension=256, distanceMetric="cosine"
    )
    queue_url = sqs.create_queue(QueueName="freshvec-sink-dlq")["QueueUrl"]
    bedrock = FakeBedrockRuntime()
    monkeypatch.setenv(c.ENV_CONFIG, default_config().to_json())
    monkeypatch.setenv(c.ENV_VECTOR_BUCKET, BUCKET)
    monkeypatch.setenv(c.ENV_VECTOR_INDEX, INDEX)
    monkeypatch.setenv(c.ENV_DLQ_URL, queue_url)
    create_checkpoint_table(moto.client("dynamodb"), CHECKPOINT_TABLE)  # the sink's tombstones live there
    monkeypatch.setenv(c.ENV_CHECKPOINT_TABLE, CHECKPOINT_TABLE)
    # The AWS edge only: Bedrock is the fake, everything else a real boto3 client pointed at moto.
    monkeypatch.setattr(
        sink_handler, "_client", lambda service: bedrock if service == "bedrock-runtime" else moto.client(service)
    )
    monkeypatch.setattr(sink_handler, "_RETRY", RetryPolicy(attempts=2, sleep=lambda _s: None))
    sink_handler._sink.cache_clear()
    yield {"s3vectors": s3vectors, "sqs": sqs, "queue_url": queue_url, "bedrock": bedrock}
    sink_handler._sink.cache_clear()


def emf_metrics(stdout: str) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        doc = json.loads(line)
        [directive] = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == c.METRICS_NAMESPACE
        assert doc["service"] == c.SERVICE_SINK
        for metric in directive["Metrics"]:
            value = doc[metric["Name"]]
            values.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return values


def test_handler_applies_a_kinesis_batch_and_reports_metrics(
    deployed: dict[str, Any], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    records = batch(
        change("INSERT", movie("Jaws", "A shark terrorises a beach town.")),
        change("INSERT", movie("Heat", "Cops and robbers.")),
        change("UPDATE", movie("Jaws", "A shark terrorises a beach town.", vote_count=5), movie("Jaws", "x")),
        "{broken",
        change("DELETE", None, movie("Heat", "Cops and robbers.")),
    )
    response = sink_handler.handler({"Records": records}, Context())
    assert response == {"batchItemFailures": []}
    stored = deployed["s3vectors"].get_vectors(
        vectorBucketName=BUCKET, indexName=INDEX, keys=[key_of("Jaws"), key_of("Heat")], returnData=True
    )["vectors"]
    assert [v["key"] for v in stored] == [key_of("Jaws")]
    assert stored[0]["data"]["float32"] == pytest.approx(fake_vector("A shark terrorises a beach town.", 256))
    [message] = deployed["sqs"].receive_message(QueueUrl=deployed["queue_url"])["Messages"]
    letter = json.loads(message["Body"])
    assert letter["kinesis_sequence_number"] == records[3]["kinesis"]["sequenceNumber"]
    assert letter["event_source_arn"] == records[3]["eventSourceARN"]

    out = capfd.readouterr().out
    metrics = emf_metrics(out)
    assert metrics[c.M_CHANGES_RECEIVED] == [5]
    assert metrics[c.M_EMBEDDINGS_COMPUTED] == [1]
    assert metrics[c.M_VECTORS_PUT] == [1]
    assert metrics[c.M_VECTORS_DELETED] == [1]
    assert metrics[c.M_DLQ_RECORDS] == [1]
    assert len(metrics[c.M_FRESHNESS_MS]) == 4
    assert len(metrics[c.M_BATCH_DURATION_MS]) == 1
    logs = {record.getMessage(): record for record in caplog.records if record.name == c.SERVICE_SINK}
    assert logs["record sent to the DLQ"].sequence_number == records[3]["kinesis"]["sequenceNumber"]
    assert logs["batch received"].first_sequence_number == records[0]["kinesis"]["sequenceNumber"]


def test_handler_returns_the_first_failed_sequence_number_on_throttling(deployed: dict[str, Any]) -> None:
    deployed["bedrock"].fail("ThrottlingException", times=-1, when=lambda body: body["inputText"] == "throttled")
    records = batch(change("INSERT", movie("Ok", "fine")), change("INSERT", movie("Slow", "throttled")))
    response = sink_handler.handler({"Records": records}, Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": records[1]["kinesis"]["sequenceNumber"]}]}


def test_handler_fails_loudly_when_the_index_is_missing(deployed: dict[str, Any]) -> None:
    deployed["s3vectors"].delete_index(vectorBucketName=BUCKET, indexName=INDEX)
    with pytest.raises(MisconfigurationError):
        sink_handler.handler({"Records": batch(change("INSERT", movie("A", "b")))}, Context())


def test_an_empty_event_is_a_no_op(deployed: dict[str, Any]) -> None:
    assert sink_handler.handler({"Records": []}, Context()) == {"batchItemFailures": []}
    assert deployed["bedrock"].calls == []


def test_the_s3vectors_client_skips_sdk_parameter_validation_and_the_others_keep_it(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real boto3 clients from the handler, sent a wrongly typed parameter: with validation botocore refuses the
    # call before sending it; without it (s3vectors only: the sink checks vectors itself) the request goes out.
    from botocore.exceptions import ClientError, ParamValidationError

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)  # anything that is sent goes to moto
    monkeypatch.setenv("AWS_DEFAULT_REGION", moto.region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    moto.client("s3vectors").create_vector_bucket(vectorBucketName=BUCKET)
    calls = {
        "s3vectors": lambda client: client.list_indexes(vectorBucketName=BUCKET, maxResults="ten"),
        "sqs": lambda client: client.list_queues(MaxResults="ten"),
        "dynamodb": lambda client: client.list_tables(Limit="ten"),
        "bedrock-runtime": lambda client: client.invoke_model(modelId=7, body=b"{}"),
    }
    refused_before_sending = {}
    for service, call in calls.items():
        try:
            call(sink_handler._client(service))
            refused_before_sending[service] = False
        except ParamValidationError:
            refused_before_sending[service] = True
        except ClientError:  # sent, and the server answered
            refused_before_sending[service] = False
    assert refused_before_sending == {"s3vectors": False, "sqs": True, "dynamodb": True, "bedrock-runtime": True}
    config = sink_handler._client("s3vectors").meta.config  # the rest of the handler's client config stays
    # ...but its calls are bounded well inside the sink's timeout (docs/exactness.md)
    assert (config.connect_timeout, config.read_timeout) == (c.S3V_CONNECT_TIMEOUT_S, c.S3V_READ_TIMEOUT_S)
