"""End to end through LocalPipeline with a PostgreSQL source: a real server on 127.0.0.1, the real slot reader,
forwarder and sink, writes through SQL; and the index equal to the table after a run with forwarder crashes."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.keys import vector_key
from freshvec.local import LocalPipeline
from freshvec.local.demo import read_rows
from freshvec.local.pgserver import PostgresNotAvailable, find_bin_dir
from freshvec.testing.faults import Chaos, FaultPlan

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
CONFIG = EXAMPLES / "articles.config.json"
DATA = EXAMPLES / "articles.jsonl"
SYNC_S = 60
FAST = {"batching_window_s": 0}


def _config() -> PipelineConfig:
    raw = PipelineConfig.from_file(CONFIG).to_dict()
    raw["sink"] = {**raw.get("sink", {}), **FAST}
    return PipelineConfig.from_dict(raw)


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    try:
        find_bin_dir()
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    with LocalPipeline.start(_config()) as running:
        receipt = running.upsert(read_rows(DATA, running.config))
        running.wait_synced(timeout=SYNC_S, receipt=receipt)
        yield running


def index(pipeline: LocalPipeline) -> dict[str, dict[str, Any]]:
    """Every vector of the index (key -> data and metadata), listed with a client of the test's own."""
    client = pipeline.server.client("s3vectors")
    params: dict[str, Any] = {
        "vectorBucketName": pipeline.resources.vector_bucket,
        "indexName": pipeline.resources.vector_index,
        "returnData": True,
        "returnMetadata": True,
    }
    found: dict[str, dict[str, Any]] = {}
    while True:
        page = client.list_vectors(**params)
        found.update({v["key"]: {"data": v["data"]["float32"], "metadata": v["metadata"]} for v in page["vectors"]})
        if not page.get("nextToken"):
            return found
        params["nextToken"] = page["nextToken"]


def article(pipeline: LocalPipeline, row_id: int) -> dict[str, Any]:
    return next(row for row in read_rows(DATA, pipeline.config) if row["id"] == row_id)


def test_load_makes_every_article_searchable_and_a_known_one_ranks_first(pipeline: LocalPipeline) -> None:
    assert pipeline.stats()["rows"] == 30
    assert len(index(pipeline)) == 30
    hits = pipeline.query("honeybees trained to count shapes for sugar water", k=3)
    assert hits[0]["primary_key"] == {"id": 7}
    assert hits[0]["metadata"]["title"] == "Bees learn to count to four"
    assert hits[0]["metadata"]["section"] == "science"
    assert hits[0]["metadata"]["tags"] == ["insects", "animal behaviour"]


def test_a_body_update_embeds_again_and_another_column_does_not(pipeline: LocalPipeline) -> None:
    row = article(pipeline, 21)
    before = pipeline.stats()["embeddings_computed"]
    rewritten = {**row, "body": "Astronauts grow lettuce on the space station under pink lights."}
    pipeline.wait_synced(SYNC_S, pipeline.upsert([rewritten]))
    assert pipeline.stats()["embeddings_computed"] == before + 1
    assert pipeline.query("lettuce grown by astronauts in orbit", k=1)[0]["primary_key"] == {"id": 21}

    before = pipeline.stats()["embeddings_computed"]
    stored = pipeline.indexed({"id": 21})
    assert stored is not None
    pipeline.wait_synced(SYNC_S, pipeline.upsert([{"id": 21, "word_count": 999, "section": "space"}]))
    after = pipeline.indexed({"id": 21})
    assert after is not None
    assert pipeline.stats()["embeddings_computed"] == before
    assert after["metadata"]["word_count"] == 999
    assert after["metadata"]["section"] == "space"
    assert after["data"] == stored["data"]
    assert after["metadata"][c.META_FINGERPRINT] == stored["metadata"][c.META_FINGERPRINT]


def test_a_delete_removes_the_article(pipeline: LocalPipeline) -> None:
    receipt = pipeline.delete([{"id": 16}])
    assert receipt.changes == 1
    pipeline.wait_synced(SYNC_S, receipt)
    assert pipeline.indexed({"id": 16}) is None
    assert {"id": 16} not in [hit["primary_key"] for hit in pipeline.query("penalties cup final", k=10)]
    assert pipeline.delete([{"id": 16}]).changes == 0  # nothing there any more: no change


