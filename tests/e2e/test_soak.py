"""The soak at a small size with every fault on, and the oracle that judges it (which must catch each kind of loss)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import pytest

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.local.embedder import LocalEmbedder
from freshvec.local.keyspaces import LocalTable
from freshvec.local.resources import LOCAL_EMBEDDING
from freshvec.sources.keyspaces.cqltypes import parse_cql_type
from freshvec.testing.faults import Chaos, FaultPlan
from freshvec.testing.soak import (
    SOAK_CONFIG,
    SoakReport,
    build_expectations,
    compare_dlq,
    compare_index,
    generate_workload,
    random_value,
    run,
)

CONFIG = PipelineConfig.from_dict(SOAK_CONFIG)
FAULT_KINDS = (
    "bedrock_throttle",
    "bedrock_timeout",
    "s3vectors_429",
    "s3vectors_5xx",
    "kinesis_partial_failure",
    "dynamodb_race",
    "sink_kill",
)


# ---- the soak itself -------------------------------------------------------------------------------
@pytest.mark.slow
def test_small_soak_with_every_fault_loses_nothing() -> None:
    # Titan-like Bedrock faults (each text its own request) make many partly embedded batches at this size.
    plan = FaultPlan(
        seed=11, bedrock_scope="text", bedrock_timeout=0.05, dynamodb_race=0.08, kinesis_partial_failure=0.2
    )
    report = run(400, plan=plan, seed=11, timeout_s=80, log=lambda _line: None)

    assert report.sync_timeout is None, report.lines()
    assert report.lost == 0, report.differences[:10]
    assert report.stale == 0, report.differences[:10]
    assert report.dlq_expected > 0
    assert report.dlq_actual == report.dlq_expected, report.differences[:10]
    assert report.dlq_unexpected == 0 and report.dlq_without_reason == 0
    assert report.parked_records == 0
    assert report.ok
    # The run really was hostile: every fault kind fired, the stream was reshaped, rows expired.
    for kind in FAULT_KINDS:
        assert report.faults.get(kind, 0) > 0, f"{kind} never injected: {report.faults}"
    assert any(kind.startswith("forwarder_kill_") for kind in report.faults)
    assert report.pipeline["disruptions"] == {"split": 2, "merge": 1, "expire_iterators": 4}
    assert report.pipeline["ttl_expiries"] > 0
    assert report.pipeline["forwarder_crashes"] > 0
    assert report.pipeline["mapping"]["partial_failures"] > 0 and report.pipeline["mapping"]["bisections"] > 0
    assert report.pipeline["keyspaces_streams"]["throttled"]
    assert report.expected_present > 0 and report.expected_absent > 0
    figures = report.figures()
    assert figures["soak_lost"] == 0 and figures["soak_stale"] == 0 and figures["soak_changes"] == 400


# ---- the workload --------------------------------------------------------------------------------
def test_workload_is_seeded_and_exact_in_size() -> None:
    first = generate_workload(CONFIG, 500, seed=3)
    second = generate_workload(CONFIG, 500, seed=3)
    assert first.changes == 500
    assert [w.row for w in first.writes] == [w.row for w in second.writes]
    assert sum(len(call) for call in first.calls) == 500
    assert generate_workload(CONFIG, 500, seed=4).writes != first.writes


def test_workload_mixes_every_kind_of_change_and_about_one_percent_poison() -> None:
    workload = generate_workload(CONFIG, 5000, seed=7)
    kinds = workload.kinds()
    for kind in (
        "insert",
        "text_update",
        "metadata_update",
        "partial_update",
        "duplicate",
        "delete",
        "ttl_insert",
        "empty_text",
        "reinsert",
        "poison_long_key",
        "poison_oversize_metadata",
    ):
        assert kinds.get(kind, 0) > 0, kind
    assert any(kind.startswith("poison_raw_") for kind in kinds)
    poison = sum(n for kind, n in kinds.items() if kind.startswith("poison"))
    assert 0.005 * 5000 <= poison <= 0.02 * 5000
    assert len(workload.poison_rows) + len(workload.poison_raw) == poison
    for call in workload.calls:  # one call, one kind of write, each key at most once
        assert len({w.call for w in call}) == 1
        keys = [json.dumps([w.row[k] for k in CONFIG.primary_key]) for w in call if w.row and "tenant" in w.row]
        assert len(keys) == len(set(keys))


def test_workload_rows_cover_every_column_type_and_fit_the_table() -> None:
    workload = generate_workload(CONFIG, 600, seed=5)
    table = LocalTable(CONFIG.keyspace, CONFIG.table, CONFIG.column_types, CONFIG.partition_key, CONFIG.clustering_key)
    written_columns: set[str] = set()
    for call in workload.calls:
        kind, ttl_s = call[0].call
        if kind == "upsert":
            rows = [w.row for w in call if w.row is not None]
            table.upsert(rows, ttl_s=ttl_s)  # raises ValueError for a value that does not fit its column
            written_columns.update(column for row in rows for column in row)
        elif kind == "delete":
            table.delete([w.row for w in call if w.row is not None])
    assert written_columns == set(CONFIG.columns)
    type_names = {parse_cql_type(t).base.name for t in CONFIG.columns.values()}
    assert type_names >= {"list", "set", "map", "tuple", "udt", "blob", "inet", "uuid", "timeuuid", "duration"}
    assert type_names >= {"time", "timestamp", "date", "decimal", "varint", "float", "double", "boolean", "ascii"}


@pytest.mark.parametrize("type_text", sorted(set(SOAK_CONFIG["columns"].values())))
def test_random_values_fit_their_type(type_text: str) -> None:
    import random

    from freshvec.sources.keyspaces.cells import json_to_cell

    rng = random.Random(1)
    cql_type = parse_cql_type(type_text)
    for _ in range(50):
        value = random_value(cql_type, rng)
        if cql_type.base.name == "set":
            value = [json.loads(item) for item in value]
        assert json_to_cell(value, cql_type)["value"]


# ---- the oracle must catch every kind of difference -----------------------------------------------------
@pytest.fixture(scope="module")
def embedder():
    return LocalEmbedder(LOCAL_EMBEDDING.dimensions)


def _row(item: int, text: str, **values) -> dict:
    return {
        "tenant": "tenant-01",
        "item_id": item,
        "variant": "5b6962dd-3f90-11ef-9b2a-0242ac120002",
        "body": text,
        "title": f"item {item}",
        "qty": item,
        "released": "2024-05-06",
        "price": "12.50",
        **values,
    }


def _index_from(expectations, embed) -> dict:
    """The index a perfect pipeline would hold."""
    keys = sorted(expectations.present)
    vectors = embed([expectations.present[k][0] for k in keys])
    return {
        key: (vector, {**expectations.present[key][1], c.META_SEQUENCE: "1", c.META_CHANGED_AT: 1})
        for key, vector in zip(keys, vectors, strict=True)
    }


def _scenario():
    rows = [
        _row(1, "glacier meadow lantern"),
        _row(2, "volcano island falcon"),
        _row(3, ""),  # no text: no vector
        _row(4, "poison title", title="word " * 500),  # filterable metadata over 2 KB
        _row(5, "poison key", tenant="t" * 1100),  # vector key over 1,024 characters
    ]
    removed = [{"tenant": "tenant-01", "item_id": 9, "variant": "5b6962dd-3f90-11ef-9b2a-0242ac120002"}]
    raw = [b"{not json", b'{"v": 99}']
    return build_expectations(CONFIG, rows, removed, raw)


def _compare(expectations, index, embedder) -> SoakReport:
    report = SoakReport()
    compare_index(expectations, index, embedder.embed_documents, report)
    return report


def test_expectations_apply_the_sinks_rules() -> None:
    expectations = _scenario()
    assert len(expectations.present) == 2
    assert len(expectations.absent) == 3  # empty text, oversize metadata, deleted key
    assert len(expectations.poison_keys) == 2
    assert "filterable metadata" in " ".join(expectations.poison_keys.values())
    assert "vector key" in " ".join(expectations.poison_keys.values())
    metadata = next(iter(expectations.present.values()))[1]
    assert metadata["released"] == 20240506 and metadata["price"] == 12.5  # the sink's own conversions


def test_oracle_accepts_a_perfect_index(embedder) -> None:
    expectations = _scenario()
    report = _compare(expectations, _index_from(expectations, embedder.embed_documents), embedder)
    assert (report.lost, report.stale, report.differences) == (0, 0, [])


def test_oracle_counts_a_missing_vector_as_lost(embedder) -> None:
    expectations = _scenario()
    index = _index_from(expectations, embedder.embed_documents)
    index.pop(next(iter(index)))
    report = _compare(expectations, index, embedder)
    assert report.lost == 1 and report.stale == 0


def test_oracle_counts_an_old_embedding_as_stale(embedder) -> None:
    expectations = _scenario()
    index = _index_from(expectations, embedder.embed_documents)
    key = next(iter(index))
    index[key] = (embedder.embed_documents(["an older text about submarines"])[0], index[key][1])
    report = _compare(expectations, index, embedder)
    assert report.stale_content == 1 and "cosine" in report.differences[0]


def test_oracle_counts_old_metadata_as_stale(embedder) -> None:
    expectations = _scenario()
    index = _index_from(expectations, embedder.embed_documents)
    key = next(iter(index))
    index[key] = (index[key][0], {**index[key][1], "qty": 999})
    report = _compare(expectations, index, embedder)
    assert report.stale_content == 1 and "qty" in report.differences[0]


def test_oracle_counts_a_vector_without_its_source_position_as_stale(embedder) -> None:
    expectations = _scenario()
    index = _index_from(expectations, embedder.embed_documents)
    key = next(iter(index))
    index[key] = (index[key][0], {k: v for k, v in index[key][1].items() if k != c.META_SEQUENCE})
    assert _compare(expectations, index, embedder).stale_content == 1


def test_oracle_counts_deleted_and_unknown_vectors(embedder) -> None:
    expectations = _scenario()
    index = _index_from(expectations, embedder.embed_documents)
    some_vector = next(iter(index.values()))
    index[next(iter(expectations.absent))] = some_vector
    index['["someone","else"]'] = some_vector
    report = _compare(expectations, index, embedder)
    assert (report.zombies, report.unknown_vectors, report.stale) == (1, 1, 2)


def _dead_letter(payload: bytes, **overrides) -> dict:
    body = dict.fromkeys(c.DLQ_FIELDS, "x")
    body.update(payload_b64=base64.b64encode(payload).decode(), error_class="PoisonRecordError", error_message="bad")
    body.update(overrides)
    return body


def _poison_event(key: dict) -> bytes:
    return json.dumps({"v": 1, "op": "INSERT", "key": key, "new": {}}).encode()


def _poison_messages(expectations) -> list[dict]:
    messages = [_dead_letter(p) for p in expectations.poison_raw]
    for key_text in expectations.poison_keys:
        key = dict(zip(CONFIG.primary_key, json.loads(key_text), strict=True))
        messages.append(_dead_letter(_poison_event(key)))
    return messages


def _dlq_report(expectations, messages: Sequence[dict]) -> SoakReport:
    report = SoakReport()
    compare_dlq(CONFIG, expectations, messages, report)
    return report


def test_dlq_check_counts_distinct_poison_changes_and_duplicates() -> None:
    expectations = _scenario()
    messages = _poison_messages(expectations)
    report = _dlq_report(expectations, [*messages, messages[0]])
    assert (report.dlq_expected, report.dlq_actual, report.dlq_duplicates) == (4, 4, 1)
    assert report.differences == []


def test_dlq_check_finds_a_missing_poison_change() -> None:
    expectations = _scenario()
    report = _dlq_report(expectations, _poison_messages(expectations)[1:])
    assert report.dlq_actual == report.dlq_expected - 1
    assert "not in the DLQ" in report.differences[0]


def test_dlq_check_flags_good_changes_and_missing_reasons() -> None:
    expectations = _scenario()
    messages = _poison_messages(expectations)
    messages[0] = {**messages[0], "error_message": ""}
    good = _poison_event({"tenant": "tenant-01", "item_id": 1, "variant": "5b6962dd-3f90-11ef-9b2a-0242ac120002"})
    report = _dlq_report(expectations, [*messages, _dead_letter(good)])
    assert report.dlq_unexpected == 1 and report.dlq_without_reason == 1
    assert not SoakReport(dlq_unexpected=1).ok


def test_dlq_check_recognises_the_forwarders_error_envelope() -> None:
    expectations = _scenario()
    long_key = next(k for k in expectations.poison_keys if len(k) > 1000)
    tenant, item_id, variant = json.loads(long_key)
    envelope = {
        "v": 1,
        "seq": "1",
        "shard": "s",
        "error": "forwarder could not convert this record",
        "record": {
            "partitionKeys": {"tenant": {"textT": tenant}, "item_id": {"bigintT": str(item_id)}},
            "clusteringKeys": {"variant": {"timeuuidT": variant}},
        },
    }
    report = _dlq_report(expectations, [_dead_letter(json.dumps(envelope).encode())])
    assert report.dlq_actual == 1 and report.dlq_unexpected == 0


# ---- the soak fails when the pipeline loses something --------------------------------------------------
class _SilentlyDroppingStore:
    """An S3 Vectors client that acknowledges some writes without making them: the silent loss the soak exists
    to catch."""

    def __init__(self, client, every: int) -> None:
        self._client = client
        self._every = every
        self._calls = 0

    def _drop(self) -> bool:
        self._calls += 1
        return self._calls % self._every == 0

    def put_vectors(self, **kwargs):
        return {} if self._drop() else self._client.put_vectors(**kwargs)

    def delete_vectors(self, **kwargs):
        return {} if self._drop() else self._client.delete_vectors(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class _LossyChaos(Chaos):
    def wrap_client(self, service_name, client):
        wrapped = super().wrap_client(service_name, client)
        return _SilentlyDroppingStore(wrapped, every=4) if service_name == "s3vectors" else wrapped


def test_soak_reports_writes_that_were_silently_dropped() -> None:
    plan = FaultPlan.none(seed=5)
    report = run(150, plan=plan, seed=5, timeout_s=60, log=lambda _line: None, chaos=_LossyChaos(plan))
    assert report.sync_timeout is None
    assert not report.ok
    assert report.lost + report.stale > 0
    assert any(d.startswith(("lost", "stale", "should be absent")) for d in report.differences)
