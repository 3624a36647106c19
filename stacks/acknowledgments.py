"""cdk-nag AwsSolutions findings acknowledged on purpose, each on the one construct it concerns, with its reason.

Any finding not listed here fails synth (and tests/infra/test_nag.py).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct

from freshvec import constants as c
from freshvec.config import PipelineConfig
from stacks import constants as k
from stacks.batch_inference import BatchInference
from stacks.bedrock_access import generation_embeddings
from stacks.change_stream import ChangeStream
from stacks.forwarder import Forwarder
from stacks.index_pointer import IndexPointer
from stacks.operator_policy import OperatorPolicy
from stacks.sink import Sink

PYTHON_RUNTIME_REASON = (
    "Pinned to python3.13: the dependency layer is built from cp313 arm64 wheels (lambdas/requirements.txt) and "
    "the code is tested on 3.11-3.13; moving to a newer runtime is a deliberate change of the layer and the tests."
)


SYSTEM_KEYSPACE_FINDING = (
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cassandra:<AWS::Region>:<AWS::AccountId>:/keyspace/system*]"
)


ENI_FINDING = "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*]"


def acknowledge_findings(
    stack: Stack,
    config: PipelineConfig,
    *,
    forwarder: Forwarder,
    sink: Sink,
    operator: OperatorPolicy,
    change_stream: ChangeStream,
    batch: BatchInference,
    pointer: IndexPointer,
) -> None:
    """Acknowledge every expected finding on the constructs of ``stack`` it concerns."""
    if config.source.kind == "keyspaces":
        _acknowledge_keyspaces(config, forwarder, operator)
    elif config.postgres.network.vpc_id is not None:
        _acknowledge_postgres_vpc(forwarder)
    _ack(
        operator.policy,
        "AwsSolutions-IAM5[Resource::*]",
        "cloudwatch:GetMetricData and cloudwatch:GetMetricStatistics (status), bedrock:ListModelInvocationJobs and "
        "servicequotas:ListServiceQuotas (migrate) define no resource type in IAM and can only be granted on '*'; "
        "each is alone in its statement and reads, never changes anything.",
    )
    _ack(
        operator.policy,
        f"AwsSolutions-IAM5[Resource::<{_logical_id(stack, sink.on_failure_bucket)}.Arn>/*]",
        "`freshvec redrive` reads each object Lambda wrote for a failed batch (keys chosen by Lambda), then moves "
        "it under redriven/ (copy + delete); Get/Put/DeleteObject only, on this one bucket.",
    )
    _ack(
        change_stream.stream,
        "AwsSolutions-KDS3",
        "The stream is encrypted with the stack's customer managed key (rotated, policy under the stack's control, "
        "shared with the table, index and queues) rather than the aws/kinesis AWS managed key.",
    )
    _ack(forwarder.function, "AwsSolutions-L1", PYTHON_RUNTIME_REASON)
    _ack(sink.function, "AwsSolutions-L1", PYTHON_RUNTIME_REASON)
    _ack(stack.index_settings.function, "AwsSolutions-L1", PYTHON_RUNTIME_REASON)
    _ack(
        sink.function.role,
        f"AwsSolutions-IAM5[Resource::<{_logical_id(stack, sink.on_failure_bucket)}.Arn>/*]",
        "Lambda writes one object per failed batch under keys it chooses; s3:PutObject is the only object action "
        "granted on this one bucket.",
    )
    _ack(
        sink.dlq,
        "AwsSolutions-SQS3",
        "This queue is the sink's dead-letter queue itself: nothing consumes it automatically (operators inspect "
        "it and `freshvec redrive` re-sends), so a further DLQ would have nothing to catch; its depth is alarmed.",
    )
    _acknowledge_batch(stack, config, sink, batch, operator)
    # The reader policy embeds queries with the live generations' models, inference profiles included.
    _acknowledge_profiles(config, pointer.reader_policy)
    _ack(
        sink.on_failure_bucket,
        "AwsSolutions-S1",
        "Only the sink's event source mapping writes here; every arrival is alarmed through S3 request metrics "
        f"and objects expire after {k.ON_FAILURE_EXPIRY_DAYS} days. Server access logs would need a second bucket "
        "for no added signal.",
    )


def _acknowledge_profiles(config: PipelineConfig, *scopes: IConstruct | None) -> None:
    """A cross-Region inference profile routes to its model in Regions the profile chooses (any Region, for a
    global profile): the model is granted in every Region, but only through the profile."""
    for embedding in generation_embeddings(config):
        base = c.foundation_model_id(embedding.model_id)
        if base == embedding.model_id:
            continue
        reason = (
            f"bedrock:InvokeModel on {base} in the Regions inference profile {embedding.model_id} routes to, "
            "allowed only through that profile (condition bedrock:InferenceProfileArn)."
        )
        for scope in scopes:
            _ack(scope, f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/{base}]", reason)


def _acknowledge_batch(
    stack: Stack, config: PipelineConfig, sink: Sink, batch: BatchInference, operator: OperatorPolicy
) -> None:
    _acknowledge_profiles(config, sink.function.role, batch.role, operator.policy)
    objects = f"Resource::<{_logical_id(stack, batch.bucket)}.Arn>/*"
    _ack(
        batch.role,
        f"AwsSolutions-IAM5[{objects}]",
        "Bedrock reads each batch job's input file and writes its output under keys the job chooses (its job id); "
        "s3:GetObject and s3:PutObject only, on this one bucket, within this account.",
    )
    _ack(
        operator.policy,
        f"AwsSolutions-IAM5[{objects}]",
        "`freshvec migrate` writes each batch job's input and reads the output Bedrock writes under the job's id; "
        "GetObject and PutObject only, on the batch bucket.",
    )
    _ack(
        operator.policy,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:model-invocation-job/*]",
        "Bedrock names each batch job when it is created, so Create/Get/Stop are granted on this account's jobs in "
        "this Region; ListModelInvocationJobs defines no resource type and is granted on '*' alone.",
    )
    _ack(
        batch.bucket,
        "AwsSolutions-S1",
        f"Holds only Bedrock batch job files, written by `freshvec migrate` and Bedrock and expired after "
        f"{k.BATCH_FILES_EXPIRY_DAYS} days; Bedrock's and the CLI's calls are recorded by CloudTrail, so server "
        "access logs would need a second bucket for no added signal.",
    )


def _acknowledge_postgres_vpc(forwarder: Forwarder) -> None:
    role = forwarder.function.role
    _ack(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "ec2:DescribeNetworkInterfaces and ec2:DescribeSubnets support no resource-level permissions; Lambda needs "
        "them with the execution role to place the forwarder in the configured subnets (configuration-vpc in the "
        "Lambda guide). They are the only actions in that statement and change nothing.",
    )
    _ack(
        role,
        ENI_FINDING,
        "Lambda names the network interfaces it creates for the forwarder itself, so the grant covers this "
        "account's interfaces in this Region; creating one is further limited to the configured subnets and "
        "security groups, and only create/delete/assign/unassign-address actions are granted.",
    )


def _acknowledge_keyspaces(config: PipelineConfig, forwarder: Forwarder, operator: OperatorPolicy) -> None:
    _ack(
        forwarder.function.role,
        SYSTEM_KEYSPACE_FINDING,
        "Listing and viewing Keyspaces CDC streams requires read access to the system keyspaces "
        "(configure-cdc-permissions in the Keyspaces guide); the grant is cassandra:Select only, on the "
        "system* keyspaces that hold schema and stream metadata, never on user keyspaces.",
    )
    _ack(
        operator.policy,
        SYSTEM_KEYSPACE_FINDING,
        "Every Cassandra driver reads the system keyspaces (peers, schema) when it connects, and Keyspaces "
        "authorizes that as cassandra:Select on system*; the grant is Select only and names no user keyspace.",
    )
    _ack(
        forwarder.function.role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cassandra:<AWS::Region>:<AWS::AccountId>:"
        f"/keyspace/{config.keyspace}/table/{config.table}/stream/*]",
        "Keyspaces names a CDC stream by a label assigned when CDC is enabled (and re-assigned when it is "
        "re-enabled); the grant is limited to this one table's streams and to GetStream/GetShardIterator/GetRecords.",
    )
    _ack(
        forwarder.function.role,
        "AwsSolutions-IAM5[Resource::*]",
        "cassandra:ListStreams defines no resource type in IAM and can only be granted on '*'; it is the only "
        "action in that statement and returns stream ARNs, not data.",
    )


def _ack(scope: IConstruct | None, rule: str, reason: str) -> None:
    assert scope is not None
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def _logical_id(stack: Stack, construct: IConstruct) -> str:
    """The CloudFormation logical ID cdk-nag shows for a construct's resource (``<LogicalId.Arn>``)."""
    resource = construct.node.default_child
    assert isinstance(resource, CfnElement)
    return stack.resolve(resource.logical_id)