def test_truncate_empties_the_index(pipeline: LocalPipeline) -> None:
    assert len(index(pipeline)) > 0
    receipt = pipeline.truncate()
    pipeline.wait_synced(SYNC_S, receipt)
    assert pipeline.stats()["rows"] == 0
    assert index(pipeline) == {}
    pipeline.wait_synced(SYNC_S, pipeline.upsert([article(pipeline, 3)]))  # and it fills again afterwards
    assert set(index(pipeline)) == {vector_key({"id": 3}, ("id",))}


def test_the_index_ends_equal_to_the_table_after_forwarder_crashes() -> None:
    try:
        find_bin_dir()
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    chaos = Chaos(FaultPlan.none(seed=11).with_rates(forwarder_kill=0.2))
    rng = random.Random(5)
    rows = {row["id"]: row for row in read_rows(DATA, _config())}
    with LocalPipeline.start(_config(), faults=chaos) as pipe:
        pipe.upsert(rows.values())
        for round_ in range(24):
            ids = rng.sample(sorted(rows), 4)
            pipe.upsert([{**rows[ids[0]], "body": f"{rows[ids[0]]['body']} Revised {round_}."}])
            pipe.upsert([{"id": ids[1], "word_count": round_}])
            pipe.delete([{"id": ids[2]}])
            pipe.upsert([rows[ids[3]]])  # back if it was deleted, else an unchanged rewrite
            if round_ == 12:
                pipe.truncate()
                pipe.upsert([rows[i] for i in sorted(rows)[:10]])
        pipe.wait_synced(SYNC_S * 2)
        table = {row["id"]: row for row in pipe.table.rows()}
        stored = index(pipe)
        crashes = pipe.stats()["forwarder_crashes"]
        # A row without text has no vector (an upsert of other columns can insert such a row).
        expected = {vector_key({"id": i}, ("id",)): row for i, row in table.items() if (row["body"] or "").strip()}
        assert len(expected) >= 10
        assert set(stored) == set(expected)
        for key, row in expected.items():
            vector = stored[key]
            assert vector["data"] == pytest.approx(pipe.embedder.embed_documents([row["body"]])[0], rel=1e-5)
            meta = vector["metadata"]
            assert (meta["title"], meta["section"], meta["word_count"]) == (
                row["title"],
                row["section"],
                row["word_count"],
            )
    assert crashes > 0, chaos.counts()


def test_the_demo_runs_with_a_local_postgresql() -> None:
    from typer.testing import CliRunner

    from freshvec.local.cli import local_app

    try:
        find_bin_dir()
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    result = CliRunner().invoke(local_app, ["demo", "--source", "postgres"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Load 30 rows from articles.jsonl" in out
    assert "PostgreSQL on 127.0.0.1" in out
    assert "embeddings computed for this change: 0; stored vector reused: 1" in out
    after_delete = out.split("4. Delete")[1].split("after:")[1].splitlines()[0]
    assert after_delete.strip() == "not in the index"


def test_source_and_config_must_agree() -> None:
    from typer.testing import CliRunner

    from freshvec.local.cli import local_app

    result = CliRunner().invoke(local_app, ["demo", "--source", "keyspaces", "--config", str(CONFIG)])
    assert result.exit_code == 2
    assert "source.kind is postgres, not keyspaces" in " ".join(result.output.replace("│", " ").split())


def test_a_killed_local_up_leaves_no_postgresql_server_running(tmp_path: Path) -> None:
    try:
        bin_dir = find_bin_dir()
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    root = Path(__file__).resolve().parents[2]
    up = subprocess.Popen(
        [sys.executable, "-m", "freshvec.command", "local", "up", "--source", "postgres", "--state",
         str(tmp_path / "local.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    output = []
    try:
        assert up.stdout is not None
        for line in up.stdout:
            output.append(line)
            if "Ctrl-C to stop" in line:
                break
        port = re.search(r"psql on the throwaway server: .* -p (\d+)", "".join(output))
        assert port is not None, "".join(output)
    finally:
        up.send_signal(signal.SIGKILL)  # no clean stop: what a crash or `kill -9` does
        up.wait(30)

    def ready() -> bool:
        probe = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", port.group(1), "-q"]
        return subprocess.run(probe, check=False).returncode == 0

    deadline = time.monotonic() + 60
    while ready() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not ready(), "the throwaway PostgreSQL outlived local up"
    passfile = re.search(r"PGPASSFILE=(\S+)", "".join(output))
    assert passfile is not None, "".join(output)
    deadline = time.monotonic() + 30
    while Path(passfile.group(1)).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(passfile.group(1)).exists(), "the psql password file outlived local up"
