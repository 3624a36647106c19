"""The stack's S3 buckets (the sink's failed batches, batch inference's job files) are made one way: encrypted
with the stack key (S3 Bucket Keys on, so fewer KMS calls), TLS only, no public access, ACLs off, their files
expiring, and emptied with the stack when its data is not retained."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct


def private_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    removal: RemovalPolicy,
    lifecycle_rules: Sequence[s3.LifecycleRule],
    metrics: Sequence[s3.BucketMetrics] | None = None,
) -> s3.Bucket:
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=list(lifecycle_rules),
        metrics=list(metrics) if metrics else None,
        removal_policy=removal,
        auto_delete_objects=removal == RemovalPolicy.DESTROY,
    )
