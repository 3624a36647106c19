"""Stream record -> Kinesis record: change events keyed by row, and nothing dropped when conversion fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from freshvec import constants as c
from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.errors import PoisonRecordError
from freshvec.events import parse_event, unsendable_reason
from freshvec.keys import partition_key, vector_key
from freshvec.sources.keyspaces.convert import RecordConverter

CONFIG = PipelineConfig.from_dict(DEFAULT_CONFIG)
SHARD = "shardId-00000001-0000000000000000000001"
CREATED = datetime(2026, 11, 22, 10, 15, 3, 120_000, tzinfo=UTC)


def record(title: str = "Jurassic Park", *, overview: str = "Dinosaurs.", old: str | None = None, **extra):
    body = {
        "eventVersion": "1",
        "createdAt": CREATED,
        "origin": "USER",
        "partitionKeys": {"title": {"textT": title}},
        "newImage": {
            "valueCells": {"overview": {"value": {"textT": overview}}, "vote_count": {"value": {"intT": "7"}}}
        },
        "sequenceNumber": "100000000000000000042",
    }
    if old is not None:
        body["oldImage"] = {"valueCells": {"overview": {"value": {"textT": old}}}}
    body.update(extra)
    return body


def test_a_record_becomes_a_change_event_keyed_by_the_row():
    out, ok = RecordConverter.for_config(CONFIG).convert(record(old="Dinos."), SHARD)
    assert ok
    event = parse_event(out.data)
    assert event.op == "UPDATE"
    assert event.key == {"title": "Jurassic Park"}
    assert event.new == {"title": "Jurassic Park", "overview": "Dinosaurs.", "vote_count": 7}
    assert event.old == {"title": "Jurassic Park", "overview": "Dinos."}
    assert (event.seq, event.shard, event.ts) == ("100000000000000000042", SHARD, "2026-11-22T10:15:03.120Z")
    assert out.partition_key == '["Jurassic Park"]'
    assert out.sequence_number == event.seq
    assert out.changed_at == CREATED.timestamp()


def test_composite_keys_follow_the_configured_vector_key_order():
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw.update(
        columns={"shop": "text", "sku": "int", "day": "date", "note": "text"},
        partition_key=["shop"],
        clustering_key=["sku", "day"],
        vector_key=["day", "shop", "sku"],
        embedding_field="note",
        metadata_fields=[],
    )
    config = PipelineConfig.from_dict(raw)
    body = record(
        clusteringKeys={"sku": {"intT": "42"}, "day": {"dateT": "2026-01-31"}},
        partitionKeys={"shop": {"textT": "north"}},
        newImage={"valueCells": {"note": {"value": {"textT": "hello"}}}},
    )
    out, ok = RecordConverter.for_config(config).convert(body, SHARD)
    assert ok
    assert list(parse_event(out.data).key) == ["shop", "sku", "day"]
    assert out.partition_key == '["2026-01-31","north",42]'


def test_an_unknown_cell_travels_as_a_tagged_value():
    body = record()
    body["newImage"]["valueCells"]["future"] = {"value": {"SDK_UNKNOWN_MEMBER": {"name": "vectorT"}}}
    out, ok = RecordConverter.for_config(CONFIG).convert(body, SHARD)
    assert ok
    assert parse_event(out.data).new["future"] == {"$unknown": "vectorT", "value": None}


def test_a_record_that_cannot_become_an_event_is_sent_for_the_dlq_with_its_reason(caplog):
    body = record()
    del body["partitionKeys"]
    body["newImage"]["valueCells"]["poster"] = {"value": {"blobT": b"\x89PNG"}}
    out, ok = RecordConverter.for_config(CONFIG).convert(body, SHARD)
    assert not ok
    with pytest.raises(PoisonRecordError):
        parse_event(out.data)  # the sink's contract check parks it in the DLQ, payload intact
    doc = json.loads(out.data)
    assert "no partition key" in doc["error"]
    assert doc["seq"] == "100000000000000000042"
    assert doc["shard"] == SHARD
    assert doc["record"]["newImage"]["valueCells"]["poster"]["value"]["blobT"] == "iVBORw=="
    assert doc["record"]["createdAt"] == "2026-11-22T10:15:03.120000+00:00"
    assert out.partition_key == SHARD
    assert out.changed_at is None
    assert "cannot become a change event" in caplog.text


def test_an_oversized_event_drops_its_old_image_first():
    big = "x" * 600_000
    out, ok = RecordConverter.for_config(CONFIG).convert(record(overview=big, old=big), SHARD)
    assert ok
    assert out.size <= c.KINESIS_MAX_RECORD_BYTES
    event = parse_event(out.data)
    assert event.old is None
    assert event.extra == {"old_omitted": True}
    assert event.new["overview"] == big


def test_an_event_too_large_even_without_its_old_image_goes_as_the_rows_marker_with_the_reason():
    out, ok = RecordConverter.for_config(CONFIG).convert(
        record(overview="y" * (c.KINESIS_MAX_RECORD_BYTES + 10)), SHARD
    )
    assert ok  # a change event still: the sink parks it and removes the row's older vectors
    assert out.size <= c.KINESIS_MAX_RECORD_BYTES
    event = parse_event(out.data)
    assert (event.key, event.new, event.old) == ({"title": "Jurassic Park"}, {}, None)
    assert event.version is not None and event.seq == "100000000000000000042"
    assert "a Kinesis record holds at most" in unsendable_reason(event)
    assert out.partition_key == '["Jurassic Park"]'  # still the row's partition key: its order holds


def test_long_keys_get_a_hashed_partition_key():
    title = "T" * 400
    out, ok = RecordConverter.for_config(CONFIG).convert(record(title), SHARD)
    assert ok
    assert out.partition_key == partition_key(vector_key({"title": title}, ("title",)))
    assert len(out.partition_key) <= c.KINESIS_MAX_PARTITION_KEY_CHARS


def test_a_ttl_expiry_becomes_expire():
    body = record(origin="TTL")
    body["oldImage"] = body.pop("newImage")
    out, ok = RecordConverter.for_config(CONFIG).convert(body, SHARD)
    assert ok
    event = parse_event(out.data)
    assert (event.op, event.origin, event.new) == ("EXPIRE", "TTL", None)


def test_text_that_is_not_valid_unicode_is_sent_for_the_dlq_instead_of_stopping_the_shard():
    out, ok = RecordConverter.for_config(CONFIG).convert(record(overview="broken \udcff text"), SHARD)
    assert not ok
    with pytest.raises(PoisonRecordError, match="text is not valid UTF-8"):
        parse_event(out.data)
    doc = json.loads(out.data)  # the raw record travels ASCII-escaped, lone surrogate included
    assert doc["record"]["newImage"]["valueCells"]["overview"]["value"]["textT"] == "broken \udcff text"
