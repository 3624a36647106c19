"""The one PostgreSQL backfill record (``sources.postgres.snapshot.backfill_record``) the CLI and local mode send."""

from __future__ import annotations

import json

from freshvec import constants as c
from freshvec.events import parse_event
from freshvec.keys import partition_key, vector_key
from freshvec.sources.postgres.snapshot import backfill_record

_ROW = {"id": 7, "region": "eu", "body": "A shark in a quiet town."}
_SNAPSHOT = "pgsnap:100:105:101,103"


def _record(**extra):
    return backfill_record(
        _ROW,
        keyspace="public",
        table="docs",
        primary_key=("region", "id"),
        key_columns=("region", "id"),
        version=_SNAPSHOT,
        index=3,
        **extra,
    )


def test_a_row_becomes_a_backfill_insert_at_the_snapshot_on_its_rows_shard() -> None:
    record = _record()
    event = parse_event(record.data)
    assert (event.op, event.origin, event.source, event.shard) == ("INSERT", "BACKFILL", "postgres", "backfill")
    assert event.key == {"region": "eu", "id": 7}  # in primary-key order
    assert event.new == _ROW and event.old is None
    assert event.version == _SNAPSHOT
    assert event.seq == record.sequence_number == f"backfill:{_SNAPSHOT}#3"
    # The partition key of the row's live changes: one shard per row, so the backfill queues behind them.
    assert record.partition_key == partition_key(vector_key({"region": "eu", "id": 7}, ("region", "id")))
    assert c.EVENT_GENERATIONS not in json.loads(record.data)


def test_a_backfill_for_some_generations_names_them() -> None:
    doc = json.loads(_record(generations=["next"]).data)
    assert doc[c.EVENT_GENERATIONS] == ["next"]
    assert parse_event(doc).extra == {c.EVENT_GENERATIONS: ["next"]}
