"""cdk-nag AwsSolutions: no unacknowledged finding, and every acknowledgment names its resource and reason."""

from __future__ import annotations

from cdk_nag import AwsSolutionsChecks

from stacks.acknowledgments import ENI_FINDING, SYSTEM_KEYSPACE_FINDING
from tests.infra.conftest import Synth

ACKNOWLEDGED = "aws:cdk:acknowledged-rules"  # construct metadata written by Validations.of(...).acknowledge
# Every acknowledgment the stack makes, by construct path: a new one must be added here on purpose.
EXPECTED_ACKNOWLEDGMENTS = {
    ("ChangeStream/Stream", "AwsSolutions-KDS3"),
    ("Forwarder/Role", "AwsSolutions-IAM5[Resource::*]"),
    (
        "Forwarder/Role",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cassandra:<AWS::Region>:<AWS::AccountId>:"
        "/keyspace/media/table/movies/stream/*]",
    ),
    ("Forwarder/Role", SYSTEM_KEYSPACE_FINDING),
    ("Operator/Policy", SYSTEM_KEYSPACE_FINDING),
    ("Operator/Policy", "AwsSolutions-IAM5[Resource::*]"),
    ("Operator/Policy", "AwsSolutions-IAM5[Resource::<SinkFailedBatches16F480FE.Arn>/*]"),
    ("Forwarder/Function", "AwsSolutions-L1"),
    ("Sink/Function", "AwsSolutions-L1"),
    ("IndexSettings/Function", "AwsSolutions-L1"),
    ("Sink/Role", "AwsSolutions-IAM5[Resource::<SinkFailedBatches16F480FE.Arn>/*]"),
    ("Sink/PoisonRecords", "AwsSolutions-SQS3"),
    ("Sink/FailedBatches", "AwsSolutions-S1"),
    ("BatchInference/JobFiles", "AwsSolutions-S1"),
    ("BatchInference/ServiceRole", "AwsSolutions-IAM5[Resource::<BatchInferenceJobFiles97E3057F.Arn>/*]"),
    ("Operator/Policy", "AwsSolutions-IAM5[Resource::<BatchInferenceJobFiles97E3057F.Arn>/*]"),
    (
        "Operator/Policy",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:"
        "model-invocation-job/*]",
    ),
}


def _acknowledgments(synth: Synth) -> dict[tuple[str, str], str]:
    """(construct path below the stack, rule id) -> reason, read from the construct tree."""
    found: dict[tuple[str, str], str] = {}
    prefix = synth.stack.node.path + "/"
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != ACKNOWLEDGED:
                continue
            for key, reason in entry.data.items():
                found[(construct.node.path.removeprefix(prefix), key.removeprefix("Annotation::"))] = reason
    return found


def test_aws_solutions_reports_no_unacknowledged_finding(synth: Synth, variant: Synth, pg_synth: Synth) -> None:
    for result in (synth, variant, pg_synth):
        report = AwsSolutionsChecks(result.stack).validate_scope(result.stack)
        findings = [
            f"{violation.rule_name} at {resource.construct_path}"
            for violation in report.violations
            for resource in violation.violating_resources
        ]
        assert report.success, findings
        assert findings == []


def test_each_acknowledgment_is_expected_and_gives_a_specific_reason(synth: Synth) -> None:
    acknowledgments = _acknowledgments(synth)
    assert set(acknowledgments) == EXPECTED_ACKNOWLEDGMENTS
    for (path, rule), reason in acknowledgments.items():
        assert len(reason) > 80, f"{rule} on {path}: the reason must explain the specific case"


# A PostgreSQL source in a VPC: no Keyspaces findings; the network-interface grants instead.
EXPECTED_POSTGRES_ACKNOWLEDGMENTS = {
    entry for entry in EXPECTED_ACKNOWLEDGMENTS if "cassandra" not in entry[1] and entry[0] != "Forwarder/Role"
} | {
    ("Forwarder/Role", "AwsSolutions-IAM5[Resource::*]"),
    ("Forwarder/Role", ENI_FINDING),
}


def test_postgres_acknowledgments_are_expected_and_specific(pg_synth: Synth) -> None:
    acknowledgments = _acknowledgments(pg_synth)
    assert set(acknowledgments) == EXPECTED_POSTGRES_ACKNOWLEDGMENTS
    for (path, rule), reason in acknowledgments.items():
        assert len(reason) > 80, f"{rule} on {path}: the reason must explain the specific case"


def test_nothing_is_acknowledged_for_the_whole_stack(synth: Synth) -> None:
    assert not any(entry.type == ACKNOWLEDGED for entry in synth.stack.node.metadata)
    assert not any(entry.type == ACKNOWLEDGED for entry in synth.stack.node.scope.node.metadata)
