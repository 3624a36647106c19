"""Synthesize the stack once per session for each config the infra tests look at, and share the templates."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

import app as cdk_app
from freshvec.config import PipelineConfig
from stacks.pipeline_stack import PipelineStack

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = REPO_ROOT / "cdk.json"


@dataclass(frozen=True)
class Synth:
    config: PipelineConfig
    stack: PipelineStack
    template: dict[str, Any]
    assertions: Template
    outdir: Path

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.template["Resources"].items() if r["Type"] == resource_type}

    def one(self, resource_type: str) -> dict[str, Any]:
        found = self.resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.values()))

    def logical_id(self, construct: Any) -> str:
        """Logical ID of an L1 resource, or of an L2 construct's underlying resource."""
        resource = construct if isinstance(construct, cdk.CfnElement) else construct.node.default_child
        return self.stack.resolve(resource.logical_id)


def default_context() -> dict[str, Any]:
    return json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]


def synthesize(tmp_factory: pytest.TempPathFactory, overrides: Mapping[str, Any] | None = None) -> Synth:
    """Synthesize through app.build_app, exactly as `cdk synth` does (cdk-nag plugin included)."""
    context = default_context()
    context.update(overrides or {})
    outdir = tmp_factory.mktemp("cdk.out")
    app = cdk.App(context=context, outdir=str(outdir))
    stack = cdk_app.build_app(app)
    assembly = app.synth()  # raises if cdk-nag reports an unacknowledged finding
    template = assembly.get_stack_by_name(stack.stack_name).template
    return Synth(stack.config, stack, template, Template.from_json(template), outdir)


# A second config exercising every optional branch: composite key, provisioned stream, retain, email, limits.
VARIANT_OVERRIDES: dict[str, Any] = {
    "freshvec": {
        "stack_name": "freshvec-variant",
        "keyspace": "shop",
        "table": "reviews",
        "columns": {
            "product_id": "uuid",
            "posted_at": "timestamp",
            "reviewer": "text",
            "body": "text",
            "stars": "int",
            "tags": "set<text>",
        },
        "partition_key": ["product_id"],
        "clustering_key": ["posted_at", "reviewer"],
        "embedding_field": "body",
        "metadata_fields": ["stars", "tags", "posted_at"],
        "embedding": {"provider": "cohere", "model_id": "cohere.embed-english-v3", "dimensions": 1024},
        "vector_store": {
            "bucket_name": "shop-reviews-vectors",
            "index_name": "reviews",
            "distance_metric": "euclidean",
        },
        "text_search": {"enabled": True, "language": "en"},
        "stream": {"mode": "PROVISIONED", "shard_count": 4, "retention_hours": 48},
        "sink": {
            "batch_size": 250,
            "batching_window_s": 5,
            "parallelization_factor": 3,
            "retry_attempts": 7,
            "max_record_age_s": 7200,
            "bisect_on_error": True,
            "memory_mb": 2048,
            "timeout_s": 300,
            "reserved_concurrency": 12,
            "dlq_retention_days": 4,
        },
        "forwarder": {
            "schedule_minutes": 2,
            "memory_mb": 256,
            "timeout_s": 100,
            "lease_duration_s": 160,
            "reserved_concurrency": 3,
        },
        "removal_policy": "retain",
        "alarm_email": "oncall@example.com",
    },
    # a table from an earlier release, whose client-side timestamps were turned on by hand
    "freshvec:clientSideTimestampsByHand": True,
}


# A PostgreSQL source in a VPC, with the endpoints, a secret under a customer managed key.
PG_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:freshvec-pg-AbCdEf"
PG_SECRET_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
POSTGRES_OVERRIDES: dict[str, Any] = {
    "freshvec": {
        "stack_name": "freshvec-articles",
        "source": {
            "kind": "postgres",
            "postgres": {
                "table": "articles",
                "columns": {"id": "bigint", "title": "text", "body": "text", "published": "date", "tags": "text[]"},
                "primary_key": ["id"],
                "connection": {
                    "host": "mydb.cluster-abc.eu-west-1.rds.amazonaws.com",
                    "database": "app",
                    "user": "freshvec",
                    "password_secret_arn": PG_SECRET_ARN,
                    "password_secret_kms_key_arn": PG_SECRET_KEY_ARN,
                    "ca_bundle": "global-bundle.pem",
                },
                "network": {
                    "vpc_id": "vpc-0123456789abcdef0",
                    "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
                    "security_group_ids": ["sg-0123456789abcdef0"],
                    "route_table_ids": ["rtb-0123456789abcdef0"],
                },
            },
        },
        "embedding_field": "body",
        "metadata_fields": ["title", "published", "tags"],
        "embedding": {"provider": "titan", "model_id": "amazon.titan-embed-text-v2:0", "dimensions": 256},
        "vector_store": {"index_name": "articles"},
    }
}


def postgres_context() -> dict[str, Any]:
    """The default context with the movie table's keys replaced by a postgres source."""
    base = {k: v for k, v in default_context()["freshvec"].items() if k not in _KEYSPACES_TABLE_KEYS}
    return {"freshvec": {**base, **POSTGRES_OVERRIDES["freshvec"]}}


_KEYSPACES_TABLE_KEYS = ("keyspace", "table", "columns", "partition_key", "clustering_key", "metadata_fields")


@pytest.fixture(scope="session")
def pg_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory, postgres_context())


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory)


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory, VARIANT_OVERRIDES)


def statements(template: Mapping[str, Any], predicate: Callable[[str, dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every statement of every AWS::IAM::Policy whose (logical id, resource) matches ``predicate``."""
    found: list[dict[str, Any]] = []
    for lid, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy" and predicate(lid, resource):
            found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return found
