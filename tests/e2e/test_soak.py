"""The soak at a small size with every fault on, and the oracle that judges it (which must catch each kind of loss)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence

import pytest

from freshvec import constants as c
from freshvec import versions
from freshvec.config import PipelineConfig
from freshvec.local.embedder import LOCAL_MAX_INPUT_CHARS, LocalEmbedder
from freshvec.local.keyspaces import LocalTable
from freshvec.local.resources import LOCAL_EMBEDDING
from freshvec.plan import fingerprint
from freshvec.sources.keyspaces.cqltypes import parse_cql_type
from freshvec.testing.faults import Chaos, FaultPlan
from freshvec.testing.soak import (
    SOAK_CONFIG,
    PoisonChange,
    SoakReport,
    SoakRules,
    build_expectations,
    compare_dlq,
    compare_index,
    generate_workload,
    random_value,
    run,
)
from freshvec.testing.soak.resync import ResyncSender, backfill, redrive

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
    report = run(400, plan=plan, seed=11, timeout_s=240, log=lambda _line: None)

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
    # Poison on live keys, then valid changes of them; a redrive of their parked changes and a backfill raced
    # the live changes, and the index still equals the table.
    assert report.kinds["poison_live_oversize_metadata"] > 0 and report.kinds["fix_metadata"] > 0
    assert report.resync["redrive_taken"] > 0 and report.dlq_redriven > 0
    assert report.resync["redrive_puts_sent"] > 0 and report.resync["backfill_sent"] > 0
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
        "poison_live_oversize_metadata",
        "fix_metadata",
        "fix_text",
        "fix_delete",
    ):
        assert kinds.get(kind, 0) > 0, kind
    assert any(kind.startswith("poison_raw_") for kind in kinds)
    own = sum(n for kind, n in kinds.items() if kind.startswith("poison") and not kind.startswith("poison_live"))
    assert 0.005 * 5000 <= own <= 0.02 * 5000
    assert 0.01 * 5000 <= kinds["poison_live_oversize_metadata"] <= 0.02 * 5000
    assert len(workload.poison_rows) + len(workload.poison_raw) == sum(
        n for kind, n in kinds.items() if kind.startswith("poison")
    )
    for call in workload.calls:  # one call, one kind of write, each key at most once
        assert len({w.call for w in call}) == 1
        keys = [json.dumps([w.row[k] for k in CONFIG.primary_key]) for w in call if w.row and "tenant" in w.row]
        assert len(keys) == len(set(keys))


def test_a_poisoned_live_key_gets_a_valid_change_next_and_lives_on() -> None:
    workload = generate_workload(CONFIG, 5000, seed=7)

    def key_of(write) -> str:
        return json.dumps([write.row[k] for k in CONFIG.primary_key])

    writes = [w for w in workload.writes if w.row is not None and "tenant" in w.row]
    lived_on = 0
    for position, write in enumerate(writes):
        if write.kind != "poison_live_oversize_metadata":
            continue
        assert len(write.row["title"].encode()) > 2048
        later = [w for w in writes[position + 1 :] if key_of(w) == key_of(write)]
        assert later and later[0].kind.startswith("fix_"), later[:1]  # nothing else touches it until its fix
        if later[0].kind == "fix_delete":
            assert later[0].call == ("delete", None, None)  # a real delete, not an upsert of the key
        else:
            assert len(later[0].row["title"].encode()) < 200
        lived_on += len(later) > 1 and later[0].kind == "fix_metadata"
    assert lived_on > 0  # metadata-only fixes followed by further changes of the key


def test_workload_has_the_cell_level_kinds() -> None:
    workload = generate_workload(CONFIG, 600, seed=5)
    kinds = {w.kind: w for w in workload.writes}
    assert {"column_ttl", "null_write", "collection_add"} <= set(kinds)
    assert kinds["column_ttl"].partial and kinds["column_ttl"].ttl_s
    assert all(
        value is None for k, value in kinds["null_write"].row.items() if k not in ("tenant", "item_id", "variant")
    )
    assert set(kinds["collection_add"].row) == {"tenant", "item_id", "variant", "$add"}
    assert any(w.skew_s for w in workload.writes), "no write from the skewed client"


def test_workload_rows_cover_every_column_type_and_fit_the_table() -> None:
    workload = generate_workload(CONFIG, 600, seed=5)
    table = LocalTable(CONFIG.keyspace, CONFIG.table, CONFIG.column_types, CONFIG.partition_key, CONFIG.clustering_key)
    written_columns: set[str] = set()
    for call in workload.calls:
        kind, ttl_s, _skew = call[0].call
        if kind in ("upsert", "update"):
            rows = [w.row for w in call if w.row is not None]
            write = table.upsert if kind == "upsert" else table.update
            write(rows, ttl_s=ttl_s)  # raises ValueError for a value that does not fit its column
            written_columns.update(column for row in rows for column in row if not column.startswith("$"))
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


# ---- the oracle: the documented rules, and every kind of difference caught ---------------------------------
RULES = SoakRules(SOAK_CONFIG)
VARIANT = "5b6962dd-3f90-11ef-9b2a-0242ac120002"


@pytest.fixture(scope="module")
def embedder():
    return LocalEmbedder(LOCAL_EMBEDDING.dimensions)


def _key(item: int, tenant: str = "tenant-01") -> dict:
    return {"tenant": tenant, "item_id": item, "variant": VARIANT}


def _tiny_table() -> LocalTable:
    """A hand-written table: two good rows, a text-less one, an oversize title and a long key; item 9 deleted."""
    table = LocalTable(CONFIG.keyspace, CONFIG.table, CONFIG.column_types, CONFIG.partition_key, CONFIG.clustering_key)
    table.upsert(
        [
            {
                **_key(1),
                "body": "glacier meadow lantern",
                "title": "Lantern",
                "qty": 3,
                "huge": 2**60,
                "price": "12.50",
                "active": True,
                "released": "2024-05-06",
                "updated": "2024-05-06T07:08:09.123Z",
                "sizes": [3, 1],
                "stock": {"a": 1},
                "by_code": [[7, "x"]],
                "point": [1.5, -2.0],
                "history": [[1, 2], [3]],
                "owner": {"name": "Ada", "age": 30},
                "tags": [],
            },
            {**_key(2), "body": "volcano island falcon", "ratio": 0.25, "notes": "kept, not filterable"},
            {**_key(3), "body": "", "title": "no text"},
            {**_key(4), "body": "poison title", "title": "word " * 500},
            {**_key(5, tenant="t" * 1100), "body": "poison key"},
            {**_key(9), "body": "deleted later"},
        ]
    )
    table.delete([_key(9)])
    table.upsert([{**_key(2), "qty": 7}])  # a partial update: a newer version for row 2
    return table


# What the documentation says the index holds for rows 1 and 2, written out by hand.
ROW_1_METADATA = {
    "tenant": "tenant-01",
    "item_id": 1,
    "variant": VARIANT,
    "title": "Lantern",
    "qty": 3,
    "huge": "1152921504606846976",  # beyond 2^53: a string
    "price": 12.5,
    "active": True,
    "released": 20240506,
    "updated": 1714979289123,
    "sizes": [1, 3],  # a set reads in order, whatever order it was written in
    "stock": ["a=1"],
    "by_code": ["7=x"],
    "point": [1.5, -2.0],
    "history": ["[1,2]", "[3]"],
    "owner": ["name=Ada", "age=30"],
}
ROW_2_METADATA = {"tenant": "tenant-01", "item_id": 2, "variant": VARIANT, "ratio": 0.25, "qty": 7}
ROW_2_METADATA["notes"] = "kept, not filterable"


def _documented_fingerprint(text: str) -> str:
    material = json.dumps([c.LOCAL_WORDLLAMA, 256, True, LOCAL_MAX_INPUT_CHARS, text], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def _correct_index(table: LocalTable, embedder) -> dict:
    """The index a correct pipeline holds for the tiny table: literal metadata, the model's vectors, the
    documented fingerprint and the row's version."""
    rows = {row["item_id"]: (row, version) for row, version in table.rows_with_versions()}
    index = {}
    for item, metadata in ((1, ROW_1_METADATA), (2, ROW_2_METADATA)):
        row, version = rows[item]
        text = row["body"]
        index[f'["tenant-01",{item},"{VARIANT}"]'] = (
            embedder.embed_documents([text])[0],
            {
                **metadata,
                "body": text,
                c.META_SEQUENCE: "49650",
                c.META_CHANGED_AT: 1714979289123,
                c.META_FINGERPRINT: _documented_fingerprint(text),
                c.META_VERSION: versions.stamp(f"{item:016x}", versions.KsChange(version, "l", 0, item).text()),
                c.META_CHUNK: 0,  # a one-sentence text is one chunk: chunk 0 of 1
                c.META_CHUNKS: 1,
            },
        )
    return index


