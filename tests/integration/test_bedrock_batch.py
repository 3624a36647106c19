"""Bedrock batch inference: the adapter (``BedrockBatchJobs``) against the fake over moto's S3.

The fake is checked against the botocore ``bedrock`` model here (answers and errors), then the adapter is run
through whole jobs: records written as JSONL, jobs created, stepped through their states, results joined on
``recordId`` from shuffled output, failed records reported per id, limits from Service Quotas or the defaults,
large submissions split, a resubmission after a crash creating nothing twice.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from freshvec import constants as c
from freshvec.adapters.bedrock_batch import BatchLocation, BedrockBatchJobs, split_records
from freshvec.errors import MisconfigurationError, TransientError
from freshvec.local.bedrock_batch import RecordLimits
from freshvec.local.moto_server import MotoServer
from freshvec.ports import BatchEmbeddingJobs, BatchLimits, BatchRecord, BatchTooSmallError
from freshvec.retry import RetryPolicy
from freshvec.testing.botocore_shapes import assert_is_modeled_error, assert_matches_output_shape
from freshvec.testing.fakes.bedrock import fake_vector, purposed_vector
from freshvec.testing.fakes.bedrock_batch import FakeBedrockBatch, bedrock_models

BUCKET = "freshvec-batch-test"
ROLE = "arn:aws:iam::123456789012:role/freshvec-batch"
LOCATION = BatchLocation(BUCKET, "jobs", ROLE)
SMALL_JOBS = RecordLimits(min_records=3, max_records=10)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeQuotas:
    """Service Quotas ``list_service_quotas`` for bedrock, paged by two, answering the botocore shape."""

    def __init__(self, quotas: dict[str, float], denied: bool = False) -> None:
        self.quotas = quotas
        self.denied = denied

    def list_service_quotas(self, **params: Any) -> dict[str, Any]:
        if self.denied:
            raise ClientError(
                {
                    "Error": {"Code": "AccessDeniedException", "Message": "no"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "ListServiceQuotas",
            )
        assert params["ServiceCode"] == "bedrock"
        names = sorted(self.quotas)
        start = int(params.get("NextToken") or 0)
        page = [
            {"ServiceCode": "bedrock", "QuotaName": name, "QuotaCode": f"L-{i:08X}", "Value": self.quotas[name]}
            for i, name in enumerate(names[start : start + 2])
        ]
        answer: dict[str, Any] = {"Quotas": page}
        if start + 2 < len(names):
            answer["NextToken"] = str(start + 2)
        assert_matches_output_shape("service-quotas", "ListServiceQuotas", answer)
        return answer


@pytest.fixture
def s3(moto: MotoServer) -> Any:
    client = moto.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def make(
    s3: Any,
    *,
    limits: RecordLimits = SMALL_JOBS,
    model: str = c.TITAN_V2,
    provider: str = "titan",
    dimensions: int = 256,
    quotas: Any = None,
    clock: Clock | None = None,
) -> tuple[FakeBedrockBatch, BedrockBatchJobs]:
    fake = FakeBedrockBatch(s3, models=bedrock_models(limits), clock=clock or Clock())
    label = c.BATCH_QUOTA_MODEL_NAMES[c.foundation_model_id(model)]
    adapter_quotas = quotas or FakeQuotas(
        {
            f"Minimum number of records per batch inference job for {label}": limits.min_records,
            f"Records per batch inference job for {label}": limits.max_records,
        }
    )
    jobs = BedrockBatchJobs(
        fake,
        s3,
        LOCATION,
        provider=provider,
        model_id=model,
        dimensions=dimensions,
        quotas_client=adapter_quotas,
        retry=RetryPolicy(attempts=2, sleep=lambda _s: None),
    )
    return fake, jobs


def output_lines(s3: Any, prefix: str) -> tuple[str, list[str]]:
    """The one output file under ``prefix`` (not the manifest) and its lines."""
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    [key] = [o["Key"] for o in listed if o["Key"].endswith(".jsonl.out")]
    return key, s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()


def records(count: int, prefix: str = "r") -> list[BatchRecord]:
    return [BatchRecord(f"{prefix}{i}", f"text number {i}") for i in range(count)]


# ---- the fake against the botocore model -----------------------------------------------------------
def test_the_fakes_answers_and_errors_follow_the_bedrock_model(s3: Any) -> None:
    fake, jobs = make(s3)
    [job] = jobs.submit("sub1", records(5))
    create = fake.calls[-1][1]
    assert_matches_output_shape("bedrock", "CreateModelInvocationJob", {"jobArn": job.job_id})
    for _ in range(6):
        answer = fake.get_model_invocation_job(jobIdentifier=job.job_id)
        assert_matches_output_shape("bedrock", "GetModelInvocationJob", answer)
        fake.step()
    assert_matches_output_shape("bedrock", "ListModelInvocationJobs", fake.list_model_invocation_jobs())
    assert_matches_output_shape("bedrock", "StopModelInvocationJob", {})
    with pytest.raises(ClientError) as caught:
        fake.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert_is_modeled_error("bedrock", "GetModelInvocationJob", caught.value)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:  # a name in use with another token
        fake.create_model_invocation_job(**{**create, "clientRequestToken": "another"})
    assert_is_modeled_error("bedrock", "CreateModelInvocationJob", caught.value)
    assert caught.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ParamValidationError):
        fake.create_model_invocation_job(jobName="x")  # boto3 checks required parameters before sending


def test_a_job_below_the_minimum_is_a_validation_exception_at_creation(s3: Any) -> None:
    fake, _ = make(s3)
    s3.put_object(Bucket=BUCKET, Key="small/in.jsonl", Body=b'{"recordId": "a1", "modelInput": {"inputText": "x"}}\n')
    with pytest.raises(ClientError) as caught:
        fake.create_model_invocation_job(
            jobName="small",
            roleArn=ROLE,
            modelId=c.TITAN_V2,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/small/in.jsonl"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/small/out/"}},
        )
    response = assert_is_modeled_error("bedrock", "CreateModelInvocationJob", caught.value)
    assert response["Error"]["Code"] == "ValidationException" and "below the minimum" in response["Error"]["Message"]


def test_the_job_states_in_order_and_the_quota_of_active_jobs(s3: Any) -> None:
    fake, jobs = make(s3)
    fake.max_active_jobs = 1
    [job] = jobs.submit("states", records(4))
    seen = [jobs.status(job.job_id).status]
    while not jobs.status(job.job_id).done:
        fake.step()
        seen.append(jobs.status(job.job_id).status)
    assert seen == ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    fake.max_active_jobs = 1
    jobs.submit("one", records(3))
    with pytest.raises(MisconfigurationError, match="ServiceQuotaExceededException"):
        jobs.submit("two", records(3))


# ---- the adapter -----------------------------------------------------------------------------------------
def test_a_submission_writes_jsonl_and_joins_results_on_record_id(s3: Any) -> None:
    fake, adapter = make(s3)
    jobs: BatchEmbeddingJobs = adapter  # the adapter serves the port
    given = records(7)
    [job] = jobs.submit("sub-a", given)
    assert (job.name, job.status, job.record_count) == ("sub-a-1", "Submitted", 7)
    lines = s3.get_object(Bucket=BUCKET, Key="jobs/sub-a-1/input/7-records.jsonl")["Body"].read().decode().splitlines()
    first = json.loads(lines[0])
    assert first == {
        "recordId": "r0",
        "modelInput": {"inputText": "text number 0", "dimensions": 256, "normalize": True},
    }
    fake.run_until_done()
    done = jobs.status(job.job_id)
    assert done.status == "Completed" and done.processed_records == 7 and done.error_records == 0
    out_key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/sub-a-1/output/")["Contents"]
        if o["Key"].endswith(".jsonl.out")
    )
    output_order = [
        json.loads(x)["recordId"]
        for x in s3.get_object(Bucket=BUCKET, Key=out_key)["Body"].read().decode().splitlines()
    ]
    assert output_order != [r.record_id for r in given]  # shuffled, so only a join on recordId gets it right
    results = {r.record_id: r for r in jobs.results(done)}
    assert set(results) == {r.record_id for r in given}
    for record in given:
        assert results[record.record_id].vector == pytest.approx(fake_vector(record.text, 256))
        assert results[record.record_id].input_tokens is not None


def test_failed_records_are_reported_by_record_id_and_the_job_is_partially_completed(s3: Any) -> None:
    fake, jobs = make(s3)
    fake.runtime.fail("ValidationException", times=-1, when=lambda body: body["inputText"] == "text number 2")
    [job] = jobs.submit("partial", records(5))
    fake.run_until_done()
    done = jobs.status(job.job_id)
    assert done.status == "PartiallyCompleted" and done.error_records == 1
    results = {r.record_id: r for r in jobs.results(done)}
    assert results["r2"].vector is None and results["r2"].error is not None and results["r2"].error.startswith("400:")
    assert all(results[f"r{i}"].vector is not None for i in (0, 1, 3, 4))


def test_a_record_missing_from_the_output_is_reported(s3: Any) -> None:
    fake, jobs = make(s3)
    [job] = jobs.submit("missing", records(4))
    fake.run_until_done()
    [out] = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/missing-1/output/")["Contents"]
        if o["Key"].endswith(".out") and "manifest" not in o["Key"]
    ]
    kept = [
        line
        for line in s3.get_object(Bucket=BUCKET, Key=out)["Body"].read().decode().splitlines()
        if '"r3"' not in line
    ]
    s3.put_object(Bucket=BUCKET, Key=out, Body=("\n".join(kept) + "\n").encode())
    results = {r.record_id: r for r in jobs.results(jobs.status(job.job_id))}
    assert results["r3"].error == "no output for this record" and len(results) == 4


def test_large_submissions_split_into_near_equal_jobs_within_the_limits(s3: Any) -> None:
    fake, jobs = make(s3, limits=RecordLimits(min_records=3, max_records=10))
    submitted = jobs.submit("big", records(23))
    assert [(j.name, j.record_count) for j in submitted] == [("big-1", 8), ("big-2", 8), ("big-3", 7)]
    fake.run_until_done()
    ids = [r.record_id for job in submitted for r in jobs.results(jobs.status(job.job_id))]
    assert sorted(ids) == sorted(r.record_id for r in records(23))


def test_resubmitting_after_a_crash_creates_nothing_twice(s3: Any) -> None:
    fake, jobs = make(s3)
    first = jobs.submit("again", records(12))
    creates = sum(1 for op, _ in fake.calls if op == "CreateModelInvocationJob")
    second = jobs.submit("again", records(12))
    assert [j.job_id for j in second] == [j.job_id for j in first]
    assert sum(1 for op, _ in fake.calls if op == "CreateModelInvocationJob") == creates == 2
    assert [j.name for j in jobs.jobs("again")] == ["again-1", "again-2"]


def test_a_create_lost_in_flight_is_repeated_with_the_same_token(s3: Any) -> None:
    fake, jobs = make(s3)
    fake.fail("CreateModelInvocationJob", "ThrottlingException")  # retried by the policy
    [job] = jobs.submit("retry", records(3))
    fake.fail("CreateModelInvocationJob", "InternalServerException", times=-1)
    with pytest.raises(TransientError):
        jobs.submit("retry2", records(3))
    assert jobs.status(job.job_id).name == "retry-1"


def test_too_few_records_raise_before_anything_is_written(s3: Any) -> None:
    fake, jobs = make(s3)
    with pytest.raises(BatchTooSmallError) as caught:
        jobs.submit("tiny", records(2))
    assert caught.value.limits.source == "service-quotas"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/tiny")
    assert not fake.calls


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ([BatchRecord("a-1", "x")] * 3, "must match"),
        ([BatchRecord("a", "x"), BatchRecord("a", "y"), BatchRecord("b", "z")], "appears twice"),
    ],
)
def test_bad_record_ids_are_refused(s3: Any, bad: list[BatchRecord], words: str) -> None:
    _, jobs = make(s3)
    with pytest.raises(ValueError, match=words):
        jobs.submit("bad", bad)


def test_limits_come_from_service_quotas_else_the_documented_defaults(s3: Any) -> None:
    _, jobs = make(s3, limits=RecordLimits(min_records=1000, max_records=20_000))
    assert jobs.limits() == BatchLimits(1000, 20_000, "service-quotas")
    _, denied = make(s3, quotas=FakeQuotas({}, denied=True))
    assert denied.limits() == BatchLimits(100, 50_000, "documented defaults")
    _, unrelated = make(
        s3, quotas=FakeQuotas({"Minimum number of records per batch inference job for Claude 3 Haiku": 5})
    )
    assert unrelated.limits().source == "documented defaults"
    per_file = {
        "Records per batch inference job for Titan Text Embeddings V2": 50_000,
        "Records per input file per batch inference job for Titan Text Embeddings V2": 10_000,
    }
    _, tighter = make(s3, quotas=FakeQuotas(per_file))
    assert tighter.limits() == BatchLimits(100, 10_000, "service-quotas")  # one input file per job


def test_stop_moves_a_running_job_to_stopped_and_leaves_a_finished_one(s3: Any) -> None:
    fake, jobs = make(s3)
    [job] = jobs.submit("halt", records(3))
    jobs.stop(job.job_id)
    assert jobs.status(job.job_id).status == "Stopping"
    fake.step()
    stopped = jobs.status(job.job_id)
    assert stopped.status == "Stopped" and stopped.done and not stopped.has_results
    jobs.stop(job.job_id)  # already over: no error
    with pytest.raises(MisconfigurationError, match="Stopped: it has no results"):
        list(jobs.results(stopped))


def test_a_job_past_its_expiration_time_expires(s3: Any) -> None:
    clock = Clock()
    fake, jobs = make(s3, clock=clock)
    [job] = jobs.submit("late", records(3))
    fake.step()
    clock.now += 25 * 3600  # past the default 24 hours
    fake.step()
    expired = jobs.status(job.job_id)
    assert expired.status == "Expired" and "expiration" in expired.message


def test_a_malformed_input_line_fails_the_job_at_validation(s3: Any) -> None:
    fake, _ = make(s3)
    body = b"".join(b'{"recordId": "a%d", "modelInput": {"inputText": "x"}}\n' % i for i in range(3)) + b"not json\n"
    s3.put_object(Bucket=BUCKET, Key="bad/in.jsonl", Body=body)
    answer = fake.create_model_invocation_job(
        jobName="bad",
        roleArn=ROLE,
        modelId=c.TITAN_V2,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/bad/in.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/bad/out/"}},
    )
    fake.run_until_done()
    job = fake.get_model_invocation_job(jobIdentifier=answer["jobArn"])
    assert job["status"] == "Failed" and "Line 4" in job["message"]


@pytest.mark.parametrize(
    ("provider", "model", "dimensions", "expected"),
    [
        ("cohere", c.COHERE_V4, 512, lambda t: purposed_vector("search_document", t, 512)),
        ("cohere", "global.cohere.embed-v4:0", 1024, lambda t: purposed_vector("search_document", t, 1024)),
        ("nova", c.NOVA_MME, 384, lambda t: purposed_vector("GENERIC_INDEX", t, 384)),
        ("cohere", c.COHERE_EN_V3, 1024, lambda t: fake_vector(t, 1024)),
    ],
)
def test_each_model_runs_in_batch_as_a_document_with_its_own_body(
    s3: Any, provider: str, model: str, dimensions: int, expected: Any
) -> None:
    fake, jobs = make(s3, model=model, provider=provider, dimensions=dimensions)
    [job] = jobs.submit("models", records(3))
    fake.run_until_done()
    results = {r.record_id: r for r in jobs.results(jobs.status(job.job_id))}
    assert all(r.error is None for r in results.values()), results
    assert results["r1"].vector == pytest.approx(expected("text number 1"))


def test_split_records_refuses_limits_that_cannot_be_met() -> None:
    with pytest.raises(MisconfigurationError, match="cannot be split"):
        split_records(records(16), BatchLimits(min_records=10, max_records=15, source="test"))


def test_a_submission_again_returns_the_jobs_as_created_with_their_own_records(s3: Any) -> None:
    fake, jobs = make(s3)
    [first] = jobs.submit("changed", records(5))
    [again] = jobs.submit("changed", records(6))  # one more record since: not added to the existing job
    assert again.job_id == first.job_id and again.record_count == 5
    fake.run_until_done()
    assert sorted(r.record_id for r in jobs.results(jobs.status(again.job_id))) == [f"r{i}" for i in range(5)]
