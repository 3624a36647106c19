"""The batch inference construct: a private, encrypted, TLS-only bucket whose files expire, and a service role that
only Bedrock's batch jobs of this account and Region may assume, scoped to that bucket, the stack key and the
configured models; the operator may pass exactly that role to Bedrock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from freshvec import constants as c
from stacks import constants as k
from tests.infra.conftest import Synth, default_context, synthesize

PROFILE = "global.cohere.embed-v4:0"


@pytest.fixture(scope="module")
def profile_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The default stack embedding through Cohere Embed v4's global cross-Region inference profile."""
    base = default_context()["freshvec"]
    context = {"freshvec": {**base, "embedding": {"provider": "cohere", "model_id": PROFILE, "dimensions": 1024}}}
    return synthesize(tmp_path_factory, context)


def _role_statements(synth: Synth, role: Any) -> list[dict[str, Any]]:
    role_id = synth.logical_id(role)
    found = []
    for resource in synth.template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in props.get("Roles", []):
            found.extend(props["PolicyDocument"]["Statement"])
    return found


def test_the_bucket_is_private_encrypted_and_expires_job_files(synth: Synth) -> None:
    bucket = synth.template["Resources"][synth.logical_id(synth.stack.batch.bucket)]["Properties"]
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
        "Fn::GetAtt": [synth.logical_id(synth.stack.key), "Arn"]
    }
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    [lifecycle] = bucket["LifecycleConfiguration"]["Rules"]
    assert lifecycle["ExpirationInDays"] == k.BATCH_FILES_EXPIRY_DAYS and lifecycle["Status"] == "Enabled"
    policies = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in synth.resources("AWS::S3::BucketPolicy").values()
        if r["Properties"]["Bucket"] == {"Ref": synth.logical_id(synth.stack.batch.bucket)}
    ]
    [tls] = [s for s in policies[0] if s["Effect"] == "Deny"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_bedrock_batch_jobs_of_this_account_and_region_may_assume_the_role(synth: Synth) -> None:
    role = synth.template["Resources"][synth.logical_id(synth.stack.batch.role)]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = json.dumps(trust["Condition"]["ArnEquals"]["aws:SourceArn"])
    assert ":model-invocation-job/*" in source_arn and "AWS::Region" in source_arn and "AWS::AccountId" in source_arn


def test_the_role_reaches_only_its_bucket_the_key_and_the_configured_model(synth: Synth) -> None:
    bucket_id = synth.logical_id(synth.stack.batch.bucket)
    by_sid = {s.get("Sid", ""): s for s in _role_statements(synth, synth.stack.batch.role)}
    assert by_sid["ReadJobInputs"]["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]}
    assert by_sid["ListJobInputs"]["Resource"] == {"Fn::GetAtt": [bucket_id, "Arn"]}
    for sid in ("ReadJobInputs", "ListJobInputs", "WriteJobOutputs"):
        assert by_sid[sid]["Condition"] == {"StringEquals": {"aws:ResourceAccount": {"Ref": "AWS::AccountId"}}}
    model = by_sid["InvokeGenerationModels"]
    assert model["Action"] == "bedrock:InvokeModel"
    assert json.dumps(model["Resource"]).endswith(f':foundation-model/{c.TITAN_V2}"]]}}')


def test_the_operator_may_pass_that_role_to_bedrock_only(synth: Synth) -> None:
    policy = synth.template["Resources"][synth.logical_id(synth.stack.operator.policy)]["Properties"]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    passing = by_sid["PassTheBatchRoleToBedrock"]
    assert passing["Action"] == "iam:PassRole"
    assert passing["Resource"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.batch.role), "Arn"]}
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
    assert sorted(by_sid["RunBatchJobs"]["Action"]) == [
        "bedrock:CreateModelInvocationJob",
        "bedrock:GetModelInvocationJob",
        "bedrock:StopModelInvocationJob",
    ]


def test_the_cli_finds_the_bucket_and_role_in_the_outputs(synth: Synth) -> None:
    outputs = synth.template["Outputs"]
    assert outputs[c.OUT_BATCH_BUCKET]["Value"] == {"Ref": synth.logical_id(synth.stack.batch.bucket)}
    assert outputs[c.OUT_BATCH_ROLE_ARN]["Value"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.batch.role), "Arn"]}


def test_an_inference_profile_is_granted_with_its_destinations_only_through_it(profile_synth: Synth) -> None:
    for role in (profile_synth.stack.batch.role, profile_synth.stack.sink.function.role):
        invoke = [s for s in _role_statements(profile_synth, role) if s["Action"] == "bedrock:InvokeModel"]
        profile, through = invoke
        assert json.dumps(profile["Resource"]).endswith(f':inference-profile/{PROFILE}"]]}}')
        assert "Condition" not in profile
        rendered = [json.dumps(r) for r in through["Resource"]]
        assert any(':bedrock:*::foundation-model/cohere.embed-v4:0"' in r for r in rendered)
        assert any(':bedrock:::foundation-model/cohere.embed-v4:0"' in r for r in rendered)  # global destinations
        assert through["Condition"] == {"StringEquals": {"bedrock:InferenceProfileArn": profile["Resource"]}}
