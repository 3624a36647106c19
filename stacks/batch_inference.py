"""Bedrock batch inference for migrations: the bucket its job files live in and the service role it assumes.

``freshvec migrate start`` writes each job's JSONL input here and Bedrock writes the output next to it
(``freshvec.adapters.bedrock_batch``). The bucket is encrypted with the stack key, TLS-only, private, and its
files expire (a job runs at most 168 hours; the results are applied long before the expiry). The role is the
one Bedrock assumes to run the jobs: it trusts bedrock.amazonaws.com only for this account's batch jobs in this
Region (aws:SourceAccount, aws:SourceArn: https://docs.aws.amazon.com/bedrock/latest/userguide/batch-iam-sr.html)
and may read and write this bucket's objects, use the stack key for them, and invoke the configured generations'
models — nothing else.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from freshvec.config import PipelineConfig
from stacks import constants as k
from stacks.bedrock_access import grant_invoke
from stacks.function import grant_key_use
from stacks.private_bucket import private_bucket

# The batch inference service role reads inputs (GetObject, ListBucket) and writes outputs (PutObject)
# (https://docs.aws.amazon.com/bedrock/latest/userguide/batch-iam-sr.html#batch-iam-sr-identity).
READ_INPUT_ACTIONS = ("s3:GetObject",)
LIST_INPUT_ACTIONS = ("s3:ListBucket",)
WRITE_OUTPUT_ACTIONS = ("s3:PutObject",)
# SSE-KMS: reading takes kms:Decrypt, writing kms:GenerateDataKey
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html).
JOB_FILE_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class BatchInference(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, key: kms.IKey, removal: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = private_bucket(
            self,
            "JobFiles",
            key=key,
            removal=removal,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireJobFiles",
                    expiration=Duration.days(k.BATCH_FILES_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        jobs_here = f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:model-invocation-job/*"
        self.job_arns = jobs_here
        self.role = iam.Role(
            self,
            "ServiceRole",
            description=f"freshvec {config.stack_name}: assumed by Amazon Bedrock to run batch inference jobs",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnEquals": {"aws:SourceArn": jobs_here},
                },
            ),
        )
        own_account = {"StringEquals": {"aws:ResourceAccount": Aws.ACCOUNT_ID}}
        for sid, actions, resource in (
            ("ReadJobInputs", READ_INPUT_ACTIONS, self.bucket.arn_for_objects("*")),
            ("ListJobInputs", LIST_INPUT_ACTIONS, self.bucket.bucket_arn),
            ("WriteJobOutputs", WRITE_OUTPUT_ACTIONS, self.bucket.arn_for_objects("*")),
        ):
            self.role.add_to_principal_policy(
                iam.PolicyStatement(sid=sid, actions=list(actions), resources=[resource], conditions=own_account)
            )
        grant_key_use(self.role, key, *JOB_FILE_KEY_ACTIONS)
        grant_invoke(self.role, "InvokeGenerationModels", config)
