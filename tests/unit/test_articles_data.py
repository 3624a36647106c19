"""The sample articles for a PostgreSQL source: well-formed, consistent with their config and the README."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

from freshvec.config import PipelineConfig
from freshvec.sources.postgres import types as pgtypes

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
ROWS = [json.loads(line) for line in (EXAMPLES / "articles.jsonl").read_text(encoding="utf-8").splitlines()]


def test_the_config_is_a_postgres_source_with_the_local_model() -> None:
    config = PipelineConfig.from_file(EXAMPLES / "articles.config.json")
    assert config.source.kind == "postgres"
    assert (config.keyspace, config.table, config.primary_key) == ("public", "articles", ("id",))
    assert config.embedding_field == "body"
    assert config.embedding.provider == "local"


def test_thirty_articles_five_per_section_with_every_column() -> None:
    config = PipelineConfig.from_file(EXAMPLES / "articles.config.json")
    assert len(ROWS) == 30
    assert sorted(row["id"] for row in ROWS) == list(range(1, 31))
    assert set(Counter(row["section"] for row in ROWS).values()) == {5}
    for row in ROWS:
        assert set(row) == set(config.postgres.columns)
        assert row["word_count"] == len(row["body"].split())
        assert date.fromisoformat(row["published"]).year == 2026
        assert row["tags"] and all(isinstance(tag, str) for tag in row["tags"])
        for column, type_text in config.postgres.columns.items():
            pgtypes.to_text(row[column], type_text)  # each value binds as its PostgreSQL type
