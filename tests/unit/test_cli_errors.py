"""Expected failures become one clear line (exit 1); bugs keep their traceback; usage errors exit 2."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError
from cassandra import AuthenticationFailed
from cassandra.cluster import NoHostAvailable
from typer.testing import CliRunner

from freshvec.cli import app as cli
from freshvec.cli.errors import EXIT_FAILED, EXIT_USAGE, OperatorError, explain
from freshvec.config import default_config
from freshvec.datafiles import LoaderFileError
from freshvec.errors import MisconfigurationError, PoisonRecordError, TransientError
from freshvec.filters import FilterError

runner = CliRunner()


def _client_error(code: str, message: str, operation: str = "DescribeStacks") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (NoCredentialsError(), "no AWS credentials found"),
        (NoRegionError(), "no AWS region: pass --region or set AWS_REGION"),
        (
            _client_error(
                "AccessDeniedException", "User is not authorized to perform s3vectors:QueryVectors", "QueryVectors"
            ),
            "access denied for QueryVectors: User is not authorized to perform s3vectors:QueryVectors",
        ),
        (_client_error("AccessDenied", "denied", "ListObjectsV2"), "access denied for ListObjectsV2: denied"),
        (
            _client_error("ValidationError", "Stack with id nope does not exist"),
            "stack not found: Stack with id nope does not exist",
        ),
        (
            _client_error("NotFoundException", "The specified index could not be found", "GetIndex"),
            "not found (GetIndex)",
        ),
        (_client_error("ExpiredTokenException", "expired", "PutRecords"), "the AWS credentials have expired"),
        (_client_error("UnrecognizedClientException", "bad token", "PutRecords"), "were not accepted"),
        (
            _client_error("ThrottlingException", "slow down", "PutRecords"),
            "PutRecords failed (ThrottlingException): slow down",
        ),
        (
            EndpointConnectionError(endpoint_url="https://kinesis.xx-east-9.amazonaws.com"),
            "cannot reach https://kinesis.xx-east-9",
        ),
        (FilterError("year.$gt", "$gt takes a number, got a string"), "invalid filter at year.$gt: $gt takes a number"),
        (LoaderFileError("rows.csv: no such file"), "rows.csv: no such file"),
        (OperatorError("stack 'x' not found"), "stack 'x' not found"),
        (MisconfigurationError("S3 Vectors QueryVectors failed: denied"), "S3 Vectors QueryVectors failed: denied"),
        (
            PoisonRecordError("Bedrock refused the text: ValidationException: too many tokens"),
            "Bedrock refused the text: ValidationException",
        ),
        (
            TransientError("Bedrock InvokeModel m still failing after 5 attempt(s): slow down"),
            "still failing after 5 attempt(s)",
        ),
        (AuthenticationFailed("Failed to authenticate"), "Amazon Keyspaces: AuthenticationFailed"),
        (FileNotFoundError(2, "No such file or directory", "x.pem"), "No such file or directory"),
    ],
)
def test_expected_failures_have_one_line(exc: BaseException, expected: str) -> None:
    message = explain(exc)
    assert message is not None and expected in message and "\n" not in message


def test_tls_failures_suggest_a_ca_bundle() -> None:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc = NoHostAvailable("Unable to connect to any servers", {"3.3.3.3:9142": error})
    message = explain(exc)
    assert message is not None and message.startswith("cannot connect to Amazon Keyspaces: 3.3.3.3:9142")
    assert "--ca-bundle" in message


def test_bugs_are_not_explained_away() -> None:
    assert explain(KeyError("oops")) is None
    assert explain(ZeroDivisionError()) is None


def _local_state(tmp_path: Path, control: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "local.json"
    outputs = {"PipelineConfig": default_config().to_json(), "ChangeStreamName": "s", "SinkDlqUrl": "http://q"}
    path.write_text(
        json.dumps(
            {
                "endpoint": "http://127.0.0.1:9",
                "aws_access_key": "k",
                "region": "us-east-1",
                "control": control,
                "outputs": outputs,
            }
        )
    )
    return path


def test_cli_prints_error_line_without_traceback(tmp_path: Path) -> None:
    state = _local_state(tmp_path)
    result = runner.invoke(cli.app, ["--local-state", str(state), "--local", "query", "x", "--filter", "[1]"])
    assert result.exit_code == EXIT_USAGE
    assert result.output == "error: invalid filter: a filter must be a JSON object, got an array\n"


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    state = _local_state(tmp_path)
    result = runner.invoke(cli.app, ["--debug", "--local-state", str(state), "--local", "query", "x", "--filter", "{"])
    assert result.exit_code == EXIT_USAGE
    assert "Traceback" in result.output and "error: invalid filter: not valid JSON" in result.output


def test_missing_local_state_is_explained(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["--local-state", str(tmp_path / "none.json"), "--local", "status"])
    assert result.exit_code == EXIT_FAILED  # could not look: not "drift", not a usage error
    assert result.output.startswith("error: no local pipeline running") and "freshvec local up" in result.output


def test_stopped_local_pipeline_is_explained(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["--local-state", str(_local_state(tmp_path)), "--local", "query", "sharks"])
    assert result.exit_code == EXIT_FAILED
    assert "local pipeline not reachable at http://127.0.0.1:9" in result.output


def test_a_crash_exits_3_with_its_traceback_never_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug is not "drift found": scripts gating on reconcile must be able to tell them apart."""
    from freshvec.cli import reconcile

    def crash(*_args: object, **_kwargs: object) -> None:
        raise AttributeError("'LocalPostgresTable' object has no attribute 'scan'")

    monkeypatch.setattr(reconcile, "reconcile", crash)
    result = runner.invoke(cli.app, ["--local-state", str(_local_state(tmp_path)), "--local", "reconcile"])
    assert result.exit_code == EXIT_FAILED
    assert "AttributeError" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["query"],  # missing text
        ["query", "x", "--k", "0"],
        ["load", "--update", "everything"],
        ["redrive", "send", "--source", "elsewhere"],
        ["backfill", "--segments", "0"],
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["--local-state", str(_local_state(tmp_path)), "--local", *args])
    assert result.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["load"],
        ["query"],
        ["backfill"],
        ["status"],
        ["redrive"],
        ["redrive", "list"],
        ["redrive", "show"],
        ["redrive", "send"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(cli.app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
