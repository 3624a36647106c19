"""The local event source mapping against a moto Kinesis stream: batching, partial failures, bisect, parking."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from freshvec.local.esm import (
    APPLIED,
    CONDITION_RECORD_AGE,
    CONDITION_RETRIES_EXHAUSTED,
    PARKED,
    KinesisEventSourceMapping,
    MappingSettings,
    S3OnFailureDestination,
)
from freshvec.local.moto_server import MotoServer

STREAM = "esm-test"
BUCKET = "esm-failures"


@pytest.fixture
def aws(moto: MotoServer) -> MotoServer:
    moto.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    moto.client("s3").create_bucket(Bucket=BUCKET)
    return moto


def put(aws: MotoServer, payloads: list[str]) -> None:
    kinesis = aws.client("kinesis")
    for payload in payloads:
        kinesis.put_record(StreamName=STREAM, Data=payload.encode(), PartitionKey="k")


def payloads_of(event: dict[str, Any]) -> list[str]:
    return [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]


class Outcomes:
    """Collects what the mapping reports as done, and waits for a number of records."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {APPLIED: [], PARKED: []}
        self._cond = threading.Condition()

    def __call__(self, records: Any, outcome: str) -> None:
        with self._cond:
            self.records[outcome].extend(base64.b64decode(r["kinesis"]["data"]).decode() for r in records)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: sum(map(len, self.records.values())) >= count, timeout)
        assert ok, f"only {self.records} done"


@pytest.fixture
def run_mapping(aws: MotoServer) -> Iterator[Callable[..., tuple[KinesisEventSourceMapping, Outcomes]]]:
    started: list[KinesisEventSourceMapping] = []

    def run(
        handler: Callable[[dict], Any], clock: Callable[[], float] = time.time, **settings: Any
    ) -> tuple[KinesisEventSourceMapping, Outcomes]:
        outcomes = Outcomes()
        base = {"batching_window_s": 0.2, "retry_base_delay_s": 0.01, "poll_interval_s": 0.02}
        mapping = KinesisEventSourceMapping(
            aws.client("kinesis"),
            STREAM,
            lambda: handler,
            MappingSettings(**{**base, **settings}),
            S3OnFailureDestination(aws.client("s3"), BUCKET, "mapping-1"),
            on_done=outcomes,
            clock=clock,
        )
        mapping.start()
        started.append(mapping)
        return mapping, outcomes

    yield run
    for mapping in started:
        mapping.stop()


def test_batches_honour_batch_size_and_keep_order(aws: MotoServer, run_mapping: Any) -> None:
    batches: list[list[str]] = []
    put(aws, [f"r{i}" for i in range(25)])
    mapping, outcomes = run_mapping(lambda event: batches.append(payloads_of(event)), batch_size=10)
    outcomes.wait_for(25)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [p for b in batches for p in b] == [f"r{i}" for i in range(25)]
    assert outcomes.records[PARKED] == []
    assert mapping.stats.as_dict()["invocations"] == 3


def test_batching_window_gathers_records_written_within_it(aws: MotoServer, run_mapping: Any) -> None:
    batches: list[list[str]] = []
    _, outcomes = run_mapping(lambda event: batches.append(payloads_of(event)), batching_window_s=1.0)
    put(aws, ["a"])
    time.sleep(0.3)
    # b and c in one call, so a loaded machine cannot stretch their writing past the window.
    aws.client("kinesis").put_records(
        StreamName=STREAM, Records=[{"Data": p.encode(), "PartitionKey": "k"} for p in ("b", "c")]
    )
    outcomes.wait_for(3)
    assert batches == [["a", "b", "c"]]


