"""``freshvec --local load --wait`` and ``freshvec --local wait`` against a real local pipeline.

The same forwarder and sink code as in AWS applies the writes; the CLI only polls the index on the moto
endpoint of the state file, so what is asserted is what a user sees: the latency line once every change is
searchable, and exit 1 naming how many never were.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec.cli.errors import EXIT_CHECK_FAILED, EXIT_USAGE
from freshvec.command import app as command
from freshvec.config import DEFAULT_CONFIG
from freshvec.local import LocalPipeline
from freshvec.testing.local_cli import attached_cli

runner = CliRunner()
CONFIG = copy.deepcopy(DEFAULT_CONFIG)
CONFIG["sink"] = {"batching_window_s": 0}
LATENCY = re.compile(r"(\d+) change\(s\) searchable; write → searchable: p50 (\d+) ms, p95 (\d+) ms, max (\d+) ms")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    state = tmp_path_factory.mktemp("local") / "local.json"
    with LocalPipeline.start(CONFIG) as running, attached_cli(running, state):
        yield running


def freshvec(*args: str, stdin: str | None = None) -> Any:
    result = runner.invoke(command, ["--local", *args], input=stdin)
    assert "Traceback" not in result.output, result.output
    return result


def rows_file(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def movie(title: str, overview: str, votes: int = 10) -> dict[str, Any]:
    return {"title": title, "overview": overview, "original_lang": "en", "vote_count": votes}


def stored(pipeline: LocalPipeline, titles: list[str]) -> dict[str, Any]:
    client = pipeline.server.client("s3vectors")
    keys = [json.dumps([t]) for t in titles]
    vectors = client.get_vectors(
        vectorBucketName=pipeline.resources.vector_bucket,
        indexName=pipeline.resources.vector_index,
        keys=keys,
        returnMetadata=True,
    )["vectors"]
    return {v["key"]: v["metadata"] for v in vectors}


def test_load_wait_returns_once_every_change_is_searchable_and_prints_the_latency(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    titles = [f"Wait film {i}" for i in range(5)]
    first = rows_file(tmp_path, "first.jsonl", [movie(t, f"A story about {t}.") for t in titles])
    result = freshvec("load", str(first), "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    found = LATENCY.search(result.output)
    assert found, result.output
    count, p50, p95, worst = map(int, found.groups())
    assert count == 5 and p50 <= p95 <= worst < 60_000
    # Right after it returns, every row is in the index (no polling by the test).
    assert set(stored(pipeline, titles)) == {json.dumps([t]) for t in titles}

    # New texts: --wait returns only when the new vectors (by fingerprint) are there, not the old ones.
    revised = rows_file(tmp_path, "revised.jsonl", [movie(t, f"A different story about {t}.") for t in titles])
    before = {k: m["_fp"] for k, m in stored(pipeline, titles).items()}
    result = freshvec("load", str(revised), "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    after = {k: m["_fp"] for k, m in stored(pipeline, titles).items()}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)

    result = freshvec("load", str(revised), "--delete", "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "5 row(s) removed from the index; delete → absent: p50" in result.output, result.output
    assert stored(pipeline, titles) == {}


def test_load_without_wait_says_how_to_wait(pipeline: LocalPipeline, tmp_path: Path) -> None:
    path = rows_file(tmp_path, "hint.jsonl", [movie("Hint film", "A film about hints.")])
    result = freshvec("load", str(path))
    assert result.exit_code == 0, result.output
    assert "searchable in a few seconds" in result.output
    assert f"freshvec load {path} --wait" in result.output
    assert f"freshvec wait --keys-file {path}" in result.output


def test_wait_with_a_keys_file_or_stdin_sees_rows_written_another_way(pipeline: LocalPipeline, tmp_path: Path) -> None:
    rows = [movie("Elsewhere film", "Written by another tool."), movie("Elsewhere two", "Also elsewhere.")]
    pipeline.upsert(rows)  # not through the CLI
    data = rows_file(tmp_path, "elsewhere.jsonl", rows)
    result = freshvec("wait", "--keys-file", str(data), "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "2 change(s) searchable; change → searchable: p50" in result.output
    keys = "".join(json.dumps({"title": r["title"]}) + "\n" for r in rows)
    assert freshvec("wait", "--timeout", "60", stdin=keys).exit_code == 0
    keys_file = tmp_path / "elsewhere.keys"  # any name: JSON Lines of keys, as on stdin
    keys_file.write_text(keys)
    result = freshvec("wait", "--keys-file", str(keys_file), "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "2 change(s) searchable" in result.output

    pipeline.delete([{"title": r["title"]} for r in rows])
    result = freshvec("wait", "--delete", "--keys-file", str(keys_file), "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "2 row(s) removed from the index; delete → absent: p50" in result.output
    assert "searchable" not in result.output
    assert stored(pipeline, [r["title"] for r in rows]) == {}
    assert freshvec("wait", "--delete", "--timeout", "60", stdin=keys).exit_code == 0


def test_a_delete_still_in_the_index_is_named_as_such(pipeline: LocalPipeline, tmp_path: Path) -> None:
    pipeline.wait_synced(timeout=60, receipt=pipeline.upsert([movie("Staying film", "It stays.")]))
    keys_file = tmp_path / "staying.keys"
    keys_file.write_text(json.dumps({"title": "Staying film"}) + "\n")
    result = freshvec("wait", "--delete", "--keys-file", str(keys_file), "--timeout", "1")
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "1 of 1 row(s) were still in the index after 1 s" in result.output
    missing = freshvec("wait", "--keys-file", str(tmp_path / "nope.keys"), "--timeout", "1")
    assert missing.exit_code == EXIT_USAGE and "nope.keys: no such file" in missing.output


def test_a_change_that_never_becomes_searchable_fails_after_the_timeout(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    never = rows_file(tmp_path, "never.jsonl", [movie("Never written", "Nobody loaded this.")])
    result = freshvec("wait", "--keys-file", str(never), "--timeout", "1")
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "1 of 1 change(s) did not become searchable within 1 s" in result.output
    assert '["Never written"]' in result.output


def test_bad_keys_on_stdin_are_named(pipeline: LocalPipeline) -> None:
    result = freshvec("wait", stdin='{"title": "ok"}\nnot json\n')
    assert result.exit_code == EXIT_USAGE
    assert "error: stdin:2: not JSON" in result.output
    result = freshvec("wait", stdin='{"nope": 1}\n')
    assert result.exit_code == EXIT_USAGE and "stdin:1: unknown column 'nope'" in result.output


def test_local_status_reports_the_forwarder_lag_and_the_iterator_age(pipeline: LocalPipeline) -> None:
    """Measured as in AWS: the forwarder's lag after its last pass (0 at the tip), the mapping's IteratorAge of its
    last batch (the last record's age when the sink was invoked)."""
    pipeline.wait_synced(timeout=60, receipt=pipeline.upsert([movie("Status film", "Counted and timed.")]))
    result = freshvec("status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["forwarder_lag_ms"] is not None and 0 <= report["forwarder_lag_ms"] < 60_000
    assert report["sink_iterator_age_ms"] is not None and 0 <= report["sink_iterator_age_ms"] < 60_000
    assert "forwarder_lag_ms" not in report["extra"]
    table = freshvec("status")
    assert "no data" not in table.output, table.output
