"""Re-syncs through the real sink in local mode: a re-sync read before a newer change never wins over it.

The pipeline runs in this process on the session's moto server; ``freshvec --local`` commands reach it through
its control API and moto, as from a terminal.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec import constants as c
from freshvec import versions
from freshvec.cli import app as cli
from freshvec.cli.resync import resync_record
from freshvec.cli.send import ChangeStreamSender
from freshvec.config import DEFAULT_CONFIG
from freshvec.events import parse_event
from freshvec.local import LocalPipeline
from freshvec.local.moto_server import MotoServer
from freshvec.local.tracker import WriteReceipt
from freshvec.testing.local_cli import attached_cli

SYNC_S = 30
runner = CliRunner()


@pytest.fixture(scope="module")
def pipeline(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    moto_server.reset()
    config = {**DEFAULT_CONFIG, "sink": {"batching_window_s": 0}}
    state = tmp_path_factory.mktemp("local") / "state.json"
    with LocalPipeline.start(config, server=moto_server) as running, attached_cli(running, state):
        yield running
    moto_server.reset()


def _row(title: str, overview: str) -> dict[str, Any]:
    return {"title": title, "overview": overview, "original_lang": "en", "vote_count": 1}


def _synced(pipeline: LocalPipeline, receipt: WriteReceipt) -> None:
    pipeline.wait_synced(timeout=SYNC_S, receipt=receipt)


def _send_resync(
    pipeline: LocalPipeline, row: dict[str, Any] | None, key: dict[str, Any], version: str, seq: str
) -> None:
    """Send a re-sync event through the one writer, then wait until the sink has handled it."""
    record = resync_record(pipeline.config, key, row, version, origin="BACKFILL", seq=seq, shard="backfill")
    ChangeStreamSender.for_kinesis(pipeline.stream_producer(), pipeline.resources.stream_name).send([record])
    pipeline.wait_synced(timeout=SYNC_S, receipt=WriteReceipt(1, (seq,), time.monotonic()))


def _read(pipeline: LocalPipeline, key: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The row as a re-sync reads it: stamped before the read (``keyspaces_read_stamp``)."""
    stamp = versions.keyspaces_read_stamp(time.time()).text()
    return pipeline.table.read(key)[0], stamp


