"""The sample data in data/: every row matches its table's column types in the change-event value form.

The movie rows must fit the default table in cdk.json, the product rows the example config beside them.
Both must turn into valid change events with a vector key, and the movie overviews must cluster by
meaning so a local-model search for "dinosaurs" finds the dinosaur films first.
"""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wordllama

from freshvec.config import PipelineConfig, default_config
from freshvec.datafiles import sample_movies
from freshvec.events import parse_event, parse_timestamp
from freshvec.keys import parse_vector_key, vector_key
from freshvec.sources.keyspaces.cqltypes import FLOAT_TYPES, INTEGER_TYPES, TEXT_TYPES, CqlType, parse_cql_type

DATA = Path(__file__).resolve().parents[2] / "data"
MOVIES = sample_movies()
PRODUCTS = DATA / "examples" / "products.jsonl"
PRODUCTS_CONFIG = DATA / "examples" / "products.config.json"

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_DECIMAL_RE = re.compile(r"^-?\d+(\.\d+)?$")
_INT_BITS = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}
_ISO_639_1 = re.compile(r"^[a-z]{2}$")

DINOSAUR_FILMS = {
    "Jurassic Park",
    "The Lost World: Jurassic Park",
    "Jurassic Park III",
    "Jurassic World",
    "Jurassic World: Fallen Kingdom",
    "Jurassic World Dominion",
    "The Land Before Time",
    "The Good Dinosaur",
    "Dinosaur",
    "We're Back! A Dinosaur's Story",
    "Walking with Dinosaurs",
    "The Lost World",
}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"{path.name}:{number} is blank"
        row = json.loads(line)
        assert isinstance(row, dict), f"{path.name}:{number} is not a JSON object"
        rows.append(row)
    return rows


def cell_problem(cql_type: CqlType, value: Any) -> str | None:
    """Why ``value`` is not the JSON form of ``cql_type`` (docs/change-event.md), or None if it is."""
    t = cql_type.base
    if value is None:
        return None  # a null cell is allowed for any type
    if t.name in TEXT_TYPES:
        return None if isinstance(value, str) else "expected a string"
    if t.name in INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        bits = _INT_BITS.get(t.name)
        if bits is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            return f"{value} does not fit a {t.name}"
        return None
    if t.name in FLOAT_TYPES:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok or value in ("NaN", "Infinity", "-Infinity") else "expected a number"
    if t.name == "decimal":
        if not isinstance(value, str) or not _DECIMAL_RE.match(value):
            return "expected an exact decimal string such as '7.25'"
        try:
            Decimal(value)
        except InvalidOperation:
            return "not a decimal"
        return None
    if t.name == "boolean":
        return None if isinstance(value, bool) else "expected true or false"
    if t.name == "date":
        if not isinstance(value, str) or not _DATE_RE.match(value):
            return "expected 'YYYY-MM-DD'"
        try:
            date.fromisoformat(value)
        except ValueError:
            return "not a calendar date"
        return None
    if t.name == "timestamp":
        if not isinstance(value, str) or not _TIMESTAMP_RE.match(value):
            return "expected ISO 8601 UTC with milliseconds and Z"
        try:
            parse_timestamp(value)
        except ValueError:
            return "not a valid time"
        return None
    if t.name in ("list", "set"):
        if not isinstance(value, list):
            return "expected an array"
        if t.name == "set" and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            return "a set holds each element once"
        for element in value:
            problem = cell_problem(t.params[0], element)
            if problem:
                return f"element {element!r}: {problem}"
        return None
    return f"the sample data does not use {t}"  # keeps this checker honest if a column type is added


def _row_problems(row: dict[str, Any], config: PipelineConfig) -> list[str]:
    types = config.column_types
    problems = [f"unknown column {name!r}" for name in row if name not in types]
    for name, cql_type in types.items():
        if name not in row:
            problems.append(f"missing column {name!r}")
            continue
        problem = cell_problem(cql_type, row[name])
        if problem:
            problems.append(f"{name}={row[name]!r}: {problem}")
    for name in (*config.primary_key, config.embedding_field):
        if not row.get(name) and row.get(name) != 0:
            problems.append(f"{name!r} must not be empty")
    return problems


def _insert_event(row: dict[str, Any], config: PipelineConfig, position: int) -> dict[str, Any]:
    return {
        "v": 1,
        "source": "keyspaces",
        "keyspace": config.keyspace,
        "table": config.table,
        "op": "INSERT",
        "key": {name: row[name] for name in config.primary_key},
        "new": row,
        "old": None,
        "seq": str(position),
        "shard": "backfill",
        "ts": "2026-03-01T09:30:00.000Z",
        "origin": "BACKFILL",
    }


# ---- the movie table -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def movies() -> list[dict[str, Any]]:
    return _read_jsonl(MOVIES)


def test_every_movie_matches_the_default_table(movies):
    config = default_config()
    problems = {row.get("title", f"row {i}"): _row_problems(row, config) for i, row in enumerate(movies)}
    assert {title: p for title, p in problems.items() if p} == {}


