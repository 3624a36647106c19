"""Walk every IAM policy in the template: no wildcard action and no wildcard resource the service does not need.

Next to the walk, the API calls each function (and the operator CLI) makes, mapped to the IAM actions they need:
a role that holds an action no call needs, or lacks one a call needs, fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.infra.conftest import Synth

# (action, resource rendering) pairs allowed despite a wildcard, with the reason. Nothing else may use one.
WILDCARD_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("cassandra:ListStreams", "*"): "ListStreams defines no resource type in IAM; it can only be granted on '*'.",
    ("cloudwatch:GetMetricData", "*"): "CloudWatch metric reads define no resource type; `freshvec status` reads lag.",
    ("cloudwatch:GetMetricStatistics", "*"): "CloudWatch metric reads define no resource type; `freshvec status`.",
    # A forwarder in a VPC (PostgreSQL source): Lambda describes the network with the execution role, and these
    # define no resource type (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html).
    ("ec2:DescribeNetworkInterfaces", "*"): "EC2 Describe actions support no resource-level permissions.",
    ("ec2:DescribeSubnets", "*"): "EC2 Describe actions support no resource-level permissions.",
    ("bedrock:ListModelInvocationJobs", "*"): "ListModelInvocationJobs defines no resource type in IAM.",
    ("servicequotas:ListServiceQuotas", "*"): "Service Quotas reads define no resource type; `migrate` reads limits.",
}
_JOBS = (":model-invocation-job/*",)  # Bedrock names each batch job; the ARN prefix pins Region and account
_ENI = (":network-interface/*",)  # Lambda names the forwarder's network interfaces itself
# Resources ending in "/*" that name the children of one resource this stack owns, by the action allowed.
CHILD_WILDCARDS: dict[str, tuple[str, ...]] = {
    # Stream labels are assigned by Keyspaces when CDC is enabled; the prefix pins keyspace and table.
    "cassandra:GetStream": (":/keyspace/media/table/movies/stream/*", ":/keyspace/shop/table/reviews/stream/*"),
    "cassandra:GetShardIterator": (":/keyspace/media/table/movies/stream/*", ":/keyspace/shop/table/reviews/stream/*"),
    "cassandra:GetRecords": (":/keyspace/media/table/movies/stream/*", ":/keyspace/shop/table/reviews/stream/*"),
    # Lambda names one object per failed batch in the on-failure bucket; `freshvec redrive` reads and moves them.
    "s3:PutObject": ("/*",),
    "s3:GetObject": ("/*",),
    "s3:DeleteObject": ("/*",),
    # Listing/viewing CDC streams and every CQL driver connection read the system keyspaces
    # (https://docs.aws.amazon.com/keyspaces/latest/devguide/configure-cdc-permissions.html).
    "cassandra:Select": (":/keyspace/system*",),
    # The operator's batch jobs (``freshvec migrate``), named by Bedrock.
    "bedrock:CreateModelInvocationJob": _JOBS,
    "bedrock:GetModelInvocationJob": _JOBS,
    "bedrock:StopModelInvocationJob": _JOBS,
    "ec2:CreateNetworkInterface": _ENI,
    "ec2:DeleteNetworkInterface": _ENI,
    "ec2:AssignPrivateIpAddresses": _ENI,
    "ec2:UnassignPrivateIpAddresses": _ENI,
}
# The one key-policy statement allowed a wildcard action: KMS's default statement giving the account (root) full
# access, which is what lets IAM policies grant use of the key at all; without it the key can become unmanageable
# (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam).
ACCOUNT_ROOT_PRINCIPAL = {
    "AWS": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Ref": "AWS::AccountId"}, ":root"]]}
}

# ---- what each function calls, and the IAM actions each call needs ------------------------------------------------
LOGS = ("logs:CreateLogStream", "logs:PutLogEvents")  # the Lambda runtime writing the function's log group
# DynamoDB with a customer managed key (stacks/constants.py KMS_DYNAMODB_ACTIONS)
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/encryption.usagenotes.html).
DDB_KMS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")
FORWARDER_CALLS: dict[str, tuple[str, ...]] = {
    "Lambda runtime: write logs": LOGS,
    # keyspacesstreams (freshvec/forwarder.py); listing/viewing also reads the system keyspace
    # (https://docs.aws.amazon.com/keyspaces/latest/devguide/configure-cdc-permissions.html).
    "keyspacesstreams:ListStreams": ("cassandra:ListStreams", "cassandra:Select"),
    "keyspacesstreams:GetStream": ("cassandra:GetStream", "cassandra:Select"),
    "keyspacesstreams:GetShardIterator": ("cassandra:GetShardIterator",),
    "keyspacesstreams:GetRecords": ("cassandra:GetRecords",),
    # freshvec/adapters/kinesis.py into a KMS-encrypted stream
    # (https://docs.aws.amazon.com/streams/latest/dev/permissions-user-key-KMS.html).
    "kinesis:PutRecords": ("kinesis:PutRecords", "kms:GenerateDataKey"),
    # freshvec/adapters/dynamodb.py (leases and checkpoints)
    "dynamodb:Query": ("dynamodb:Query", *DDB_KMS),
    "dynamodb:PutItem": ("dynamodb:PutItem", *DDB_KMS),
    "dynamodb:UpdateItem": ("dynamodb:UpdateItem", *DDB_KMS),
}
# The forwarder reading a PostgreSQL slot (SQL needs no IAM): Kinesis and DynamoDB as above, the password from
# Secrets Manager under a customer managed key, and the network interfaces Lambda makes in the configured VPC.
PG_FORWARDER_CALLS: dict[str, tuple[str, ...]] = {
    **{name: actions for name, actions in FORWARDER_CALLS.items() if not name.startswith("keyspacesstreams")},
    "secretsmanager:GetSecretValue": ("secretsmanager:GetSecretValue", "kms:Decrypt"),
    "Lambda service: the function's network interfaces": (
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ),
}
SINK_CALLS: dict[str, tuple[str, ...]] = {
    "Lambda runtime: write logs": LOGS,
    "bedrock-runtime:InvokeModel": ("bedrock:InvokeModel",),
    "s3vectors:GetIndex": ("s3vectors:GetIndex",),
    "s3vectors:GetVectors": ("s3vectors:GetVectors",),
    "s3vectors:PutVectors": ("s3vectors:PutVectors",),
    "s3vectors:DeleteVectors": ("s3vectors:DeleteVectors",),
    # freshvec/adapters/sqs.py into a KMS-encrypted queue
    # (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html).
    "sqs:SendMessageBatch": ("sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"),
    # freshvec/adapters/dynamodb.py (DynamoDbTombstones) in the KMS-encrypted checkpoint table
    "dynamodb:PutItem": ("dynamodb:PutItem", *DDB_KMS),  # conditional: a tombstone only rises
    "dynamodb:BatchGetItem": ("dynamodb:BatchGetItem", *DDB_KMS),
    # The event source mapping reads the stream with the function's role
    # (https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-create.html) ...
    "ESM: read the Kinesis stream": (
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
        "kms:Decrypt",
    ),
    # ... and writes failed batches to the S3 on-failure destination
    # (https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html).
    "ESM: on-failure PutObject": ("s3:PutObject", "s3:ListBucket", "kms:GenerateDataKey"),
}
# freshvec/index_settings.py through freshvec/adapters/s3vectors.py, on the stack's index only.
INDEX_SETTINGS_CALLS: dict[str, tuple[str, ...]] = {
    "Lambda runtime: write logs": LOGS,
    "s3vectors:GetIndex": ("s3vectors:GetIndex",),
    "s3vectors:UpdateIndexMode": ("s3vectors:UpdateIndexMode",),
    "s3vectors:UpdateMetadataConfiguration": ("s3vectors:UpdateMetadataConfiguration",),
}
# The role Bedrock assumes for batch inference (stacks/batch_inference.py): read the input, write the output, both
# under the stack key, and invoke the generations' model
# (https://docs.aws.amazon.com/bedrock/latest/userguide/batch-iam-sr.html).
BATCH_ROLE_CALLS: dict[str, tuple[str, ...]] = {
    "Bedrock batch: read job input (GetObject, ListBucket)": ("s3:GetObject", "s3:ListBucket", "kms:Decrypt"),
    "Bedrock batch: write job output (PutObject)": ("s3:PutObject", "kms:GenerateDataKey"),
    "Bedrock batch: invoke the model": ("bedrock:InvokeModel",),
}
ROW_TTL_CALLS: dict[str, tuple[str, ...]] = {
    "Lambda runtime: write logs": LOGS,
    # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonkeyspacesforapachecassandra.html)
    "keyspaces:UpdateTable": ("cassandra:Alter", "cassandra:AlterMultiRegionResource"),
}
# freshvec/cli/*.py, by command; see stacks/operator_policy.py for the doc behind each.
_KINESIS_SEND = ("kinesis:PutRecords", "kms:GenerateDataKey")
_CQL_READ = ("cassandra:Select",)  # table and system keyspaces
OPERATOR_CALLS: dict[str, tuple[str, ...]] = {
    "every command: cloudformation:DescribeStacks": ("cloudformation:DescribeStacks",),
    "load: CQL INSERT": ("cassandra:Modify", *_CQL_READ),
    "query: s3vectors:GetIndex, QueryVectors": ("s3vectors:GetIndex", "s3vectors:QueryVectors"),
    "query: bedrock-runtime:InvokeModel": ("bedrock:InvokeModel",),
    # query, migrate status/compare read the index pointer; migrate cutover/rollback/finish rewrite it
    "query, migrate: ssm:GetParameter": ("ssm:GetParameter",),
    "migrate cutover, rollback, finish: ssm:PutParameter": ("ssm:PutParameter",),
    "backfill: CQL SELECT, kinesis:PutRecords": (*_CQL_READ, *_KINESIS_SEND),
    "redrive: sqs:ReceiveMessage, ChangeMessageVisibilityBatch, DeleteMessage": (
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "kms:Decrypt",
    ),
    "redrive: s3:ListObjectsV2, GetObject, CopyObject, DeleteObject": (
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    ),
    "redrive send: kinesis:PutRecords": _KINESIS_SEND,
    # re-syncs read the parked keys' rows, and the stored version of a row that is gone
    "redrive send: CQL SELECT, s3vectors:GetVectors": (*_CQL_READ, "s3vectors:GetVectors"),
    "status: cloudwatch:GetMetricStatistics/GetMetricData": (
        "cloudwatch:GetMetricStatistics",
        "cloudwatch:GetMetricData",
    ),
    "status: sqs:GetQueueAttributes, ReceiveMessage": ("sqs:GetQueueAttributes", "sqs:ReceiveMessage", "kms:Decrypt"),
    "status: s3vectors:ListVectors, GetIndex": ("s3vectors:ListVectors", "s3vectors:GetIndex"),
    "status: dynamodb:Query/Scan (checkpoints)": ("dynamodb:Query", "dynamodb:Scan", "kms:Decrypt"),
    "status: CQL SELECT (row estimate)": _CQL_READ,
    "reconcile: s3vectors:ListVectors, GetVectors, CQL SELECT, PutRecords": (
        "s3vectors:ListVectors",
        "s3vectors:GetVectors",
        *_CQL_READ,
        *_KINESIS_SEND,
    ),
}
# freshvec migrate with Bedrock batch inference (freshvec/adapters/bedrock_batch.py).
BATCH_OPERATOR_CALLS: dict[str, tuple[str, ...]] = {
    "migrate: bedrock:CreateModelInvocationJob (passes the batch role)": (
        "bedrock:CreateModelInvocationJob",
        "iam:PassRole",
    ),
    "migrate: bedrock:GetModelInvocationJob, StopModelInvocationJob": (
        "bedrock:GetModelInvocationJob",
        "bedrock:StopModelInvocationJob",
    ),
    "migrate: bedrock:ListModelInvocationJobs": ("bedrock:ListModelInvocationJobs",),
    "migrate: s3:PutObject (input), ListObjectsV2, GetObject (output)": (
        "s3:PutObject",
        "s3:ListBucket",
        "s3:GetObject",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    ),
    "migrate: servicequotas:ListServiceQuotas (records per job)": ("servicequotas:ListServiceQuotas",),
}
OPERATOR_CALLS.update(BATCH_OPERATOR_CALLS)
# With a PostgreSQL source, load and backfill speak SQL (no IAM) with the password from the configured secret.
PG_OPERATOR_CALLS: dict[str, tuple[str, ...]] = {
    **{name: actions for name, actions in OPERATOR_CALLS.items() if "CQL" not in name},
    "backfill: kinesis:PutRecords": _KINESIS_SEND,
    "reconcile: s3vectors:ListVectors, GetVectors, PutRecords": (
        "s3vectors:ListVectors",
        "s3vectors:GetVectors",
        *_KINESIS_SEND,
    ),
    "load, backfill: secretsmanager:GetSecretValue": ("secretsmanager:GetSecretValue", "kms:Decrypt"),
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


def test_no_identity_policy_uses_a_wildcard_it_does_not_need(synth: Synth, variant: Synth, pg_synth: Synth) -> None:
    for result in (synth, variant, pg_synth):
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
    bad_child = {"Effect": "Allow", "Action": "s3:GetObjectAcl", "Resource": "arn:aws:s3:::b/*"}
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    allowed = {"Effect": "Allow", "Action": "cassandra:ListStreams", "Resource": "*"}
    assert _wildcard_problems("X", bad_action) == ["X: wildcard action s3:Get*"]
    assert _wildcard_problems("X", bad_resource) == ["X: sqs:SendMessage on wildcard resource *"]
    assert _wildcard_problems("X", bad_child) == ["X: s3:GetObjectAcl on wildcard resource arn:aws:s3:::b/*"]
    assert _wildcard_problems("X", deny) == []
    assert _wildcard_problems("X", allowed) == []


# ---- key policies -------------------------------------------------------------------------------------------------
def key_policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for lid, resource in template["Resources"].items():
        if resource["Type"] == "AWS::KMS::Key":
            for statement in resource["Properties"]["KeyPolicy"]["Statement"]:
                yield lid, statement


def _key_policy_problems(lid: str, statement: dict[str, Any]) -> list[str]:
    if statement["Effect"] != "Allow":
        return []
    if statement.get("Principal") == ACCOUNT_ROOT_PRINCIPAL and statement["Action"] == "kms:*":
        return []  # KMS's default "enable IAM policies" statement (see ACCOUNT_ROOT_PRINCIPAL)
    return [f"{lid}: wildcard action {a} in key policy" for a in _as_list(statement["Action"]) if "*" in a]


def test_key_policies_name_every_action(synth: Synth, variant: Synth, pg_synth: Synth) -> None:
    for result in (synth, variant, pg_synth):
        assert [p for lid, s in key_policy_statements(result.template) for p in _key_policy_problems(lid, s)] == []


def test_the_key_policy_walker_catches_wildcards() -> None:
    service = {"Effect": "Allow", "Principal": {"Service": "x"}, "Action": ["kms:GenerateDataKey*"], "Resource": "*"}
    root_wild = {"Effect": "Allow", "Principal": ACCOUNT_ROOT_PRINCIPAL, "Action": "kms:*", "Resource": "*"}
    root_other = {"Effect": "Allow", "Principal": ACCOUNT_ROOT_PRINCIPAL, "Action": "kms:Get*", "Resource": "*"}
    assert _key_policy_problems("K", service) == ["K: wildcard action kms:GenerateDataKey* in key policy"]
    assert _key_policy_problems("K", root_wild) == []
    assert _key_policy_problems("K", root_other) == ["K: wildcard action kms:Get* in key policy"]


# ---- every action a role holds is needed by a call it makes, and every call's actions are held --------------------
def role_actions(template: dict[str, Any], role_id: str) -> set[str]:
    """Actions of every identity policy attached to the role (AWS::IAM::Policy listing it, inline policies)."""
    actions: set[str] = set()
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in props.get("Roles", []):
            statements = props["PolicyDocument"]["Statement"]
        else:
            continue
        actions.update(a for s in statements if s["Effect"] == "Allow" for a in _as_list(s["Action"]))
    role = template["Resources"][role_id]["Properties"]
    for inline in role.get("Policies", []):
        actions.update(a for s in inline["PolicyDocument"]["Statement"] for a in _as_list(s["Action"]))
    assert "ManagedPolicyArns" not in role
    return actions


def _differences(held: set[str], calls: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    needed = {a for actions in calls.values() for a in actions}
    return {"unused": sorted(held - needed), "missing": sorted(needed - held)}


NO_DIFFERENCE = {"unused": [], "missing": []}


def test_each_role_holds_exactly_what_its_calls_need(synth: Synth, variant: Synth) -> None:
    for result in (synth, variant):
        stack = result.stack
        roles = {
            "forwarder": (stack.forwarder.function.role, FORWARDER_CALLS),
            "sink": (stack.sink.function.role, SINK_CALLS),
            "row TTL custom resource": (stack.source.row_ttl.grant_principal, ROW_TTL_CALLS),
            "index settings custom resource": (stack.index_settings.function.role, INDEX_SETTINGS_CALLS),
            "Bedrock batch service role": (stack.batch.role, BATCH_ROLE_CALLS),
        }
        for name, (role, calls) in roles.items():
            held = role_actions(result.template, result.logical_id(role))
            assert (name, _differences(held, calls)) == (name, NO_DIFFERENCE)


def test_postgres_roles_hold_exactly_what_their_calls_need(pg_synth: Synth) -> None:
    stack = pg_synth.stack
    assert stack.source is None
    for name, role, calls in (
        ("forwarder", stack.forwarder.function.role, PG_FORWARDER_CALLS),
        ("sink", stack.sink.function.role, SINK_CALLS),
        ("index settings", stack.index_settings.function.role, INDEX_SETTINGS_CALLS),
    ):
        held = role_actions(pg_synth.template, pg_synth.logical_id(role))
        assert (name, _differences(held, calls)) == (name, NO_DIFFERENCE)


def test_operator_policy_holds_exactly_what_the_cli_calls_need(synth: Synth, pg_synth: Synth) -> None:
    for result, calls in ((synth, OPERATOR_CALLS), (pg_synth, PG_OPERATOR_CALLS)):
        policy = result.template["Resources"][result.logical_id(result.stack.operator.policy)]
        assert policy["Type"] == "AWS::IAM::ManagedPolicy"
        held = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in _as_list(s["Action"])}
        assert _differences(held, calls) == NO_DIFFERENCE


def test_the_call_check_reports_both_directions() -> None:
    calls = {"kinesis:PutRecords": ("kinesis:PutRecords", "kms:GenerateDataKey")}
    assert _differences({"kinesis:PutRecords", "kinesis:PutRecord"}, calls) == {
        "unused": ["kinesis:PutRecord"],
        "missing": ["kms:GenerateDataKey"],
    }
