"""The Kinesis Data Stream between the forwarder and the sink, encrypted with the stack key."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from constructs import Construct

from freshvec.config import PipelineConfig


class ChangeStream(Construct):
    """One record per row change, partitioned by the row's primary key so per-key order holds."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        settings = config.stream
        provisioned = settings.mode == "PROVISIONED"
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_mode=kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND,
            shard_count=settings.shard_count if provisioned else None,
            retention_period=Duration.hours(settings.retention_hours),
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=key,
            # Changes in flight are replayable from Keyspaces for 24 h only through the forwarder's checkpoints;
            # the stream itself holds nothing that outlives the stack.
            removal_policy=RemovalPolicy.DESTROY,
        )
