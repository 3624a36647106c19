"""Chunked rows through the sink against moto: the index holds exactly each row's chunks, and only new texts
are embedded."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshvec import constants as c
from freshvec.chunking import chunk_text
from freshvec.config import PipelineConfig, default_config
from freshvec.keys import split_chunk_key
from freshvec.local.moto_server import MotoServer
from freshvec.testing.builders import batch, change, key_of, movie
from freshvec.testing.fakes.bedrock import fake_vector
from tests.integration.test_sink_apply import Pipeline, make_pipeline

WORDS = ["harbor", "lantern", "river", "engine", "signal", "forest", "storm", "copper", "glass", "archive"]


def chunked_config(max_chars: int = 200, overlap_chars: int = 0) -> PipelineConfig:
    raw = default_config().to_dict()
    raw["chunking"] = {"strategy": "recursive", "max_chars": max_chars, "overlap_chars": overlap_chars}
    return PipelineConfig.from_dict(raw)


def stored_rows(pipe: Pipeline) -> dict[str, dict[int, dict[str, Any]]]:
    rows: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for key, vector in pipe.vectors().items():
        row, number = split_chunk_key(key)
        rows[row][number] = vector
    return dict(rows)


def assert_row_holds(stored: dict[int, dict[str, Any]], text: str, config: PipelineConfig, votes: int) -> None:
    chunks = chunk_text(text, config.chunking)
    assert sorted(stored) == list(range(len(chunks)))  # right count, no orphan
    for number, chunk in enumerate(chunks):
        vector = stored[number]
        assert vector["metadata"]["overview"] == chunk
        assert vector["metadata"][c.META_CHUNK] == number
        assert vector["metadata"]["vote_count"] == votes  # the row's columns ride on every chunk
        assert vector["data"] == pytest.approx(fake_vector(chunk, 256), rel=1e-6)
    assert stored[0]["metadata"][c.META_CHUNKS] == len(chunks)
    assert all(c.META_CHUNKS not in stored[n]["metadata"] for n in stored if n)


def paragraph(rng_words: list[int]) -> str:
    words = [WORDS[i % len(WORDS)] for i in rng_words]
    return " ".join(words).capitalize() + "."


_paragraph = st.lists(st.integers(0, 40), min_size=3, max_size=40).map(paragraph)
_EDIT = st.tuples(
    st.sampled_from("AB"),
    st.sampled_from(["edit", "insert", "remove", "shrink", "grow", "empty", "delete", "metadata"]),
    st.integers(0, 30),
    _paragraph,
)


def _apply(paragraphs: list[str], kind: str, at: int, new: str) -> list[str]:
    if kind == "edit" and paragraphs:
        i = at % len(paragraphs)
        return [*paragraphs[:i], paragraphs[i] + " " + new, *paragraphs[i + 1 :]]
    if kind == "insert":
        i = at % (len(paragraphs) + 1)
        return [*paragraphs[:i], new, *paragraphs[i:]]
    if kind == "remove" and paragraphs:
        i = at % len(paragraphs)
        return paragraphs[:i] + paragraphs[i + 1 :]
    if kind == "shrink":
        return [new[:60]]
    if kind == "grow":
        return [*paragraphs, *([new] * (1 + at % 4))]
    if kind == "empty":
        return []
    return paragraphs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.lists(_paragraph, min_size=0, max_size=12),
    edits=st.lists(_EDIT, min_size=1, max_size=14),
    cuts=st.lists(st.integers(1, 16), max_size=4),
    redeliver=st.lists(st.booleans(), min_size=6, max_size=6),
    overlap=st.sampled_from([0, 40]),
)
def test_after_every_batch_each_row_holds_exactly_its_chunks_and_only_new_texts_are_embedded(
    moto_server: MotoServer,
    start: list[str],
    edits: list[tuple[str, str, int, str]],
    cuts: list[int],
    redeliver: list[bool],
    overlap: int,
) -> None:
    moto_server.reset()
    config = chunked_config(200, overlap)
    pipe = make_pipeline(moto_server, config)
    table: dict[str, tuple[list[str], int] | None] = {}
    docs, states = [], []  # states[i]: the table after docs[i]
    for title in "AB":
        table[title] = (list(start), 0)
        docs.append(change("INSERT", movie(title, "\n\n".join(start), vote_count=0)))
        states.append(dict(table))
    for votes, (title, kind, at, new) in enumerate(edits, start=1):
        before = table.get(title)
        old = movie(title, "\n\n".join(before[0]), vote_count=before[1]) if before else None
        if kind == "delete":
            docs.append(change("DELETE", None, old or movie(title)))
            table[title] = None
        else:
            paragraphs = _apply(before[0] if before else [], kind, at, new)
            docs.append(
                change("UPDATE" if before else "INSERT", movie(title, "\n\n".join(paragraphs), vote_count=votes), old)
            )
            table[title] = (paragraphs, votes)
        states.append(dict(table))
    records = batch(*docs)
    bounds = sorted({0, len(records), *(cut for cut in cuts if cut < len(records))})
    stored_texts: dict[str, set[str]] = {"A": set(), "B": set()}  # my own bookkeeping of what the index holds
    for number, (begin, end) in enumerate(itertools.pairwise(bounds)):
        state = states[end - 1]
        current = {t: chunk_text("\n\n".join(s[0]), config.chunking) if s else [] for t, s in state.items()}
        touched = {doc["key"]["title"] for doc in docs[begin:end]}
        expected_new = set().union(*(set(current[t]) - stored_texts[t] for t in touched))
        for delivery in range(2 if redeliver[number % len(redeliver)] else 1):
            calls_before = len(pipe.bedrock.calls)
            assert pipe.sink.process(records[begin:end]).batch_item_failures == []
            embedded = pipe.bedrock.texts_embedded()[calls_before:]
            assert sorted(embedded) == sorted(expected_new if delivery == 0 else set())
        stored = stored_rows(pipe)
        for title, row in state.items():
            if current[title]:
                assert row is not None
                assert_row_holds(stored.pop(key_of(title)), "\n\n".join(row[0]), config, row[1])
        assert stored == {}  # no chunk of a deleted or emptied row is left
        stored_texts.update({t: set(chunks) for t, chunks in current.items()})


def long_text(paragraphs: int, seed: int = 0) -> list[str]:
    return [
        " ".join(WORDS[(seed + i * 7 + j * 3) % len(WORDS)] for j in range(22)).capitalize() + f" Part {i}."
        for i in range(paragraphs)
    ]


def test_a_middle_edit_and_a_prepended_paragraph_embed_one_chunk_each(moto: MotoServer) -> None:
    config = chunked_config(200)
    pipe = make_pipeline(moto, config)
    paragraphs = long_text(12)
    pipe.sink.process(batch(change("INSERT", movie("Doc", "\n\n".join(paragraphs)))))
    assert len(chunk_text("\n\n".join(paragraphs), config.chunking)) == 12
    edited = [*paragraphs[:6], paragraphs[6] + " Edited.", *paragraphs[7:]]
    result = pipe.sink.process(batch(change("UPDATE", movie("Doc", "\n\n".join(edited))), start=2))
    assert (result.stats.chunks_embedded, result.stats.chunks_reused, result.stats.embeddings_computed) == (1, 11, 1)
    prepended = ["A new opening paragraph about copper.", *edited]
    calls = len(pipe.bedrock.calls)
    result = pipe.sink.process(batch(change("UPDATE", movie("Doc", "\n\n".join(prepended))), start=3))
    assert len(pipe.bedrock.calls) - calls == 1 and result.stats.chunks_reused == 12
    assert_row_holds(stored_rows(pipe)[key_of("Doc")], "\n\n".join(prepended), config, 100)


def test_shrinking_deletes_the_surplus_before_lowering_the_count_and_a_delete_removes_every_chunk(
    moto: MotoServer,
) -> None:
    config = chunked_config(200)
    pipe = make_pipeline(moto, config)
    text = "\n\n".join(long_text(8))
    pipe.sink.process(batch(change("INSERT", movie("Doc", text))))
    pipe.tap.calls.clear()
    pipe.tap.sizes.clear()
    result = pipe.sink.process(batch(change("UPDATE", movie("Doc", "Now short.")), start=2))
    assert result.stats.chunks_deleted == 7 and result.stats.vectors_deleted == 7
    assert pipe.tap.sizes["GetVectors"] == [1, 7]  # chunk 0 (the count), then the other chunks
    assert list(stored_rows(pipe)) == [key_of("Doc")] and list(stored_rows(pipe)[key_of("Doc")]) == [0]
    pipe.sink.process(batch(change("UPDATE", movie("Doc", text)), start=3))
    pipe.tap.sizes.clear()
    result = pipe.sink.process(batch(change("DELETE", None, movie("Doc", text)), start=4))
    assert pipe.tap.sizes["DeleteVectors"] == [7, 1]  # chunk 0 last: its count covers the others until then
    assert pipe.vectors() == {} and result.stats.vectors_deleted == 8


def test_a_failed_write_of_a_shrinking_row_is_repaired_by_redelivery(moto: MotoServer) -> None:
    config = chunked_config(200)
    pipe = make_pipeline(moto, config)
    text = "\n\n".join(long_text(6))
    pipe.sink.process(batch(change("INSERT", movie("Doc", text))))
    pipe.tap.fail("PutVectors", "ServiceUnavailableException", 503, times=3)  # the surplus delete succeeds
    records = batch(change("UPDATE", movie("Doc", "Short now.")), start=5)
    assert pipe.sink.process(records).batch_item_failures == [
        {"itemIdentifier": records[0]["kinesis"]["sequenceNumber"]}
    ]
    stored = stored_rows(pipe)[key_of("Doc")]
    assert list(stored) == [0] and stored[0]["metadata"][c.META_CHUNKS] == 6  # the old count still covers all
    assert pipe.sink.process(records).batch_item_failures == []
    assert_row_holds(stored_rows(pipe)[key_of("Doc")], "Short now.", config, 100)


def test_a_filter_on_a_row_column_applies_to_every_chunk(moto: MotoServer) -> None:
    config = chunked_config(200)
    pipe = make_pipeline(moto, config)
    pipe.sink.process(batch(change("INSERT", movie("Doc", "\n\n".join(long_text(5)), original_lang="fr"))))
    listed = pipe.vectors()
    assert len(listed) == 5 and {v["metadata"]["original_lang"] for v in listed.values()} == {"fr"}
