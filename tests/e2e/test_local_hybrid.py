"""Hybrid search kept exact, end to end: the local pipeline with full-text search on, queried in every mode through
the pipeline, the CLI (control API) and a plain boto3 client on the local S3 Vectors endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from freshvec.cli import app as cli
from freshvec.cli import console
from freshvec.config import DEFAULT_CONFIG
from freshvec.datafiles import sample_movies
from freshvec.local import LocalPipeline
from freshvec.local.control import ControlServer
from freshvec.local.demo import read_rows

SYNC_S = 30
CONFIG = {
    **DEFAULT_CONFIG,
    "sink": {"batching_window_s": 0},
    "text_search": {"enabled": True, "keys": ["overview", "title"], "language": "en"},
}
runner = CliRunner()


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with LocalPipeline.start(CONFIG) as running:
        receipt = running.upsert(read_rows(sample_movies(), running.config))
        running.wait_synced(timeout=SYNC_S, receipt=receipt)
        yield running


@pytest.fixture(scope="module")
def s3v(pipeline: LocalPipeline) -> Any:
    """A plain boto3 client: only the endpoint URL says it is local."""
    return boto3.client(
        "s3vectors",
        endpoint_url=pipeline.server.endpoint,
        region_name=pipeline.server.region,
        aws_access_key_id=pipeline.server.access_key,  # the stack's key, as `freshvec local up` prints it
        aws_secret_access_key="any",
    )


@pytest.fixture
def local_cli(pipeline: LocalPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    server = ControlServer(pipeline).start()
    state = tmp_path / "local.json"
    doc = {
        "endpoint": pipeline.server.endpoint,
        "aws_access_key": pipeline.server.access_key,
        "region": pipeline.server.region,
        "control": server.url,
        "token": server.token,
        "outputs": pipeline.resources.outputs(pipeline.config),
    }
    state.write_text(json.dumps(doc))
    monkeypatch.setenv("FRESHVEC_LOCAL_STATE", str(state))
    monkeypatch.setattr(console.out, "width", 250)
    try:
        yield
    finally:
        server.stop()


def titles(rows: list[dict[str, Any]]) -> list[str]:
    return [row["primary_key"]["title"] for row in rows]


def cli_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(cli.app, ["--local", "query", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_index_is_enhanced_and_its_text_keys_active(pipeline: LocalPipeline, s3v: Any) -> None:
    index = s3v.get_index(vectorBucketName=pipeline.resources.vector_bucket, indexName=pipeline.resources.vector_index)
    assert index["index"]["indexMode"] == "ENHANCED"
    assert index["index"]["metadataConfiguration"]["textSearchConfigurations"] == [
        {"metadataKey": "overview", "language": "en", "status": "ACTIVE"},
        {"metadataKey": "title", "language": "en", "status": "ACTIVE"},
    ]


def test_an_exact_title_only_hybrid_gets_right(pipeline: LocalPipeline) -> None:
    # The sequels' overviews look alike; the words of the title are what tells them apart.
    query = "Jurassic World Dominion"
    assert titles(pipeline.query(query, k=1, mode="vector")) != [query]
    assert titles(pipeline.query(query, k=1, mode="hybrid")) == [query]
    assert titles(pipeline.query(query, k=1)) == [query]  # hybrid is the default with text search on


def test_each_mode_through_the_cli_carries_its_scores(local_cli: None) -> None:
    vector = cli_json("dinosaurs escape from an island park", "--mode", "vector", "--k", "3")
    assert vector["mode"] == "vector" and vector["score"] == "distance"
    assert all(hit["scores"]["distance"] is not None and hit["scores"]["fused"] is None for hit in vector["hits"])
    text = cli_json("paleontologist", "--mode", "text", "--k", "3")
    assert text["score"] == "bm25" and text["hits"]
    assert all(hit["scores"]["bm25"].get("overview", 0) > 0 for hit in text["hits"])
    assert all("paleontologist" in hit["passage"].lower() for hit in text["hits"])
    hybrid = cli_json("Jurassic World Dominion", "--k", "5")
    assert hybrid["mode"] == "hybrid" and hybrid["hits"][0]["key_values"] == {"title": "Jurassic World Dominion"}
    fused = [hit["scores"]["fused"] for hit in hybrid["hits"]]
    assert fused == sorted(fused, reverse=True) and fused[0] > 0
    assert hybrid["hits"][0]["scores"]["bm25"]["title"] > 0


def test_filters_and_starts_with_through_the_cli(local_cli: None) -> None:
    found = cli_json("dinosaurs", "--k", "10", "--filter", '{"title": {"$startsWith": "Jurassic World"}}')
    assert {hit["key_values"]["title"] for hit in found["hits"]} == {
        "Jurassic World",
        "Jurassic World: Fallen Kingdom",
        "Jurassic World Dominion",
    }
    french = cli_json("love", "--mode", "text", "--k", "10", "--filter", '{"original_lang": {"$in": ["fr"]}}')
    assert all(hit["metadata"]["original_lang"] == "fr" for hit in french["hits"])


def test_k_rows_past_one_page_come_through_next_token(local_cli: None, pipeline: LocalPipeline) -> None:
    rows = cli_json("a story", "--mode", "vector", "--k", "100")["hits"]  # 400 chunks asked: four pages
    assert len(rows) == 100 and len({hit["key"] for hit in rows}) == 100
    distances = [hit["distance"] for hit in rows]
    assert distances == sorted(distances)
    assert titles(pipeline.query("a story", k=100, mode="vector")) == [hit["key_values"]["title"] for hit in rows]


def test_a_plain_boto3_client_queries_every_mode_with_pages(pipeline: LocalPipeline, s3v: Any) -> None:
    where = {"vectorBucketName": pipeline.resources.vector_bucket, "indexName": pipeline.resources.vector_index}
    vector = pipeline.embedder.embed_query("a great white shark kills swimmers off a resort island")
    texts = [{"text": "grizzled fisherman", "metadataKey": "overview"}]
    by_vector = s3v.query_vectors(**where, topK=3, queryVector={"float32": vector}, returnMetadata=True)
    assert by_vector["vectors"][0]["metadata"]["title"] in ("Jaws", "Jaws 2")
    by_text = s3v.query_vectors(**where, topK=3, queryTexts=texts, returnScores=True)
    assert by_text["vectors"][0]["key"] == '["Jaws"]' and by_text["vectors"][0]["scores"]["bm25Scores"]
    both = s3v.query_vectors(
        **where,
        topK=150,
        queryVector={"float32": vector},
        queryTexts=texts,
        returnScores=True,
        filter={"vote_count": {"$gte": 0}},
    )
    assert both["vectors"][0]["key"] == '["Jaws"]' and len(both["vectors"]) == 100 and "nextToken" in both
    rest = s3v.query_vectors(
        **where,
        topK=150,
        queryVector={"float32": vector},
        queryTexts=texts,
        returnScores=True,
        filter={"vote_count": {"$gte": 0}},
        nextToken=both["nextToken"],
    )
    keys = [v["key"] for v in both["vectors"] + rest["vectors"]]
    assert len(keys) == len(set(keys)) == 150


def test_a_text_edit_is_found_by_its_new_words_and_no_longer_by_its_old(pipeline: LocalPipeline) -> None:
    [row] = [r for r in read_rows(sample_movies(), pipeline.config) if r["title"] == "Jaws"]
    assert titles(pipeline.query("grizzled fisherman", k=1, mode="text")) == ["Jaws"]
    edited = {
        **row,
        "overview": "A harbour town hires a zeppelin pilot to chase a rogue glacier calf away from the ferry.",
    }
    receipt = pipeline.upsert([edited])
    pipeline.wait_synced(timeout=SYNC_S, receipt=receipt)  # the vector path's own freshness
    assert titles(pipeline.query("zeppelin glacier", k=1, mode="text")) == ["Jaws"]
    assert titles(pipeline.query("zeppelin glacier", k=1, mode="hybrid")) == ["Jaws"]
    assert "Jaws" not in titles(pipeline.query("grizzled fisherman", k=20, mode="text"))
    restored = pipeline.upsert([row])
    pipeline.wait_synced(timeout=SYNC_S, receipt=restored)
    assert pipeline.query("zeppelin glacier", k=5, mode="text") == []


def test_refusals_are_one_line(local_cli: None) -> None:
    result = runner.invoke(cli.app, ["--local", "query", "x" * 1100, "--mode", "text"])
    assert result.exit_code == 2 and result.output.count("\n") == 1  # a usage error
    assert "full-text search takes at most 1024" in result.output
    result = runner.invoke(cli.app, ["--local", "query", "x", "--mode", "fuzzy"])
    assert result.exit_code != 0 and "--mode must be one of hybrid, vector, text" in result.output
