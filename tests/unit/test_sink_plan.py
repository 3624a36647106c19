"""Parsing, coalescing and planning: the pure part of the sink, one key at a time."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshvec.config import default_config
from freshvec.errors import PoisonRecordError
from freshvec.events import parse_event
from freshvec.sink import Action, ParsedRecord, Sink, coalesce, has_text, plan_key
from freshvec.testing.builders import change, key_of, kinesis_record, movie

TEXT = "overview"


def parsed(index: int, doc: dict) -> ParsedRecord:
    event = parse_event(doc)
    new = event.new or {}
    return ParsedRecord(
        index=index,
        sequence_number=str(index),
        shard_id="shardId-0",
        raw={},
        event=event,
        key=key_of(event.key["title"]),
        text=None if event.is_removal else new.get(TEXT),
        metadata={"marker": index},
    )


def plan_of(*docs: dict) -> tuple[Action, str | None, dict | None]:
    records = [parsed(i, d) for i, d in enumerate(docs)]
    [(key, group)] = coalesce(records).items()
    plan = plan_key(key, group, TEXT)
    return plan.action, plan.text, plan.metadata


def test_insert_of_an_unknown_row_checks_the_index_before_embedding() -> None:
    assert plan_of(change("INSERT", movie("A", "t"))) == (Action.REUSE_IF_SAME, "t", {"marker": 0})


def test_update_with_unchanged_text_reuses_the_stored_vector() -> None:
    assert plan_of(change("UPDATE", movie("A", "t", vote_count=2), movie("A", "t")))[0] is Action.REUSE


def test_update_with_changed_text_embeds() -> None:
    assert plan_of(change("UPDATE", movie("A", "new"), movie("A", "old")))[:2] == (Action.EMBED, "new")


def test_update_without_an_old_image_checks_the_index() -> None:
    assert plan_of(change("UPDATE", movie("A", "t")))[0] is Action.REUSE_IF_SAME


@pytest.mark.parametrize("op", ["DELETE", "EXPIRE"])
def test_removals_delete(op: str) -> None:
    assert plan_of(change("INSERT", movie("A", "t")), change(op, None, movie("A", "t")))[0] is Action.DELETE


@pytest.mark.parametrize("text", [None, "", " \n\t"])
def test_no_text_deletes(text: str | None) -> None:
    assert plan_of(change("UPDATE", movie("A", text), movie("A", "t")))[0] is Action.DELETE


def test_before_is_the_first_old_image_and_the_last_change_wins() -> None:
    # t -> u -> t: the text ends where it started, so the stored vector is still right.
    docs = (
        change("UPDATE", movie("A", "u"), movie("A", "t")),
        change("UPDATE", movie("A", "t", vote_count=9), movie("A", "u")),
    )
    assert plan_of(*docs) == (Action.REUSE, "t", {"marker": 1})
    # t -> u -> v: changed.
    docs = (change("UPDATE", movie("A", "u"), movie("A", "t")), change("UPDATE", movie("A", "v"), movie("A", "u")))
    assert plan_of(*docs)[:2] == (Action.EMBED, "v")


def test_delete_then_insert_compares_against_the_deleted_row() -> None:
    docs = (change("DELETE", None, movie("A", "t")), change("INSERT", movie("A", "t")))
    assert plan_of(*docs)[0] is Action.REUSE
    docs = (change("DELETE", None, movie("A", "t")), change("INSERT", movie("A", "other")))
    assert plan_of(*docs)[0] is Action.EMBED


def test_coalesce_keeps_batch_order_per_key_and_skips_poison() -> None:
    records = [parsed(i, change("INSERT", movie(title, "t"))) for i, title in enumerate("ABAB")]
    records[2].error = PoisonRecordError("bad")
    groups = coalesce(records)
    assert list(groups) == [key_of("A"), key_of("B")]
    assert [r.index for r in groups[key_of("A")]] == [0]
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
@pytest.fixture
def parse():
    # Parsing touches none of the sink's ports; none are given so a stray call would fail loudly.
    return Sink(default_config(), embedder=None, store=None, dlq=None)._parse  # type: ignore[arg-type]


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
