"""End to end through LocalPipeline: the real forwarder and sink between the local table and the index.

Each step writes to the table, waits until the change is applied (or parked), checks what a user would
see, and records the step's freshness (write call -> searchable). The figures are printed, not asserted:
speed is measured in bench/local_freshness.py.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from freshvec import constants as c
from freshvec.config import DEFAULT_CONFIG
from freshvec.datafiles import sample_movies
from freshvec.local import LocalPipeline
from freshvec.local.demo import read_rows
from freshvec.local.tracker import WriteReceipt
from tests.unit.test_sample_data import DINOSAUR_FILMS

DATA = sample_movies()
SYNC_S = 30
FRESHNESS: dict[str, float] = {}


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    # The config's own mapping settings, with a short batching window to keep the suite quick.
    config = {**DEFAULT_CONFIG, "sink": {"batching_window_s": 0}}
    with LocalPipeline.start(config) as running:
        receipt = running.upsert(read_rows(DATA, running.config))
        running.wait_synced(timeout=SYNC_S, receipt=receipt)
        FRESHNESS["load"] = running.freshness_ms(receipt)
        yield running
    print("\nfreshness (write -> searchable), ms:", json.dumps({k: round(v) for k, v in FRESHNESS.items()}))


@pytest.fixture(scope="module")
def movies(pipeline: LocalPipeline) -> dict[str, dict[str, Any]]:
    return {row["title"]: row for row in read_rows(DATA, pipeline.config)}


def synced(pipeline: LocalPipeline, step: str, receipt: WriteReceipt) -> None:
    assert receipt.changes > 0
    pipeline.wait_synced(timeout=SYNC_S, receipt=receipt)
    FRESHNESS[step] = pipeline.freshness_ms(receipt)
    assert FRESHNESS[step] > 0


def titles(hits: list[dict[str, Any]]) -> list[str]:
    return [hit["primary_key"]["title"] for hit in hits]


def test_load_makes_every_row_searchable(pipeline: LocalPipeline, movies: dict[str, dict[str, Any]]) -> None:
    stats = pipeline.stats()
    assert stats["pending"] == 0
    assert stats["vectors_put"] >= len(movies)
    jaws = pipeline.query(movies["Jaws"]["overview"], k=3)
    assert titles(jaws)[0] == "Jaws"
    assert jaws[0]["distance"] == pytest.approx(0.0, abs=1e-3)
    meta = jaws[0]["metadata"]
    assert meta["title"] == "Jaws"
    assert meta["rel_date"] == 19750620  # dates become sortable YYYYMMDD numbers
    assert meta["vote_count"] == movies["Jaws"]["vote_count"]
    assert meta[c.META_SEQUENCE]


def test_dinosaurs_finds_the_dinosaur_movies(pipeline: LocalPipeline) -> None:
    found = titles(pipeline.query("dinosaurs", k=5))
    assert len(set(found) & DINOSAUR_FILMS) >= 4, found


def test_filters_narrow_the_search(pipeline: LocalPipeline) -> None:
    hits = pipeline.query("a love story", k=10, filter={"original_lang": "fr", "rel_date": {"$gte": 20000101}})
    assert hits
    assert all(h["metadata"]["original_lang"] == "fr" and h["metadata"]["rel_date"] >= 20000101 for h in hits)


def test_text_update_is_re_embedded_and_moves_the_row(
    pipeline: LocalPipeline, movies: dict[str, dict[str, Any]]
) -> None:
    new_text = "A chess grandmaster in Reykjavik plays a televised match against a computer for the world title."
    assert titles(pipeline.query(new_text, k=1)) != ["Toy Story"]
    before = pipeline.stats()
    synced(pipeline, "text update", pipeline.upsert([{**movies["Toy Story"], "overview": new_text}]))
    after = pipeline.stats()
    assert after["embeddings_computed"] - before["embeddings_computed"] == 1
    hit = pipeline.query(new_text, k=1)[0]
    assert hit["primary_key"] == {"title": "Toy Story"}
    assert hit["metadata"]["overview"] == new_text


def test_metadata_only_update_reuses_the_vector(pipeline: LocalPipeline, movies: dict[str, dict[str, Any]]) -> None:
    row = movies["Finding Nemo"]
    before = pipeline.stats()
    synced(pipeline, "metadata update", pipeline.upsert([{**row, "vote_count": 1, "vote_average": "1.5"}]))
    after = pipeline.stats()
    assert after["embeddings_computed"] == before["embeddings_computed"]
    assert after["embeddings_skipped"] - before["embeddings_skipped"] == 1
    hit = pipeline.query(row["overview"], k=1, filter={"title": "Finding Nemo"})[0]
    assert (hit["metadata"]["vote_count"], hit["metadata"]["vote_average"]) == (1, 1.5)
    assert hit["distance"] == pytest.approx(0.0, abs=1e-3)  # the same vector, put back


def test_delete_removes_the_vector(pipeline: LocalPipeline, movies: dict[str, dict[str, Any]]) -> None:
    assert pipeline.query("heist", k=1, filter={"title": "Heat"})
    synced(pipeline, "delete", pipeline.delete([{"title": "Heat"}]))
    assert pipeline.query("heist", k=1, filter={"title": "Heat"}) == []
    assert "Heat" not in titles(pipeline.query(movies["Heat"]["overview"], k=5))


def test_ttl_expiry_removes_the_vector(pipeline: LocalPipeline) -> None:
    row = {"title": "Mayfly", "overview": "An insect lives for one summer day over a river.", "vote_count": 3}
    expiries = pipeline.stats()["ttl_expiries"]
    synced(pipeline, "insert with ttl", pipeline.upsert([row], ttl_s=1))
    assert pipeline.query(row["overview"], k=1, filter={"title": "Mayfly"})
    expired_at = time.monotonic()
    deadline = expired_at + 10
    # Reads hide the row at its deadline; its origin-TTL record comes when the service purges it (the TTL loop).
    while pipeline.stats()["ttl_expiries"] == expiries and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipeline.table.get({"title": "Mayfly"}) is None, "the row outlived its TTL"
    assert pipeline.stats()["ttl_expiries"] > expiries, "the TTL loop did not purge the row"
    pipeline.wait_synced(timeout=SYNC_S)
    FRESHNESS["ttl expiry"] = (time.monotonic() - expired_at) * 1000
    assert pipeline.query(row["overview"], k=1, filter={"title": "Mayfly"}) == []


def test_a_poison_change_lands_in_the_dlq_and_the_pipeline_goes_on(pipeline: LocalPipeline) -> None:
    before = pipeline.stats()
    too_long = "T" * (c.S3V_MAX_KEY_CHARS + 10)  # its vector key cannot be stored
    synced(pipeline, "poison change", pipeline.upsert([{"title": too_long, "overview": "Never indexed."}]))
    assert pipeline.stats()["dlq_records"] - before["dlq_records"] == 1

    sqs = pipeline.server.client("sqs")
    messages = sqs.receive_message(QueueUrl=pipeline.resources.dlq_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    parked = [b for b in bodies if too_long[:50] in base64.b64decode(b["payload_b64"]).decode()]
    assert len(parked) == 1
    assert set(c.DLQ_FIELDS) <= set(parked[0])
    assert parked[0]["error_class"] == "PoisonRecordError"
    # The forwarder could not make a change event of it and sent its reason along with the raw record.
    payload = json.loads(base64.b64decode(parked[0]["payload_b64"]))
    assert "vector key" in payload["error"]
    assert payload["record"]["sequenceNumber"] == payload["seq"]

    after = {"title": "Alive After Poison", "overview": "A lighthouse keeper befriends a lost whale."}
    synced(pipeline, "write after poison", pipeline.upsert([after]))
    assert titles(pipeline.query(after["overview"], k=1)) == ["Alive After Poison"]
