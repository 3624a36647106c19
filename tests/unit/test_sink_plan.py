"""Parsing, coalescing and planning: the pure part of the sink, one key at a time."""

from __future__ import annotations

import base64
import hashlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshvec import constants as c
from freshvec import versions
from freshvec.adapters.memory import InProcessTombstones
from freshvec.config import default_config
from freshvec.errors import AmbiguousResyncError, PoisonRecordError
from freshvec.events import parse_event
from freshvec.plan import (
    Action,
    ChunkPlan,
    KeyPlan,
    ParsedRecord,
    coalesce,
    decide,
    fingerprint,
    has_text,
    needs_tombstone_lookup,
    plan_key,
)
from freshvec.sink import Sink
from freshvec.testing.builders import change, key_of, kinesis_record, movie
from freshvec.testing.fakes.memory import InMemoryDeadLetterQueue, InMemoryVectorStore, TableEmbedder

TEXT = "overview"


def live(n: int) -> str:
    """A Keyspaces live change version at createdAt ``n`` µs (its sequence number ``n`` too)."""
    return versions.KsChange(n, "label", 0, n).text()


def read_at(n: int) -> str:
    """A Keyspaces re-sync stamped at ``n`` µs."""
    return versions.KsRead(n).text()


def parsed(index: int, doc: dict, version: str | None = None) -> ParsedRecord:
    if version is not None:
        doc = {**doc, "version": version}
    event = parse_event(doc)
    new = event.new or {}
    text = None if event.is_removal else new.get(TEXT)
    return ParsedRecord(
        index=index,
        sequence_number=str(index),
        shard_id="shardId-0",
        raw={},
        event=event,
        key=key_of(event.key["title"]),
        text=text,
        metadata={"marker": index},
        fingerprint=None if text is None else f"fp:{text}",
    )


def plan_of(*docs: dict, at: tuple[str | None, ...] | None = None) -> KeyPlan:
    at = at or (None,) * len(docs)
    records = [parsed(i, d, v) for i, (d, v) in enumerate(zip(docs, at, strict=True))]
    [(key, group)] = coalesce(records).items()
    return plan_key(key, group)


def stored(text: str, version: str | None = None, write_id: str = "w0") -> dict:
    metadata: dict = {c.META_FINGERPRINT: f"fp:{text}", c.META_VERSION: versions.stamp(write_id, version)}
    return {"data": [0.5, 0.25], "metadata": metadata}


def test_a_put_reuses_the_stored_vector_only_when_the_fingerprint_matches() -> None:
    same = plan_of(change("INSERT", movie("A", "t")))
    decide(same, stored("t"), None)
    assert (same.action, same.reused, same.vector) == (Action.PUT, True, [0.5, 0.25])
    other = plan_of(change("INSERT", movie("A", "t")))
    decide(other, stored("something else"), None)
    assert (other.action, other.reused, other.vector) == (Action.PUT, False, None)


def test_the_old_image_is_no_proof_a_parked_text_change_is_re_embedded() -> None:
    # The index still holds the vector of "old" (the change to "new" was parked); this metadata-only update
    # says the text did not change, but the stored fingerprint says the vector is of another text.
    plan = plan_of(change("UPDATE", movie("A", "new", vote_count=2), movie("A", "new")))
    decide(plan, stored("old"), None)
    assert plan.action is Action.PUT and not plan.reused


@pytest.mark.parametrize("op", ["DELETE", "EXPIRE"])
def test_removals_delete(op: str) -> None:
    assert plan_of(change("INSERT", movie("A", "t")), change(op, None, movie("A", "t"))).action is Action.DELETE


@pytest.mark.parametrize("text", [None, "", " \n\t"])
def test_no_text_deletes(text: str | None) -> None:
    assert plan_of(change("UPDATE", movie("A", text), movie("A", "t"))).action is Action.DELETE


