"""The recursive splitter and chunk keys: bounded, faithful, deterministic, and local under edits."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshvec import constants as c
from freshvec.chunking import chunk_keys, chunk_text, expected_chunks, group_hits, query_top_k, stored_chunk_count
from freshvec.config import ChunkingConfig, default_config
from freshvec.errors import PoisonRecordError
from freshvec.keys import chunk_key, split_chunk_key, vector_key
from freshvec.plan import fingerprint

WORDS = ["harbor", "lantern", "river", "engine", "signal", "forest", "storm", "city", "ship", "mountain", "glass"]
_word = st.sampled_from(WORDS)
_sentence = st.lists(_word, min_size=1, max_size=30).map(lambda ws: " ".join(ws).capitalize() + ".")
_paragraph = st.lists(_sentence, min_size=1, max_size=12).map(" ".join)
_text = st.lists(_paragraph, min_size=1, max_size=25).map("\n\n".join)
_bounds = st.sampled_from([(120, 0), (300, 0), (300, 60), (1000, 0), (1000, 150)])


def _words(text: str) -> list[str]:
    return text.split()


@settings(max_examples=150, deadline=None)
@given(text=_text, bound=_bounds)
def test_chunks_are_bounded_non_empty_and_hold_the_text_in_order(text: str, bound: tuple[int, int]) -> None:
    max_chars, overlap = bound
    config = ChunkingConfig(max_chars=max_chars, overlap_chars=overlap)
    chunks = chunk_text(text, config)
    assert chunks and all(0 < len(chunk) <= max_chars and chunk == chunk.strip() for chunk in chunks)
    assert chunk_text(text, config) == chunks  # deterministic
    if overlap == 0:
        assert [w for chunk in chunks for w in _words(chunk)] == _words(text)
    else:  # each chunk after the first starts with at most `overlap` characters of the one before it
        no_overlap = chunk_text(text, ChunkingConfig(max_chars=max_chars - overlap - 1))
        assert len(chunks) == len(no_overlap)
        for chunk, own in zip(chunks, no_overlap, strict=True):
            assert chunk.endswith(own) and len(chunk) - len(own) <= overlap + 1


def test_a_text_within_the_bound_is_one_chunk_and_an_empty_one_none() -> None:
    config = ChunkingConfig(max_chars=1000)
    assert chunk_text("  A short overview.\n", config) == ["A short overview."]
    assert chunk_text("", config) == chunk_text("   ", config) == chunk_text(None, config) == []
    assert chunk_text("x" * 5000, ChunkingConfig(strategy="none")) == ["x" * 5000]  # the embedder cuts it


def test_a_word_longer_than_the_bound_is_sliced() -> None:
    chunks = chunk_text("start " + "z" * 250 + " end", ChunkingConfig(max_chars=100))
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert "".join(chunks).replace(" ", "") == ("start" + "z" * 250 + "end")


# Paragraphs of at least half the bound always mark a boundary: each is its own chunk, so the effect of an edit
# is exact. (Shorter paragraphs share chunks; the benchmark measures the average on mixed texts.)
def _padded(sentences: list[str]) -> str:
    paragraph = " ".join(sentences)[:700].rstrip()
    while len(paragraph) < 500:
        paragraph += " Padding keeps the paragraph long."
    return paragraph


_long_paragraph = st.lists(_sentence, min_size=1, max_size=8).map(_padded)


@settings(max_examples=60, deadline=None)
@given(paragraphs=st.lists(_long_paragraph, min_size=3, max_size=12), data=st.data())
def test_an_edit_or_an_insertion_changes_one_chunk(paragraphs: list[str], data: st.DataObject) -> None:
    config = ChunkingConfig(max_chars=1000)
    before = chunk_text("\n\n".join(paragraphs), config)
    assert len(before) == len(paragraphs)
    at = data.draw(st.integers(0, len(paragraphs) - 1))
    edited = list(paragraphs)
    edited[at] = edited[at].replace(".", " anchor.", 1)
    after = chunk_text("\n\n".join(edited), config)
    assert len(set(after) - set(before)) == 1 and len(after) == len(before)
    inserted = list(paragraphs)
    inserted.insert(data.draw(st.integers(0, len(paragraphs))), data.draw(_long_paragraph))
    grown = chunk_text("\n\n".join(inserted), config)
    assert set(before) <= set(grown) and len(grown) == len(before) + 1


def test_edits_of_mixed_paragraphs_stay_local_on_average() -> None:
    rng = random.Random(3)
    config = ChunkingConfig(max_chars=1000)
    changed = []
    for _ in range(40):
        paragraphs = [
            " ".join(" ".join(rng.choices(WORDS, k=rng.randint(4, 16))) + "." for _ in range(rng.randint(1, 8)))
            for _ in range(30)
        ]
        before = chunk_text("\n\n".join(paragraphs), config)
        at = rng.randrange(len(paragraphs))
        paragraphs[at] += " An added sentence."
        changed.append(len(set(chunk_text("\n\n".join(paragraphs), config)) - set(before)))
    assert max(changed) <= 4 and sum(changed) / len(changed) <= 1.6


# ---- keys --------------------------------------------------------------------------------------------
@given(values=st.lists(st.one_of(st.text(max_size=30), st.integers()), min_size=1, max_size=3), n=st.integers(0, 999))
def test_chunk_keys_round_trip(values: list[object], n: int) -> None:
    columns = tuple(f"c{i}" for i in range(len(values)))
    row = vector_key(dict(zip(columns, values, strict=True)), columns)
    key = chunk_key(row, n)
    assert split_chunk_key(key) == (row, n)
    assert (key == row) == (n == 0)


def test_row_keys_never_read_as_chunk_keys() -> None:
    for row in ('["a#1"]', '["x"]', '["#2",3]'):
        assert split_chunk_key(row) == (row, 0)


def test_a_chunk_key_past_1024_characters_is_poison() -> None:
    row = vector_key({"t": "k" * 1018}, ("t",))  # 1,022 characters: "#9" fits in 1,024, "#10" does not
    assert chunk_key(row, 9) == row + "#9"
    with pytest.raises(PoisonRecordError, match="at most 1024"):
        chunk_key(row, 10)
    assert len(chunk_keys(row, 12)) == 10


# ---- what reconcile and queries use ------------------------------------------------------------------
def test_expected_chunks_give_keys_texts_and_the_sinks_fingerprints() -> None:
    config = default_config()
    text = "\n\n".join(" ".join(["Lantern harbor signal."] * 30) for _ in range(3))
    chunks = expected_chunks(config, '["Doc"]', text, max_input_chars=c.TITAN_MAX_INPUT_CHARS)
    assert [ch.key for ch in chunks] == ['["Doc"]', '["Doc"]#1', '["Doc"]#2'][: len(chunks)]
    assert len(chunks) >= 2
    for chunk in chunks:
        material = dict(model_id=c.TITAN_V2, dimensions=256, normalize=True, max_input_chars=c.TITAN_MAX_INPUT_CHARS)
        assert chunk.fingerprint == fingerprint(**material, text=chunk.text)


def test_stored_chunk_count_reads_chunk_0() -> None:
    assert stored_chunk_count(None) == 0
    assert stored_chunk_count({"metadata": {}}) == 1  # written before rows had chunks
    assert stored_chunk_count({"metadata": {c.META_CHUNKS: 7}}) == 7


def test_hits_are_grouped_into_rows_best_first() -> None:
    hits = [
        {"key": '["B"]#3', "distance": 0.1, "metadata": {"overview": "b3", "title": "B"}},
        {"key": '["A"]', "distance": 0.2, "metadata": {"overview": "a0", "title": "A"}},
        {"key": '["B"]', "distance": 0.3, "metadata": {"overview": "b0", "title": "B"}},
        {"key": '["C"]#1', "distance": 0.4, "metadata": {"overview": "c1"}},
    ]
    rows = group_hits(hits, 2, "overview")
    assert [(r.key, r.chunk, r.passage, r.distance) for r in rows] == [('["B"]', 3, "b3", 0.1), ('["A"]', 0, "a0", 0.2)]
    assert [(h.chunk, h.passage) for h in rows[0].chunks] == [(3, "b3"), (0, "b0")]
    assert query_top_k(5) == 20 and query_top_k(40) == 160  # past 100 the answer comes in pages (nextToken)
    assert query_top_k(100_000) == 10_000
