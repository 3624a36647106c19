"""The batch inference jobs of one generation's model, against AWS or a running local stack.

``batch_jobs`` wires ``adapters.bedrock_batch.BedrockBatchJobs`` to the stack's batch bucket and service role
(stack outputs ``BatchBucketName``/``BatchRoleArn``) and reads the per-model record limits from Service Quotas;
locally the same adapter talks to ``freshvec local up``'s stand-in through ordinary boto3 clients.
"""

from __future__ import annotations

from typing import Any

from freshvec.adapters.bedrock_batch import BatchLocation, BedrockBatchJobs
from freshvec.cli.local_client import local_batch_clients
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.config import EmbeddingConfig

JOB_PREFIX = "jobs"  # key prefix of job files in the batch bucket (its lifecycle rule expires them)


def batch_jobs(resources: StackResources, clients: ClientFactory, embedding: EmbeddingConfig) -> BedrockBatchJobs:
    """The batch adapter for ``embedding``'s model; S3 through ``clients`` (moto locally)."""
    bedrock: Any
    quotas: Any
    if resources.is_local:
        bedrock, quotas = local_batch_clients(resources)
    else:
        bedrock, quotas = clients("bedrock"), clients("service-quotas")
    location = BatchLocation(resources.batch_bucket, JOB_PREFIX, resources.batch_role_arn)
    return BedrockBatchJobs(
        bedrock,
        clients("s3"),
        location,
        provider=embedding.provider,
        model_id=embedding.model_id,
        dimensions=embedding.dimensions,
        normalize=embedding.normalize,
        quotas_client=quotas,
    )
