"""Reconcile's comparison: what a row expects, what a vector holds, partitions, and the four kinds of drift."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from freshvec import constants as c
from freshvec.adapters.bedrock import make_embedder
from freshvec.cli import reconcile
from freshvec.config import ChunkingConfig, EmbeddingConfig, default_config
from freshvec.metadata import MetadataBuilder
from freshvec.sink import Sink
from freshvec.testing.builders import movie
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime

CONFIG = default_config()


def _sink_fingerprint(config: Any, text: str) -> str:
    """What the sink stores as ``_fp`` for ``text``, with the embedder the config names."""
    sink = Sink(config, make_embedder(config.embedding, FakeBedrockRuntime()), None, None, tombstones=None)  # type: ignore[arg-type]
    return sink.fingerprint(text)


@pytest.mark.parametrize(
    "embedding",
    [
        EmbeddingConfig(),
        EmbeddingConfig(provider="cohere", model_id=c.COHERE_EN_V3, dimensions=1024),
        EmbeddingConfig(dimensions=1024, normalize=False),
    ],
)
def test_the_expected_fingerprint_is_the_one_the_sink_stores(embedding: EmbeddingConfig) -> None:
    # One vector per row (chunking off), so the text is cut to the model's limit: the cut is part of it.
    config = dataclasses.replace(CONFIG, embedding=embedding, chunking=ChunkingConfig(strategy="none"))
    row = movie("Jaws", "A shark. " * 400)  # longer than Cohere's input limit
    [(key, (fp, _digest))] = reconcile.Expectation(config).expected_vectors(row).items()
    assert key == '["Jaws"]' and fp == _sink_fingerprint(config, row["overview"])


def test_provenance_keys_do_not_count_but_every_mapped_value_does() -> None:
    row = movie("Jaws", "A shark.", vote_average="7.0")
    [(fp, digest)] = reconcile.Expectation(CONFIG).expected_vectors(row).values()
    builder = MetadataBuilder(CONFIG)
    stored = builder.build(
        row,
        seq="49590",
        changed_at=datetime(2026, 5, 1, tzinfo=UTC),
        fingerprint=fp,
        version=1_790_000_000_000_000,
        chunk=(0, 1),
        text=row["overview"],
    )
    # what a JSON round trip through S3 Vectors may do to a whole number
    stored = json.loads(json.dumps({k: (7 if v == 7.0 and not isinstance(v, bool) else v) for k, v in stored.items()}))
    assert reconcile.stored_entry({"key": '["Jaws"]', "metadata": stored}) == ('["Jaws"]', fp, digest)
    changed = {**stored, "original_lang": "xx"}
    assert reconcile.stored_entry({"key": '["Jaws"]', "metadata": changed})[2] != digest
    assert reconcile.stored_entry({"key": '["Jaws"]', "metadata": {}})[1:] == ("", reconcile.metadata_digest({}))
    # the searchable passage counts like any other value: a cut or stale passage is drift, even with the same _fp
    for passage in ("A shar", "A whale."):
        assert reconcile.stored_entry({"key": '["Jaws"]', "metadata": {**stored, "overview": passage}})[2] != digest


def test_rows_without_text_expect_no_vector_and_oversized_metadata_is_unindexable() -> None:
    expectation = reconcile.Expectation(CONFIG)
    assert expectation.expected_vectors(movie("Blank", "   ")) == {}
    assert expectation.expected_vectors(movie("Null", None)) == {}
    huge = movie("Huge", "text", original_lang="x" * 3000)  # filterable metadata over 2 KB: the sink parks it
    ((key, (fp, reason)),) = expectation.expected_vectors(huge).items()  # the reason rides where the digest would
    assert (key, fp) == ('["Huge"]', "!") and reason.startswith("filterable metadata is 3112 bytes")


def _compare(table: list[tuple[str, str, str]], index: list[tuple[str, str, str]], show: int = 5) -> Any:
    report = reconcile.ReconcileReport()
    noted: list[tuple[str, str]] = []
    vectors = reconcile.compare_bucket(iter(table), iter(index), report, show, lambda k, key: noted.append((k, key)))
    return report, noted, vectors


def test_each_kind_of_drift_is_named() -> None:
    table = [("a", "fa", "da"), ("b", "fb", "db"), ("c", "fc", "dc"), ("d", "fd", "dd"), ("u", "!", "too big")]
    table.append(("v", "!", "key too long"))
    index = [
        ("a", "fa", "da"),
        ("b", "fx", "db"),
        ("c", "fc", "dx"),
        ("o", "fo", "do"),
        ("a", "fa", "da"),
        ("u", "fu", "du"),  # an older state of a row the sink now refuses: stale, never "in sync"
    ]
    report, noted, vectors = _compare(table, index)
    assert report.counts == {"missing": 1, "stale": 2, "metadata": 1, "orphan": 1}
    assert sorted(noted) == [("metadata", "c"), ("missing", "d"), ("orphan", "o"), ("stale", "b"), ("stale", "u")]
    assert (report.in_sync, report.unindexable, vectors) == (1, 2, 5)  # the listed duplicate of "a" collapses
    assert report.unindexable_examples == ["u: too big", "v: key too long"]


def test_examples_stop_at_show_but_counts_do_not() -> None:
    report, noted, _ = _compare([(f"k{i}", "f", "d") for i in range(7)], [], show=2)
    assert report.counts["missing"] == 7 and report.examples["missing"] == ["k0", "k1"] and len(noted) == 7


def test_spill_puts_each_key_in_its_hash_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "_SPILL_FLUSH_LINES", 7)  # several flushes along the way
    spill = reconcile.Spill(tmp_path, "table", 5)
    entries = [(json.dumps([f"film {n}"]), f"fp{n}", f"d{n}") for n in range(50)]
    for start in range(0, 50, 3):
        spill.add(entries[start : start + 3])
    spill.close()
    back = {bucket: list(spill.read(bucket)) for bucket in range(5)}
    assert sorted(e for entries_ in back.values() for e in entries_) == sorted(entries) and spill.count == 50
    for bucket, found in back.items():
        assert all(reconcile.bucket_of(key, 5) == bucket for key, _, _ in found)
    assert len([b for b in back.values() if b]) > 1


def test_a_long_row_expects_one_vector_per_chunk_so_a_missing_chunk_is_missing_and_a_surplus_one_an_orphan() -> None:
    paragraphs = [f"Paragraph {n} tells its own part of a long story. " * 12 for n in range(6)]
    row = movie("Epic", "\n\n".join(paragraphs))  # about 3,600 characters: several chunks of at most 1,000
    expected = reconcile.Expectation(CONFIG).expected_vectors(row)
    keys = list(expected)
    assert len(keys) > 2
    assert keys[0] == '["Epic"]' and keys[1] == '["Epic"]#1'  # chunk 0 keeps the row's key; chunk n adds #n
    table = [(key, fp, digest) for key, (fp, digest) in expected.items()]
    index = [entry for entry in table if entry[0] != keys[1]]  # chunk 1 never arrived
    index.append(('["Epic"]#99', "f" * 32, "d" * 32))  # a chunk left over from a longer text
    report = reconcile.ReconcileReport()
    noted: list[tuple[str, str]] = []
    reconcile.compare_bucket(table, index, report, show=5, on_drift=lambda kind, key: noted.append((kind, key)))
    assert sorted(noted) == [("missing", '["Epic"]#1'), ("orphan", '["Epic"]#99')]
    assert report.in_sync == len(keys) - 1
