"""`freshvec local up --attach` with the password in PGPASSWORD, as a user runs it: the password is never written
anywhere (the state file, progress files, the control API's answers, the logs, `status`), and the operator
commands still work on that stack from a shell that does not hold the password."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from typer.testing import CliRunner

from freshvec.cli.errors import EXIT_OK
from freshvec.command import app
from freshvec.state import CONTROL_TOKEN_HEADER

FRESHVEC = Path(sys.executable).with_name("freshvec")
runner = CliRunner()
READY_S = 120


@pytest.fixture
def attached(pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    password = "pw-" + secrets.token_hex(12)
    pg.run(f"CREATE ROLE shop LOGIN REPLICATION PASSWORD '{password}'")
    pg.run("CREATE TABLE books (id SERIAL PRIMARY KEY, name VARCHAR(255) NOT NULL, description TEXT NOT NULL)")
    pg.run("ALTER TABLE books OWNER TO shop")
    pg.run("ALTER TABLE books REPLICA IDENTITY FULL")
    pg.run("CREATE PUBLICATION freshvec FOR TABLE books")
    pg.run("INSERT INTO books (name, description) VALUES ('Dune', 'Sand, spice and a desert planet.')")
    raw = pg.raw_config(columns={"id": "serial", "name": "varchar(255)", "description": "text"}, table="books")
    raw["source"]["postgres"]["connection"].pop("password")
    raw["source"]["postgres"]["connection"]["user"] = "shop"
    raw["embedding_field"], raw["metadata_fields"] = "description", ["name"]
    raw["sink"] = {"batching_window_s": 0}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw), encoding="utf-8")
    state, log = tmp_path / "state" / "local.json", tmp_path / "up.log"
    for name in ("PGPASSWORD", "FRESHVEC_PG_PASSWORD", "PGPASSFILE"):  # this shell (the CLI) never holds it
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FRESHVEC_LOCAL_STATE", str(state))
    monkeypatch.chdir(tmp_path)  # progress files (.freshvec/) land here
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(FRESHVEC), "local", "up", "--attach", "--config", str(config), "--state", str(state)],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "PGPASSWORD": password, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + READY_S
        while "Ctrl-C to stop" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Ctrl-C to stop" in log.read_text(), log.read_text()
        yield {"password": password, "state": state, "log": log, "folder": tmp_path, "process": process, "pg": pg}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def freshvec(*args: str) -> Any:
    result = runner.invoke(app, ["--local", *args])
    assert result.exit_code == EXIT_OK, result.output
    return result


def eventually_found(text: str, title: str) -> None:
    deadline = time.monotonic() + 60
    while title not in (answer := freshvec("query", text, "--json").stdout):
        assert time.monotonic() < deadline, f"{title!r} not searchable: {answer}"
        time.sleep(0.5)


def test_the_password_is_written_nowhere_and_every_command_works_without_it(attached: dict[str, Any]) -> None:
    password, state_path, pg = attached["password"], attached["state"], attached["pg"]
    state = json.loads(state_path.read_text())
    assert oct(state_path.stat().st_mode & 0o777) == "0o600"
    connection = json.loads(state["outputs"]["PipelineConfig"])["source"]["postgres"]["connection"]
    assert connection["user"] == "shop" and connection.get("password") is None
    said: list[str] = []

    # The operator commands, from a shell without the password.
    said.append(freshvec("status").stdout)
    said.append(freshvec("status", "--json").stdout)
    said.append(freshvec("reconcile", "--json").stdout)
    assert json.loads(said[-1])["in_sync"] == 1
    said.append(freshvec("backfill").stdout)  # reads the table through the pipeline, not with a password
    assert "1 row(s) sent" in said[-1]
    parked = {
        "v": 1, "source": "postgres", "keyspace": "public", "table": "books", "op": "UPDATE", "key": {"id": 1},
        "new": {"id": 1, "name": "Dune", "description": "an old parked text"}, "old": None, "seq": "1#0",
        "shard": "freshvec", "ts": "2026-01-01T00:00:00.000Z", "origin": "USER",
    }  # fmt: skip
    body = {"payload_b64": base64.b64encode(json.dumps(parked).encode()).decode(), "partition_key": "k"}
    sqs = boto3.client(
        "sqs", endpoint_url=state["endpoint"], region_name=state["region"],
        aws_access_key_id=state["aws_access_key"], aws_secret_access_key="any",
    )  # fmt: skip
    sqs.send_message(QueueUrl=state["outputs"]["SinkDlqUrl"], MessageBody=json.dumps(body))
    said.append(freshvec("redrive", "send", "--source", "dlq").stdout)
    assert "1 row(s) sent" in said[-1]
    # A change made in the user's own psql session reaches the index.
    pg.run("INSERT INTO books (name, description) VALUES ('Emma', 'Matchmaking in a small English village.')")
    eventually_found("matchmaking village", "Emma")
    reconciled = runner.invoke(app, ["--local", "reconcile", "--json"])
    said.append(reconciled.stdout)
    assert reconciled.exit_code == EXIT_OK and json.loads(reconciled.stdout)["in_sync"] == 2, reconciled.output

    # What the control API serves.
    control = {CONTROL_TOKEN_HEADER: state["token"]}
    said.append(requests.get(f"{state['control']}/stats", headers=control, timeout=10).text)
    added = requests.post(
        f"{state['control']}/generations/add",
        json={"generation": {"name": "g2", "embedding": {"provider": "local", "dimensions": 128}}},
        headers=control,
        timeout=60,
    )
    assert added.status_code == 200, added.text
    said.append(added.text)
    said.append(state_path.read_text())  # rewritten when the generations changed

    attached["process"].send_signal(signal.SIGINT)
    attached["process"].wait(60)
    written = [p for p in attached["folder"].rglob("*") if p.is_file()]
    assert any(p.parent.name == ".freshvec" for p in written), written  # the backfill's progress file
    for path in written:
        assert password not in path.read_text(errors="replace"), f"{path} holds the password"
    for text in said:
        assert password not in text
    assert "local stack stopped" in attached["log"].read_text()
