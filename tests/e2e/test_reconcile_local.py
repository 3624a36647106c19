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
from freshvec.local.demo import read_rows
from freshvec.testing.local_cli import attached_cli

DATA = sample_movies()
ROWS = 40
SYNC_S = 30
runner = CliRunner()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    config = {**DEFAULT_CONFIG, "sink": {"batching_window_s": 0}}
    state = tmp_path_factory.mktemp("local") / "state.json"
    with LocalPipeline.start(config) as running, attached_cli(running, state):
        receipt = running.upsert(read_rows(DATA, running.config)[:ROWS])
        running.wait_synced(timeout=SYNC_S, receipt=receipt)
        yield running


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
        "unindexable": [],
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


def test_a_refused_newest_change_leaves_no_older_state_and_reconcile_reports_the_row_until_it_is_fixed(
    pipeline: LocalPipeline,
) -> None:
    title = "Stale Test"
    row = {"title": title, "overview": "A dragon guards a mountain of gold under the hills.", "vote_count": 1}
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.upsert([row]))
    assert _vector(pipeline, title)["metadata"]["vote_count"] == 1
    refused = {**row, "overview": "A lighthouse keeper counts ships at dawn.", "original_lang": "y" * 3000}
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.upsert([{**refused, "vote_count": 2}]))
    # The change is parked (filterable metadata over 2 KB); the dragon is not served as the row's state.
    assert pipeline.indexed({"title": title}) is None
    assert all(hit["key"] != f'["{title}"]' for hit in pipeline.query("a dragon guarding gold", k=10))

    found = reconcile("--json")
    assert found.exit_code == 0, found.output  # reported, not drift: no repair can index it
    doc = json.loads(found.stdout)
    assert (doc["unindexable"], doc["drift"]) == (1, 0)
    [example] = doc["examples"]["unindexable"]
    assert example.startswith(f'["{title}"]: filterable metadata is ') and "original_lang" in example
    text = reconcile()
    assert "unindexable 1 row(s) the sink refuses" in text.output
    assert "in sync (but for the unindexable rows above)" in text.output.splitlines()

    # A vector of an older state put back behind the pipeline's back (as a sink before this rule left it) is
    # stale, and the repair removes it.
    other = _vector(pipeline, sorted(r["title"] for r, _ in pipeline.table.rows_with_versions())[-1])
    _put(pipeline, f'["{title}"]', other["data"]["float32"], {**other["metadata"], "vote_count": 1})
    stale = json.loads(reconcile("--json").stdout)
    assert (stale["stale"], stale["examples"]["stale"], stale["unindexable"]) == (1, [f'["{title}"]'], 1)
    assert reconcile("--repair").exit_code == EXIT_CHECK_FAILED
    deadline = time.monotonic() + SYNC_S
    while pipeline.indexed({"title": title}) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pipeline.indexed({"title": title}) is None

    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.upsert([{**refused, "original_lang": "en"}]))  # fixed
    assert _vector(pipeline, title)["metadata"]["original_lang"] == "en"
    deadline = time.monotonic() + SYNC_S
    while (again := reconcile("--json")).exit_code != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert again.exit_code == 0, again.output
