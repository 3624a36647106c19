"""The change-event contract: round trips, the JSON Schema and the sink's gate agree, bad events are named."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

import jsonschema
import pytest

from freshvec.errors import PoisonRecordError
from freshvec.events import ChangeEvent, format_timestamp, parse_event, parse_timestamp

SCHEMA = json.loads(resources.files("freshvec").joinpath("change-event.schema.json").read_text())


def _event(**changes) -> dict:
    doc = ChangeEvent(
        keyspace="media",
        table="movies",
        op="UPDATE",
        key={"title": "Jurassic Park"},
        new={"title": "Jurassic Park", "overview": "Dinosaurs return.", "popularity": "12.50"},
        old={"title": "Jurassic Park", "overview": "Dinosaurs return.", "popularity": "11.00"},
        seq="49650000000000000001",
        shard="shardId-00001",
        ts="2026-11-22T10:15:03.120Z",
    ).to_dict()
    doc.update(changes)
    return doc


def test_round_trip_through_bytes_keeps_every_field():
    doc = _event(new={"title": "Amélie", "overview": "Une fée à Montmartre."})
    event = parse_event(json.dumps(doc).encode())
    assert event.to_dict() == doc
    assert parse_event(event.to_bytes()) == event
    assert "Amélie" in event.to_json()  # non-ASCII text travels as UTF-8, not escapes


def test_valid_events_pass_the_published_schema():
    for op, new, old in [("INSERT", {"title": "x"}, None), ("DELETE", None, {"title": "x"}), ("EXPIRE", None, None)]:
        doc = _event(op=op, new=new, old=old, origin="TTL" if op == "EXPIRE" else "USER")
        jsonschema.validate(doc, SCHEMA)
        assert parse_event(doc).op == op


def test_removal_ops_are_flagged():
    assert parse_event(_event(op="DELETE", new=None)).is_removal
    assert parse_event(_event(op="EXPIRE", new=None, origin="TTL")).is_removal
    assert not parse_event(_event()).is_removal


def test_unknown_top_level_fields_are_kept_for_forward_compatibility():
    event = parse_event(_event(trace_id="abc"))
    assert event.extra == {"trace_id": "abc"}
    assert event.to_dict()["trace_id"] == "abc"


BAD_EVENTS = [
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({k: v for k, v in _event().items() if k != "key"}).encode(), "missing 'key'"),
    (json.dumps(_event(v=2)).encode(), "version 2 is not supported"),
    (json.dumps(_event(op="UPSERT")).encode(), "op 'UPSERT'"),
    (json.dumps(_event(origin="CRON")).encode(), "origin 'CRON'"),
    (json.dumps(_event(key={})).encode(), "'key' is empty"),
    (json.dumps(_event(key=["Jurassic Park"])).encode(), "'key' has the wrong type"),
    (json.dumps(_event(seq=42)).encode(), "'seq' has the wrong type"),
    (json.dumps(_event(v=True)).encode(), "'v' has the wrong type"),
    (json.dumps(_event(new=None)).encode(), "UPDATE change event has no 'new' image"),
    (json.dumps(_event(new="text")).encode(), "'new' must be an object or null"),
    (json.dumps(_event(ts="yesterday")).encode(), "'ts' is not an ISO 8601 time"),
    (json.dumps(_event(ts="2026-11-22T10:15:03")).encode(), "'ts' is not an ISO 8601 time"),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_EVENTS)
def test_bad_events_are_poison_with_a_reason_and_the_schema_agrees(payload, reason):
    with pytest.raises(PoisonRecordError, match=reason.replace("(", r"\(")):
        parse_event(payload)
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    if "ts" in reason:
        return  # the schema's date-time format is advisory without a format checker
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_timestamps_are_utc_with_milliseconds_and_z():
    moment = datetime(2026, 11, 22, 10, 15, 3, 120000, tzinfo=UTC)
    text = format_timestamp(moment)
    assert text == "2026-11-22T10:15:03.120Z"
    assert parse_timestamp(text) == moment


def test_forwarder_error_envelope_is_poison_with_the_forwarders_reason():
    envelope = {
        "v": 1,
        "source": "keyspaces",
        "keyspace": "media",
        "table": "movies",
        "seq": "7",
        "shard": "shard-1",
        "error": "forwarder could not convert this record: record has no partition keys",
        "record": {"sequenceNumber": "7"},
    }
    with pytest.raises(PoisonRecordError, match=r"^forwarder could not convert this record: record has no partition"):
        parse_event(json.dumps(envelope).encode())