def test_the_last_change_wins_when_versions_rise_or_are_unknown() -> None:
    docs = (change("UPDATE", movie("A", "u"), movie("A", "t")), change("UPDATE", movie("A", "v"), movie("A", "u")))
    plan = plan_of(*docs)
    decide(plan, None, None)
    assert plan.text == "v"
    rising = plan_of(*docs, at=(live(5), live(9)))
    decide(rising, None, None)
    assert (rising.text, rising.stale) == ("v", [])


def test_an_older_change_later_in_the_batch_is_stale() -> None:
    docs = (change("UPDATE", movie("A", "live"), movie("A", "t")), change("UPDATE", movie("A", "sent again")))
    plan = plan_of(*docs, at=(live(9), live(5)))
    decide(plan, None, None)
    assert plan.text == "live"
    assert [r.index for r in plan.stale] == [1]


def test_a_change_older_than_the_index_is_skipped() -> None:
    plan = plan_of(change("UPDATE", movie("A", "t")), at=(live(4),))
    decide(plan, stored("x", live(7)), None)
    assert plan.action is Action.SKIP and [r.index for r in plan.stale] == [0]
    delete = plan_of(change("DELETE", None, movie("A", "t")), at=(live(4),))
    decide(delete, stored("x", live(7)), None)
    assert delete.action is Action.SKIP


def test_an_equal_version_is_applied_again() -> None:
    """A re-delivery after a crash between chunk writes must complete the row, so equal is not "older"."""
    plan = plan_of(change("UPDATE", movie("A", "t")), at=(live(7),))
    decide(plan, stored("t", live(7)), None)
    assert plan.action is Action.PUT and plan.reused


def test_a_postgres_resync_is_placed_by_snapshot_visibility_against_a_delete() -> None:
    resync = {**change("INSERT", movie("A", "t")), "origin": "BACKFILL"}
    deleted = versions.PgChange(lsn=0x600, position=0, xid=60).text()
    before = versions.PgSnapshot(xmin=55, xmax=60, xip=frozenset()).text()  # did not see xid 60: read before
    plan = plan_of(resync, at=(before,))
    assert needs_tombstone_lookup(plan, None)
    decide(plan, None, versions.parse(deleted))
    assert plan.action is Action.SKIP
    after = versions.PgSnapshot(xmin=61, xmax=62, xip=frozenset()).text()  # saw the delete, and the row again
    newer = plan_of(resync, at=(after,))
    decide(newer, None, versions.parse(deleted))
    assert newer.action is Action.PUT


def test_a_keyspaces_resync_that_may_not_have_seen_a_delete_is_parked_for_a_new_read() -> None:
    resync = {**change("INSERT", movie("A", "t")), "origin": "REDRIVE"}
    plan = plan_of(resync, at=(read_at(5),))
    parked = decide(plan, None, versions.parse(live(6)))  # deleted at createdAt 6 > the read's stamp 5
    assert [r.index for r in parked] == [0] and isinstance(parked[0].error, AmbiguousResyncError)
    newer = plan_of(resync, at=(read_at(8),))
    assert decide(newer, None, versions.parse(live(6))) == [] and newer.action is Action.PUT


def test_a_resync_parked_on_a_version_from_the_future_says_that_only_a_repair_mends_the_row() -> None:
    resync = {**change("INSERT", movie("A", "t")), "origin": "REDRIVE"}
    now_s = 1_000.0
    plan = plan_of(resync, at=(read_at(int((now_s - 2) * 1_000_000)),))
    future = versions.KsChange(int((now_s + 3_600) * 1_000_000), "label", 0, 1).text()
    parked = decide(plan, stored("old", future), None, now_s=now_s)
    assert [r.index for r in parked] == [0]
    assert "3600 s ahead" in str(parked[0].error) and "reconcile --repair" in str(parked[0].error)
    recent = versions.KsChange(int((now_s - 1) * 1_000_000), "label", 0, 1).text()  # a real write, just after
    again = plan_of(resync, at=(read_at(int((now_s - 2) * 1_000_000)),))
    parked = decide(again, stored("old", recent), None, now_s=now_s)
    assert "redrive send` reads the row again" in str(parked[0].error) and "repair" not in str(parked[0].error)