def test_movies_are_many_unique_and_multilingual(movies):
    titles = [row["title"] for row in movies]
    assert len(movies) >= 120
    assert len(set(titles)) == len(titles), sorted({t for t in titles if titles.count(t) > 1})
    languages = {row["original_lang"] for row in movies}
    assert all(_ISO_639_1.match(lang) for lang in languages), languages
    assert len(languages) >= 8


def test_movie_figures_are_in_range(movies):
    for row in movies:
        assert Decimal("0") <= Decimal(row["vote_average"]) <= Decimal("10"), row["title"]
        assert re.match(r"^\d{1,2}\.\d{1,2}$", row["vote_average"]), row["title"]
        assert Decimal(row["popularity"]) > 0, row["title"]
        assert row["vote_count"] >= 0, row["title"]
        assert date(1895, 1, 1) <= date.fromisoformat(row["rel_date"]) <= date.today(), row["title"]


def test_overviews_are_short_prose_that_rarely_name_the_film(movies):
    naming = []
    for row in movies:
        overview = row["overview"]
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", overview.strip()) if s]
        assert 1 <= len(sentences) <= 3, row["title"]
        assert overview.strip() == overview and len(overview) <= 400, row["title"]
        if re.search(rf"\b{re.escape(row['title'].lower())}\b", overview.lower()):
            naming.append(row["title"])
    assert len(naming) <= len(movies) // 20, naming


def test_every_movie_makes_a_valid_change_event_with_a_round_trip_key(movies):
    config = default_config()
    for position, row in enumerate(movies):
        event = parse_event(json.dumps(_insert_event(row, config, position)))
        key = vector_key(event.key, config.key_columns)
        assert parse_vector_key(key, config.key_columns) == {"title": row["title"]}


def test_the_dinosaur_cluster_is_complete(movies):
    titles = {row["title"] for row in movies}
    assert DINOSAUR_FILMS.issubset(titles), sorted(DINOSAUR_FILMS - titles)


def test_a_local_model_search_for_dinosaurs_finds_the_dinosaur_films_first(movies):
    # The wheel ships the tokenizer under tokenizers/, which load() only finds as a cache dir.
    model = wordllama.WordLlama.load(
        config="l2_supercat", dim=256, cache_dir=Path(wordllama.__file__).parent, disable_download=True
    )
    overviews = model.embed([row["overview"] for row in movies], norm=True)
    query = model.embed(["dinosaurs"], norm=True)[0]
    ranked = [movies[i]["title"] for i in np.argsort(-(overviews @ query))]
    assert set(ranked[:8]) <= DINOSAUR_FILMS, ranked[:8]


# ---- the products example --------------------------------------------------------------------
@pytest.fixture(scope="module")
def products_config() -> PipelineConfig:
    return PipelineConfig.from_file(PRODUCTS_CONFIG)


def test_products_config_has_a_composite_key_and_the_local_model(products_config):
    assert products_config.partition_key == ("shop",)
    assert products_config.clustering_key == ("sku", "listed_on")
    assert products_config.embedding_field == "description"
    assert (products_config.embedding.provider, products_config.embedding.dimensions) == ("local", 256)
    types = {name: str(t) for name, t in products_config.column_types.items()}
    assert {types["tags"], types["price"], types["updated_at"], types["in_stock"]} == {
        "set<text>",
        "decimal",
        "timestamp",
        "boolean",
    }


def test_every_product_matches_its_config(products_config):
    rows = _read_jsonl(PRODUCTS)
    assert len(rows) >= 30
    problems = {i: _row_problems(row, products_config) for i, row in enumerate(rows, start=1)}
    assert {line: p for line, p in problems.items() if p} == {}
    keys = [tuple(row[name] for name in products_config.primary_key) for row in rows]
    assert len(set(keys)) == len(keys)


def test_every_product_makes_a_valid_change_event_with_a_round_trip_key(products_config):
    for position, row in enumerate(_read_jsonl(PRODUCTS)):
        event = parse_event(json.dumps(_insert_event(row, products_config, position)))
        key = vector_key(event.key, products_config.key_columns)
        assert parse_vector_key(key, products_config.key_columns) == event.key


# ---- the checker itself -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("type_text", "value"),
    [
        ("int", 1.5),
        ("int", True),
        ("int", 2**31),
        ("decimal", 7.25),
        ("decimal", "7,25"),
        ("date", "1993-02-30"),
        ("date", "11/06/1993"),
        ("timestamp", "2026-03-01T09:30:00Z"),
        ("boolean", "true"),
        ("set<text>", ["a", "a"]),
        ("set<text>", "a"),
        ("text", 3),
    ],
)
def test_the_checker_rejects_values_of_the_wrong_form(type_text, value):
    assert cell_problem(parse_cql_type(type_text), value) is not None


@pytest.mark.parametrize(
    ("type_text", "value"),
    [
        ("int", -5),
        ("decimal", "42.310"),
        ("date", "1993-06-11"),
        ("timestamp", "2026-03-01T09:30:00.000Z"),
        ("boolean", False),
        ("set<text>", ["a", "b"]),
        ("text", None),
    ],
)
def test_the_checker_accepts_values_of_the_right_form(type_text, value):
    assert cell_problem(parse_cql_type(type_text), value) is None
