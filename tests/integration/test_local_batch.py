"""Local mode's batch inference: the stand-in served over HTTP, reached by ordinary boto3 clients (as the CLI does).

boto3 serializes the calls from the botocore ``bedrock`` and ``service-quotas`` models and parses the answers
back, so a wire shape the stand-in got wrong fails here; the jobs embed with WordLlama over moto's S3.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from freshvec import constants as c
from freshvec.cli.batch import batch_jobs
from freshvec.cli.local_client import local_batch_clients
from freshvec.cli.stack import StackResources, make_client_factory
from freshvec.config import EmbeddingConfig, default_config
from freshvec.local.bedrock_server import LOCAL_BATCH_BUCKET, BedrockBatchServer, local_batch_outputs, start_local_batch
from freshvec.local.embedder import LocalEmbedder
from freshvec.local.moto_server import MotoServer
from freshvec.ports import BatchRecord, BatchTooSmallError
from freshvec.testing.botocore_shapes import assert_is_modeled_error

TOKEN = "local-batch-test-token"


@pytest.fixture
def served(moto: MotoServer) -> Iterator[BedrockBatchServer]:
    server = start_local_batch(moto.client("s3"), TOKEN, interval_s=0.05)
    try:
        yield server
    finally:
        server.stop()


def resources(moto: MotoServer, server: BedrockBatchServer, token: str = TOKEN) -> StackResources:
    return StackResources(
        stack_name="local",
        region=moto.region,
        outputs=local_batch_outputs(),
        config=default_config(),
        endpoint_url=moto.endpoint,
        control_url="http://127.0.0.1:1",
        control_token=token,
        batch_endpoint_url=server.url,
    )


def wait_done(jobs: Any, job_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.status(job_id)
        if job.done:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job.status}")


def test_a_local_migration_can_embed_in_batch_at_another_dimension(
    moto: MotoServer, served: BedrockBatchServer
) -> None:
    local = resources(moto, served)
    embedding = EmbeddingConfig(provider="local", model_id=c.LOCAL_WORDLLAMA, dimensions=128)
    jobs = batch_jobs(local, make_client_factory(moto.region, moto.endpoint, access_key=moto.access_key), embedding)
    assert jobs.limits().min_records == 10 and jobs.limits().source == "service-quotas"  # read over the wire
    words = ["sharks", "dinosaurs", "robots", "ghosts", "pirates"] * 3
    texts = {f"m{i}": f"a film about {word}" for i, word in enumerate(words)}
    [job] = jobs.submit("local-demo", [BatchRecord(k, v) for k, v in texts.items()])
    done = wait_done(jobs, job.job_id)
    assert done.status == "Completed" and done.processed_records == len(texts)
    results = {r.record_id: r.vector for r in jobs.results(done)}
    expected = LocalEmbedder(128).embed_documents(list(texts.values()))
    for key, vector in zip(texts, expected, strict=True):
        assert np.allclose(results[key], vector, atol=1e-6)
    listed = jobs.jobs("local-demo")
    assert [j.name for j in listed] == ["local-demo-1"] and listed[0].status == "Completed"
    assert "Contents" in moto.client("s3").list_objects_v2(Bucket=LOCAL_BATCH_BUCKET, Prefix="jobs/local-demo-1/")


def test_the_record_minimum_comes_back_through_service_quotas(moto: MotoServer, served: BedrockBatchServer) -> None:
    embedding = EmbeddingConfig(provider="local", model_id=c.LOCAL_WORDLLAMA, dimensions=256)
    jobs = batch_jobs(
        resources(moto, served), make_client_factory(moto.region, moto.endpoint, access_key=moto.access_key), embedding
    )
    with pytest.raises(BatchTooSmallError, match="below the batch inference minimum of 10"):
        jobs.submit("few", [BatchRecord(f"r{i}", "x") for i in range(3)])


def test_service_errors_reach_boto3_as_the_modeled_client_errors(moto: MotoServer, served: BedrockBatchServer) -> None:
    bedrock, _ = local_batch_clients(resources(moto, served))
    with pytest.raises(ClientError) as caught:
        bedrock.get_model_invocation_job(jobIdentifier="aaaaaaaaaaaa")
    assert_is_modeled_error("bedrock", "GetModelInvocationJob", caught.value)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        bedrock.create_model_invocation_job(
            jobName="nope",
            roleArn="arn:aws:iam::123456789012:role/x",
            modelId=c.TITAN_V2,  # local mode offers only WordLlama
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{LOCAL_BATCH_BUCKET}/x.jsonl"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{LOCAL_BATCH_BUCKET}/out/"}},
        )
    assert_is_modeled_error("bedrock", "CreateModelInvocationJob", caught.value)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_requests_without_the_token_are_refused(moto: MotoServer, served: BedrockBatchServer) -> None:
    anonymous = boto3.client(
        "bedrock",
        endpoint_url=served.url,
        region_name=moto.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with pytest.raises(ClientError) as caught:
        anonymous.list_model_invocation_jobs()
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    wrong, _ = local_batch_clients(resources(moto, served, token="not-the-token"))
    with pytest.raises(ClientError):
        wrong.list_model_invocation_jobs()
