"""The fault injectors: they wrap real moto clients and fail at the configured rates with the real error shapes."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from botocore.exceptions import ClientError

from freshvec.adapters.dynamodb import create_checkpoint_table
from freshvec.errors import TransientError, classify, error_code
from freshvec.local.moto_server import MotoServer
from freshvec.ports import EmbedResult
from freshvec.testing.botocore_shapes import assert_matches_output_shape
from freshvec.testing.faults import Chaos, FaultPlan, InjectedCrash, service_error

BUCKET, INDEX = "chaos-bucket", "chaos-index"


class CountingEmbedder:
    """A tiny deterministic embedder standing in for WordLlama; the wrapper around it is what is tested."""

    model_id = "count"
    dimensions = 2

    def __init__(self) -> None:
        self.calls = 0

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [[float(len(t)), 1.0] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.calls += 1
        return [float(len(text)), 1.0]

    def try_embed_documents(self, texts: Sequence[str]) -> list[EmbedResult]:
        self.calls += 1
        return [EmbedResult([float(len(t)), 1.0]) for t in texts]


def _only(**rates: float) -> FaultPlan:
    return FaultPlan.none(seed=11).with_rates(**rates)


def _status(exc: ClientError) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


# ---- the plan -------------------------------------------------------------------------------
def test_default_plan_has_the_issue_rates() -> None:
    plan = FaultPlan()
    assert plan.bedrock_throttle == 0.20
    assert plan.s3vectors_server_error == 0.10
    assert plan.forwarder_kill == plan.sink_kill == 0.05
    assert plan.kinesis_partial_failure > 0 and plan.dynamodb_race > 0 and plan.bedrock_timeout > 0
    assert plan.shard_splits > 0 and plan.iterator_expiries > 0


def test_none_plan_turns_every_fault_off() -> None:
    plan = FaultPlan.none()
    numbers = {name: value for name, value in plan.to_dict().items() if name not in ("seed", "bedrock_scope")}
    assert numbers and all(value == 0 for value in numbers.values())


@pytest.mark.parametrize(
    "changes",
    [
        {"bedrock_throttle": 1.5},
        {"sink_kill": -0.1},
        {"shard_splits": -1},
        {"bedrock_throttle": 0.6, "bedrock_timeout": 0.6},
    ],
)
def test_plan_rejects_impossible_rates(changes: dict) -> None:
    with pytest.raises(ValueError, match="must"):
        FaultPlan().with_rates(**changes)


def test_same_seed_same_decisions_and_disabled_means_no_faults() -> None:
    first, second = Chaos(FaultPlan(seed=3)), Chaos(FaultPlan(seed=3))
    assert [first.roll(0.3) for _ in range(200)] == [second.roll(0.3) for _ in range(200)]
    first.enabled = False
    assert not any(first.roll(1.0) for _ in range(50))


# ---- errors as botocore raises them -----------------------------------------------------------
@pytest.mark.parametrize(
    ("service", "code", "status"),
    [
        ("s3vectors", "TooManyRequestsException", 429),
        ("s3vectors", "InternalServerException", 500),
        ("s3vectors", "ServiceUnavailableException", 503),
        ("bedrock-runtime", "ThrottlingException", 429),
        ("bedrock-runtime", "ModelTimeoutException", 408),
        ("dynamodb", "ConditionalCheckFailedException", 400),
    ],
)
def test_service_error_is_the_modelled_exception_with_the_real_status(service: str, code: str, status: int) -> None:
    exc = service_error(service, code, "boom", "SomeOperation")
    assert isinstance(exc, ClientError)
    assert type(exc).__name__ == code
    assert exc.response["Error"] == {"Code": code, "Message": "boom"}
    assert _status(exc) == status
    assert exc.operation_name == "SomeOperation"


def test_service_errors_are_caught_by_a_real_clients_exception_classes(moto: MotoServer) -> None:
    client = moto.client("s3vectors")
    with pytest.raises(client.exceptions.TooManyRequestsException):
        raise service_error(
            "s3vectors", "TooManyRequestsException", "slow down", "PutVectors", exceptions=client.exceptions
        )


# ---- embedder (the Bedrock boundary) ------------------------------------------------------------
def test_embedder_fails_at_the_configured_rates_with_bedrock_errors() -> None:
    inner = CountingEmbedder()
    chaos = Chaos(_only(bedrock_throttle=0.2, bedrock_timeout=0.05))
    embedder = chaos.wrap_embedder(inner)
    outcomes: dict[str, int] = {"ok": 0, "ThrottlingException": 0, "ModelTimeoutException": 0}
    calls = 4000
    for _ in range(calls):
        try:
            assert embedder.embed_query("abc") == [3.0, 1.0]
            outcomes["ok"] += 1
        except ClientError as exc:
            outcomes[exc.response["Error"]["Code"]] += 1
            assert classify(exc) is TransientError
            assert _status(exc) == {"ThrottlingException": 429, "ModelTimeoutException": 408}[type(exc).__name__]
    assert 0.17 * calls < outcomes["ThrottlingException"] < 0.23 * calls
    # Timeouts are rolled only for calls that were not throttled: 0.8 * 0.05 = 4% of calls.
    assert 0.025 * calls < outcomes["ModelTimeoutException"] < 0.055 * calls
    assert inner.calls == outcomes["ok"]  # a failed call never reached the model
    counts = chaos.counts()
    assert counts["bedrock_throttle"] == outcomes["ThrottlingException"]
    assert counts["bedrock_timeout"] == outcomes["ModelTimeoutException"]
    assert embedder.dimensions == 2 and embedder.model_id == "count"


def test_try_embed_documents_fails_texts_one_by_one_like_titan_calls() -> None:
    inner = CountingEmbedder()
    chaos = Chaos(_only(bedrock_throttle=0.3).with_rates(bedrock_scope="text"))
    embedder = chaos.wrap_embedder(inner)
    texts = [f"text number {i}" for i in range(500)]
    results = embedder.try_embed_documents(texts)
    assert len(results) == len(texts)
    failed = [i for i, r in enumerate(results) if r.error is not None]
    assert 0.22 * len(texts) < len(failed) < 0.38 * len(texts)
    assert chaos.counts() == {"bedrock_throttle": len(failed)}
    for text, result in zip(texts, results, strict=True):
        if result.error is None:
            assert result.vector == [float(len(text)), 1.0]  # the healthy texts keep their own vectors
        else:
            assert isinstance(result.error, TransientError)
            assert error_code(result.error.__cause__) == "ThrottlingException"
            assert "ThrottlingException" in str(result.error)
    assert inner.calls == 1  # one call for the healthy texts only


def test_call_scope_fails_a_whole_call_at_the_call_rate() -> None:
    inner = CountingEmbedder()
    chaos = Chaos(_only(bedrock_throttle=0.2))
    embedder = chaos.wrap_embedder(inner)
    failed_calls = 0
    for _ in range(1000):
        results = embedder.try_embed_documents(["one", "two", "three"])
        errors = [r.error for r in results]
        assert all(e is None for e in errors) or all(isinstance(e, TransientError) for e in errors)
        failed_calls += errors[0] is not None
    assert 150 < failed_calls < 250
    assert chaos.counts() == {"bedrock_throttle": failed_calls}
    assert inner.calls == 1000 - failed_calls


def test_embed_documents_raises_the_bedrock_error() -> None:
    embedder = Chaos(_only(bedrock_timeout=1.0)).wrap_embedder(CountingEmbedder())
    with pytest.raises(ClientError) as caught:
        embedder.embed_documents(["a", "b"])
    assert error_code(caught.value) == "ModelTimeoutException" and _status(caught.value) == 408


def test_embedder_without_faults_is_transparent() -> None:
    embedder = Chaos(FaultPlan.none()).wrap_embedder(CountingEmbedder())
    assert embedder.embed_query("hello") == [5.0, 1.0]
    assert embedder.embed_documents(["hi"]) == [[2.0, 1.0]]
    assert [r.vector for r in embedder.try_embed_documents(["abc"])] == [[3.0, 1.0]]


# ---- S3 Vectors -------------------------------------------------------------------------------
@pytest.fixture
def s3vectors(moto: MotoServer):
    client = moto.client("s3vectors")
    client.create_vector_bucket(vectorBucketName=BUCKET)
    client.create_index(
        vectorBucketName=BUCKET, indexName=INDEX, dataType="float32", dimension=2, distanceMetric="cosine"
    )
    return client


def _vector(key: str) -> dict:
    return {"key": key, "data": {"float32": [1.0, 0.5]}, "metadata": {"k": key}}


def _stored_keys(client) -> set[str]:
    return {v["key"] for v in client.list_vectors(vectorBucketName=BUCKET, indexName=INDEX)["vectors"]}


def test_s3vectors_throttle_raises_429_and_writes_nothing(s3vectors) -> None:
    chaotic = Chaos(_only(s3vectors_throttle=1.0)).wrap_client("s3vectors", s3vectors)
    with pytest.raises(s3vectors.exceptions.TooManyRequestsException) as caught:
        chaotic.put_vectors(vectorBucketName=BUCKET, indexName=INDEX, vectors=[_vector("a")])
    assert _status(caught.value) == 429
    assert classify(caught.value) is TransientError
    assert _stored_keys(s3vectors) == set()
    # Control-plane calls are never broken.
    assert chaotic.get_index(vectorBucketName=BUCKET, indexName=INDEX)["index"]["dimension"] == 2


def test_s3vectors_server_errors_are_500_or_503(s3vectors) -> None:
    chaos = Chaos(_only(s3vectors_server_error=1.0))
    chaotic = chaos.wrap_client("s3vectors", s3vectors)
    seen = set()
    for _ in range(40):
        with pytest.raises(ClientError) as caught:
            chaotic.get_vectors(vectorBucketName=BUCKET, indexName=INDEX, keys=["a"])
        seen.add((caught.value.response["Error"]["Code"], _status(caught.value)))
        assert classify(caught.value) is TransientError
    assert seen == {("InternalServerException", 500), ("ServiceUnavailableException", 503)}
    assert chaos.counts() == {"s3vectors_5xx": 40}


def test_s3vectors_rates_hold_over_many_calls(s3vectors) -> None:
    chaos = Chaos(_only(s3vectors_throttle=0.05, s3vectors_server_error=0.10))
    chaotic = chaos.wrap_client("s3vectors", s3vectors)
    failures = 0
    calls = 300
    for _ in range(calls):
        try:
            chaotic.get_vectors(vectorBucketName=BUCKET, indexName=INDEX, keys=["a"])
        except ClientError:
            failures += 1
    # P(fail) = 0.05 + 0.95 * 0.10 = 14.5%
    assert 0.08 * calls < failures < 0.22 * calls
    assert sum(chaos.counts().values()) == failures


def test_sink_kill_lands_the_write_then_crashes(s3vectors) -> None:
    chaotic = Chaos(_only(sink_kill=1.0)).wrap_client("s3vectors", s3vectors)
    with pytest.raises(InjectedCrash, match="after PutVectors"):
        chaotic.put_vectors(vectorBucketName=BUCKET, indexName=INDEX, vectors=[_vector("a"), _vector("b")])
    assert _stored_keys(s3vectors) == {"a", "b"}
    with pytest.raises(InjectedCrash, match="after DeleteVectors"):
        chaotic.delete_vectors(vectorBucketName=BUCKET, indexName=INDEX, keys=["a"])
    assert _stored_keys(s3vectors) == {"b"}
    # Reads are not writes: no kill after them.
    assert len(chaotic.get_vectors(vectorBucketName=BUCKET, indexName=INDEX, keys=["b"])["vectors"]) == 1


# ---- Kinesis PutRecords partial failures ------------------------------------------------------------
def _read_all(kinesis, stream: str) -> list[bytes]:
    data = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        data.extend(r["Data"] for r in kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"])
    return data


def test_kinesis_partial_failure_is_a_real_partial_response(moto: MotoServer) -> None:
    kinesis = moto.client("kinesis")
    kinesis.create_stream(StreamName="changes", ShardCount=2)
    shard_ids = {s["ShardId"] for s in kinesis.list_shards(StreamName="changes")["Shards"]}
    chaos = Chaos(_only(kinesis_partial_failure=1.0))
    chaotic = chaos.wrap_client("kinesis", kinesis)
    records = [{"Data": f"r{i}".encode(), "PartitionKey": f"key-{i}"} for i in range(60)]

    response = chaotic.put_records(StreamName="changes", Records=records)

    assert_matches_output_shape("kinesis", "PutRecords", response)
    entries = response["Records"]
    assert len(entries) == len(records)
    failed = [i for i, e in enumerate(entries) if "ErrorCode" in e]
    assert 0 < response["FailedRecordCount"] == len(failed) < len(records)
    for i, entry in enumerate(entries):
        if i in failed:
            assert entry["ErrorCode"] == "ProvisionedThroughputExceededException"
            shard = entry["ErrorMessage"].split(" for shard ")[1].split(" ")[0]
            assert shard in shard_ids
            assert "SequenceNumber" not in entry
        else:
            assert entry["ShardId"] in shard_ids and entry["SequenceNumber"]
    written = _read_all(kinesis, "changes")
    assert sorted(written) == sorted(records[i]["Data"] for i in range(len(records)) if i not in failed)
    assert chaos.counts() == {"kinesis_partial_failure": 1, "kinesis_records_failed": len(failed)}


def test_kinesis_without_the_fault_writes_everything(moto: MotoServer) -> None:
    kinesis = moto.client("kinesis")
    kinesis.create_stream(StreamName="changes", ShardCount=1)
    chaotic = Chaos(FaultPlan.none()).wrap_client("kinesis", kinesis)
    response = chaotic.put_records(
        StreamName="changes", Records=[{"Data": b"x", "PartitionKey": "k"}, {"Data": b"y", "PartitionKey": "k"}]
    )
    assert response["FailedRecordCount"] == 0
    assert _read_all(kinesis, "changes") == [b"x", b"y"]


# ---- DynamoDB conditional-check races ------------------------------------------------------------------
def test_dynamodb_race_fails_conditional_writes_only(moto: MotoServer) -> None:
    dynamodb = moto.client("dynamodb")
    create_checkpoint_table(dynamodb, "leases")
    chaotic = Chaos(_only(dynamodb_race=1.0)).wrap_client("dynamodb", dynamodb)
    key = {"stream": {"S": "s"}, "shard": {"S": "a"}}
    chaotic.put_item(TableName="leases", Item={**key, "owner": {"S": "me"}})  # unconditional: written
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException) as caught:
        chaotic.update_item(
            TableName="leases",
            Key=key,
            UpdateExpression="SET #o = :new",
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":new": {"S": "other"}, ":me": {"S": "me"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert _status(caught.value) == 400
    assert caught.value.response["Item"]["owner"] == {"S": "me"}
    assert dynamodb.get_item(TableName="leases", Key=key)["Item"]["owner"] == {"S": "me"}  # nothing written


# ---- SQS (the sink's DLQ) and the forwarder hook ------------------------------------------------------
def test_sink_kill_after_the_dlq_send_keeps_the_message(moto: MotoServer) -> None:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    chaotic = Chaos(_only(sink_kill=1.0)).wrap_client("sqs", sqs)
    with pytest.raises(InjectedCrash, match="after SendMessageBatch"):
        chaotic.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": json.dumps({"a": 1})}])
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in received] == [{"a": 1}]


def test_unwrapped_services_come_back_unchanged(moto: MotoServer) -> None:
    s3 = moto.client("s3")
    assert Chaos().wrap_client("s3", s3) is s3


def test_forwarder_hook_kills_at_the_configured_rate() -> None:
    chaos = Chaos(_only(forwarder_kill=0.25))
    kills = 0
    for i in range(2000):
        step = ("after_read", "after_put", "after_checkpoint")[i % 3]
        try:
            chaos.forwarder_hook(step, shard_id="shard-1")
        except InjectedCrash as exc:
            kills += 1
            assert step in str(exc)
    assert 400 < kills < 600
    counts = chaos.counts()
    assert set(counts) == {"forwarder_kill_after_read", "forwarder_kill_after_put", "forwarder_kill_after_checkpoint"}
    assert sum(counts.values()) == kills