def test_an_ambiguous_resync_that_changes_nothing_is_not_parked() -> None:
    resync = {**change("UPDATE", movie("A", "t")), "origin": "BACKFILL"}
    record = parsed(0, resync, read_at(5))
    record.chunks = [ChunkPlan(0, record.key or "", "t", "fp:t", {"title": "A"})]
    plan = plan_key(record.key or "", [record])
    held = stored("t", live(6))
    held["metadata"]["title"] = "A"
    assert decide(plan, held, None) == [] and plan.action is Action.SKIP


def test_a_stray_re_send_older_than_a_delete_does_not_bring_the_row_back() -> None:
    plan = plan_of(change("INSERT", movie("A", "t")), at=(live(5),))
    assert needs_tombstone_lookup(plan, None)  # a live put where nothing is stored: the tombstone decides
    decide(plan, None, versions.parse(live(6)))
    assert plan.action is Action.SKIP
    again = plan_of(change("INSERT", movie("A", "t")), at=(live(7),))
    decide(again, None, versions.parse(live(6)))
    assert again.action is Action.PUT


def test_a_delete_does_not_weaken_a_newer_tombstone() -> None:
    plan = plan_of(change("DELETE", None, movie("A", "t")), at=(live(5),))
    assert needs_tombstone_lookup(plan, None)
    decide(plan, None, versions.parse(live(9)))
    assert plan.action is Action.SKIP


def repair(row: dict | None, if_wid: str, at: str) -> dict:
    doc = change("UPDATE", row) if row is not None else change("DELETE", None, movie("A"))
    return {**doc, "origin": "RECONCILE", "if_wid": if_wid, "version": at}


def test_a_repair_applies_iff_the_key_still_holds_the_write_it_saw_whatever_its_version() -> None:
    corrupt = stored("another row's text", live(10**15), write_id="seen")  # a foreign, far newer _ver
    plan = plan_of(repair(movie("A", "t"), "seen", read_at(5)))
    decide(plan, corrupt, None)
    assert plan.action is Action.PUT and not plan.reused
    refused = plan_of(repair(movie("A", "t"), "seen", read_at(5)))
    decide(refused, stored("t", live(6), write_id="written since"), None)
    assert refused.action is Action.SKIP


def test_a_repair_after_a_change_of_the_key_in_the_same_batch_is_refused() -> None:
    docs = (change("UPDATE", movie("A", "live")), repair(movie("A", "old"), "seen", read_at(5)))
    plan = plan_of(*docs, at=(live(9), read_at(5)))
    decide(plan, stored("x", live(7), write_id="seen"), None)
    assert plan.text == "live" and [r.index for r in plan.stale] == [1]


def test_a_repair_expecting_no_vector_respects_a_newer_tombstone() -> None:
    snapshot = versions.PgSnapshot(xmin=55, xmax=60, xip=frozenset()).text()
    deleted_since = versions.parse(versions.PgChange(0x700, 0, 60).text())
    plan = plan_of(repair(movie("A", "t"), "", snapshot))
    decide(plan, None, deleted_since)
    assert plan.action is Action.SKIP
    plan = plan_of(repair(movie("A", "t"), "", snapshot))
    decide(plan, None, None)
    assert plan.action is Action.PUT


def test_a_repair_removes_the_orphan_chunks_it_saw_beyond_the_count() -> None:
    doc = {**repair(None, "seen", read_at(5)), "orphan_chunks": [3, 7]}
    plan = plan_of(doc)
    decide(plan, stored("t", live(2), write_id="seen"), None)
    plan.stored_count = 2
    assert plan.action is Action.DELETE
    assert plan.surplus_keys == [f"{plan.key}#1", f"{plan.key}#3", f"{plan.key}#7", plan.key]


