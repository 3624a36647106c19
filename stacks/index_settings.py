"""The index mode and full-text search settings, applied in place by a small custom resource.

``CfnIndex`` (aws-cdk-lib 2.275) has no property for the index mode or ``textSearchConfigurations``; both change
in place on an existing index (UpdateIndexMode, UpdateMetadataConfiguration), so a Lambda-backed custom resource
(``lambdas/index_settings``, the shared code asset with its bundled boto3) applies them after the index exists,
idempotently, and waits for the analyzers (``freshvec.index_settings``). Its role may read the index and change
exactly these two settings of exactly the stack's indexes (one resource per live index generation).
"""

from __future__ import annotations

import json

from aws_cdk import CfnCustomResource
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.generations import live_generations
from stacks import constants as k
from stacks.function import python_function
from stacks.vector_store import VectorStore

# https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3vectors.html: each on the index.
INDEX_SETTINGS_ACTIONS = ("s3vectors:GetIndex", "s3vectors:UpdateIndexMode", "s3vectors:UpdateMetadataConfiguration")


class IndexSettings(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        vectors: VectorStore,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            service=c.SERVICE_INDEX_SETTINGS,
            description="freshvec index settings: index mode and full-text search, in place",
            handler=k.INDEX_SETTINGS_HANDLER,
            code=code,
            layer=layer,
            memory_mb=k.INDEX_SETTINGS_MEMORY_MB,
            timeout_s=k.INDEX_SETTINGS_TIMEOUT_S,
            environment={},
            reserved_concurrency=None,
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=list(INDEX_SETTINGS_ACTIONS), resources=list(vectors.index_arns))
        )
        policy = self.function.role.node.try_find_child("DefaultPolicy") if self.function.role else None
        if policy is not None:  # cfn-lint 1.58's list of IAM actions predates s3vectors:UpdateMetadataConfiguration
            cfn_policy = policy.node.default_child
            cfn_policy.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3037"]}})
        # One resource per live index generation, named after the generation (as its index is), so a cutover
        # never replaces one and a retired generation's goes with its index.
        self.resources: dict[str, CfnCustomResource] = {}
        for generation in live_generations(config):
            name = generation.name
            suffix = "" if name == c.DEFAULT_GENERATION else name.replace("-", " ").title().replace(" ", "")
            resource = CfnCustomResource(self, f"Resource{suffix}", service_token=self.function.function_arn)
            resource.add_property_override("VectorBucketName", vectors.bucket_name)
            resource.add_property_override("IndexName", generation.config.vector_index_name)
            resource.add_property_override("IndexMode", generation.config.text_search.index_mode)
            text = {key: language or "" for key, language in generation.config.text_search_keys.items()}
            resource.add_property_override("TextSearch", json.dumps(text, sort_keys=True))
            resource.node.add_dependency(vectors.indexes[name])
            self.resources[name] = resource
        self.resource = self.resources[config.generation]