def _scenario(table: LocalTable | None = None, poison_changes: Sequence[PoisonChange] = ()):
    table = table or _tiny_table()
    raw = [b"{not json", b'{"v": 99}']
    return build_expectations(RULES, table.rows_with_versions(), [_key(9)], poison_changes, raw)


def _compare(expectations, index, embedder) -> SoakReport:
    report = SoakReport()
    compare_index(RULES, expectations, index, embedder.embed_documents, report)
    return report


def test_rules_write_the_documented_metadata_key_and_fingerprint() -> None:
    rows = {row["item_id"]: row for row, _ in _tiny_table().rows_with_versions()}
    assert RULES.metadata(rows[1]) == ROW_1_METADATA  # the empty list is left out, the text is not a column
    assert RULES.vector_key(rows[1]) == f'["tenant-01",1,"{VARIANT}"]'
    assert RULES.fingerprint("glacier") == _documented_fingerprint("glacier")
    # The pipeline computes the same fingerprint (the oracle's formula is not a private invention).
    assert RULES.fingerprint("glacier") == fingerprint(
        model_id=c.LOCAL_WORDLLAMA,
        dimensions=256,
        normalize=True,
        max_input_chars=LOCAL_MAX_INPUT_CHARS,
        text="glacier",
    )


def test_expectations_follow_the_table() -> None:
    table = _tiny_table()
    expectations = _scenario(table)
    versions = {row["item_id"]: version for row, version in table.rows_with_versions()}
    assert sorted(e.version for e in expectations.present.values()) == sorted([versions[1], versions[2]])
    assert len(expectations.absent) == 3  # empty text, oversize title, deleted key
    assert len(expectations.poison) == 2
    assert "filterable metadata" in " ".join(expectations.poison.values())
    assert "vector key" in " ".join(expectations.poison.values())