def test_a_repair_removing_a_row_whose_chunk_0_is_gone_removes_the_orphan_chunks_it_saw() -> None:
    store = InMemoryVectorStore(4)
    orphan = f"{key_of('A')}#9"
    store.put([{"key": orphan, "data": {"float32": [0.1, 0.2, 0.3, 0.4]}, "metadata": {"_chunk": 9}}])
    sink = Sink(default_config(), TableEmbedder(4), store, InMemoryDeadLetterQueue(), tombstones=InProcessTombstones())
    result = sink.process([kinesis_record({**repair(None, "", read_at(5)), "orphan_chunks": [9]}, 1)])
    assert not result.batch_item_failures
    assert store.get([orphan, key_of("A")]) == {}


def test_fingerprints_differ_by_model_dimension_limit_and_text() -> None:
    base = {"model_id": "m", "dimensions": 256, "normalize": True, "max_input_chars": 100, "text": "t"}
    variants = [base, {**base, "model_id": "n"}, {**base, "dimensions": 512}, {**base, "normalize": False}]
    variants += [{**base, "max_input_chars": 99}, {**base, "text": "u"}]
    prints = [fingerprint(**v) for v in variants]
    assert len(set(prints)) == len(prints)
    assert fingerprint(**base) == fingerprint(**dict(base))


def test_coalesce_keeps_batch_order_per_key_and_a_poison_change_stands_as_a_removal() -> None:
    records = [parsed(i, change("INSERT", movie(title, "t"))) for i, title in enumerate("ABABC")]
    records[2].error = PoisonRecordError("bad")
    records[4].error = AmbiguousResyncError("read again")  # not a state of the row: left out
    groups = coalesce(records)
    assert list(groups) == [key_of("A"), key_of("B")]
    assert [r.index for r in groups[key_of("A")]] == [0, 2]
    removal = groups[key_of("A")][1]
    assert removal is not records[2] and removal.usable and removal.event is not None
    assert removal.event.is_removal and removal.version == records[2].version and removal.text is None
    assert [r.index for r in groups[key_of("B")]] == [1, 3]


@given(st.lists(st.sampled_from("ABC"), min_size=1, max_size=30))
def test_every_usable_record_lands_in_exactly_one_group_in_order(titles: list[str]) -> None:
    records = [parsed(i, change("INSERT", movie(t, "x"))) for i, t in enumerate(titles)]
    groups = coalesce(records)
    flattened = sorted(r.index for group in groups.values() for r in group)
    assert flattened == list(range(len(titles)))
    for group in groups.values():
        assert [r.index for r in group] == sorted(r.index for r in group)


def test_has_text() -> None:
    assert has_text("a") and not has_text(None) and not has_text("  ")


# ---- parsing a Lambda record (Sink._parse) -------------------------------------------------------------
class _NoModel:
    model_id, dimensions, max_input_chars = "none", 256, 1000


@pytest.fixture
def parse():
    # Parsing touches none of the sink's ports; none are given so a stray call would fail loudly.
    return Sink(default_config(), embedder=_NoModel(), store=None, dlq=None, tombstones=None)._parse  # type: ignore[arg-type]


def test_parse_builds_key_text_and_metadata(parse) -> None:
    doc = change("INSERT", movie("Jurassic Park", "Dinosaurs.", rel_date="1993-06-11"))
    record = parse(0, kinesis_record(doc, 1))
    assert record.usable
    assert record.key == '["Jurassic Park"]'
    assert record.text == "Dinosaurs."
    assert record.metadata["rel_date"] == 19930611
    assert record.shard_id == "shardId-000000000000"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "JSON object"),
        ({**change("INSERT", movie("A")), "table": "shows"}, "this sink serves media.movies"),
        (change("INSERT", movie("A"), key={"title": None}), "'title' is missing or null"),
        (change("INSERT", movie("t" * 1100)), "at most 1024"),
        (change("INSERT", movie("A", overview=42)), "not text"),
        (change("INSERT", movie("A", "x", popularity="lots")), "popularity"),
    ],
)
def test_poison_is_recognised_while_parsing(parse, payload: object, reason: str) -> None:
    record = parse(3, kinesis_record(payload, 4))
    assert isinstance(record.error, PoisonRecordError)
    assert reason in str(record.error)
    assert not record.usable


