"""A shard's lineage depth (the tie-break of Keyspaces versions after ``createdAt``) survives its parents being
trimmed from the stream's listing: the stand-in forgets a closed shard 24 h after it closed, as the service does."""

from __future__ import annotations

from typing import Any

from freshvec import versions
from freshvec.events import ChangeEvent
from freshvec.keys import vector_key
from tests.integration.test_forwarder_stream import KEY_COLUMNS, Harness, pipeline_config

DAY_S = 24 * 3600
ROW = {"title": "Jaws", "overview": "v", "vote_count": 1, "popularity": "1.00", "rel_date": "2026-01-02"}


def _write(harness: Harness, overview: str) -> None:
    harness.table.upsert([{**ROW, "overview": overview}])


def _events(harness: Harness) -> dict[str, ChangeEvent]:
    """The forwarded changes of the row, by their text."""
    key = vector_key({"title": ROW["title"]}, KEY_COLUMNS)
    events = [e for e in harness.kinesis_events() if vector_key(e.key, KEY_COLUMNS) == key and e.new is not None]
    return {e.new["overview"]: e for e in events if e.new is not None}


def _version(event: ChangeEvent) -> versions.KsChange:
    parsed = versions.parse(event.version)
    assert isinstance(parsed, versions.KsChange)
    return parsed


def _child_holding_the_row(harness: Harness, shard: str, children: tuple[str, str], text: str) -> str:
    _write(harness, text)
    harness.drain(forwarder := harness.forwarder())
    forwarder.release()
    held = _events(harness)[text].shard
    assert held in children, (shard, children, held)
    return held


def test_a_childs_depth_survives_its_grandparent_being_trimmed_from_the_listing(moto: Any) -> None:
    """A → B → D → F by splits. D's last change is forwarded while B is listed (depth 2); then B is trimmed from
    the listing and D splits into F in the same millisecond as that change: F's change of the row must still order
    after D's (depth 3, from D's stored depth), not before it (depth 1, counted from what is listed now)."""
    harness = Harness.create(moto, shards=1)
    arn = harness.stream_arn
    [a] = harness.streams.shard_ids(arn, open_only=True)
    b = _child_holding_the_row(harness, a, harness.streams.split_shard(arn, a), "in B")
    d = _child_holding_the_row(harness, b, harness.streams.split_shard(arn, b), "in D")
    assert _version(_events(harness)["in D"]).depth == 2
    closed_at = harness.clock()

    forwarder = harness.forwarder()
    harness.clock.advance(DAY_S - 0.5)  # B closed 24 h ago less 0.5 s: still listed
    harness.drain(forwarder)
    assert b in harness.streams.shard_ids(arn)
    harness.clock.advance(1.0)  # now B is gone from the listing (closed and trimmed 24 h + 0.5 s ago)
    _write(harness, "last in D")  # forwarded with the lineage read while B was still listed
    f = next(iter(set(harness.streams.split_shard(arn, d)) & set(harness.streams.shard_ids(arn, open_only=True))))
    _write(harness, "first in F")  # the same millisecond as D's last change: the tie-break decides
    harness.drain(forwarder)
    assert b not in harness.streams.shard_ids(arn) and harness.clock() - closed_at > DAY_S

    events = _events(harness)
    last_in_d, first_in_f = _version(events["last in D"]), _version(events["first in F"])
    assert events["first in F"].shard in harness.streams.shard_ids(arn) and events["first in F"].shard != d
    assert last_in_d.created_us == first_in_f.created_us
    assert (last_in_d.depth, first_in_f.depth) == (2, 3)
    assert versions.verdict(first_in_f, last_in_d) is versions.Verdict.APPLY  # the child's change is the newer
    assert versions.verdict(last_in_d, first_in_f) is versions.Verdict.SKIP
    stored = harness.store().load_stream(arn)
    assert {shard: stored[shard].depth for shard in (a, b, d)} == {a: 0, b: 1, d: 2}
    assert f  # the split gave D two children; the row's change landed in one of them


def test_a_child_of_a_parent_trimmed_from_the_listing_is_read_from_its_start_not_from_latest(moto: Any) -> None:
    """With ``starting_position = LATEST``, only a shard with no parent read so far starts at the tip. A child whose
    parent was read to its end but is no longer listed (24 h after it closed, while no forwarder ran) is no such
    shard: its changes are forwarded from its start."""
    harness = Harness.create(moto, shards=1, config=pipeline_config(starting_position="LATEST"))
    arn = harness.stream_arn
    [a] = harness.streams.shard_ids(arn, open_only=True)
    first = harness.forwarder()
    first.run_once()  # A starts at its tip
    _write(harness, "read from A")
    harness.drain(first)
    harness.streams.split_shard(arn, a)
    first.run_once()  # A read to its end; its children not leased yet
    first.release()
    assert harness.store().load_stream(arn)[a].ended
    harness.clock.advance(DAY_S + 1)  # no forwarder runs for a day: A is trimmed from the listing
    _write(harness, "written into a child")
    harness.drain(harness.forwarder("second"))
    assert a not in harness.streams.shard_ids(arn)
    assert set(_events(harness)) == {"read from A", "written into a child"}