def test_oracle_accepts_a_correct_index(embedder) -> None:
    table = _tiny_table()
    report = _compare(_scenario(table), _correct_index(table, embedder), embedder)
    assert (report.lost, report.stale, report.differences) == (0, 0, [])


def _broken(embedder, change) -> SoakReport:
    table = _tiny_table()
    index = _correct_index(table, embedder)
    key = f'["tenant-01",1,"{VARIANT}"]'
    vector, metadata = index[key]
    index[key] = change(vector, dict(metadata))
    return _compare(_scenario(table), index, embedder)


def test_oracle_flags_a_wrong_vector(embedder) -> None:
    report = _broken(embedder, lambda _v, m: (embedder.embed_documents(["an older text about submarines"])[0], m))
    assert report.stale_content == 1 and "cosine" in report.differences[0]


def test_oracle_flags_a_wrong_metadata_value(embedder) -> None:
    report = _broken(embedder, lambda v, m: (v, {**m, "released": 20240507}))
    assert report.stale_content == 1 and "released" in report.differences[0]


def test_oracle_flags_a_timestamp_in_seconds(embedder) -> None:
    report = _broken(embedder, lambda v, m: (v, {**m, "updated": 1714979289}))
    assert report.stale_content == 1 and "updated" in report.differences[0]


def test_oracle_flags_a_wrong_fingerprint(embedder) -> None:
    report = _broken(embedder, lambda v, m: (v, {**m, c.META_FINGERPRINT: _documented_fingerprint("older text")}))
    assert report.stale_content == 1 and c.META_FINGERPRINT in report.differences[0]


def test_oracle_flags_a_version_without_its_write_id(embedder) -> None:
    report = _broken(embedder, lambda v, m: (v, {**m, c.META_VERSION: versions.unstamp(m[c.META_VERSION])[1]}))
    assert report.stale_content == 1 and c.META_VERSION in report.differences[0]


def test_oracle_flags_an_older_state_by_its_content(embedder) -> None:
    # An older state of the row (its earlier quantity) is found by what it holds, whatever its ``_ver`` says.
    report = _broken(embedder, lambda v, m: (v, {**m, "qty": 2}))
    assert report.stale_content == 1 and "qty" in report.differences[0]