def test_data_that_is_not_base64_is_poison(parse) -> None:
    raw = kinesis_record(change("INSERT", movie("A")), 1)
    raw["kinesis"]["data"] = "***" + raw["kinesis"]["data"]
    assert "base64" in str(parse(0, raw).error)


def test_a_delete_needs_no_text_or_metadata(parse) -> None:
    record = parse(0, kinesis_record(change("DELETE", None, movie("A", popularity="not a number")), 1))
    assert record.usable and record.text is None and record.metadata is None
    assert base64.b64decode(record.raw["kinesis"]["data"])


@given(
    text=st.text(),
    model_id=st.sampled_from([c.TITAN_V2, c.COHERE_EN_V3, 'a "quoted" model']),
    dimensions=st.sampled_from([256, 1024]),
    normalize=st.booleans(),
    max_input_chars=st.sampled_from([c.TITAN_MAX_INPUT_CHARS, c.COHERE_MAX_INPUT_CHARS]),
)
def test_the_fingerprint_is_the_documented_hash(
    text: str, model_id: str, dimensions: int, normalize: bool, max_input_chars: int
) -> None:
    # The definition in docs and the soak's oracle: sha256 of the JSON array, first 32 hex characters.
    material = json.dumps([model_id, dimensions, normalize, max_input_chars, text], ensure_ascii=False)
    expected = hashlib.sha256(material.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]
    try:
        actual = fingerprint(
            model_id=model_id, dimensions=dimensions, normalize=normalize, max_input_chars=max_input_chars, text=text
        )
    except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8; such text never arrives from JSON events
        assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
        return
    assert actual == expected


@pytest.mark.parametrize(
    ("text", "expected"), [(None, False), ("", False), (" \t\n", False), ("\u3000", False), (" a ", True), ("x", True)]
)
def test_has_text_means_something_besides_whitespace(text: str | None, expected: bool) -> None:
    assert has_text(text) is expected


class _FixedEmbedder(TableEmbedder):
    """The table embedder, except for texts given a vector of their own (a model answering nonsense)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        super().__init__(4)
        self.vectors = vectors

    def vector(self, text: str) -> list[float]:
        return list(self.vectors[text]) if text in self.vectors else super().vector(text)


def test_only_vectors_of_the_index_dimension_and_finite_floats_are_written() -> None:
    huge = 1.5e308  # finite, but two of them overflow a sum
    vectors = {
        "nan": [0.1, math.nan, 0.2, 0.3],
        "inf": [math.inf, 0.1, 0.2, 0.3],
        "both infinities": [math.inf, -math.inf, 0.1, 0.2],
        "short": [0.1, 0.2, 0.3],
        "huge but finite": [huge, huge, -huge, 0.5],
        "fine": [0.1, -0.2, 0.3, 0.4],
    }
    store, dlq = InMemoryVectorStore(4), InMemoryDeadLetterQueue()
    sink = Sink(default_config(), _FixedEmbedder(vectors), store, dlq, tombstones=InProcessTombstones())
    records = [kinesis_record(change("INSERT", movie(name, name)), i + 1) for i, name in enumerate(vectors)]
    result = sink.process(records)
    assert not result.batch_item_failures
    assert set(store.get([key_of(n) for n in vectors], return_data=True)) == {key_of("huge but finite"), key_of("fine")}
    parked = sorted(entry["error_message"] for entry in dlq.entries)
    assert parked == sorted(
        ["the vector holds a value that is not a finite number"] * 3 + ["the vector has 3 dimensions; the index has 4"]
    )
