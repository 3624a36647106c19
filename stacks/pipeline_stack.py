"""The freshvec stack: source table -> forwarder -> change stream -> sink -> vector store, plus monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from freshvec import constants as c
from freshvec.config import PipelineConfig, check_deployable
from stacks import bundling
from stacks.acknowledgments import acknowledge_findings
from stacks.batch_inference import BatchInference
from stacks.change_stream import ChangeStream
from stacks.forwarder import Forwarder
from stacks.index_pointer import IndexPointer
from stacks.index_settings import IndexSettings
from stacks.monitoring import Monitoring
from stacks.operator_policy import OperatorPolicy
from stacks.postgres_source import PostgresSource
from stacks.sink import Sink
from stacks.source_table import SourceTable
from stacks.vector_store import VectorStore

KEY_PENDING_WINDOW = Duration.days(7)


class PipelineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description=(
                "freshvec: keeps an S3 Vectors index fresh while a PostgreSQL table changes"
                if config.source.kind == "postgres"
                else "freshvec: keeps an S3 Vectors index fresh while an Amazon Keyspaces table changes"
            ),
            **kwargs,
        )
        # Fail on config the stack cannot deploy before any asset is built.
        check_deployable(config)
        self.config = config
        retain = config.removal_policy == "retain"
        data_removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY

        # One key for everything the stack stores; kept when the data it protects is kept.
        self.key = kms.Key(
            self,
            "Key",
            description=f"freshvec {config.stack_name}: table, stream, vectors, checkpoints, queues, alarms",
            enable_key_rotation=True,
            removal_policy=data_removal,
            pending_window=KEY_PENDING_WINDOW,
        )
        code = bundling.function_code()
        layer = bundling.dependencies_layer(self, "Dependencies")

        postgres = config.source.kind == "postgres"
        # PostgreSQL: the database is the operator's (docs/deploy.md); no table construct.
        self.source = (
            None if postgres else SourceTable(self, "Source", config=config, key=self.key, removal=data_removal)
        )
        self.change_stream = ChangeStream(self, "ChangeStream", config=config, key=self.key)
        self.vectors = VectorStore(self, "Vectors", config=config, key=self.key, removal=data_removal)
        self.index_settings = IndexSettings(
            self, "IndexSettings", config=config, vectors=self.vectors, code=code, layer=layer
        )
        self.forwarder = Forwarder(
            self,
            "Forwarder",
            config=config,
            source=self.source,
            stream=self.change_stream.stream,
            key=self.key,
            code=code,
            layer=layer,
        )
        self.postgres = (
            PostgresSource(self, "Postgres", config=config, function=self.forwarder.function) if postgres else None
        )
        self.sink = Sink(
            self,
            "Sink",
            config=config,
            stream=self.change_stream.stream,
            checkpoints=self.forwarder.checkpoints,
            vectors=self.vectors,
            key=self.key,
            code=code,
            layer=layer,
            removal=data_removal,
        )
        self.batch = BatchInference(self, "BatchInference", config=config, key=self.key, removal=data_removal)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            key=self.key,
            forwarder=self.forwarder.function,
            sink=self.sink.function,
            dlq=self.sink.dlq,
            on_failure_bucket=self.sink.on_failure_bucket,
        )
        self.pointer = IndexPointer(self, "IndexPointer", config=config, vectors=self.vectors, key=self.key)
        self.operator = OperatorPolicy(
            self,
            "Operator",
            config=config,
            source=self.source,
            stream=self.change_stream.stream,
            vectors=self.vectors,
            dlq=self.sink.dlq,
            on_failure_bucket=self.sink.on_failure_bucket,
            checkpoints=self.forwarder.checkpoints,
            batch=self.batch,
            key=self.key,
            pointer=self.pointer,
        )
        self._outputs()
        acknowledge_findings(
            self,
            config,
            forwarder=self.forwarder,
            sink=self.sink,
            operator=self.operator,
            change_stream=self.change_stream,
            batch=self.batch,
            pointer=self.pointer,
        )

    def _outputs(self) -> None:
        """Everything the CLI needs, under the names in freshvec/constants.py (its only source of names)."""
        values = {
            c.OUT_REGION: Aws.REGION,
            c.OUT_KEYSPACE: self.config.keyspace,
            c.OUT_TABLE: self.config.table,
            c.OUT_STREAM_NAME: self.change_stream.stream.stream_name,
            c.OUT_STREAM_ARN: self.change_stream.stream.stream_arn,
            c.OUT_VECTOR_BUCKET: self.vectors.bucket_name,
            c.OUT_VECTOR_INDEX: self.vectors.index_name,
            c.OUT_VECTOR_INDEX_ARN: self.vectors.index_arn,
            c.OUT_SINK_DLQ_URL: self.sink.dlq.queue_url,
            c.OUT_ON_FAILURE_BUCKET: self.sink.on_failure_bucket.bucket_name,
            c.OUT_CHECKPOINT_TABLE: self.forwarder.checkpoints.table_name,
            c.OUT_FORWARDER_FUNCTION: self.forwarder.function.function_name,
            c.OUT_SINK_FUNCTION: self.sink.function.function_name,
            c.OUT_DASHBOARD: self.monitoring.dashboard.dashboard_name,
            c.OUT_OPERATOR_POLICY_ARN: self.operator.policy.managed_policy_arn,
            c.OUT_INDEX_POINTER_PARAMETER: self.pointer.parameter_name,
            c.OUT_READER_POLICY_ARN: self.pointer.reader_policy.managed_policy_arn,
            c.OUT_BATCH_BUCKET: self.batch.bucket.bucket_name,
            c.OUT_BATCH_ROLE_ARN: self.batch.role.role_arn,
            c.OUT_PIPELINE_CONFIG: self.config.to_json(),
        }
        for name, value in values.items():
            CfnOutput(self, name, value=value)
