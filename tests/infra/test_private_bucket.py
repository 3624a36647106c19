"""Every S3 bucket of the stack is made one way (``stacks.private_bucket``): the stack key with S3 Bucket Keys,
no public access, ACLs off, TLS only, files that expire; emptied and deleted with the stack unless its data is
retained."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import Synth


def _buckets(synth: Synth) -> dict[str, dict[str, Any]]:
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 2  # the sink's failed batches, batch inference's job files
    return buckets


@pytest.mark.parametrize("which", ["synth", "variant"])
def test_every_bucket_is_private_encrypted_with_the_stack_key_tls_only_and_expiring(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(which)
    key = {"Fn::GetAtt": [synth.logical_id(synth.stack.key), "Arn"]}
    tls_only = {"Bool": {"aws:SecureTransport": "false"}}
    for bucket_id, bucket in _buckets(synth).items():
        props = bucket["Properties"]
        by_default = {"KMSMasterKeyID": key, "SSEAlgorithm": "aws:kms"}
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
            {"BucketKeyEnabled": True, "ServerSideEncryptionByDefault": by_default}
        ]
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        assert all(rule["ExpirationInDays"] > 0 for rule in props["LifecycleConfiguration"]["Rules"])
        [policy] = [
            p["Properties"]["PolicyDocument"]
            for p in synth.resources("AWS::S3::BucketPolicy").values()
            if p["Properties"]["Bucket"] == {"Ref": bucket_id}
        ]
        assert any(s["Effect"] == "Deny" and s["Condition"] == tls_only for s in policy["Statement"])


def test_buckets_are_emptied_with_the_stack_only_when_its_data_is_not_retained(synth: Synth, variant: Synth) -> None:
    def emptied(synth: Synth) -> set[str]:
        return {r["Properties"]["BucketName"]["Ref"] for r in synth.resources("Custom::S3AutoDeleteObjects").values()}

    assert {b["DeletionPolicy"] for b in _buckets(synth).values()} == {"Delete"}
    assert emptied(synth) == set(_buckets(synth))
    assert {b["DeletionPolicy"] for b in _buckets(variant).values()} == {"Retain"}  # removal_policy "retain"
    assert emptied(variant) == set()
