"""The managed policy an operator attaches to run the freshvec CLI against this stack, and nothing more.

Each statement serves named CLI commands (freshvec/cli/*.py) and is scoped to this stack's resources. The
encrypted stores the CLI touches (Kinesis stream, SQS DLQ, on-failure bucket, checkpoint table) share the stack
key, so the policy also names the KMS actions those calls need on that one key. The Keyspaces table's key is
used by Keyspaces through the grant made when the table was created, so CQL reads and writes need no KMS
permission of the caller (https://docs.aws.amazon.com/keyspaces/latest/devguide/encryption.customermanaged.html).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from freshvec.config import PipelineConfig
from stacks.batch_inference import BatchInference
from stacks.bedrock_access import generation_embeddings, invoke_statements
from stacks.index_pointer import IndexPointer
from stacks.postgres_source import SECRET_ACTIONS, SECRET_KEY_ACTIONS
from stacks.source_table import SourceTable
from stacks.vector_store import VectorStore

# CQL through the SigV4 plugin (load writes rows; backfill, redrive send, reconcile and status read them):
# cassandra:Modify and cassandra:Select on the table, and cassandra:Select on the system keyspaces every driver reads
# on connect
# (https://docs.aws.amazon.com/keyspaces/latest/devguide/security_iam_service-with-iam.html).
TABLE_ACTIONS = ("cassandra:Modify", "cassandra:Select")
SYSTEM_KEYSPACE_ACTIONS = ("cassandra:Select",)
# backfill, redrive send and reconcile re-send changes with PutRecords; a producer on a KMS-encrypted stream needs
# kms:GenerateDataKey (https://docs.aws.amazon.com/streams/latest/dev/permissions-user-key-KMS.html).
STREAM_ACTIONS = ("kinesis:PutRecords",)
# query reads the index (QueryVectors); reconcile lists it (ListVectors) and, with redrive send, reads the stored
# version of rows that are gone (GetVectors); status counts it (ListVectors) and query checks its dimension (GetIndex).
INDEX_ACTIONS = ("s3vectors:GetIndex", "s3vectors:GetVectors", "s3vectors:ListVectors", "s3vectors:QueryVectors")
# query embeds the text with the configured model(s): stacks/bedrock_access.py.
# migrate start/status/finish run Bedrock batch inference jobs (freshvec/adapters/bedrock_batch.py): Create, Get and
# Stop act on model-invocation-job resources, List has no resource type, and creating a job passes the batch
# service role to Bedrock (https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-permissions.html,
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html).
BATCH_JOB_ACTIONS = (
    "bedrock:CreateModelInvocationJob",
    "bedrock:GetModelInvocationJob",
    "bedrock:StopModelInvocationJob",
)
BATCH_LIST_ACTIONS = ("bedrock:ListModelInvocationJobs",)
PASS_ROLE_ACTIONS = ("iam:PassRole",)
# ... they write each job's input and read its output in the batch bucket (SSE-KMS: the stack key, below) ...
BATCH_FILE_ACTIONS = ("s3:GetObject", "s3:PutObject")
BATCH_LIST_FILES_ACTIONS = ("s3:ListBucket",)
# ... and read the per-model records-per-job quotas; Service Quotas reads define no resource type
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_servicequotas.html).
QUOTA_ACTIONS = ("servicequotas:ListServiceQuotas",)
# redrive list/show/send and status: ReceiveMessage, ChangeMessageVisibilityBatch (sqs:ChangeMessageVisibility),
# DeleteMessage, GetQueueAttributes; receiving from an encrypted queue takes kms:Decrypt
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html).
DLQ_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
)
# redrive lists and reads on-failure objects and moves them under "redriven/" (CopyObject = GetObject on the
# source + PutObject on the copy, then DeleteObject); SSE-KMS reads take kms:Decrypt and writes
# kms:GenerateDataKey (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html).
ON_FAILURE_BUCKET_ACTIONS = ("s3:ListBucket",)
ON_FAILURE_OBJECT_ACTIONS = ("s3:DeleteObject", "s3:GetObject", "s3:PutObject")
# status reads the forwarder's checkpoints.
CHECKPOINT_ACTIONS = ("dynamodb:Query", "dynamodb:Scan")
# status reads lag metrics; CloudWatch metric reads define no resource type, so they take Resource "*"
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html).
METRIC_ACTIONS = ("cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics")
# every command resolves the stack's outputs first.
STACK_ACTIONS = ("cloudformation:DescribeStacks",)
# every command that reads the index resolves the active generation (GetParameter); migrate cutover, rollback and
# finish rewrite the pointer (PutParameter).
POINTER_ACTIONS = ("ssm:GetParameter", "ssm:PutParameter")
KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class OperatorPolicy(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        source: SourceTable | None,
        stream: kinesis.IStream,
        vectors: VectorStore,
        dlq: sqs.IQueue,
        on_failure_bucket: s3.IBucket,
        checkpoints: dynamodb.ITable,
        batch: BatchInference,
        key: kms.IKey,
        pointer: IndexPointer,
    ) -> None:
        super().__init__(scope, construct_id)
        statements = [
            ("ReadStackOutputs", STACK_ACTIONS, [Aws.STACK_ID]),
            *(
                [
                    ("ReadAndWriteTheTable", TABLE_ACTIONS, [source.table_arn]),
                    ("ReadSystemKeyspaces", SYSTEM_KEYSPACE_ACTIONS, [source.system_keyspace_arn]),
                ]
                if source is not None
                else _postgres_statements(config)
            ),
            ("ResendChanges", STREAM_ACTIONS, [stream.stream_arn]),
            ("ReadTheIndexes", INDEX_ACTIONS, list(vectors.index_arns)),
            ("ReadAndSwitchTheIndexPointer", POINTER_ACTIONS, [pointer.parameter.parameter_arn]),
            ("RedrivePoisonRecords", DLQ_ACTIONS, [dlq.queue_arn]),
            ("ListFailedBatches", ON_FAILURE_BUCKET_ACTIONS, [on_failure_bucket.bucket_arn]),
            ("RedriveFailedBatches", ON_FAILURE_OBJECT_ACTIONS, [on_failure_bucket.arn_for_objects("*")]),
            ("ReadCheckpoints", CHECKPOINT_ACTIONS, [checkpoints.table_arn]),
            ("ReadPipelineMetrics", METRIC_ACTIONS, ["*"]),
            ("UseTheStackKey", KEY_ACTIONS, [key.key_arn]),
            ("RunBatchJobs", BATCH_JOB_ACTIONS, [batch.job_arns]),
            ("ListBatchJobs", BATCH_LIST_ACTIONS, ["*"]),
            ("WriteAndReadBatchJobFiles", BATCH_FILE_ACTIONS, [batch.bucket.arn_for_objects("*")]),
            ("ListBatchJobFiles", BATCH_LIST_FILES_ACTIONS, [batch.bucket.bucket_arn]),
            ("ReadBatchQuotas", QUOTA_ACTIONS, ["*"]),
        ]
        pass_role = iam.PolicyStatement(
            sid="PassTheBatchRoleToBedrock",
            actions=list(PASS_ROLE_ACTIONS),
            resources=[batch.role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
        )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"freshvec {config.stack_name}: what the freshvec CLI needs to operate this stack",
            statements=[
                *(
                    iam.PolicyStatement(sid=sid, actions=list(actions), resources=resources)
                    for sid, actions, resources in statements
                ),
                *invoke_statements("EmbedQueries", generation_embeddings(config)),
                pass_role,
            ],
        )


def _postgres_statements(config: PipelineConfig) -> list[tuple[str, tuple[str, ...], list[str]]]:
    """load and backfill connect to PostgreSQL with the password in the configured secret (SQL needs no IAM)."""
    connection = config.postgres.connection
    if connection.password_secret_arn is None:
        return []
    found = [("ReadTheDatabasePassword", SECRET_ACTIONS, [connection.password_secret_arn])]
    if connection.password_secret_kms_key_arn is not None:
        found.append(("DecryptTheDatabasePassword", SECRET_KEY_ACTIONS, [connection.password_secret_kms_key_arn]))
    return found