def test_partial_failure_restarts_from_the_lowest_failed_sequence_number(aws: MotoServer, run_mapping: Any) -> None:
    seen: list[list[str]] = []
    failed_once: set[str] = set()

    def handler(event: dict) -> dict:
        seen.append(payloads_of(event))
        failures = []
        for record, payload in zip(event["Records"], payloads_of(event), strict=True):
            if payload in ("r2", "r4") and payload not in failed_once:
                failed_once.add(payload)
                failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
        return {"batchItemFailures": failures}

    put(aws, [f"r{i}" for i in range(6)])
    mapping, outcomes = run_mapping(handler, batch_size=10)
    outcomes.wait_for(6)
    assert seen[0] == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert seen[1] == ["r2", "r3", "r4", "r5"]  # from the lowest failure, r4 included
    assert sorted(outcomes.records[APPLIED]) == [f"r{i}" for i in range(6)]
    assert mapping.stats.as_dict()["partial_failures"] == 1


def test_function_error_bisects_to_the_bad_record_and_parks_it_in_s3(aws: MotoServer, run_mapping: Any) -> None:
    applied: list[str] = []

    def handler(event: dict) -> None:
        payloads = payloads_of(event)
        if "bad" in payloads:
            raise RuntimeError("cannot handle 'bad'")
        applied.extend(payloads)

    put(aws, ["a", "b", "c", "bad", "d", "e", "f", "g"])
    mapping, outcomes = run_mapping(handler, batch_size=8, retry_attempts=2)
    outcomes.wait_for(8)
    assert outcomes.records[PARKED] == ["bad"]
    assert sorted(applied) == ["a", "b", "c", "d", "e", "f", "g"]
    stats = mapping.stats.as_dict()
    assert stats["bisections"] >= 3
    assert stats["retries"] == 2  # splitting does not consume the retry quota; the single record does

    documents = S3OnFailureDestination(aws.client("s3"), BUCKET, "mapping-1").documents()
    assert len(documents) == 1
    doc = documents[0]
    assert doc["requestContext"]["condition"] == CONDITION_RETRIES_EXHAUSTED
    assert doc["requestContext"]["approximateInvokeCount"] == 3
    info = doc["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["shardId"] == "shardId-000000000000"
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert info["streamArn"].endswith(f":stream/{STREAM}")
    assert payloads_of(json.loads(doc["payload"])) == ["bad"]


def test_without_bisect_the_whole_batch_is_parked_after_the_retries(aws: MotoServer, run_mapping: Any) -> None:
    calls: list[int] = []

    def handler(event: dict) -> None:
        calls.append(len(event["Records"]))
        raise RuntimeError("down")

    put(aws, ["a", "b", "c"])
    mapping, outcomes = run_mapping(handler, batch_size=3, retry_attempts=1, bisect_on_error=False)
    outcomes.wait_for(3)
    assert calls == [3, 3]
    assert outcomes.records[PARKED] == ["a", "b", "c"]
    assert mapping.stats.as_dict()["records_parked"] == 3


def test_unusable_item_identifier_fails_the_whole_batch(aws: MotoServer, run_mapping: Any) -> None:
    calls: list[list[str]] = []

    def handler(event: dict) -> dict:
        calls.append(payloads_of(event))
        return {"batchItemFailures": [{"itemIdentifier": ""}]}

    put(aws, ["a", "b"])
    _, outcomes = run_mapping(handler, batch_size=2, retry_attempts=0, bisect_on_error=False)
    outcomes.wait_for(2)
    assert calls == [["a", "b"]]
    assert outcomes.records[PARKED] == ["a", "b"]


def test_records_older_than_the_max_age_are_parked_without_an_invocation(aws: MotoServer, run_mapping: Any) -> None:
    calls: list[list[str]] = []
    put(aws, ["old"])
    # Move the mapping's clock two hours ahead: the record is now older than the one-hour maximum.
    _, outcomes = run_mapping(
        lambda event: calls.append(payloads_of(event)), clock=lambda: time.time() + 7200, max_record_age_s=3600
    )
    outcomes.wait_for(1)
    assert calls == []
    assert outcomes.records[PARKED] == ["old"]
    doc = S3OnFailureDestination(aws.client("s3"), BUCKET, "mapping-1").documents()[0]
    assert doc["requestContext"]["condition"] == CONDITION_RECORD_AGE


def test_child_shards_are_read_after_their_parent(aws: MotoServer, run_mapping: Any) -> None:
    kinesis = aws.client("kinesis")
    seen: list[str] = []
    put(aws, ["before-1", "before-2"])
    kinesis.update_shard_count(StreamName=STREAM, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    put(aws, ["after-1", "after-2"])
    _, outcomes = run_mapping(lambda event: seen.extend(payloads_of(event)))
    outcomes.wait_for(4)
    assert seen[:2] == ["before-1", "before-2"]
    assert sorted(seen[2:]) == ["after-1", "after-2"]


class FlakyReads:
    """A Kinesis client whose GetRecords fails now and then, as a throttled or dropped call would."""

    def __init__(self, client: Any, failing_calls: set[int]) -> None:
        self._client = client
        self._failing = failing_calls
        self.calls = 0

    def get_records(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls in self._failing:
            raise ConnectionError("connection reset by peer")
        return self._client.get_records(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_read_failures_resume_from_the_checkpoint_without_losing_records(aws: MotoServer) -> None:
    seen: list[str] = []
    outcomes = Outcomes()
    kinesis = FlakyReads(aws.client("kinesis"), failing_calls={1, 2, 4, 5})
    mapping = KinesisEventSourceMapping(
        kinesis,
        STREAM,
        lambda: lambda event: seen.extend(payloads_of(event)),
        MappingSettings(batch_size=3, batching_window_s=0, poll_interval_s=0.02),
        None,
        on_done=outcomes,
    )
    put(aws, [f"r{i}" for i in range(5)])
    mapping.start()
    try:
        outcomes.wait_for(5)
        put(aws, [f"r{i}" for i in range(5, 9)])
        outcomes.wait_for(9)
    finally:
        mapping.stop()
    assert seen == [f"r{i}" for i in range(9)]  # in order, nothing skipped, nothing twice
    assert mapping.stats.as_dict()["read_errors"] == 4


def test_parallelization_runs_lanes_side_by_side_and_keeps_each_key_in_order(aws: MotoServer) -> None:
    kinesis = aws.client("kinesis")
    for i in range(40):
        kinesis.put_record(StreamName=STREAM, Data=f"k{i % 8}:{i}".encode(), PartitionKey=f"k{i % 8}")
    instances: list[list[str]] = []
    lock = threading.Lock()

    def new_instance() -> Callable[[dict], None]:
        seen: list[str] = []
        with lock:
            instances.append(seen)
        return lambda event: seen.extend(payloads_of(event))

    outcomes = Outcomes()
    mapping = KinesisEventSourceMapping(
        kinesis,
        STREAM,
        new_instance,
        MappingSettings(batch_size=5, batching_window_s=0, parallelization_factor=3, poll_interval_s=0.02),
        None,
        on_done=outcomes,
    )
    mapping.start()
    try:
        outcomes.wait_for(40)
    finally:
        mapping.stop()
    assert len(instances) == 3  # one function instance per lane
    assert sum(1 for seen in instances if seen) >= 2  # the keys were spread over the lanes
    delivered = [payload for seen in instances for payload in seen]
    assert sorted(delivered) == sorted(f"k{i % 8}:{i}" for i in range(40))
    for key in range(8):
        lanes_with_key = [seen for seen in instances if any(p.startswith(f"k{key}:") for p in seen)]
        assert len(lanes_with_key) == 1  # one key, one lane
        order = [int(p.split(":")[1]) for p in lanes_with_key[0] if p.startswith(f"k{key}:")]
        assert order == sorted(order)


def test_retries_follow_the_one_retry_policy() -> None:
    policy = MappingSettings(retry_attempts=2, retry_base_delay_s=0.5, retry_max_delay_s=1.5).retry_policy()
    assert (policy.attempts, policy.base_delay_s, policy.max_delay_s) == (3, 0.5, 1.5)  # the first try + 2 retries
    assert not policy.exhausted(2) and policy.exhausted(3)
    assert all(0 <= policy.delay(retry) <= min(1.5, 0.5 * 2 ** (retry - 1)) for retry in range(1, 6))
