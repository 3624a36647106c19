"""The stack for a PostgreSQL source: no Keyspaces table, the forwarder in the configured VPC with exactly the
configured secret, VPC endpoints by config, and the SlotLagBytes alarm."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from freshvec import constants as c
from freshvec.config import ConfigError, PipelineConfig, check_deployable
from tests.infra.conftest import PG_SECRET_ARN, PG_SECRET_KEY_ARN, Synth, postgres_context, synthesize


def _forwarder(result: Synth) -> dict[str, Any]:
    return result.template["Resources"][result.logical_id(result.stack.forwarder.function)]


def _forwarder_statements(result: Synth) -> list[dict[str, Any]]:
    role_id = result.logical_id(result.stack.forwarder.function.role)
    return [
        statement
        for resource in result.template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_no_keyspaces_table_or_row_ttl_resource(pg_synth: Synth) -> None:
    types = {r["Type"] for r in pg_synth.template["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::Cassandra::")}
    assert "Custom::AWS" not in types  # the row-TTL custom resource belongs to a Keyspaces table
    assert pg_synth.template["Description"].endswith("while a PostgreSQL table changes")
    actions = {
        a
        for s in _forwarder_statements(pg_synth)
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not {a for a in actions if a.startswith("cassandra:")}


def test_forwarder_runs_in_the_configured_subnets_and_security_groups(pg_synth: Synth) -> None:
    network = postgres_context()["freshvec"]["source"]["postgres"]["network"]
    function = _forwarder(pg_synth)
    assert function["Properties"]["VpcConfig"] == {
        "SubnetIds": network["subnet_ids"],
        "SecurityGroupIds": network["security_group_ids"],
    }
    # Created only after its role may make network interfaces.
    policy_id = pg_synth.logical_id(pg_synth.stack.forwarder.function.role.node.find_child("DefaultPolicy"))
    assert policy_id in function["DependsOn"]


def test_forwarder_reads_exactly_the_configured_secret_and_its_key(pg_synth: Synth) -> None:
    by_sid = {s.get("Sid"): s for s in _forwarder_statements(pg_synth)}
    assert by_sid["ReadTheDatabasePassword"]["Action"] == "secretsmanager:GetSecretValue"
    assert by_sid["ReadTheDatabasePassword"]["Resource"] == PG_SECRET_ARN
    assert by_sid["DecryptTheDatabasePassword"]["Action"] == "kms:Decrypt"
    assert by_sid["DecryptTheDatabasePassword"]["Resource"] == PG_SECRET_KEY_ARN
    secret_grants = [s for s in _forwarder_statements(pg_synth) if "secretsmanager" in str(s["Action"])]
    assert len(secret_grants) == 1


def test_vpc_endpoints_for_every_service_the_forwarder_calls(pg_synth: Synth) -> None:
    network = postgres_context()["freshvec"]["source"]["postgres"]["network"]
    endpoints = pg_synth.resources("AWS::EC2::VPCEndpoint").values()
    by_service = {e["Properties"]["ServiceName"]["Fn::Join"][1][-1].lstrip("."): e["Properties"] for e in endpoints}
    assert set(by_service) == {"kinesis-streams", "secretsmanager", "logs", "monitoring", "dynamodb"}
    for name in ("kinesis-streams", "secretsmanager", "logs", "monitoring"):
        props = by_service[name]
        assert props["VpcEndpointType"] == "Interface"
        assert props["PrivateDnsEnabled"] is True
        assert props["SubnetIds"] == network["subnet_ids"]
        assert props["VpcId"] == network["vpc_id"]
    assert by_service["dynamodb"]["VpcEndpointType"] == "Gateway"
    assert by_service["dynamodb"]["RouteTableIds"] == network["route_table_ids"]
    (group,) = pg_synth.resources("AWS::EC2::SecurityGroup").values()
    assert group["Properties"]["SecurityGroupIngress"] == [
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "SourceSecurityGroupId": network["security_group_ids"][0],
            "Description": "HTTPS from the freshvec forwarder",
        }
    ]


def test_slot_lag_alarm_fires_on_a_threshold_and_on_missing_data(pg_synth: Synth) -> None:
    alarms = pg_synth.resources("AWS::CloudWatch::Alarm").values()
    (slot,) = [a["Properties"] for a in alarms if a["Properties"].get("MetricName") == c.M_SLOT_LAG_BYTES]
    assert slot["TreatMissingData"] == "breaching"
    assert slot["Threshold"] == 1024 * 2**20
    assert slot["Namespace"] == c.METRICS_NAMESPACE
    assert slot["AlarmActions"]
    keyspaces_only = (c.M_TRIMMED_DATA_EVENTS, c.M_CREATED_AT_REGRESSIONS)
    assert not [a for a in alarms if a["Properties"].get("MetricName") in keyspaces_only]


def test_without_endpoints_the_forwarder_still_runs_in_the_vpc(tmp_path_factory: pytest.TempPathFactory) -> None:
    context = copy.deepcopy(postgres_context())
    context["freshvec"]["source"]["postgres"]["network"]["create_endpoints"] = False
    del context["freshvec"]["source"]["postgres"]["connection"]["password_secret_kms_key_arn"]
    result = synthesize(tmp_path_factory, context)
    assert result.resources("AWS::EC2::VPCEndpoint") == {}
    assert result.resources("AWS::EC2::SecurityGroup") == {}
    assert "VpcConfig" in _forwarder(result)["Properties"]
    assert not [s for s in _forwarder_statements(result) if s.get("Sid") == "DecryptTheDatabasePassword"]


def _pg_config(**changes: Any) -> PipelineConfig:
    raw = copy.deepcopy(postgres_context()["freshvec"])
    for path, value in changes.items():
        target = raw["source"]["postgres"]
        *parents, leaf = path.split(".")
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return PipelineConfig.from_dict(raw)


def test_a_deployed_postgres_source_reads_its_password_from_secrets_manager() -> None:
    check_deployable(_pg_config())
    with pytest.raises(ConfigError, match="password_secret_arn"):
        check_deployable(
            _pg_config(**{"connection.password_secret_arn": None, "connection.password_secret_kms_key_arn": None})
        )


def test_endpoints_need_the_route_tables_for_the_dynamodb_gateway() -> None:
    with pytest.raises(ConfigError, match="route_table_ids"):
        check_deployable(_pg_config(**{"network.route_table_ids": []}))
    check_deployable(_pg_config(**{"network.route_table_ids": [], "network.create_endpoints": False}))


def test_the_secret_key_must_be_a_kms_key_arn() -> None:
    with pytest.raises(ConfigError, match="password_secret_kms_key_arn"):
        _pg_config(**{"connection.password_secret_kms_key_arn": "alias/mine"})
