"""``freshvec --local ...`` against the real control API server (with a recording pipeline behind it) and moto."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec.cli import app as cli
from freshvec.cli import console
from freshvec.config import default_config
from freshvec.local.control import ControlServer
from freshvec.local.moto_server import MotoServer
from freshvec.local.resources import create_resources, local_config

runner = CliRunner()


@dataclass
class RecordingPipeline:
    """Stands behind the control API: remembers what the CLI sent and answers queries from a fixed list."""

    upserts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)

    def upsert(self, rows: list[dict[str, Any]], ttl_s: int | None = None, **options: Any) -> Any:
        self.upserts.extend(rows)
        self.options.append({"ttl_s": ttl_s, **options})
        return SimpleNamespace(changes=len(rows))

    def delete(self, keys: list[dict[str, Any]], **options: Any) -> Any:
        self.deletes.extend(keys)
        self.options.append(options)
        return SimpleNamespace(changes=len(keys))

    def query(
        self, text: str, k: int = 5, filter: Mapping[str, Any] | None = None, mode: str | None = None
    ) -> list[dict[str, Any]]:
        self.queries.append({"text": text, "k": k, "filter": filter, "mode": mode})
        hits = [
            {"key": '["Jurassic Park"]', "distance": 0.21, "metadata": {"original_lang": "en", "vote_count": 16210}},
            {"key": '["Jaws"]', "distance": 0.4, "metadata": {"original_lang": "en", "vote_count": 9000}},
        ]
        return hits[:k]

    def wait_synced(self, timeout: float = 30) -> Any:
        return True

    def stats(self) -> dict[str, Any]:
        return {"changes": len(self.upserts) + len(self.deletes), "pending": 0, "mapping": {"records_parked": 0}}


@pytest.fixture
def local(moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingPipeline]:
    config = local_config(default_config())
    created = create_resources(moto.client, config)
    pipeline = RecordingPipeline()
    server = ControlServer(pipeline).start()
    state = tmp_path / "local.json"
    doc = {
        "endpoint": moto.endpoint,
        "aws_access_key": moto.access_key,
        "region": moto.region,
        "control": server.url,
        "token": server.token,
        "outputs": created.outputs(config),
    }
    state.write_text(json.dumps(doc))
    monkeypatch.setenv("FRESHVEC_LOCAL_STATE", str(state))
    monkeypatch.setattr(console.out, "width", 250)
    try:
        yield pipeline
    finally:
        server.stop()


def invoke(*args: str) -> Any:
    result = runner.invoke(cli.app, ["--local", *args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_load_sends_change_event_values_through_the_control_api(local: RecordingPipeline) -> None:
    result = invoke("load", "--limit", "3")
    assert result.exit_code == 0 and "3 row(s) written to the local pipeline; 0 skipped, 0 failed" in result.output
    first = local.upserts[0]
    assert first["title"] == "Jurassic Park" and first["rel_date"] == "1993-06-11"
    assert first["popularity"] == "48.312" and first["vote_count"] == 16210  # decimals as exact strings

    invoke("load", "--limit", "1", "--update", "text")
    assert local.upserts[-1]["overview"].startswith(first["overview"]) and "(revised " in local.upserts[-1]["overview"]
    deleted = invoke("load", "--limit", "2", "--delete")
    assert "2 row(s) deleted" in deleted.output
    assert local.deletes == [{"title": "Jurassic Park"}, {"title": "The Lost World: Jurassic Park"}]


def test_load_passes_a_column_ttl_and_a_client_timestamp(local: RecordingPipeline) -> None:
    result = invoke("load", "--limit", "1", "--update", "ratings", "--partial", "--ttl", "60", "--timestamp", "42")
    assert result.exit_code == 0, result.output
    assert local.options[-1] == {"ttl_s": 60, "timestamp_us": 42, "partial": True}
    invoke("load", "--limit", "1", "--delete", "--timestamp", "43")
    assert local.options[-1] == {"timestamp_us": 43}
    invoke("load", "--limit", "1")
    assert local.options[-1] == {"ttl_s": None, "timestamp_us": None, "partial": False}


def test_query_goes_to_the_control_api(local: RecordingPipeline) -> None:
    result = invoke("query", "dinosaurs on an island", "--k", "1", "--filter", '{"original_lang": "en"}')
    assert result.exit_code == 0
    expected = {"text": "dinosaurs on an island", "k": 1, "filter": {"original_lang": "en"}, "mode": "vector"}
    assert local.queries == [expected]
    assert "title=Jurassic Park" in result.output and "0.2100" in result.output and "Jaws" not in result.output


def test_status_reads_moto_and_the_local_counters(local: RecordingPipeline) -> None:
    result = invoke("status")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "freshvec status: local pipeline" in text
    assert "vectors in index │ 0" in text and "sink DLQ │ 0 waiting, 0 in flight" in text
    assert "local: pending │ 0" in text
    assert "metrics" not in text  # CloudWatch is not part of local mode
