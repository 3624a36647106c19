"""The index pointer: an SSM parameter naming the generation readers use, and the policy a reader needs.

``freshvec migrate cutover``/``rollback`` rewrite the parameter (PutParameter: one atomic write); the CLI, local
mode and applications read it (GetParameter, cached for ``POINTER_CACHE_TTL_S``; docs/migrations.md shows an
application's reader). The template sets the value only from the config's generations, so a deploy that does not
change them never undoes a switch. A String parameter: the pointer holds index and model names, nothing secret,
and CloudFormation cannot create a SecureString
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ssm-parameter.html).

``ReaderPolicy`` is what an application that queries the pipeline needs: read the pointer, query the live
indexes (QueryVectors; with a filter or metadata also GetVectors,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-access-management.html), embed queries with
the live models, and decrypt with the stack key (the indexes are SSE-KMS).
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from freshvec.config import PipelineConfig
from freshvec.generations import initial_pointer, pointer_parameter_name
from stacks.bedrock_access import generation_embeddings, invoke_statements
from stacks.vector_store import VectorStore

POINTER_READ_ACTIONS = ("ssm:GetParameter",)
QUERY_ACTIONS = ("s3vectors:GetVectors", "s3vectors:QueryVectors")
KEY_READ_ACTIONS = ("kms:Decrypt",)


class IndexPointer(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, vectors: VectorStore, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        name = pointer_parameter_name(config)
        self.parameter = ssm.StringParameter(
            self,
            "Parameter",
            parameter_name=name,
            description=f"freshvec {config.stack_name}: the index generation readers use (freshvec migrate)",
            string_value=initial_pointer(config, vectors.bucket_name).to_json(),
            tier=ssm.ParameterTier.STANDARD,
        )
        self.parameter_name = name
        self.reader_policy = iam.ManagedPolicy(
            self,
            "ReaderPolicy",
            description=f"freshvec {config.stack_name}: what an application needs to query the active generation",
            statements=[
                iam.PolicyStatement(sid="ReadTheIndexPointer", actions=list(POINTER_READ_ACTIONS),
                                    resources=[self.parameter.parameter_arn]),
                iam.PolicyStatement(sid="QueryTheLiveIndexes", actions=list(QUERY_ACTIONS),
                                    resources=list(vectors.index_arns)),
                *invoke_statements("EmbedQueries", generation_embeddings(config)),
                iam.PolicyStatement(sid="DecryptTheIndexes", actions=list(KEY_READ_ACTIONS), resources=[key.key_arn]),
            ],
        )  # fmt: skip
