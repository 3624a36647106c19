"""``freshvec.cli.batch.batch_jobs``: against AWS, the stack's batch bucket and role with the account's Bedrock,
S3 and Service Quotas clients; locally (tests/integration/test_local_batch.py) the stand-in's."""

from __future__ import annotations

from typing import Any

import pytest

from freshvec import constants as c
from freshvec.cli.batch import JOB_PREFIX, batch_jobs
from freshvec.cli.errors import OperatorError
from freshvec.cli.stack import StackResources
from freshvec.config import EmbeddingConfig, default_config

ROLE = "arn:aws:iam::123456789012:role/freshvec-BatchInferenceServiceRole"


def _resources(outputs: dict[str, str]) -> StackResources:
    return StackResources(stack_name="freshvec", region="us-east-1", outputs=outputs, config=default_config())


def test_against_aws_the_adapter_uses_the_stack_outputs_and_the_account_clients() -> None:
    asked: list[str] = []

    def clients(service: str) -> Any:
        asked.append(service)
        return f"<{service} client>"

    resources = _resources({c.OUT_BATCH_BUCKET: "freshvec-batchinference-jobfiles", c.OUT_BATCH_ROLE_ARN: ROLE})
    embedding = EmbeddingConfig(provider="cohere", model_id="us.cohere.embed-v4:0", dimensions=1536)
    jobs = batch_jobs(resources, clients, embedding)
    assert sorted(asked) == ["bedrock", "s3", "service-quotas"]
    assert (jobs.location.bucket, jobs.location.prefix, jobs.location.role_arn) == (
        "freshvec-batchinference-jobfiles",
        JOB_PREFIX,
        ROLE,
    )
    assert (jobs.model_id, jobs.dimensions, jobs.max_input_chars) == ("us.cohere.embed-v4:0", 1536, 50_000)


def test_a_stack_without_the_batch_outputs_says_so() -> None:
    with pytest.raises(OperatorError, match="BatchBucketName"):
        batch_jobs(_resources({}), lambda service: object(), EmbeddingConfig())
