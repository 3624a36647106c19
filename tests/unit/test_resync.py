"""Re-sync reads: which columns carry write times, the selects, and the events built from what was read."""

from __future__ import annotations

import time

import pytest

from freshvec import constants as c
from freshvec import versions
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


def test_a_re_sync_select_reads_the_columns_and_no_write_times() -> None:
    assert resync.build_key_select(VARIANT) == (
        'SELECT "product_id", "posted_at", "body", "stars", "tags", "scores", "dims" FROM "shop"."reviews" '
        'WHERE "product_id" = ? AND "posted_at" = ?'
    )


def test_a_row_read_by_key_carries_the_reads_conservative_stamp_not_a_cell_write_time() -> None:
    config = default_config()
    session = FakeSession(primary_key=("title",), partition_key=("title",), latency_s=0)
    insert = session.prepare('INSERT INTO "media"."movies" ("title", "overview", "vote_count") VALUES (?, ?, ?)')
    session.execute(insert, ["Jaws", "A shark.", 10])
    reader = resync.KeyspacesRowReader(session, config)
    before = time.time()
    [(row, version), (gone, gone_version)] = reader.read([{"title": "Jaws"}, {"title": "Nope"}])
    after = time.time()
    assert row is not None and row["overview"] == "A shark." and row["vote_count"] == 10 and gone is None
    bound = c.KEYSPACES_READER_CLOCK_BOUND_S + c.KEYSPACES_VISIBILITY_BOUND_S
    for stamp in (versions.parse(version), versions.parse(gone_version)):  # a row gone is read at a stamp too
        assert isinstance(stamp, versions.KsRead)
        assert (before - bound) * 1e6 - 1 <= stamp.stamp_us <= (after - bound) * 1e6 + 1


def test_each_row_of_a_paged_read_is_stamped_before_it_was_asked_for() -> None:
    ticks = iter([10.0, 20.0, 30.0, 40.0])
    stamps = [stamp for _, stamp in resync.stamped(["a", "b", "c"], clock=lambda: next(ticks))]
    bound = c.KEYSPACES_READER_CLOCK_BOUND_S + c.KEYSPACES_VISIBILITY_BOUND_S
    assert stamps == [versions.KsRead(int((t - bound) * 1_000_000)).text() for t in (10.0, 20.0, 30.0)]


def test_re_sync_events_are_updates_or_removals_with_the_reads_version() -> None:
    config = default_config()
    row = {"title": "Jaws", "overview": "A shark."}
    read = versions.KsRead(17).text()
    update = parse_event(
        resync.resync_record(
            config, {"title": "Jaws"}, row, read, origin="REDRIVE", seq="redrive:m1", shard="redrive"
        ).data
    )
    assert (update.op, update.new, update.version, update.origin, update.seq, update.is_resync) == (
        "UPDATE",
        row,
        read,
        "REDRIVE",
        "redrive:m1",
        True,
    )
    removal = resync.resync_record(
        config,
        {"title": "Jaws"},
        None,
        read,
        origin="RECONCILE",
        seq="r",
        shard="reconcile",
        if_wid="w1",
        orphan_chunks=[4],
    )
    event = parse_event(removal.data)
    assert (event.op, event.new, event.key, event.version) == ("DELETE", None, {"title": "Jaws"}, read)
    assert (event.if_wid, event.orphan_chunks, event.is_repair) == ("w1", (4,), True)
    assert removal.partition_key == '["Jaws"]'


def test_a_key_that_cannot_be_bound_is_a_clear_error() -> None:
    with pytest.raises(resync.OperatorError, match="lacks primary key column 'posted_at'"):
        resync.driver_key({"product_id": "8f14e45f-ceea-4e7a-9c2e-1f2b3c4d5e6f"}, VARIANT)
