"""Long texts end to end in local mode: a passage in the middle of a long document is found, filters apply to
every chunk, and an edit of one paragraph re-embeds one chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from freshvec import constants as c
from freshvec.config import DEFAULT_CONFIG
from freshvec.datafiles import sample_movies
from freshvec.local import LocalPipeline
from freshvec.local.demo import read_rows

LONGDOCS = sample_movies().parent / "longdocs"
SYNC_S = 30


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    config = {**DEFAULT_CONFIG, "sink": {"batching_window_s": 0}}
    with LocalPipeline.start(config) as running:
        rows = read_rows(LONGDOCS / "documents.jsonl", running.config)
        running.wait_synced(timeout=SYNC_S, receipt=running.upsert(rows))
        yield running


@pytest.fixture(scope="module")
def documents(pipeline: LocalPipeline) -> dict[str, dict[str, Any]]:
    return {row["title"]: row for row in read_rows(LONGDOCS / "documents.jsonl", pipeline.config)}


def test_a_long_document_is_stored_as_chunks_that_carry_its_columns(
    pipeline: LocalPipeline, documents: dict[str, dict[str, Any]]
) -> None:
    row = documents["Varna Point Lighthouse"]
    chunks = pipeline.indexed_chunks({"title": row["title"]})
    assert len(chunks) > 2
    assert chunks[0]["metadata"][c.META_CHUNKS] == len(chunks)
    assert [ch["metadata"][c.META_CHUNK] for ch in chunks] == list(range(len(chunks)))
    words = [w for ch in chunks for w in ch["metadata"]["overview"].split()]
    assert words == row["overview"].split()  # the chunks hold the whole text, in order
    assert {ch["metadata"]["vote_count"] for ch in chunks} == {row["vote_count"]}


def test_a_question_about_the_middle_of_a_long_text_finds_that_passage(
    pipeline: LocalPipeline, documents: dict[str, dict[str, Any]]
) -> None:
    paragraphs = documents["Varna Point Lighthouse"]["overview"].split("\n\n")
    answer = next(i for i, p in enumerate(paragraphs) if "Mira Halloway" in p)
    assert 4 <= answer <= len(paragraphs) - 4  # the passage sits in the middle, far past any 512-character cut
    [best, *_] = pipeline.query("Who relit the light after the storm broke the lantern glass?", k=3)
    assert best["primary_key"] == {"title": "Varna Point Lighthouse"}
    assert "Mira Halloway" in best["passage"] and best["chunk"] > 0
    assert best["metadata"]["overview"] == best["passage"]
    assert best["chunks"][0]["chunk"] == best["chunk"]


def test_k_counts_rows_and_each_row_appears_once(pipeline: LocalPipeline) -> None:
    rows = pipeline.query("history of the building and its workers", k=5)
    keys = [row["key"] for row in rows]
    assert len(keys) == 5 == len(set(keys))
    assert all("#" not in key for key in keys)


def test_a_filter_on_a_row_column_applies_to_every_chunk(
    pipeline: LocalPipeline, documents: dict[str, dict[str, Any]]
) -> None:
    votes = documents["Northwind Ferry Line"]["vote_count"]
    rows = pipeline.query(
        "Who relit the light after the storm broke the lantern glass?", k=5, filter={"vote_count": votes}
    )
    assert [row["primary_key"]["title"] for row in rows] == ["Northwind Ferry Line"]
    assert all(ch["key"].startswith(json.dumps(["Northwind Ferry Line"])) for ch in rows[0]["chunks"])
    everything = pipeline.query("lighthouse", k=20, filter={"vote_count": {"$gte": 0}})
    assert len(everything) == len(documents)


def test_editing_one_paragraph_re_embeds_about_one_chunk(
    pipeline: LocalPipeline, documents: dict[str, dict[str, Any]]
) -> None:
    row = documents["Meridian Glassworks"]
    paragraphs = row["overview"].split("\n\n")
    paragraphs[9] += " The red lenses were the hardest to make."
    before = pipeline.stats()
    receipt = pipeline.upsert([{**row, "overview": "\n\n".join(paragraphs)}])
    pipeline.wait_synced(timeout=SYNC_S, receipt=receipt)
    after = pipeline.stats()
    chunks = pipeline.indexed_chunks({"title": row["title"]})
    embedded = after["chunks_embedded"] - before["chunks_embedded"]
    assert 1 <= embedded <= 2
    assert after["chunks_reused"] - before["chunks_reused"] == len(chunks) - embedded
    assert any("hardest to make" in ch["metadata"]["overview"] for ch in chunks)


def test_deleting_a_long_row_removes_every_chunk(pipeline: LocalPipeline, documents: dict[str, dict[str, Any]]) -> None:
    row = documents["Pemberton Observatory"]
    assert len(pipeline.indexed_chunks({"title": row["title"]})) > 1
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.delete([{"title": row["title"]}]))
    assert pipeline.indexed_chunks({"title": row["title"]}) == []
    found = pipeline.query("Who paid for the observatory on the hill?", k=10)
    assert "Pemberton Observatory" not in [hit["primary_key"]["title"] for hit in found]
