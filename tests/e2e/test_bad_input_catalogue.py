"""The bad-input catalogue (README): every bad input tried, what the user sees, and where the data goes.

Each test is one row of the README's table. Everything runs against a real local pipeline (the same forwarder
and sink code as in AWS) with the CLI talking to it through `freshvec --local`, so what is asserted is what a
user sees: one clear line and a non-zero exit for rejected input, or the record parked in the DLQ with its
payload and reason — and the good input next to it still arriving.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec.cli.errors import EXIT_FAILED, EXIT_USAGE
from freshvec.command import app as command
from freshvec.config import DEFAULT_CONFIG
from freshvec.local import LocalPipeline
from freshvec.testing.local_cli import attached_cli

runner = CliRunner()
CONFIG = copy.deepcopy(DEFAULT_CONFIG)
CONFIG["sink"] = {"batching_window_s": 0}  # each change is applied at once: the catalogue waits less


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    state = tmp_path_factory.mktemp("local") / "local.json"
    with LocalPipeline.start(CONFIG) as running, attached_cli(running, state):
        yield running


def freshvec(*args: str) -> Any:
    result = runner.invoke(command, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def dlq_entry(pipeline: LocalPipeline, marker: bytes, timeout: float = 30) -> dict[str, Any]:
    """The DLQ message whose original payload contains ``marker`` (messages stay in the queue)."""
    sqs = pipeline.server.client("sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = sqs.receive_message(
            QueueUrl=pipeline.resources.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
        )
        for message in reply.get("Messages", []):
            body = json.loads(message["Body"])
            if marker in base64.b64decode(body["payload_b64"]):
                return body
    raise AssertionError(f"no DLQ message holds {marker!r}")


def put_raw_change(pipeline: LocalPipeline, data: bytes) -> None:
    """A record written to the change stream by something other than the forwarder."""
    producer = pipeline.stream_producer()
    producer.put_record(StreamName=pipeline.resources.stream_name, Data=data, PartitionKey="catalogue")


def write_file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def lines(*docs: Any) -> bytes:
    return "".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in docs).encode()


# ---- bad config values ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metadata_fields": ["title", "rating"]}, "invalid config field 'metadata_fields': unknown column 'rating'"),
        ({"embedding": {"dimensions": 300}}, "invalid config field 'embedding.dimensions': 300 is not allowed"),
        ({"embedding_field": "vote_count"}, "invalid config field 'embedding_field'"),
        ({"sink": {"batch_size": 0}}, "invalid config field 'sink.batch_size': 0 is out of range"),
    ],
)
def test_bad_config_value_is_refused_naming_the_field(tmp_path: Path, change: dict, message: str) -> None:
    raw = {**copy.deepcopy(DEFAULT_CONFIG), **change}
    path = write_file(tmp_path, "config.json", json.dumps(raw).encode())
    result = freshvec("local", "demo", "--config", str(path))
    assert result.exit_code == 2  # a bad --config is a usage error
    assert message in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{", "config.json is not valid JSON"), (b"\xff\xfe{}", "config.json is not UTF-8 text"), (None, "no such file")],
)
def test_config_file_that_is_not_json_is_refused(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = write_file(tmp_path, "config.json", content) if content is not None else tmp_path / "config.json"
    result = freshvec("local", "demo", "--config", str(path))
    assert result.exit_code == 2
    assert f"error: invalid config field '(document)': {tmp_path}" in result.output
    assert message in result.output


# ---- bad rows for the loader ------------------------------------------------------------------------------
def test_bad_rows_are_reported_by_line_and_skipped_while_the_rest_loads(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    good = {"title": "Catalogue Good Row", "overview": "A lighthouse keeper befriends a whale.", "vote_count": 3}
    path = write_file(
        tmp_path,
        "rows.jsonl",
        lines(
            {"title": "Catalogue Bad Date", "overview": "x", "rel_date": "1993-02-30"},
            "{not json",
            {"overview": "a row without its primary key"},
            {"title": "Catalogue Bad Int", "overview": "x", "vote_count": "many"},
            {"title": "Catalogue Bad Decimal", "overview": "x", "popularity": "high"},
            good,
        ),
    )
    result = freshvec("--local", "load", str(path))
    assert result.exit_code == 0, result.output
    for line, words in [(1, "rel_date"), (2, "JSON"), (3, "title"), (4, "vote_count"), (5, "popularity")]:
        assert f"rows.jsonl:{line}:" in result.output and words in result.output
    assert "1 row(s) written" in result.output and "5 skipped" in result.output
    pipeline.wait_synced(timeout=30)
    assert pipeline.indexed({"title": "Catalogue Good Row"}) is not None
    assert pipeline.indexed({"title": "Catalogue Bad Int"}) is None


def test_csv_with_a_column_the_table_does_not_have_is_refused_whole(pipeline: LocalPipeline, tmp_path: Path) -> None:
    path = write_file(tmp_path, "rows.csv", b"title,rating\nCatalogue Unknown Column,5\n")
    result = freshvec("--local", "load", str(path))
    assert result.exit_code == EXIT_USAGE
    assert result.output.startswith("error:") and "column 'rating' is not in the table" in result.output
    assert pipeline.table.get({"title": "Catalogue Unknown Column"}) is None


def test_json_lines_row_with_a_column_the_table_does_not_have_is_skipped(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    path = write_file(
        tmp_path,
        "rows.jsonl",
        lines({"title": "Catalogue Extra Column", "rating": 5}, {"title": "Catalogue After Extra", "overview": "ok"}),
    )
    result = freshvec("--local", "load", str(path))
    assert result.exit_code == 0, result.output
    assert "rows.jsonl:1: column 'rating' is not in the table" in result.output
    pipeline.wait_synced(timeout=30)
    assert pipeline.table.get({"title": "Catalogue Extra Column"}) is None
    assert pipeline.indexed({"title": "Catalogue After Extra"}) is not None


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("rows.csv", b"title,overview\nCatalogue Latin1,caf\xe9 au lait\nCatalogue UTF8 After,caf\xc3\xa9\n"),
        ("rows.jsonl", b'{"title": "Catalogue Latin1", "overview": "caf\xe9"}\n{"title": "Catalogue UTF8 After"}\n'),
    ],
)
def test_line_that_is_not_utf8_is_skipped_and_the_rest_loads(
    pipeline: LocalPipeline, tmp_path: Path, name: str, content: bytes
) -> None:
    path = write_file(tmp_path, name, content)
    result = freshvec("--local", "load", str(path))
    assert result.exit_code == 0, result.output
    bad_line = 2 if name.endswith(".csv") else 1  # the CSV header is line 1
    assert f"{name}:{bad_line}: not UTF-8 text" in result.output
    assert "not UTF-8 text" in result.output
    pipeline.wait_synced(timeout=30)
    assert pipeline.table.get({"title": "Catalogue Latin1"}) is None
    assert pipeline.table.get({"title": "Catalogue UTF8 After"}) is not None


def test_missing_input_file_is_named(pipeline: LocalPipeline, tmp_path: Path) -> None:
    result = freshvec("--local", "load", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == EXIT_USAGE
    assert result.output.startswith("error:") and "nope.jsonl: no such file" in result.output


# ---- bad CLI arguments ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "exit_code", "words"),
    [
        (["--local", "query", "x", "--filter", "{bad"], 2, "error: invalid filter: not valid JSON"),
        (["--local", "query", "x", "--filter", '{"vote_count": {"$near": 3}}'], 2, "$near"),
        (["--local", "query", "x", "--filter", '{"vote_count": {"$gte": "seven"}}'], 2, "$gte"),
        (["--local", "query", "x", "--k", "101"], 2, "--k"),
        (["--local", "query", "x", "--k", "0"], 2, "--k"),
        (["bogus"], 2, "No such command 'bogus'"),
    ],
)
def test_bad_cli_arguments_get_one_clear_line(pipeline: LocalPipeline, args: list[str], exit_code: int, words: str):
    result = freshvec(*args)
    assert result.exit_code == exit_code
    assert words in result.output


def test_cli_without_a_running_local_pipeline_says_how_to_start_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FRESHVEC_LOCAL_STATE", str(tmp_path / "absent.json"))
    result = freshvec("--local", "query", "dinosaurs")
    assert result.exit_code == EXIT_FAILED
    assert "no local pipeline running" in result.output and "freshvec local up" in result.output


# ---- bad change events (written to the stream by something other than the forwarder) ---------------------
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe catalogue-not-utf8", "change event is not UTF-8 text"),
        (b"{catalogue-not-json", "change event is not valid JSON"),
        (b'{"v": 1, "catalogue": "missing fields"}', "change event is missing 'source'"),
        (
            json.dumps(
                {"v": 1, "source": "keyspaces", "keyspace": "media", "table": "movies", "op": "UPSERT",
                 "key": {"title": "catalogue-wrong-op"}, "seq": "1", "shard": "s", "ts": "2026-01-01T00:00:00Z",
                 "origin": "USER"}
            ).encode(),
            "op 'UPSERT'",
        ),
        (
            json.dumps(
                {"v": 1, "source": "keyspaces", "keyspace": "media", "table": "movies", "op": "INSERT",
                 "key": "catalogue-key-as-text", "seq": "1", "shard": "s", "ts": "2026-01-01T00:00:00Z",
                 "origin": "USER", "new": {}}
            ).encode(),
            "'key' has the wrong type",
        ),
    ],
)  # fmt: skip
def test_bad_change_event_is_parked_with_payload_and_reason(pipeline: LocalPipeline, payload: bytes, reason: str):
    put_raw_change(pipeline, payload)
    entry = dlq_entry(pipeline, payload)
    assert base64.b64decode(entry["payload_b64"]) == payload
    assert entry["error_class"] == "PoisonRecordError"
    assert reason in entry["error_message"]
    assert entry["kinesis_sequence_number"] and entry["kinesis_shard_id"].startswith("shardId-")


# ---- oversized values and wrong types in rows ---------------------------------------------------------------
def test_metadata_over_the_filterable_limit_is_parked_naming_the_column(pipeline: LocalPipeline) -> None:
    receipt = pipeline.upsert([{"title": "Catalogue Huge Lang", "overview": "A story.", "original_lang": "x" * 3000}])
    pipeline.wait_synced(timeout=30, receipt=receipt)
    entry = dlq_entry(pipeline, b"Catalogue Huge Lang")
    assert "filterable metadata is" in entry["error_message"] and "original_lang" in entry["error_message"]
    assert pipeline.indexed({"title": "Catalogue Huge Lang"}) is None


def test_key_longer_than_s3_vectors_allows_is_parked(pipeline: LocalPipeline) -> None:
    title = "Catalogue Long Key " + "k" * 1100
    receipt = pipeline.upsert([{"title": title, "overview": "A story with a very long name."}])
    pipeline.wait_synced(timeout=30, receipt=receipt)
    entry = dlq_entry(pipeline, b"Catalogue Long Key")
    assert "vector key is" in entry["error_message"] and "at most 1024" in entry["error_message"]


def test_text_longer_than_the_model_accepts_is_chunked_whole_not_truncated(pipeline: LocalPipeline) -> None:
    # With chunking on (the default) no text reaches the model past its limit; strategy "none" truncates and
    # counts it (tests/integration/test_sink_apply.py).
    before = pipeline.stats()["texts_truncated"]
    overview = "An endless saga of sailing ships and storms. " * 2000  # 90,000 characters
    receipt = pipeline.upsert([{"title": "Catalogue Long Text", "overview": overview}])
    pipeline.wait_synced(timeout=60, receipt=receipt)
    chunks = pipeline.indexed_chunks({"title": "Catalogue Long Text"})
    assert len(chunks) >= len(overview) // pipeline.config.chunking.max_chars
    assert all(len(ch["metadata"]["overview"]) <= pipeline.config.chunking.max_chars for ch in chunks)
    assert " ".join(ch["metadata"]["overview"] for ch in chunks).split() == overview.split()
    assert pipeline.stats()["texts_truncated"] == before


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"title": "Catalogue Wrong Int", "vote_count": 1.5}, "column 'vote_count' (int)"),
        ({"title": "Catalogue Wrong Decimal", "popularity": "high"}, "column 'popularity' (decimal)"),
        ({"title": "Catalogue Wrong Date", "rel_date": "11/06/1993"}, "column 'rel_date' (date)"),
        ({"title": "Catalogue Surrogate", "overview": "broken \udcff text"}, "not valid UTF-8"),
        ({"title": "Catalogue Unknown", "rating": 3}, "rating"),
    ],
)
def test_row_with_a_wrong_type_is_refused_at_the_table_and_nothing_is_written(
    pipeline: LocalPipeline, row: dict, words: str
) -> None:
    changes = pipeline.stats()["changes"]
    with pytest.raises(ValueError, match=r".") as caught:
        pipeline.upsert([row])
    assert words in str(caught.value)
    assert pipeline.stats()["changes"] == changes
    assert pipeline.table.get({"title": row["title"]}) is None
