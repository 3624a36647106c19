"""The sink: a Lambda behind a Kinesis event source mapping, its poison-record DLQ and on-failure bucket."""

from __future__ import annotations

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from freshvec import constants as c
from freshvec.config import PipelineConfig, check_deployable_embedding
from stacks import constants as k
from stacks.bedrock_access import grant_invoke
from stacks.function import grant_key_use, python_function
from stacks.private_bucket import private_bucket
from stacks.vector_store import VectorStore

# GetIndex: the sink checks once per container that the index's dimension matches the embedding model.
VECTOR_WRITE_ACTIONS = (
    "s3vectors:PutVectors",
    "s3vectors:GetVectors",
    "s3vectors:DeleteVectors",
    "s3vectors:GetIndex",
)
# What the Kinesis event source mapping calls with the function's role to read the stream with a standard iterator
# (https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-create.html). SubscribeToShard is only for
# enhanced fan-out consumers, which this mapping does not use; CDK's KinesisEventSource would also add ListStreams
# and DescribeStreamConsumer, so the mapping is declared directly with exactly these.
ESM_STREAM_READ_ACTIONS = (
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
)
# The DLQ adapter (freshvec/adapters/sqs.py) calls SendMessageBatch, authorized by sqs:SendMessage.
DLQ_SEND_ACTIONS = ("sqs:SendMessage",)
# Tombstones (freshvec/adapters/dynamodb.py, DynamoDbTombstones): a conditional PutItem per tombstone (it only
# rises; https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html), read with BatchGetItem.
TOMBSTONE_ACTIONS = ("dynamodb:PutItem", "dynamodb:BatchGetItem")


class Sink(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        stream: kinesis.IStream,
        checkpoints: dynamodb.ITable,
        vectors: VectorStore,
        key: kms.IKey,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        removal: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        check_deployable_embedding(config)
        settings = config.sink
        self.dlq = sqs.Queue(
            self,
            "PoisonRecords",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(settings.dlq_retention_days),
        )
        self.on_failure_bucket = private_bucket(
            self,
            "FailedBatches",
            key=key,
            removal=removal,
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireFailedBatches", expiration=Duration.days(k.ON_FAILURE_EXPIRY_DAYS))
            ],
            # Request metrics make each object Lambda delivers a PutRequests data point (alarmed in monitoring);
            # the prefix leaves out the copies `freshvec redrive` makes under "redriven/".
            metrics=[s3.BucketMetrics(id=k.ON_FAILURE_METRICS_FILTER_ID, prefix=k.ON_FAILURE_LAMBDA_PREFIX)],
        )
        self.function = python_function(
            self,
            service=c.SERVICE_SINK,
            description="freshvec sink: Kinesis -> Bedrock embeddings -> S3 Vectors",
            handler=k.SINK_HANDLER,
            code=code,
            layer=layer,
            memory_mb=settings.memory_mb,
            timeout_s=settings.timeout_s,
            environment={
                c.ENV_CONFIG: config.to_json(),
                c.ENV_VECTOR_BUCKET: vectors.bucket_name,
                c.ENV_VECTOR_INDEX: vectors.index_name,
                c.ENV_DLQ_URL: self.dlq.queue_url,
                c.ENV_CHECKPOINT_TABLE: checkpoints.table_name,
            },
            reserved_concurrency=settings.reserved_concurrency,
        )
        self._grant(config, vectors, key)
        self._grant_tombstones(checkpoints, key)
        self._grant_stream_read(stream, key)
        self.event_source = self.function.add_event_source_mapping(
            "KinesisEventSource",
            event_source_arn=stream.stream_arn,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=settings.batch_size,
            max_batching_window=Duration.seconds(settings.batching_window_s),
            parallelization_factor=settings.parallelization_factor,
            retry_attempts=settings.retry_attempts,
            max_record_age=Duration.seconds(settings.max_record_age_s),
            bisect_batch_on_error=settings.bisect_on_error,
            report_batch_item_failures=True,
            on_failure=FailedBatchesBucket(self.on_failure_bucket, key),
        )

    def _grant(self, config: PipelineConfig, vectors: VectorStore, key: kms.IKey) -> None:
        role = self.function.role
        assert role is not None  # python_function always creates one
        grant_invoke(role, "EmbedWithTheGenerationModels", config)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteTheLiveIndexes", actions=list(VECTOR_WRITE_ACTIONS), resources=list(vectors.index_arns)
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="ParkPoisonRecords", actions=list(DLQ_SEND_ACTIONS), resources=[self.dlq.queue_arn])
        )
        grant_key_use(role, key, *k.KMS_SQS_SEND_ACTIONS)

    def _grant_tombstones(self, checkpoints: dynamodb.ITable, key: kms.IKey) -> None:
        role = self.function.role
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="KeepTombstones", actions=list(TOMBSTONE_ACTIONS), resources=[checkpoints.table_arn]
            )
        )
        grant_key_use(role, key, *k.KMS_DYNAMODB_ACTIONS)

    def _grant_stream_read(self, stream: kinesis.IStream, key: kms.IKey) -> None:
        role = self.function.role
        assert role is not None
        statement = iam.PolicyStatement(
            sid="ReadChangeStream", actions=list(ESM_STREAM_READ_ACTIONS), resources=[stream.stream_arn]
        )
        role.add_to_principal_policy(statement)
        # Consumers of a KMS-encrypted stream need kms:Decrypt
        # (https://docs.aws.amazon.com/streams/latest/dev/permissions-user-key-KMS.html).
        grant_key_use(role, key, *k.KMS_CONSUMER_ACTIONS)


@jsii.implements(lambda_.IEventSourceDlq)
class FailedBatchesBucket:
    """The S3 on-failure destination, granting only what Lambda needs to write there.

    CDK's ``S3OnFailureDestination`` grants read/write/delete on the whole bucket; Lambda needs
    ``s3:PutObject`` (and ``s3:ListBucket``) plus the key to encrypt the object.
    """

    def __init__(self, bucket: s3.IBucket, key: kms.IKey) -> None:
        self._bucket = bucket
        self._key = key

    def bind(
        self, _target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction
    ) -> lambda_.DlqDestinationConfig:
        role = target_handler.role
        assert role is not None  # python_function always creates one
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteFailedBatches", actions=["s3:PutObject"], resources=[self._bucket.arn_for_objects("*")]
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="FindFailedBatches", actions=["s3:ListBucket"], resources=[self._bucket.bucket_arn])
        )
        grant_key_use(role, self._key, *k.KMS_PRODUCER_ACTIONS)
        return lambda_.DlqDestinationConfig(destination=self._bucket.bucket_arn)
