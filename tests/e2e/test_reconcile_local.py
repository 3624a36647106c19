"""``freshvec --local reconcile`` end to end: a running local pipeline, its index corrupted four ways behind the
pipeline's back, found exactly, repaired through the change stream, and in sync again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec.cli import app as cli
from freshvec.cli.errors import EXIT_CHECK_FAILED
from freshvec.config import DEFAULT_CONFIG
from freshvec.datafiles import sample_movies
from freshvec.local import LocalPipeline
from freshvec.local.cli import stack_state
from freshvec.local.control import ControlServer
from freshvec.local.demo import read_rows
from freshvec.state import write_local_state

DATA = sample_movies()
ROWS = 40
SYNC_S = 30
runner = CliRunner()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    config = {**DEFAULT_CONFIG, "sink": {"batching_window_s": 0}}
    with LocalPipeline.start(config) as running:
        control = ControlServer(running).start()
        state = tmp_path_factory.mktemp("local") / "state.json"
        write_local_state(state, stack_state(running, control))
        mp = pytest.MonkeyPatch()
        mp.setenv("FRESHVEC_LOCAL_STATE", str(state))
        try:
            receipt = running.upsert(read_rows(DATA, running.config)[:ROWS])
            running.wait_synced(timeout=SYNC_S, receipt=receipt)
            yield running
        finally:
            mp.undo()
            control.stop()


def reconcile(*args: str) -> Any:
    result = runner.invoke(cli.app, ["--local", "reconcile", *args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def _vector(pipeline: LocalPipeline, title: str) -> dict[str, Any]:
    stored = pipeline.indexed({"title": title})
    assert stored is not None, title
    return stored


def _put(pipeline: LocalPipeline, key: str, data: list[float], metadata: dict[str, Any]) -> None:
    pipeline.server.client("s3vectors").put_vectors(
        vectorBucketName=pipeline.resources.vector_bucket,
        indexName=pipeline.resources.vector_index,
        vectors=[{"key": key, "data": {"float32": data}, "metadata": metadata}],
    )


def test_reconcile_finds_four_corruptions_exactly_and_repairs_them(pipeline: LocalPipeline) -> None:
    clean = reconcile("--json")
    assert clean.exit_code == 0, clean.output
    doc = json.loads(clean.stdout)
    assert (doc["rows"], doc["vectors"], doc["in_sync"], doc["drift"]) == (ROWS, ROWS, ROWS, 0)

    titles = sorted(row["title"] for row, _ in pipeline.table.rows_with_versions())
    removed, replaced, donor, relabelled = titles[0], titles[1], titles[2], titles[3]
    s3vectors = pipeline.server.client("s3vectors")
    res = pipeline.resources
    # 1. a vector removed
    s3vectors.delete_vectors(vectorBucketName=res.vector_bucket, indexName=res.vector_index, keys=[f'["{removed}"]'])
    # 2. another row's vector and metadata under this key, its _fp and _ver too: drift that lives in the versions
    # (an ordered re-sync would be refused by the foreign _ver; the repair is compare-and-set on the write seen)
    target, other = _vector(pipeline, replaced), _vector(pipeline, donor)
    _put(pipeline, target["key"], other["data"]["float32"], dict(other["metadata"]))
    # 3. an orphan: a vector for a row that does not exist
    orphan_key = '["No Such Film"]'
    _put(pipeline, orphan_key, other["data"]["float32"], dict(other["metadata"]))
    # 4. one metadata value changed
    labelled = _vector(pipeline, relabelled)
    _put(pipeline, labelled["key"], labelled["data"]["float32"], {**labelled["metadata"], "original_lang": "xx"})

    found = reconcile("--json", "--show", "5")
    assert found.exit_code == EXIT_CHECK_FAILED, found.output
    doc = json.loads(found.stdout)
    assert {kind: doc[kind] for kind in ("missing", "stale", "metadata", "orphan")} == {
        "missing": 1,
        "stale": 1,
        "metadata": 1,
        "orphan": 1,
    }
    assert doc["examples"] == {
        "missing": [f'["{removed}"]'],
        "stale": [f'["{replaced}"]'],
        "metadata": [f'["{relabelled}"]'],
        "orphan": [orphan_key],
    }
    assert doc["in_sync"] == ROWS - 3 and doc["repaired"] is None

    repaired = reconcile("--repair")
    assert repaired.exit_code == EXIT_CHECK_FAILED, repaired.output  # drift was found (and repaired)
    assert "repair: 3 row(s) re-sent, 1 removal(s), 0 already gone, 0 vector key(s) that name no row removed" in (
        repaired.output
    )

    deadline = time.monotonic() + SYNC_S
    while (again := reconcile("--json")).exit_code != 0 and time.monotonic() < deadline:
        time.sleep(0.5)  # the re-sync events travel through the change stream and the sink
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["in_sync"] == ROWS
    assert pipeline.indexed({"title": "No Such Film"}) is None
    assert _vector(pipeline, relabelled)["metadata"]["original_lang"] != "xx"
    query = pipeline.table.get({"title": replaced})
    assert query is not None and pipeline.query(query["overview"], k=1)[0]["key"] == f'["{replaced}"]'
    text = reconcile()
    assert text.exit_code == 0 and "in sync" in text.output and "missing   0" in text.output


@pytest.mark.parametrize("args", [["--buckets", "0"], ["--index-segments", "17"], ["--show", "-1"], ["--nope"]])
def test_reconcile_usage_errors_exit_2(pipeline: LocalPipeline, args: list[str]) -> None:
    result = reconcile(*args)
    assert result.exit_code == 2, result.output
