"""PutRecords batching and ordered re-sends, against moto Kinesis wrapped in a fault injector.

moto cannot fail single records of a PutRecords call, so ``FaultyKinesis`` forwards the records it lets
through to the real moto client and answers for the others exactly as Kinesis does (``ErrorCode`` and
``ErrorMessage`` in their slot, ``FailedRecordCount``): the unit under test talks to real moto behaviour.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pytest
from botocore.exceptions import ClientError

from freshvec import constants as c
from freshvec.adapters.kinesis import KINESIS_RETRY, KinesisWriter
from freshvec.errors import MisconfigurationError, TransientError
from freshvec.outgoing import OutgoingRecord, plan_calls
from freshvec.testing.botocore_shapes import assert_matches_output_shape

STREAM = "freshvec-changes"
THROTTLED = "ProvisionedThroughputExceededException"


class FaultyKinesis:
    """A real (moto) Kinesis client whose PutRecords can fail chosen records or whole calls."""

    def __init__(self, client, *, plan=None, failure_rate: float = 0.0, seed: int = 0, error_code: str = THROTTLED):
        self.client = client
        self.plan = list(plan or [])  # per call: set of record indexes to fail, or a ClientError code
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)
        self.error_code = error_code
        self.calls: list[list[bytes]] = []
        self.responses: list[dict] = []

    def put_records(self, *, StreamName, Records):
        self.calls.append([r["Data"] for r in Records])
        step = self.plan.pop(0) if self.plan else None
        if isinstance(step, str):
            raise ClientError({"Error": {"Code": step, "Message": "Rate exceeded"}}, "PutRecords")
        if step is None:
            step = {i for i in range(len(Records)) if self.rng.random() < self.failure_rate}
        accepted = [r for i, r in enumerate(Records) if i not in step]
        stored = iter(self.client.put_records(StreamName=StreamName, Records=accepted)["Records"] if accepted else [])
        results = []
        for i in range(len(Records)):
            if i in step:
                results.append({"ErrorCode": self.error_code, "ErrorMessage": f"Rate exceeded for shard in {STREAM}"})
            else:
                results.append(next(stored))
        response = {"FailedRecordCount": len(step), "Records": results, "EncryptionType": "NONE"}
        self.responses.append(response)
        return response

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture
def kinesis(moto):
    client = moto.client("kinesis")
    client.create_stream(StreamName=STREAM, ShardCount=2)
    client.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0.1})
    return client


def outgoing(count: int, keys: int = 5, start: int = 0) -> list[OutgoingRecord]:
    records = []
    for n in range(start, start + count):
        key = f'["row-{n % keys}"]'
        records.append(OutgoingRecord(json.dumps({"key": key, "n": n}).encode(), key, f"{n:021d}"))
    return records


def read_stream(client) -> dict[str, list[int]]:
    """Every record in the stream, per partition key, in the order Kinesis holds them."""
    per_key: dict[str, list[int]] = defaultdict(list)
    for shard in client.list_shards(StreamName=STREAM)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                per_key[record["PartitionKey"]].append(json.loads(record["Data"])["n"])
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return per_key


def assert_in_order_at_least_once(per_key: dict[str, list[int]], expected: list[OutgoingRecord]) -> None:
    """Each change arrives; a change never arrives before an earlier change of its key (repeats allowed)."""
    wanted: dict[str, list[int]] = defaultdict(list)
    for record in expected:
        wanted[record.partition_key].append(json.loads(record.data)["n"])
    assert set(per_key) == set(wanted)
    for key, changes in wanted.items():
        index = {n: i for i, n in enumerate(changes)}
        highest = -1
        for n in per_key[key]:
            assert index[n] <= highest + 1, f"{key}: change {n} arrived before an earlier one"
            highest = max(highest, index[n])
        assert highest == len(changes) - 1, f"{key}: not every change arrived"
        assert per_key[key][-1] == changes[-1], f"{key}: an older change arrived after the newest"


def calls_of(records, **limits) -> list[list[OutgoingRecord]]:
    return [[records[i] for i in call] for call in plan_calls(records, **limits)]


def assert_valid_plan(records, calls, max_records=c.KINESIS_PUT_BATCH, max_bytes=c.KINESIS_MAX_REQUEST_BYTES):
    assert sorted(r.sequence_number for call in calls for r in call) == sorted(r.sequence_number for r in records)
    for call in calls:
        assert len(call) <= max_records
        assert sum(r.size for r in call) <= max_bytes
        keys = [r.partition_key for r in call]
        assert len(keys) == len(set(keys)), "two changes of one row in one call"
    order_sent = [r for call in calls for r in call]
    for key in {r.partition_key for r in records}:
        assert [r for r in order_sent if r.partition_key == key] == [r for r in records if r.partition_key == key]


def test_distinct_rows_fill_calls_of_500_in_order():
    records = outgoing(1_234, keys=1_234)
    calls = calls_of(records)
    assert [len(call) for call in calls] == [500, 500, 234]
    assert [r for call in calls for r in call] == records


def test_two_changes_of_one_row_never_share_a_call():
    records = outgoing(1_000, keys=10)  # each row changes 100 times
    calls = calls_of(records)
    assert_valid_plan(records, calls)
    assert len(calls) == 100  # each call carries one change of every row


def test_calls_stay_under_the_request_size_limit():
    big = [OutgoingRecord(b"x" * 900_000, f"k{i}", f"{i:021d}") for i in range(13)]
    calls = calls_of(big)
    assert_valid_plan(big, calls)
    assert [len(call) for call in calls] == [5, 5, 3]


def test_any_mix_of_rows_and_sizes_gives_a_valid_plan():
    rng = random.Random(3)
    for _ in range(50):
        records = [
            OutgoingRecord(b"x" * rng.randint(1, 400), f"k{rng.randint(0, 30)}", f"{n:021d}")
            for n in range(rng.randint(1, 900))
        ]
        assert_valid_plan(records, calls_of(records, max_records=50, max_bytes=6_000), 50, 6_000)


NO_WAIT = KINESIS_RETRY.with_(sleep=lambda _s: None)


def test_a_clean_batch_is_one_call_and_lands_in_order(kinesis):
    faulty = FaultyKinesis(kinesis)
    records = outgoing(300)
    assert KinesisWriter(faulty, STREAM).put(records) == 1
    per_key = read_stream(kinesis)
    assert sum(map(len, per_key.values())) == 300
    assert_in_order_at_least_once(per_key, records)


def test_a_partial_failure_resends_only_the_rejected_records(kinesis):
    faulty = FaultyKinesis(kinesis, plan=[{3, 7}, {0}, set()])
    records = outgoing(10, keys=10)
    sleeps: list[float] = []
    calls = KinesisWriter(faulty, STREAM, retry=KINESIS_RETRY.with_(sleep=sleeps.append)).put(records)
    assert calls == 3
    assert_matches_output_shape("kinesis", "PutRecords", faulty.responses[0])
    sent = [[json.loads(d)["n"] for d in call] for call in faulty.calls]
    assert sent == [list(range(10)), [3, 7], [3]]
    assert len(sleeps) == 2
    per_key = read_stream(kinesis)
    assert sorted(n for ns in per_key.values() for n in ns) == list(range(10))  # no repeats at all


def test_random_partial_failures_never_reorder_a_row(kinesis):
    faulty = FaultyKinesis(kinesis, failure_rate=0.2, seed=7)
    records = outgoing(1_500, keys=40)
    throttles = []
    writer = KinesisWriter(faulty, STREAM, retry=NO_WAIT, on_throttle=lambda: throttles.append(1))
    for call in plan_calls(records):
        writer.put([records[i] for i in call])
    assert throttles  # the injected failures were seen and counted
    per_key = read_stream(kinesis)
    assert_in_order_at_least_once(per_key, records)
    assert sum(map(len, per_key.values())) == 1_500  # and each change exactly once


def test_a_throttled_call_is_retried(kinesis):
    faulty = FaultyKinesis(kinesis, plan=[THROTTLED, "InternalFailure"])
    records = outgoing(20)
    assert KinesisWriter(faulty, STREAM, retry=NO_WAIT).put(records) == 3
    assert_in_order_at_least_once(read_stream(kinesis), records)


def test_a_missing_stream_is_a_misconfiguration(moto):
    with pytest.raises(MisconfigurationError, match="ResourceNotFoundException"):
        KinesisWriter(moto.client("kinesis"), "no-such-stream").put(outgoing(1))


def test_a_record_refused_by_kms_is_a_misconfiguration(kinesis):
    faulty = FaultyKinesis(kinesis, plan=[{0}], error_code="KMSAccessDeniedException")
    with pytest.raises(MisconfigurationError, match="KMSAccessDeniedException"):
        KinesisWriter(faulty, STREAM, retry=NO_WAIT).put(outgoing(3))


def test_giving_up_at_the_deadline_is_transient(kinesis):
    faulty = FaultyKinesis(kinesis, failure_rate=1.0)
    writer = KinesisWriter(faulty, STREAM, retry=NO_WAIT, should_stop=lambda: len(faulty.calls) >= 4)
    with pytest.raises(TransientError, match="deadline"):
        writer.put(outgoing(5))
    assert len(faulty.calls) == 4


def test_giving_up_after_many_fruitless_attempts_is_transient(kinesis):
    faulty = FaultyKinesis(kinesis, failure_rate=1.0)
    writer = KinesisWriter(faulty, STREAM, retry=NO_WAIT.with_(attempts=6))
    with pytest.raises(TransientError, match="6 attempts"):
        writer.put(outgoing(5))
    assert len(faulty.calls) == 6
