"""A corrupted chunk count on a row's chunk 0 is drift: ``freshvec --local reconcile`` reports it and
``--repair`` fixes it, so a later delete of the row leaves none of its chunks behind."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec import constants as c
from freshvec.cli import app as cli
from freshvec.cli.errors import EXIT_CHECK_FAILED
from freshvec.config import DEFAULT_CONFIG
from freshvec.local import LocalPipeline
from freshvec.testing.builders import movie
from freshvec.testing.local_cli import attached_cli

SYNC_S = 30
LONG = " ".join(f"Sentence number {i} tells more of the story of the sharks." for i in range(30))
runner = CliRunner()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    config = {**DEFAULT_CONFIG, "sink": {"batching_window_s": 0}, "chunking": {"max_chars": 200}}
    state = tmp_path_factory.mktemp("local") / "state.json"
    with LocalPipeline.start(config) as running, attached_cli(running, state):
        yield running


def reconcile(*args: str) -> Any:
    result = runner.invoke(cli.app, ["--local", "reconcile", *args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def _repair_until_in_sync() -> Any:
    """``reconcile --repair`` until it finds nothing: a Keyspaces repair read within the clock and visibility
    bounds (2 s) of the row's last write is refused, and the next one passes it, as a user re-running it sees."""
    deadline = time.monotonic() + SYNC_S
    while (again := reconcile("--repair")).exit_code != 0 and time.monotonic() < deadline:
        time.sleep(1)
    return again


def _until_in_sync() -> Any:
    deadline = time.monotonic() + SYNC_S
    while (again := reconcile("--json")).exit_code != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    return again


def test_a_lowered_chunk_count_is_reported_repaired_and_a_delete_then_removes_every_chunk(
    pipeline: LocalPipeline,
) -> None:
    row = {k: v for k, v in movie("Long", LONG).items() if k in pipeline.config.columns}
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.upsert([row]))
    chunks = pipeline.indexed_chunks({"title": "Long"})
    assert len(chunks) > 2
    assert _until_in_sync().exit_code == 0  # the shared stack may still be settling earlier tests' rows
    chunk0 = pipeline.indexed({"title": "Long"})
    assert chunk0 is not None
    res = pipeline.resources
    pipeline.server.client("s3vectors").put_vectors(
        vectorBucketName=res.vector_bucket,
        indexName=res.vector_index,
        vectors=[{"key": chunk0["key"], "data": chunk0["data"], "metadata": {**chunk0["metadata"], c.META_CHUNKS: 1}}],
    )
    found = reconcile("--json")
    assert found.exit_code == EXIT_CHECK_FAILED, found.output
    assert json.loads(found.stdout)["metadata"] == 1

    assert _repair_until_in_sync().exit_code == 0

    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.delete([{"title": "Long"}]))
    assert _until_in_sync().exit_code == 0
    listed = pipeline.server.client("s3vectors").list_vectors(
        vectorBucketName=res.vector_bucket, indexName=res.vector_index
    )["vectors"]
    assert [v["key"] for v in listed] == []


def _listed(pipeline: LocalPipeline, prefix: str) -> list[str]:
    res = pipeline.resources
    listed = pipeline.server.client("s3vectors").list_vectors(
        vectorBucketName=res.vector_bucket, indexName=res.vector_index
    )["vectors"]
    return sorted(v["key"] for v in listed if v["key"].startswith(prefix))


@pytest.mark.parametrize("change", ["delete", "no text"])
def test_chunks_left_without_chunk_0_are_removed_by_a_repair_when_the_row_is_gone_or_has_no_text(
    pipeline: LocalPipeline, change: str
) -> None:
    title = f"Orphaned {change}"
    row = {k: v for k, v in movie(title, LONG).items() if k in pipeline.config.columns}
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.upsert([row]))
    chunks = [chunk["key"] for chunk in pipeline.indexed_chunks({"title": title})]
    assert len(chunks) > 2
    res = pipeline.resources
    pipeline.server.client("s3vectors").delete_vectors(  # damage: the row's chunk 0 is lost
        vectorBucketName=res.vector_bucket, indexName=res.vector_index, keys=[chunks[0]]
    )
    if change == "delete":
        receipt = pipeline.delete([{"title": title}])
    else:
        receipt = pipeline.upsert([{**row, pipeline.config.embedding_field: None}])
    pipeline.wait_synced(timeout=SYNC_S, receipt=receipt)
    prefix = chunks[0]
    found = reconcile("--json")
    assert found.exit_code == EXIT_CHECK_FAILED, found.output
    assert json.loads(found.stdout)["orphan"] == len(chunks) - 1

    again = _repair_until_in_sync()
    assert again.exit_code == 0, again.output
    assert _listed(pipeline, prefix) == []


def test_a_text_whose_chunk_keys_would_be_too_long_removes_the_rows_older_vector(pipeline: LocalPipeline) -> None:
    title = "L" * 1019  # key '["LLL…"]' is 1,023 characters; chunk 1's key would be 1,025: over S3 Vectors' 1,024
    row = {k: v for k, v in movie(title, "A short text: one vector.").items() if k in pipeline.config.columns}
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.upsert([row]))
    assert pipeline.indexed({"title": title}) is not None
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.upsert([{**row, pipeline.config.embedding_field: LONG}]))
    assert pipeline.indexed({"title": title}) is None  # the short text is no longer the row's: not served

    found = reconcile("--json")
    assert found.exit_code == 0, found.output  # reported with its reason, not drift: no repair can index it
    doc = json.loads(found.stdout)
    assert (doc["unindexable"], doc["drift"]) == (1, 0)
    assert "characters; S3 Vectors allows at most 1024" in doc["examples"]["unindexable"][0]
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.delete([{"title": title}]))
    assert _until_in_sync().exit_code == 0
