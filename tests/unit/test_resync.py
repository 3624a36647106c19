"""Re-sync reads: which columns carry write times, the selects, and the events built from what was read."""

from __future__ import annotations

import pytest

from freshvec.cli import resync
from freshvec.config import PipelineConfig, default_config
from freshvec.events import parse_event
from freshvec.testing.fakes.cassandra import FakeSession

VARIANT = PipelineConfig.from_dict(
    {
        "keyspace": "shop",
        "table": "reviews",
        "columns": {
            "product_id": "uuid",
            "posted_at": "timestamp",
            "body": "text",
            "stars": "int",
            "tags": "set<text>",
            "scores": "map<text, int>",
            "dims": "frozen<list<int>>",
        },
        "partition_key": ["product_id"],
        "clustering_key": ["posted_at"],
        "embedding_field": "body",
        "metadata_fields": ["stars"],
    }
)


def test_write_times_come_from_scalar_regular_columns_only() -> None:
    assert resync.versioned_columns(VARIANT) == ["body", "stars"]
    assert resync.build_key_select(VARIANT) == (
        'SELECT "product_id", "posted_at", "body", "stars", "tags", "scores", "dims", '
        'WRITETIME("body") AS fv_wt_0, WRITETIME("stars") AS fv_wt_1 FROM "shop"."reviews" '
        'WHERE "product_id" = ? AND "posted_at" = ?'
    )


def test_a_row_read_by_key_carries_its_newest_cell_write_time() -> None:
    config = default_config()
    session = FakeSession(primary_key=("title",), partition_key=("title",), latency_s=0)
    insert = session.prepare('INSERT INTO "media"."movies" ("title", "overview", "vote_count") VALUES (?, ?, ?)')
    session.execute(insert, ["Jaws", "A shark.", 10])
    first = session.write_times[("Jaws",)]["overview"]
    session.execute(session.prepare('INSERT INTO "media"."movies" ("title", "vote_count") VALUES (?, ?)'), ["Jaws", 11])
    newest = session.write_times[("Jaws",)]["vote_count"]
    assert newest > first == session.write_times[("Jaws",)]["overview"]  # per cell, as CQL keeps them

    reader = resync.KeyspacesRowReader(session, config)
    [(row, version), (gone, no_version)] = reader.read([{"title": "Jaws"}, {"title": "Nope"}])
    assert row is not None and row["overview"] == "A shark." and row["vote_count"] == 11 and version == newest
    assert (gone, no_version) == (None, None)
    with pytest.raises(ValueError, match="PRIMARY KEY"):
        session.execute(
            session.prepare('SELECT WRITETIME("title") AS t FROM "media"."movies" WHERE "title" = ?'), ["Jaws"]
        )


def test_re_sync_events_are_updates_or_removals_with_the_version() -> None:
    config = default_config()
    row = {"title": "Jaws", "overview": "A shark."}
    update = parse_event(
        resync.resync_record(
            config, {"title": "Jaws"}, row, 17, origin="REDRIVE", seq="redrive:m1", shard="redrive"
        ).data
    )
    assert (update.op, update.new, update.version, update.origin, update.seq, update.is_resync) == (
        "UPDATE",
        row,
        17,
        "REDRIVE",
        "redrive:m1",
        True,
    )
    removal = resync.resync_record(config, {"title": "Jaws"}, None, 5, origin="RECONCILE", seq="r", shard="reconcile")
    event = parse_event(removal.data)
    assert (event.op, event.new, event.key, event.version) == ("DELETE", None, {"title": "Jaws"}, 5)
    assert removal.partition_key == '["Jaws"]'


def test_a_key_that_cannot_be_bound_is_a_clear_error() -> None:
    with pytest.raises(resync.OperatorError, match="lacks primary key column 'posted_at'"):
        resync.driver_key({"product_id": "8f14e45f-ceea-4e7a-9c2e-1f2b3c4d5e6f"}, VARIANT)
