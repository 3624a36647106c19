"""Walk every IAM policy in the template: no wildcard action and no wildcard resource the service does not need."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.infra.conftest import Synth

# (action, resource rendering) pairs allowed despite a wildcard, with the reason. Nothing else may use one.
WILDCARD_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("cassandra:ListStreams", "*"): "ListStreams defines no resource type in IAM; it can only be granted on '*'.",
}
# Resources ending in "/*" that name the children of one resource this stack owns, by the action allowed.
CHILD_WILDCARDS: dict[str, tuple[str, ...]] = {
    # Stream labels are assigned by Keyspaces when CDC is enabled; the prefix pins keyspace and table.
    "cassandra:GetStream": (":/keyspace/media/table/movies/stream/*", ":/keyspace/shop/table/reviews/stream/*"),
    "cassandra:GetShardIterator": (":/keyspace/media/table/movies/stream/*", ":/keyspace/shop/table/reviews/stream/*"),
    "cassandra:GetRecords": (":/keyspace/media/table/movies/stream/*", ":/keyspace/shop/table/reviews/stream/*"),
    # Lambda names one object per failed batch in the on-failure bucket.
    "s3:PutObject": ("/*",),
}
# CDK's own provider for emptying the on-failure bucket on `cdk destroy` (removal_policy "destroy" only): its
# role and bucket-policy grant are fixed by CDK and need to list and delete every object to empty the bucket.
AUTO_DELETE_PROVIDER_ROLE = "CustomS3AutoDeleteObjectsCustomResourceProviderRole3B1BD092"
AUTO_DELETE_MANAGED_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
AUTO_DELETE_BUCKET_ACTIONS = {"s3:PutBucketPolicy", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def identity_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of every identity policy: AWS::IAM::Policy, ManagedPolicy and a role's inline Policies."""
    for lid, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in props["PolicyDocument"]["Statement"]:
                yield lid, statement
        elif resource["Type"] == "AWS::IAM::Role":
            for inline in props.get("Policies", []):
                for statement in inline["PolicyDocument"]["Statement"]:
                    yield lid, statement


def resource_policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for lid, resource in template["Resources"].items():
        if resource["Type"] in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                yield lid, statement


def _render(resource: Any) -> str:
    """A resource as text: literal ARNs stay, intrinsic functions become their JSON (no wildcard inside)."""
    return resource if isinstance(resource, str) else json.dumps(resource, sort_keys=True)


def _wildcard_problems(lid: str, statement: dict[str, Any]) -> list[str]:
    if statement["Effect"] != "Allow":
        return []  # a Deny with wildcards (TLS-only policies) only takes permissions away
    problems = []
    actions = _as_list(statement["Action"])
    for action in actions:
        if "*" in action:
            problems.append(f"{lid}: wildcard action {action}")
    for resource in _as_list(statement.get("Resource", [])):
        rendered = _render(resource)
        if "*" not in rendered:
            continue
        for action in actions:
            if (action, rendered) in WILDCARD_EXCEPTIONS:
                continue
            if rendered != "*" and rendered.replace('"]]}', "").endswith(CHILD_WILDCARDS.get(action, ("\0",))):
                continue
            problems.append(f"{lid}: {action} on wildcard resource {rendered}")
    return problems


def test_no_identity_policy_uses_a_wildcard_it_does_not_need(synth: Synth, variant: Synth) -> None:
    for result in (synth, variant):
        problems = [p for lid, s in identity_statements(result.template) for p in _wildcard_problems(lid, s)]
        assert problems == []


def test_resource_policies_allow_nothing_with_wildcards_except_the_bucket_emptier(synth: Synth) -> None:
    problems: list[str] = []
    for lid, statement in resource_policy_statements(synth.template):
        found = _wildcard_problems(lid, statement)
        principal = statement.get("Principal", {})
        principal = principal.get("AWS") if isinstance(principal, dict) else principal
        emptier = principal == {"Fn::GetAtt": [AUTO_DELETE_PROVIDER_ROLE, "Arn"]}
        if emptier and set(_as_list(statement["Action"])) <= AUTO_DELETE_BUCKET_ACTIONS:
            continue
        problems.extend(found)
    assert problems == []


def test_only_the_bucket_emptier_role_has_a_managed_policy(synth: Synth, variant: Synth) -> None:
    managed = {
        lid: resource["Properties"]["ManagedPolicyArns"]
        for lid, resource in synth.template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role" and "ManagedPolicyArns" in resource["Properties"]
    }
    assert managed == {AUTO_DELETE_PROVIDER_ROLE: [{"Fn::Sub": AUTO_DELETE_MANAGED_POLICY}]}
    retained = [
        lid
        for lid, resource in variant.template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role" and "ManagedPolicyArns" in resource["Properties"]
    ]
    assert retained == []  # removal_policy "retain" keeps the bucket, so no emptier exists


def test_the_walker_catches_wildcards() -> None:
    bad_action = {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b"}
    bad_resource = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}
    bad_child = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    allowed = {"Effect": "Allow", "Action": "cassandra:ListStreams", "Resource": "*"}
    assert _wildcard_problems("X", bad_action) == ["X: wildcard action s3:Get*"]
    assert _wildcard_problems("X", bad_resource) == ["X: sqs:SendMessage on wildcard resource *"]
    assert _wildcard_problems("X", bad_child) == ["X: s3:GetObject on wildcard resource arn:aws:s3:::b/*"]
    assert _wildcard_problems("X", deny) == []
    assert _wildcard_problems("X", allowed) == []