def _parked_seqs(pipeline: LocalPipeline) -> dict[str, str]:
    """Sequence number of each parked change -> its error class (the messages stay in the queue)."""
    sqs = pipeline.server.client("sqs")
    found: dict[str, str] = {}
    for _ in range(3):
        for message in sqs.receive_message(
            QueueUrl=pipeline.resources.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", []):
            body = json.loads(message["Body"])
            event = json.loads(base64.b64decode(body["payload_b64"]))
            found[event.get("seq", "")] = body["error_class"]
    return found


def test_an_old_backfill_read_does_not_overwrite_a_newer_update(pipeline: LocalPipeline) -> None:
    key = {"title": "Resync Old Read"}
    _synced(pipeline, pipeline.upsert([_row(key["title"], "the first text about a lighthouse")]))
    old_row, old_stamp = _read(pipeline, key)
    _synced(pipeline, pipeline.upsert([_row(key["title"], "the second text about a submarine")]))
    newer = versions.unstamp(pipeline.indexed(key)["metadata"][c.META_VERSION])

    # The read may or may not have seen the update (its createdAt is after the read's stamp): never applied,
    # parked for a new read instead.
    _send_resync(pipeline, old_row, key, old_stamp, "test:old-read")
    stored = pipeline.indexed(key)
    assert stored is not None
    assert stored["metadata"]["overview"] == "the second text about a submarine"
    assert versions.unstamp(stored["metadata"][c.META_VERSION]) == newer
    assert _parked_seqs(pipeline).get("test:old-read") == "AmbiguousResyncError"
    # A read now holds the current state: applied or (within B + δ of the update) skipped, never parked.
    current_row, stamp = _read(pipeline, key)
    _send_resync(pipeline, current_row, key, stamp, "test:current-read")
    assert pipeline.indexed(key)["metadata"]["overview"] == "the second text about a submarine"
    assert "test:current-read" not in _parked_seqs(pipeline)


def test_an_old_backfill_read_does_not_resurrect_a_deleted_row(pipeline: LocalPipeline) -> None:
    key = {"title": "Resync Deleted"}
    _synced(pipeline, pipeline.upsert([_row(key["title"], "a row that will be deleted soon")]))
    old_row, old_stamp = _read(pipeline, key)
    assert pipeline.indexed(key) is not None
    _synced(pipeline, pipeline.delete([key]))
    assert pipeline.indexed(key) is None

    _send_resync(pipeline, old_row, key, old_stamp, "test:before-delete")
    assert pipeline.indexed(key) is None  # the tombstone holds it off (and the re-sync is parked, not lost)
    assert _parked_seqs(pipeline).get("test:before-delete") == "AmbiguousResyncError"


def _stream_events(pipeline: LocalPipeline) -> list[Any]:
    kinesis = pipeline.server.client("kinesis")
    name = pipeline.resources.stream_name
    events = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        iterator = it["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            events.extend(parse_event(r["Data"]) for r in response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return events


def test_backfill_in_local_mode_sends_every_row_with_its_version(pipeline: LocalPipeline, tmp_path: Path) -> None:
    _synced(pipeline, pipeline.upsert([_row(f"Backfill {n}", f"backfilled text number {n}") for n in range(23)]))
    expected = {json.dumps([row["title"]]) for row, _ in pipeline.table.rows_with_versions()}
    state = tmp_path / "backfill.json"
    started = time.time()
    result = runner.invoke(
        cli.app,
        ["--local", "backfill", "--segments", "3", "--workers", "2", "--rate", "100000", "--state", str(state)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"backfill: {len(expected)} row(s) sent" in result.output
    sent = [e for e in _stream_events(pipeline) if e.origin == "BACKFILL" and not e.seq.startswith("test:")]
    assert {json.dumps([e.key["title"]]) for e in sent} == expected
    assert len(sent) == len(expected) and all(e.op == "UPDATE" for e in sent)
    bound_us = (c.KEYSPACES_READER_CLOCK_BOUND_S + c.KEYSPACES_VISIBILITY_BOUND_S) * 1e6
    for event in sent:  # each row with its read's stamp, never a cell write time
        stamp = versions.parse(event.version)
        assert isinstance(stamp, versions.KsRead) and started * 1e6 - bound_us <= stamp.stamp_us <= time.time() * 1e6


def test_redrive_in_local_mode_re_syncs_the_current_row(pipeline: LocalPipeline) -> None:
    key = {"title": "Redrive Local"}
    _synced(pipeline, pipeline.upsert([_row(key["title"], "the text before the parked change")]))
    _synced(pipeline, pipeline.upsert([_row(key["title"], "the text the table holds now")]))
    parked = {
        "v": 1,
        "source": "keyspaces",
        "keyspace": pipeline.config.keyspace,
        "table": pipeline.config.table,
        "op": "UPDATE",
        "key": key,
        "new": {**key, "overview": "an old parked state that must not come back"},
        "old": None,
        "seq": "1",
        "shard": "s",
        "ts": "2026-01-01T00:00:00.000Z",
        "origin": "USER",
        "version": 1,
    }
    body = {"payload_b64": base64.b64encode(json.dumps(parked).encode()).decode(), "partition_key": '["x"]'}
    sqs = pipeline.server.client("sqs")
    message_id = sqs.send_message(QueueUrl=pipeline.resources.dlq_url, MessageBody=json.dumps(body))["MessageId"]
    result = runner.invoke(cli.app, ["--local", "redrive", "send", "--source", "dlq"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # (the re-syncs the earlier tests left parked as ambiguous are read again in the same run)
    assert f"re-synced  dlq {message_id}" in result.output
    pipeline.wait_synced(timeout=SYNC_S, receipt=WriteReceipt(1, (f"redrive:{message_id}",), time.monotonic()))
    stored = pipeline.indexed(key)
    assert stored is not None and stored["metadata"]["overview"] == "the text the table holds now"
    assert f"redrive:{message_id}" not in _parked_seqs(pipeline)  # it reads what the index holds: nothing to park
