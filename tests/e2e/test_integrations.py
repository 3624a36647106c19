"""docs/integrations.md, run as written: each Python block against a running local pipeline, through boto3, LangChain's
``AmazonS3Vectors`` and LlamaIndex's ``S3VectorStore``, configured only by the environment variables
``freshvec local up`` prints."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from freshvec.config import DEFAULT_CONFIG
from freshvec.datafiles import sample_movies
from freshvec.local import LocalPipeline
from freshvec.local.cli import application_settings
from freshvec.local.demo import read_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
BLOCK = re.compile(r"^## (?P<title>[^\n]+)\n(?:(?!^## ).)*?```python\n(?P<code>.*?)```", re.S | re.M)
CONFIG = {
    **DEFAULT_CONFIG,
    "sink": {"batching_window_s": 0},
    "text_search": {"enabled": True, "keys": ["overview", "title"], "language": "en"},
}


def examples() -> dict[str, str]:
    return {m["title"]: m["code"] for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with LocalPipeline.start(CONFIG) as running:
        receipt = running.upsert(read_rows(sample_movies(), running.config))
        running.wait_synced(timeout=30, receipt=receipt)
        yield running


@pytest.fixture
def environment(pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly the `export` lines `freshvec local up` prints for an application, and nothing else."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    exported = dict(
        assignment.split("=", 1)
        for line in application_settings(pipeline).splitlines()
        if line.strip().startswith("export ")
        for assignment in line.split()[1:]
    )
    assert {"AWS_ENDPOINT_URL_S3VECTORS", "AWS_ACCESS_KEY_ID", "FRESHVEC_VECTOR_INDEX"} <= set(exported)
    for name, value in exported.items():
        monkeypatch.setenv(name, value)
    # As in the application's own process: boto3's default session reads these variables when it is first made
    # (and keeps the credentials), so one made by an earlier test must not stand in for it.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def run(title: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "example"}
    exec(compile(examples()[title], f"{DOC.name}: {title}", "exec"), namespace)  # our own docs, as written
    return namespace


def test_the_page_has_every_example() -> None:
    assert set(examples()) == {
        "boto3: vector search with a filter",
        "boto3: hybrid search, scores, rows not chunks",
        "LangChain: `AmazonS3Vectors`",
        "LlamaIndex: `S3VectorStore`",
    }


def test_boto3_vector_search_with_a_filter(environment: None) -> None:
    hits = run("boto3: vector search with a filter")["vector_hits"]
    assert len(hits) == 5 and hits[0][2] in {"Jurassic Park", "The Lost World: Jurassic Park", "Jurassic World"}
    distances = [distance for _, distance, _ in hits]
    assert distances == sorted(distances)


def test_boto3_hybrid_search_groups_chunks_into_rows(environment: None) -> None:
    found = run("boto3: hybrid search, scores, rows not chunks")
    assert found["best"]["title"] == "Jurassic World Dominion"
    assert found["best"]["fused"] > 0 and {s["metadataKey"] for s in found["best"]["bm25Scores"]} >= {"title"}
    assert all(row["title"].startswith("Jurassic") for row in found["rows"].values())


def test_langchain_reads_the_index(environment: None) -> None:
    documents = run("LangChain: `AmazonS3Vectors`")["documents"]
    assert len(documents) == 3 and "shark" in documents[0][0].page_content.lower()
    assert all(d.metadata["vote_count"] >= 1000 for d, _ in documents)
    assert all(d.page_content and "overview" not in d.metadata for d, _ in documents)


def test_llamaindex_reads_the_index(environment: None) -> None:
    found = run("LlamaIndex: `S3VectorStore`")
    titles = [title for title, _ in found["nodes"]]
    assert titles[0] == "Toy Story" and len(titles) == 3
    assert found["result"].ids[0] == '["Toy Story"]'


def test_grouping_chunks_into_rows_keeps_keys_that_hold_a_hash(pipeline: LocalPipeline, environment: None) -> None:
    receipt = pipeline.upsert([{"title": "Jurassic #1 Fan Cut", "overview": "A fan edit of the dinosaur park film."}])
    pipeline.wait_synced(timeout=30, receipt=receipt)
    rows = run("boto3: hybrid search, scores, rows not chunks")["rows"]
    assert '["Jurassic #1 Fan Cut"]' in rows
    assert all(isinstance(json.loads(key), list) for key in rows)  # every group is a whole row key
