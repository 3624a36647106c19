"""`freshvec preflight`: each check passes on a ready account and fails, with its fix, on what would break a deploy.

CloudFormation, SSM, STS and S3 Vectors are moto; Bedrock's model calls, Keyspaces Streams and Lambda's
GetAccountSettings (absent from moto) are the control-plane fakes, whose answers are checked against botocore.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from typer.testing import CliRunner

from freshvec import constants as c
from freshvec.cli import app as cli
from freshvec.cli import preflight
from freshvec.config import DEFAULT_CONFIG
from freshvec.local.moto_server import MotoServer
from freshvec.testing.botocore_shapes import assert_is_modeled_error, assert_matches_output_shape
from freshvec.testing.fakes.control_plane import (
    FakeBedrock,
    FakeKeyspacesStreamsListing,
    FakeLambdaAccount,
    ModelAccess,
)

runner = CliRunner()
BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"


class Account:
    """One account in one Region: moto for what it answers, the fakes for the rest."""

    def __init__(self, moto: MotoServer) -> None:
        self.moto = moto
        self.bedrock = FakeBedrock(region=moto.region)
        self.streams = FakeKeyspacesStreamsListing(region=moto.region)
        self.lambda_ = FakeLambdaAccount()
        self.fakes = {"bedrock": self.bedrock, "keyspacesstreams": self.streams, "lambda": self.lambda_}
        self.overrides: dict[str, Any] = {}

    def clients(self, service: str) -> Any:
        return self.overrides.get(service) or self.fakes.get(service) or self.moto.client(service)

    def bootstrap(self, *, stack: bool = True, parameter: bool = True) -> None:
        if stack:
            template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}}
            self.moto.client("cloudformation").create_stack(
                StackName=preflight.CDK_TOOLKIT_STACK, TemplateBody=json.dumps(template)
            )
        if parameter:
            self.moto.client("ssm").put_parameter(Name=BOOTSTRAP_PARAMETER, Value="27", Type="String")


@pytest.fixture
def account(moto: MotoServer) -> Account:
    return Account(moto)


def _config_file(tmp_path: Path, **changes: Any) -> Path:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    for dotted, value in changes.items():
        target = raw
        *parents, last = dotted.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    path = tmp_path / "cdk.json"
    path.write_text(json.dumps({"app": "python3 app.py", "context": {"freshvec": raw}}))
    return path


def _run(account: Account, path: Path, **overrides: str) -> dict[str, preflight.Check]:
    checks = preflight.run_preflight(account.clients, account.moto.region, preflight.ConfigSource(path, overrides))
    return {check.name: check for check in checks}


def test_a_ready_account_passes_every_check(account: Account, tmp_path: Path) -> None:
    account.bootstrap(parameter=False)
    checks = _run(account, _config_file(tmp_path))
    assert list(checks) == [
        "config",
        "keyspaces-cdc",
        "s3-vectors",
        "index-search",
        "bedrock-model",
        "model-access",
        "lambda-concurrency",
        "cdk-bootstrap",
    ]
    assert {check.status for check in checks.values()} == {preflight.OK}, checks
    assert checks["index-search"].detail == "the deploy sets ENHANCED; full-text: off (in place, no new index)"
    assert checks["cdk-bootstrap"].detail == "CDKToolkit is CREATE_COMPLETE"
    # The configured table does not exist before the first deploy: ListStreams asked for it, and that is fine.
    assert account.streams.calls == [{"maxResults": 1, "keyspaceName": "media", "tableName": "movies"}]


def test_an_invalid_or_undeployable_config_fails_naming_the_field(account: Account, tmp_path: Path) -> None:
    bad = _run(account, _config_file(tmp_path, sink__batch_size=0))
    assert bad["config"].status == preflight.FAIL and "'sink.batch_size'" in bad["config"].detail
    assert bad["config"].fix == f"fix sink.batch_size in {tmp_path / 'cdk.json'}"
    assert {bad[name].status for name in ("bedrock-model", "model-access", "lambda-concurrency")} == {preflight.SKIP}
    local = _run(account, _config_file(tmp_path, embedding={"provider": "local"}))
    assert local["config"].status == preflight.FAIL
    assert "runs in local mode only and cannot be deployed; allowed: titan, cohere" in local["config"].detail
    # -c overrides, as for cdk synth
    overridden = _run(account, _config_file(tmp_path), **{"freshvec.keyspace": "m"})
    assert overridden["config"].status == preflight.FAIL and "AWS::Cassandra names need at least 2" in (
        overridden["config"].detail
    )
    missing = _run(account, tmp_path / "none.json")
    assert missing["config"].status == preflight.FAIL and "not found" in missing["config"].detail


def test_a_region_without_keyspaces_cdc_s3_vectors_or_bedrock(account: Account, tmp_path: Path) -> None:
    account.streams.offered = False
    account.bedrock.offered = False
    # A real botocore client whose endpoint has nothing behind it (port 9, discard, is closed): EndpointConnectionError.
    account.overrides["s3vectors"] = boto3.client(
        "s3vectors",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    checks = _run(account, _config_file(tmp_path))
    assert checks["keyspaces-cdc"].status == preflight.FAIL
    assert checks["keyspaces-cdc"].detail == "us-east-1 does not offer Amazon Keyspaces CDC streams"
    assert checks["s3-vectors"].status == preflight.FAIL  # a real botocore EndpointConnectionError
    assert checks["s3-vectors"].detail == "us-east-1 does not offer Amazon S3 Vectors"
    assert checks["bedrock-model"].detail == "us-east-1 does not offer Amazon Bedrock"


def test_a_denied_listing_still_shows_the_service_is_offered(account: Account, tmp_path: Path) -> None:
    account.streams.denied = True
    checks = _run(account, _config_file(tmp_path))
    assert checks["keyspaces-cdc"].status == preflight.OK
    assert "(cassandra:ListStreams was denied to this identity)" in checks["keyspaces-cdc"].detail
    with pytest.raises(Exception) as raised:
        account.streams.list_streams()
    assert_is_modeled_error("keyspacesstreams", "ListStreams", raised.value)


def test_a_model_the_region_does_not_offer(account: Account, tmp_path: Path) -> None:
    del account.bedrock.models[c.COHERE_MULTI_V3]
    checks = _run(account, _config_file(tmp_path, embedding={"provider": "cohere", "model_id": c.COHERE_MULTI_V3}))
    assert checks["bedrock-model"].status == preflight.FAIL
    assert checks["bedrock-model"].detail == f"us-east-1 does not offer {c.COHERE_MULTI_V3}"
    assert "embedding.model_id" in (checks["bedrock-model"].fix or "")
    with pytest.raises(Exception) as raised:
        account.bedrock.get_foundation_model(modelIdentifier=c.COHERE_MULTI_V3)
    assert_is_modeled_error("bedrock", "GetFoundationModel", raised.value)


def test_a_third_party_model_without_a_marketplace_subscription(account: Account, tmp_path: Path) -> None:
    account.bedrock.models[c.COHERE_EN_V3] = ModelAccess(agreement="NOT_AVAILABLE")
    checks = _run(account, _config_file(tmp_path, embedding={"provider": "cohere"}))
    access = checks["model-access"]
    assert access.status == preflight.FAIL and access.detail == f"{c.COHERE_EN_V3}: no AWS Marketplace subscription"
    assert access.fix is not None and access.fix.startswith("an administrator must subscribe once in AWS Marketplace")
    for action in ("aws-marketplace:Subscribe", "aws-marketplace:ViewSubscriptions", "aws-marketplace:Unsubscribe"):
        assert action in access.fix
    assert preflight.MODEL_ACCESS_DOC in access.fix


def test_cohere_v4_through_an_inference_profile_needs_the_marketplace_subscription(
    account: Account, tmp_path: Path
) -> None:
    account.bedrock.models[c.COHERE_V4] = ModelAccess(agreement="NOT_AVAILABLE")
    embedding = {"provider": "cohere", "model_id": "eu.cohere.embed-v4:0", "dimensions": 1024}
    checks = _run(account, _config_file(tmp_path, embedding=embedding))
    assert checks["bedrock-model"].status == preflight.OK  # the profile is checked through its foundation model
    assert ("GetFoundationModel", {"modelIdentifier": c.COHERE_V4}) in account.bedrock.calls
    access = checks["model-access"]
    assert access.status == preflight.FAIL and access.detail == f"{c.COHERE_V4}: no AWS Marketplace subscription"


def test_nova_is_first_party_so_no_subscription_is_asked_for(account: Account, tmp_path: Path) -> None:
    account.bedrock.models[c.NOVA_MME] = ModelAccess(agreement="NOT_AVAILABLE")
    checks = _run(account, _config_file(tmp_path, embedding={"provider": "nova", "dimensions": 1024}))
    access = checks["model-access"]
    assert access.status == preflight.FAIL and "Marketplace" not in access.detail + (access.fix or "")
    account.bedrock.models[c.NOVA_MME] = ModelAccess()
    assert _run(account, _config_file(tmp_path, embedding={"provider": "nova"}))["model-access"].status == preflight.OK


def test_every_configured_generation_model_is_checked(account: Account) -> None:
    active = preflight.EmbeddingConfig()
    following = preflight.EmbeddingConfig(provider="nova", model_id=c.NOVA_MME, dimensions=1024)
    account.bedrock.models[c.NOVA_MME] = ModelAccess(authorization="NOT_AUTHORIZED")

    def usable(embedding: preflight.EmbeddingConfig) -> preflight.Check:
        return preflight.check_model_usable(account.clients, "us-east-1", embedding)

    def offered(embedding: preflight.EmbeddingConfig) -> preflight.Check:
        return preflight.check_model_offered(account.clients, "us-east-1", embedding)

    access = preflight.each_model("model-access", [active, following], usable)
    assert access.status == preflight.FAIL and access.detail.startswith(c.NOVA_MME)
    both = preflight.each_model("bedrock-model", [active, following], offered)
    assert both.status == preflight.OK and c.TITAN_V2 in both.detail and c.NOVA_MME in both.detail


@pytest.mark.parametrize(
    ("access", "reason"),
    [
        (ModelAccess(agreement="PENDING"), "its AWS Marketplace agreement is pending"),
        (ModelAccess(authorization="NOT_AUTHORIZED"), "not authorized for this account"),
        (ModelAccess(entitlement="NOT_AVAILABLE"), "no entitlement"),
        (ModelAccess(region="NOT_AVAILABLE"), "not available in us-east-1"),
        (
            ModelAccess(agreement="ERROR", agreement_error="agreement failed"),
            "its agreement is ERROR: agreement failed",
        ),
    ],
)
def test_each_answer_of_the_availability_call_that_is_not_yes(
    account: Account, tmp_path: Path, access: ModelAccess, reason: str
) -> None:
    account.bedrock.models[c.TITAN_V2] = access
    assert_matches_output_shape(
        "bedrock",
        "GetFoundationModelAvailability",
        account.bedrock.get_foundation_model_availability(modelId=c.TITAN_V2),
    )
    check = _run(account, _config_file(tmp_path))["model-access"]
    assert check.status == preflight.FAIL and check.detail == f"{c.TITAN_V2}: {reason}" and check.fix


def test_denied_model_calls_say_which_permission(account: Account, tmp_path: Path) -> None:
    account.bedrock.denied = {"GetFoundationModel", "GetFoundationModelAvailability"}
    checks = _run(account, _config_file(tmp_path))
    assert checks["bedrock-model"].status == preflight.FAIL and "bedrock:GetFoundationModel was denied" in (
        checks["bedrock-model"].detail
    )
    assert "bedrock:GetFoundationModelAvailability was denied" in checks["model-access"].detail
    with pytest.raises(Exception) as raised:
        account.bedrock.get_foundation_model_availability(modelId=c.TITAN_V2)
    assert_is_modeled_error("bedrock", "GetFoundationModelAvailability", raised.value)


def test_reserved_concurrency_must_leave_one_hundred_unreserved(account: Account, tmp_path: Path) -> None:
    account.lambda_.concurrent_executions = account.lambda_.unreserved = 400
    assert_matches_output_shape("lambda", "GetAccountSettings", account.lambda_.get_account_settings())
    fits = _run(account, _config_file(tmp_path, sink__reserved_concurrency=200, forwarder__reserved_concurrency=100))
    assert fits["lambda-concurrency"].status == preflight.OK
    assert fits["lambda-concurrency"].detail == "400 unreserved - 300 reserved by the stack = 100 (≥ 100)"
    over = _run(account, _config_file(tmp_path, sink__reserved_concurrency=200, forwarder__reserved_concurrency=101))
    check = over["lambda-concurrency"]
    assert check.status == preflight.FAIL and check.detail.startswith("400 unreserved - 301 reserved by the stack = 99")
    assert check.fix is not None and check.fix.startswith("reserve at most 300 in total")
    # A new account's quota of 10: fine as long as the stack reserves nothing (the default).
    account.lambda_.concurrent_executions = account.lambda_.unreserved = 10
    assert _run(account, _config_file(tmp_path))["lambda-concurrency"].status == preflight.OK


def test_bootstrap_is_found_by_stack_or_by_its_version_parameter(account: Account, tmp_path: Path) -> None:
    missing = _run(account, _config_file(tmp_path))["cdk-bootstrap"]
    assert missing.status == preflight.FAIL and missing.fix is not None and "cdk bootstrap aws://" in missing.fix
    account.bootstrap(stack=False)  # bootstrapped under another toolkit stack name
    found = _run(account, _config_file(tmp_path))["cdk-bootstrap"]
    assert found.status == preflight.OK and "bootstrap version 27" in found.detail


def test_a_failed_bootstrap_stack_fails(account: Account, tmp_path: Path) -> None:
    class FailedToolkit:
        def describe_stacks(self, **_: Any) -> dict[str, Any]:
            return {"Stacks": [{"StackName": "CDKToolkit", "StackStatus": "UPDATE_ROLLBACK_FAILED"}]}

    account.overrides["cloudformation"] = FailedToolkit()
    check = _run(account, _config_file(tmp_path))["cdk-bootstrap"]
    assert check.status == preflight.FAIL and check.detail == "the bootstrap stack CDKToolkit is UPDATE_ROLLBACK_FAILED"


def test_fake_answers_match_the_botocore_models(account: Account) -> None:
    account.streams.tables = [("media", "movies")]
    assert_matches_output_shape(
        "keyspacesstreams", "ListStreams", account.streams.list_streams(keyspaceName="media", tableName="movies")
    )
    assert_matches_output_shape(
        "bedrock", "GetFoundationModel", account.bedrock.get_foundation_model(modelIdentifier=c.TITAN_V2)
    )
    listed = account.bedrock.list_foundation_models(byProvider="Cohere")
    assert_matches_output_shape("bedrock", "ListFoundationModels", listed)
    assert {m["modelId"] for m in listed["modelSummaries"]} == {c.COHERE_EN_V3, c.COHERE_MULTI_V3, c.COHERE_V4}
    with pytest.raises(ValueError, match="invalid ListStreams parameters"):
        account.streams.list_streams(maxResults=0)


def test_the_command_prints_one_line_per_check_and_exits_1_on_a_failure(
    account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account.bootstrap()
    monkeypatch.setattr(preflight, "make_client_factory", lambda _region: account.clients)
    path = _config_file(tmp_path)
    ready = runner.invoke(cli.app, ["preflight", "--config", str(path), "--region", "us-east-1"])
    assert ready.exit_code == 0, ready.output
    lines = ready.output.splitlines()
    assert lines[0] == "freshvec preflight: account 123456789012, us-east-1"
    assert [line.split(":")[0] for line in lines[1:9]] == [
        "✓ config",
        "✓ keyspaces-cdc",
        "✓ s3-vectors",
        "✓ index-search",
        "✓ bedrock-model",
        "✓ model-access",
        "✓ lambda-concurrency",
        "✓ cdk-bootstrap",
    ]
    assert lines[-1] == "ready to deploy: `cdk deploy`"

    account.streams.offered = False
    failed = runner.invoke(cli.app, ["preflight", "--config", str(path), "--json"])
    assert failed.exit_code == 1
    doc = json.loads(failed.output)
    assert doc["ok"] is False and doc["region"] == "us-east-1"
    [bad] = [check for check in doc["checks"] if check["status"] == "fail"]
    assert (
        bad["name"] == "keyspaces-cdc" and bad["fix"] == "deploy in a Region that offers Amazon Keyspaces CDC streams"
    )
    text = runner.invoke(cli.app, ["preflight", "--config", str(path)])
    assert "✗ keyspaces-cdc: us-east-1 does not offer Amazon Keyspaces CDC streams" in text.output
    assert "    fix: deploy in a Region that offers Amazon Keyspaces CDC streams" in text.output
    assert text.output.rstrip().endswith("1 of 8 checks failed")


def test_index_search_shows_the_deployed_mode_and_each_analyzer(tmp_path: Path) -> None:
    """Against the local S3 Vectors endpoint as the deployed index: the mode and each key's status, read back."""
    from freshvec.cli.status import describe_index_search
    from freshvec.local.moto_server import MotoServer

    with MotoServer.start() as server:
        s3v = server.client("s3vectors")
        s3v.create_vector_bucket(vectorBucketName="preflight-vectors")
        s3v.create_index(
            vectorBucketName="preflight-vectors",
            indexName="movies-x",
            dataType="float32",
            dimension=4,
            distanceMetric="cosine",
            metadataConfiguration={
                "textSearchConfigurations": [{"metadataKey": "overview", "language": "en"}, {"metadataKey": "title"}]
            },
        )
        index = s3v.get_index(vectorBucketName="preflight-vectors", indexName="movies-x")["index"]
    assert describe_index_search(index) == "ENHANCED; full-text: overview ACTIVE (en), title ACTIVE (standard)"
    assert describe_index_search({"indexMode": "CLASSIC"}) == "CLASSIC; full-text search off"
