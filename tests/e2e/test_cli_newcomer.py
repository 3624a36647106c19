"""What a newcomer meets through ``freshvec --local``: a row whose key no vector can hold, a row without text,
a malformed parked message. Each ends in a summary and an exit code that says what happened, never a traceback.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from freshvec.cli import console
from freshvec.cli.errors import EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from freshvec.command import app as command
from freshvec.config import DEFAULT_CONFIG
from freshvec.local import LocalPipeline
from freshvec.state import CONTROL_TOKEN_HEADER
from freshvec.testing.local_cli import attached_cli

runner = CliRunner()
CONFIG = copy.deepcopy(DEFAULT_CONFIG)
CONFIG["sink"] = {"batching_window_s": 0}
LONG_TITLE = "K" * 1100  # its vector key is 1,104 characters: over S3 Vectors' 1,024


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    state = tmp_path_factory.mktemp("local") / "local.json"
    with LocalPipeline.start(CONFIG) as running, attached_cli(running, state), pytest.MonkeyPatch.context() as env:
        env.setattr(console.out, "width", 250)
        env.setattr(console.err, "width", 250)
        yield running


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


def test_status_of_a_stack_that_is_gone_says_so_and_exits_3(pipeline: LocalPipeline, tmp_path: Path) -> None:
    state = json.loads(Path(os.environ["FRESHVEC_LOCAL_STATE"]).read_text())
    gone = tmp_path / "gone.json"  # what `kill -9` of `local up` leaves behind
    gone.write_text(json.dumps({**state, "control": "http://127.0.0.1:9", "endpoint": "http://127.0.0.1:9"}))

    result = freshvec("--local-state", str(gone), "--local", "status")

    assert result.exit_code == EXIT_FAILED, result.output
    assert "local pipeline not reachable at http://127.0.0.1:9" in result.output
    assert "last errors" not in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["query", ""], "the query text is empty"),
        (["query", "   "], "the query text is empty"),
        (["query", "whales", "--mode", "bogus"], "--mode must be one of"),
        (
            ["query", "whales", "--filter", '{"overview": "x"}'],
            "'overview' is stored as non-filterable metadata; filterable: ",
        ),
        (["query", "whales", "--filter", '{"$or": [{"vote_count": 1}, {"_fp": "x"}]}'], "'_fp' is stored as"),
        (["query", "whales", "--columns", "vote_count,rating"], "--columns: 'rating' is not stored with the vectors"),
    ],
)
def test_query_usage_errors_are_one_line_and_exit_2(pipeline: LocalPipeline, args: list[str], words: str) -> None:
    result = freshvec("--local", *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert words in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_query_filter_names_the_filterable_keys(pipeline: LocalPipeline) -> None:
    result = freshvec("--local", "query", "whales", "--filter", '{"overview": "x"}')
    usable = [name for name in pipeline.config.metadata_fields if name not in pipeline.config.non_filterable_keys]
    assert f"filterable: {', '.join(usable)}, _chunk" in result.output


def test_control_api_answers_400_for_a_filter_on_non_filterable_metadata(pipeline: LocalPipeline) -> None:
    state = json.loads(Path(os.environ["FRESHVEC_LOCAL_STATE"]).read_text())
    response = requests.post(
        f"{state['control']}/query",
        json={"text": "whales", "filter": {"overview": "x"}},
        headers={CONTROL_TOKEN_HEADER: state["token"]},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert "'overview' is stored as non-filterable metadata" in response.json()["error"]


def test_backfill_progress_belongs_to_its_stack(
    pipeline: LocalPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default progress files live in ./.freshvec
    first = freshvec("--local", "backfill", "--segments", "1")
    assert "token ranges done" in first.output, first.output
    again = freshvec("--local", "backfill", "--segments", "1")
    assert "already complete" in again.output  # the same stack resumes (here: nothing left)
    state_path = Path(os.environ["FRESHVEC_LOCAL_STATE"])
    state = json.loads(state_path.read_text())
    # A new stack under the same name (`local up` again after this one stopped) has another identity.
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**state, "stack_id": "0123456789abcdef"}))

    fresh = freshvec("--local-state", str(newer), "--local", "backfill", "--segments", "1")

    assert "already complete" not in fresh.output and "token ranges done" in fresh.output, fresh.output
    assert sorted(p.name for p in (tmp_path / ".freshvec").glob("backfill-*.json")) == sorted(
        [f"backfill-local-{state['stack_id'][:12]}.json", "backfill-local-0123456789ab.json"]
    )


def test_reconcile_counts_rows_whose_key_no_vector_can_hold(pipeline: LocalPipeline, tmp_path: Path) -> None:
    rows = jsonl(tmp_path, "rows.jsonl", {"title": "R" * 1100, "overview": "a long key movie"})
    assert freshvec("--local", "load", str(rows)).exit_code == EXIT_OK
    pipeline.wait_synced(timeout=30)

    result = freshvec("--local", "reconcile", "--json")

    report = json.loads(result.stdout)
    assert report["unindexable"] >= 1  # this row, and any other over-long key this module loaded
    assert any("vector key is 1104 characters" in e for e in report["examples"]["unindexable"])
    assert all("R" * 100 not in e for e in report["examples"]["unindexable"])  # the key shortened
    assert report["drift"] == 0 and result.exit_code == EXIT_OK  # reported, not drift: no repair can index it
    text = freshvec("--local", "reconcile")
    assert "unindexable" in text.output and "vector key is 1104 characters" in text.output


def test_wait_for_a_key_no_vector_can_hold_is_a_usage_error(pipeline: LocalPipeline, tmp_path: Path) -> None:
    keys = jsonl(tmp_path, "keys.jsonl", {"title": "Z" * 1100})
    result = freshvec("--local", "wait", "--keys-file", str(keys), "--timeout", "1")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "keys.jsonl:1: vector key is 1104 characters" in result.output


def test_load_wait_sees_a_long_text_and_one_with_surrounding_spaces(pipeline: LocalPipeline, tmp_path: Path) -> None:
    paragraphs = [
        f"Paragraph {n} of the keeper's log: " + "the lamp was trimmed and the glass wiped. " * 12 for n in range(5)
    ]
    long_row = {"title": "Wait Long Log", "overview": "\n\n".join(paragraphs)}
    spaced = {"title": "Wait Spaced", "overview": "  a ferry crosses the fjord at dawn  \n"}
    rows = jsonl(tmp_path, "rows.jsonl", long_row, spaced)

    result = freshvec("--local", "load", str(rows), "--wait", "--timeout", "30")

    assert result.exit_code == EXIT_OK, result.output
    assert "2 change(s) searchable" in result.output
    assert len(pipeline.indexed_chunks({"title": "Wait Long Log"})) > 1

    # An edit of the last paragraph only: chunk 0 keeps its text, and the wait ends once the edit is stored.
    paragraphs[-1] = "Paragraph 4, rewritten: a storm broke the lantern and a neighbour relit it by hand."
    edited = jsonl(tmp_path, "edited.jsonl", {**long_row, "overview": "\n\n".join(paragraphs)})
    result = freshvec("--local", "load", str(edited), "--wait", "--timeout", "30")
    assert result.exit_code == EXIT_OK, result.output
    passages = [chunk["metadata"]["overview"] for chunk in pipeline.indexed_chunks({"title": "Wait Long Log"})]
    assert any("relit it by hand" in passage for passage in passages), passages
