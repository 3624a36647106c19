"""The change-event and Kinesis-record builders round-trip what they build."""

from __future__ import annotations

import base64

from freshvec.events import ChangeEvent, parse_event
from freshvec.testing.builders import SHARD_ID, batch, change, key_of, kinesis_record, movie


def test_record_round_trips_to_the_change_event() -> None:
    doc = change("INSERT", movie("Jurassic Park"))
    record = kinesis_record(doc, 7)
    event = parse_event(base64.b64decode(record["kinesis"]["data"]))
    assert isinstance(event, ChangeEvent)
    assert event.key == {"title": "Jurassic Park"}
    assert record["eventID"] == f"{SHARD_ID}:{record['kinesis']['sequenceNumber']}"
    assert record["kinesis"]["partitionKey"] == key_of("Jurassic Park")


def test_sequence_numbers_sort_as_text_and_as_numbers() -> None:
    records = batch(*(change("INSERT", movie(f"m{i}")) for i in range(12)), start=8)
    numbers = [r["kinesis"]["sequenceNumber"] for r in records]
    assert numbers == sorted(numbers) == sorted(numbers, key=int)
