"""Which Bedrock batch inference adapter serves a migration: the stack's (role, bucket) on AWS, the local
stand-in over moto's S3 in local mode."""

from __future__ import annotations

from typing import Any

from freshvec.cli.errors import OperatorError
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.config import PipelineConfig
from freshvec.ports import BatchEmbeddingJobs


def batch_jobs(resources: StackResources, clients: ClientFactory, generation: PipelineConfig) -> BatchEmbeddingJobs:
    raise OperatorError(
        "Bedrock batch inference is not wired into this build yet; use `freshvec migrate start --path ondemand`"
    )


__all__ = ["batch_jobs"]
_ = Any