def test_oracle_flags_a_vector_without_its_version(embedder) -> None:
    report = _broken(embedder, lambda v, m: (v, {k: x for k, x in m.items() if k != c.META_VERSION}))
    assert report.stale_content == 1 and c.META_VERSION in report.differences[0]


def test_oracle_flags_a_stored_text_that_is_not_the_rows(embedder) -> None:
    report = _broken(embedder, lambda v, m: (v, {**m, "body": "glacier meadow"}))
    assert report.stale_content == 1 and "stored text" in report.differences[0]


def test_oracle_flags_a_vector_without_its_source_position(embedder) -> None:
    report = _broken(embedder, lambda v, m: (v, {k: x for k, x in m.items() if k != c.META_SEQUENCE}))
    assert report.stale_content == 1


def test_oracle_counts_a_missing_vector_as_lost(embedder) -> None:
    table = _tiny_table()
    index = _correct_index(table, embedder)
    index.pop(next(iter(index)))
    report = _compare(_scenario(table), index, embedder)
    assert report.lost == 1 and report.stale == 0


def test_oracle_counts_deleted_and_unknown_vectors(embedder) -> None:
    table = _tiny_table()
    index = _correct_index(table, embedder)
    some_vector = next(iter(index.values()))
    index[f'["tenant-01",9,"{VARIANT}"]'] = some_vector  # deleted
    index['["someone","else"]'] = some_vector
    report = _compare(_scenario(table), index, embedder)
    assert (report.zombies, report.unknown_vectors, report.stale) == (1, 1, 2)


def _dead_letter(payload: bytes, **overrides) -> dict:
    body = dict.fromkeys(c.DLQ_FIELDS, "x")
    body.update(payload_b64=base64.b64encode(payload).decode(), error_class="PoisonRecordError", error_message="bad")
    body.update(overrides)
    return body


def _poison_event(key: dict, title: str | None = None) -> bytes:
    return json.dumps({"v": 1, "op": "INSERT", "key": key, "new": {"title": title}}).encode()


def _poison_messages(expectations) -> list[dict]:
    messages = [_dead_letter(p) for p in expectations.poison_raw]
    for identity in expectations.poison:
        key = dict(zip(CONFIG.primary_key, json.loads(identity.removeprefix("row:").split("#")[0]), strict=True))
        messages.append(_dead_letter(_poison_event(key, "word " * 500)))
    return messages


def _dlq_report(expectations, messages: Sequence[dict], redriven: Sequence[dict] = ()) -> SoakReport:
    report = SoakReport()
    compare_dlq(RULES, expectations, messages, report, redriven)
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
    report = _dlq_report(expectations, [*messages, _dead_letter(_poison_event(_key(1)))])
    assert report.dlq_unexpected == 1 and report.dlq_without_reason == 1
    assert not SoakReport(dlq_unexpected=1).ok


def test_dlq_check_tells_apart_two_poison_changes_of_a_live_key_and_accounts_for_a_redrive() -> None:
    first, second = "first " * 400, "second " * 400
    changes = [PoisonChange(_key(1), first, live=True), PoisonChange(_key(1), second, live=True)]
    expectations = _scenario(poison_changes=changes)
    parked_first = _dead_letter(_poison_event(_key(1), first))
    parked_second = _dead_letter(_poison_event(_key(1), second))
    others = _poison_messages(_scenario())
    # Only the first change parked: the second is missing (a valid change of the key is not it).
    report = _dlq_report(expectations, [*others, parked_first, _dead_letter(_poison_event(_key(1), "Lantern"))])
    assert (report.dlq_expected, report.dlq_actual, report.dlq_unexpected) == (6, 5, 1)
    # The redrive took the first out: no longer expected; a copy parked again is no surprise either.
    report = _dlq_report(expectations, [*others, parked_second], redriven=[parked_first])
    assert (report.dlq_expected, report.dlq_actual, report.dlq_redriven) == (5, 5, 1)
    report = _dlq_report(expectations, [*others, parked_second, parked_first], redriven=[parked_first])
    assert (report.dlq_actual, report.dlq_unexpected, report.differences) == (5, 0, [])
    # A redrive that took out a change that was never poison is still an unexpected DLQ message.
    good = _dead_letter(_poison_event(_key(1), "Lantern"))
    report = _dlq_report(expectations, [*others, parked_second], redriven=[parked_first, good])
    assert report.dlq_unexpected == 1 and not report.ok


