"""The forwarder: a scheduled Lambda that pulls the source's changes into Kinesis, with its lease table.

The source is the Keyspaces table's CDC stream, or (``source`` None) a PostgreSQL replication slot, whose
network placement and password grant ``stacks.postgres_source`` adds.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from freshvec import constants as c
from freshvec.adapters.dynamodb import ATTR_EXPIRES_AT
from freshvec.config import PipelineConfig
from stacks import constants as k
from stacks.function import grant_key_use, python_function
from stacks.source_table import SourceTable

# Keyspaces CDC permissions (https://docs.aws.amazon.com/keyspaces/latest/devguide/configure-cdc-permissions.html):
# reading a stream takes GetStream/GetShardIterator/GetRecords on the stream ARN; listing and viewing streams also
# takes read access to the system keyspace (cassandra:Select on ".../keyspace/system*").
KEYSPACES_STREAM_READ_ACTIONS = ("cassandra:GetStream", "cassandra:GetShardIterator", "cassandra:GetRecords")
KEYSPACES_SYSTEM_READ_ACTIONS = ("cassandra:Select",)
# ListStreams has no resource type in IAM: it can only be granted on "*".
KEYSPACES_LIST_STREAMS_ACTION = "cassandra:ListStreams"
# The lease/checkpoint store (freshvec/adapters/dynamodb.py) calls only Query, PutItem and UpdateItem.
CHECKPOINT_TABLE_ACTIONS = ("dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem")
# The Kinesis writer (freshvec/adapters/kinesis.py) calls only PutRecords.
FORWARD_ACTIONS = ("kinesis:PutRecords",)


class Forwarder(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        source: SourceTable | None,
        stream: kinesis.IStream,
        key: kms.IKey,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.forwarder
        self.checkpoints = dynamodb.Table(
            self,
            "Checkpoints",
            partition_key=dynamodb.Attribute(name=c.CHECKPOINT_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=c.CHECKPOINT_SK, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The sink's tombstones in the same table expire by themselves (freshvec.adapters.dynamodb).
            time_to_live_attribute=ATTR_EXPIRES_AT,
            # Checkpoints only matter while the stack runs: a new stack starts from the stream's trim horizon.
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.function = python_function(
            self,
            service=c.SERVICE_FORWARDER,
            description=(
                "freshvec forwarder: Keyspaces CDC stream -> Kinesis"
                if source is not None
                else "freshvec forwarder: PostgreSQL replication slot -> Kinesis"
            ),
            handler=k.FORWARDER_HANDLER,
            code=code,
            layer=layer,
            memory_mb=settings.memory_mb,
            timeout_s=settings.timeout_s,
            environment={
                c.ENV_CONFIG: config.to_json(),
                c.ENV_STREAM_NAME: stream.stream_name,
                c.ENV_CHECKPOINT_TABLE: self.checkpoints.table_name,
            },
            reserved_concurrency=settings.reserved_concurrency,
        )
        # A failed run is retried by the next scheduled run from its checkpoints; async retries would only overlap.
        self.function.configure_async_invoke(retry_attempts=0)
        self._grant(source, stream, key)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"Run the freshvec forwarder every {settings.schedule_minutes} minute(s)",
            schedule=events.Schedule.rate(Duration.minutes(settings.schedule_minutes)),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )

    def _grant(self, source: SourceTable | None, stream: kinesis.IStream, key: kms.IKey) -> None:
        role = self.function.role
        assert role is not None  # python_function always creates one
        if source is not None:
            self._grant_keyspaces(role, source)
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="ForwardChanges", actions=list(FORWARD_ACTIONS), resources=[stream.stream_arn])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="LeaseAndCheckpointShards",
                actions=list(CHECKPOINT_TABLE_ACTIONS),
                resources=[self.checkpoints.table_arn],
            )
        )
        grant_key_use(role, key, *k.KMS_PRODUCER_ACTIONS, *k.KMS_DYNAMODB_ACTIONS)

    @staticmethod
    def _grant_keyspaces(role: iam.IRole, source: SourceTable) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadThisTablesCdcStreams",
                actions=list(KEYSPACES_STREAM_READ_ACTIONS),
                resources=[source.stream_arn_pattern],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="FindCdcStreams", actions=[KEYSPACES_LIST_STREAMS_ACTION], resources=["*"])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ViewCdcStreamsThroughSystemKeyspace",
                actions=list(KEYSPACES_SYSTEM_READ_ACTIONS),
                resources=[source.system_keyspace_arn],
            )
        )
