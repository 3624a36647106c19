"""The forwarder Lambda handler: env -> config, one timed run, leases released, EMF metrics out."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from freshvec import constants as c
from lambdas.forwarder import handler as forwarder_handler
from tests.integration.test_forwarder_stream import CHECKPOINT_TABLE, KINESIS_STREAM, Harness

RUN_S = 1.5


@dataclass
class Context:
    remaining_ms: float
    function_name: str = "freshvec-forwarder"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111122223333:function:freshvec-forwarder"
    aws_request_id: str = "3f1a7c2e-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_ms)


@pytest.fixture
def deployed(moto, monkeypatch):
    h = Harness.create(moto, real_time=True)
    monkeypatch.setenv(c.ENV_CONFIG, h.config.to_json())
    monkeypatch.setenv(c.ENV_STREAM_NAME, KINESIS_STREAM)
    monkeypatch.setenv(c.ENV_CHECKPOINT_TABLE, CHECKPOINT_TABLE)
    forwarder_handler._config.cache_clear()
    clients = forwarder_handler.Clients(streams=h.streams, kinesis=h.kinesis, dynamodb=h.dynamodb)
    monkeypatch.setattr(forwarder_handler, "_clients", lambda: clients)
    yield h
    forwarder_handler._config.cache_clear()


def emitted_metrics(output: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        if "_aws" not in doc:
            continue
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == c.METRICS_NAMESPACE
        assert doc["service"] == c.SERVICE_FORWARDER
        for metric in directive["Metrics"]:
            value = doc[metric["Name"]]
            values[metric["Name"]] = value[0] if isinstance(value, list) and len(value) == 1 else value
    return values


def test_one_invocation_forwards_reports_and_releases(deployed, capsys):
    deployed.write(60)
    context = Context(remaining_ms=(forwarder_handler.SAFETY_MARGIN_S + RUN_S) * 1000)
    summary = forwarder_handler.handler({"source": "aws.events"}, context)

    assert summary["changes_forwarded"] == 60
    assert summary["shards_owned"] == 2
    assert summary["passes"] > 1  # it kept polling the tip until its deadline
    deployed.assert_delivered_in_order(exactly_once=True)
    leases = deployed.store().load_stream(deployed.stream_arn)
    assert leases and all(cp.lease_owner is None for cp in leases.values())

    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics[c.M_CHANGES_FORWARDED] == 60
    assert metrics[c.M_SHARDS_OWNED] == 2
    assert metrics[c.M_THROTTLES] == 0
    assert metrics[c.M_TRIMMED_DATA_EVENTS] == 0
    assert 0 <= metrics[c.M_FORWARDER_LAG_MS] < 60_000


def test_an_idle_invocation_reports_no_lag(deployed, capsys):
    context = Context(remaining_ms=(forwarder_handler.SAFETY_MARGIN_S + 0.3) * 1000)
    summary = forwarder_handler.handler({}, context)
    assert summary["changes_forwarded"] == 0
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics[c.M_FORWARDER_LAG_MS] == 0
    assert metrics[c.M_CHANGES_FORWARDED] == 0


def test_a_created_at_that_goes_backwards_along_a_row_is_counted_and_logged_without_row_data(deployed, capsys, caplog):
    """The stand-in's service clock stamps the second change of one row 5 s earlier than the first (an injected
    createdAt lag): the forwarder counts it in CreatedAtRegressions and logs it once, with positions and times but
    neither the key nor the row. The same lag between two different rows is no regression."""
    lags = iter([0.0, 5.0, 0.0, 5.0])
    deployed.table.clocks.created_at_lag_s = lambda: next(lags)
    row = {"overview": "Secret text", "vote_count": 1, "popularity": "1.00", "rel_date": "2026-01-02"}
    deployed.table.upsert([{**row, "title": "Hidden Title"}])
    deployed.table.upsert([{**row, "title": "Hidden Title", "overview": "Secret text again"}])  # 5 s earlier
    deployed.table.upsert([{**row, "title": "Other A"}])
    deployed.table.upsert([{**row, "title": "Other B"}])  # earlier than Other A, another row: fine
    context = Context(remaining_ms=(forwarder_handler.SAFETY_MARGIN_S + RUN_S) * 1000)
    with caplog.at_level("WARNING"):
        summary = forwarder_handler.handler({"source": "aws.events"}, context)
    assert summary["changes_forwarded"] == 4 and summary["created_at_regressions"] == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics[c.M_CREATED_AT_REGRESSIONS] == 1
    [warning] = [r.getMessage() for r in caplog.records if "createdAt went backwards" in r.getMessage()]
    assert "1 record(s)" in warning
    assert "Hidden" not in warning and "Secret" not in warning
