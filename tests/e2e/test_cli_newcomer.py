"""What a newcomer meets through ``freshvec --local``: a row whose key no vector can hold, a row without text,
a malformed parked message. Each ends in a summary and an exit code that says what happened, never a traceback.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec.cli import console
from freshvec.cli.errors import EXIT_CHECK_FAILED, EXIT_OK
from freshvec.command import app as command
from freshvec.config import DEFAULT_CONFIG
from freshvec.local import LocalPipeline
from freshvec.local.cli import stack_state
from freshvec.local.control import ControlServer
from freshvec.state import write_local_state

runner = CliRunner()
CONFIG = copy.deepcopy(DEFAULT_CONFIG)
CONFIG["sink"] = {"batching_window_s": 0}
LONG_TITLE = "K" * 1100  # its vector key is 1,104 characters: over S3 Vectors' 1,024


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    state = tmp_path_factory.mktemp("local") / "local.json"
    with LocalPipeline.start(CONFIG) as running, pytest.MonkeyPatch.context() as env:
        control = ControlServer(running).start()
        write_local_state(state, stack_state(running, control))
        env.setenv("FRESHVEC_LOCAL_STATE", str(state))
        env.setattr(console.out, "width", 250)
        env.setattr(console.err, "width", 250)
        try:
            yield running
        finally:
            control.stop()


def freshvec(*args: str) -> Any:
    result = runner.invoke(command, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def jsonl(tmp_path: Path, name: str, *rows: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_backfill_counts_a_row_no_vector_can_hold_and_sends_the_rest(pipeline: LocalPipeline, tmp_path: Path) -> None:
    rows = jsonl(
        tmp_path,
        "rows.jsonl",
        {"title": LONG_TITLE, "overview": "a long key movie"},
        {"title": "Backfill Neighbour", "overview": "a lighthouse keeper befriends a whale"},
    )
    assert freshvec("--local", "load", str(rows)).exit_code == EXIT_OK
    pipeline.wait_synced(timeout=30)

    result = freshvec("--local", "backfill", "--restart", "--segments", "1", "--state", str(tmp_path / "bf.json"))

    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "row(s) sent" in result.output and "1/1 token ranges done" in result.output
    assert "1 row(s) cannot be indexed" in result.output
    assert "vector key is 1104 characters" in result.output
    assert LONG_TITLE not in result.output  # the key is shortened
    pipeline.wait_synced(timeout=30)
    assert pipeline.indexed({"title": "Backfill Neighbour"}) is not None
    # A rerun finds the range done and says again what could not be sent.
    again = freshvec("--local", "backfill", "--segments", "1", "--state", str(tmp_path / "bf.json"))
    assert again.exit_code == EXIT_CHECK_FAILED and "already complete" in again.output
    assert "1 row(s) cannot be indexed" in again.output


def test_redrive_list_shows_malformed_parked_messages_as_malformed(pipeline: LocalPipeline) -> None:
    sqs = pipeline.server.client("sqs")
    event = {"v": 1, "source": "keyspaces", "keyspace": "media", "table": "movies", "op": "UPDATE",
             "key": {"title": "Heat"}, "new": {"title": "Heat"}, "old": None, "seq": "1", "shard": "s",
             "ts": "2026-12-07T10:00:00Z", "origin": "USER"}  # fmt: skip
    payload = base64.b64encode(json.dumps(event).encode()).decode()
    bodies = [
        {"payload_b64": payload, "partition_key": '["Heat"]', "failed_at": {"x": 1}, "error_class": "[bold]x"},
        {"payload_b64": payload, "partition_key": '["Heat"]', "failed_at": 17},
        ["not", "an", "object"],
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=pipeline.resources.dlq_url, MessageBody=json.dumps(body))

    result = freshvec("--local", "redrive", "list", "--source", "dlq")

    assert result.exit_code == EXIT_OK, result.output
    assert 'malformed: {"x": 1}' in result.output and "malformed: 17" in result.output
    assert "[bold]x" in result.output  # shown as written, not taken for markup
    assert "not a freshvec DLQ message" in result.output


def test_load_wait_summarises_a_row_no_vector_can_hold_and_exits_1(pipeline: LocalPipeline, tmp_path: Path) -> None:
    rows = jsonl(
        tmp_path,
        "rows.jsonl",
        {"title": "W" * 1100, "overview": "a long key movie"},
        {"title": "Wait Neighbour", "overview": "a submarine crew hears whale song"},
    )

    result = freshvec("--local", "load", str(rows), "--wait", "--timeout", "30")

    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "2 row(s) written to the local pipeline" in result.output
    assert "1 change(s) searchable" in result.output
    assert "1 row(s) cannot be indexed" in result.output and "vector key is 1104 characters" in result.output
    assert "W" * 100 not in result.output


def test_load_wait_for_rows_without_text_waits_for_what_the_table_holds(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    with_text = jsonl(tmp_path, "first.jsonl", {"title": "W2 kept", "overview": "a clockmaker repairs time"})
    assert freshvec("--local", "load", str(with_text), "--wait", "--timeout", "30").exit_code == EXIT_OK
    # A new row without text has none (no vector); an existing row keeps its text (its vector stays).
    rows = jsonl(tmp_path, "rows.jsonl", {"title": "W2 nulltext"}, {"title": "W2 kept", "vote_count": 7})

    result = freshvec("--local", "load", str(rows), "--wait", "--timeout", "20")

    assert result.exit_code == EXIT_OK, result.output
    assert "1 change(s) searchable, 1 row(s) without text, not in the index" in result.output
    assert pipeline.indexed({"title": "W2 nulltext"}) is None