def test_dlq_check_recognises_the_forwarders_error_envelope() -> None:
    expectations = _scenario()
    long_key = next(k for k in expectations.poison if len(k) > 1000)
    tenant, item_id, variant = json.loads(long_key.removeprefix("row:"))
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


# ---- the re-syncs: events as the operator tools send them ----------------------------------------------
def _stream_records(kinesis, stream: str) -> list[dict]:
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    events = []
    for shard in shards:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        events += [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=iterator)["Records"]]
    return events


def test_redrive_resyncs_from_the_table_and_deletes_only_what_is_stored(moto) -> None:
    kinesis = moto.client("kinesis")
    kinesis.create_stream(StreamName="resync", ShardCount=1)
    sender = ResyncSender(CONFIG, kinesis, "resync")
    table = _tiny_table()
    gone_with_vector, gone_without = _key(9), _key(8)
    stored = {RULES.vector_key(gone_with_vector): "w;ks:0000000000001234:0000:1:l"}
    counts = redrive(
        sender,
        table.read,
        lambda keys: {k: stored[k] for k in keys if k in stored},
        [_key(2), _key(2), gone_with_vector, gone_without],
    )
    assert dict(counts) == {"redrive_puts_sent": 1, "redrive_deletes_sent": 1, "redrive_nothing_stored": 1}
    events = sorted(_stream_records(kinesis, "resync"), key=lambda e: e["op"])
    row_2, _ = table.read(_key(2))
    assert [(e["op"], e["origin"]) for e in events] == [("DELETE", "REDRIVE"), ("UPDATE", "REDRIVE")]
    assert all(isinstance(versions.parse(e["version"]), versions.KsRead) for e in events)  # the reads' stamps
    assert events[1]["new"] == row_2 and events[0]["key"] == gone_with_vector


def test_backfill_sends_each_row_read_with_its_version(moto) -> None:
    kinesis = moto.client("kinesis")
    kinesis.create_stream(StreamName="resync", ShardCount=2)
    table = _tiny_table()
    snapshot = list(table.rows_with_versions())
    assert backfill(ResyncSender(CONFIG, kinesis, "resync"), snapshot) == len(snapshot) == 5
    events = _stream_records(kinesis, "resync")
    assert sorted((e["new"]["item_id"], e["version"]) for e in events) == sorted(
        (row["item_id"], version) for row, version in snapshot
    )
    assert {(e["op"], e["origin"]) for e in events} == {("INSERT", "BACKFILL")}


# ---- the soak fails when the pipeline loses something --------------------------------------------------
class _SilentlyDroppingStore:
    """An S3 Vectors client that acknowledges some puts without making them: the silent loss the soak exists to
    catch (deletes are made: a dropped delete can be mended by a later one of the same row, a dropped put of a
    row written once cannot)."""

    def __init__(self, client, every: int) -> None:
        self._client = client
        self._every = every
        self._calls = 0

    def _drop(self) -> bool:
        self._calls += 1
        return self._calls % self._every == 0

    def put_vectors(self, **kwargs):
        return {} if self._drop() else self._client.put_vectors(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class _LossyChaos(Chaos):
    def wrap_client(self, service_name, client):
        wrapped = super().wrap_client(service_name, client)
        return _SilentlyDroppingStore(wrapped, every=4) if service_name == "s3vectors" else wrapped


def test_soak_reports_writes_that_were_silently_dropped() -> None:
    plan = FaultPlan.none(seed=5)
    # No corruption phase: its reconcile --repair would mend the loss this test wants the oracle to see.
    report = run(150, plan=plan, seed=5, timeout_s=240, log=lambda _line: None, chaos=_LossyChaos(plan), corrupt=False)
    assert report.sync_timeout is None
    assert not report.ok
    assert report.lost + report.stale > 0
    assert any(d.startswith(("lost", "stale", "should be absent")) for d in report.differences)


def test_oracle_flags_a_row_stored_as_several_chunks_when_one_was_due(embedder) -> None:
    report = _broken(embedder, lambda v, m: (v, {**m, c.META_CHUNKS: 2}))
    assert report.stale_content == 1 and c.META_CHUNKS in report.differences[0]
