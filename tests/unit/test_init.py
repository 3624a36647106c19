"""`freshvec init`'s choices (embedded text, metadata) and its Keyspaces side against a system_schema stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freshvec.cli import keyspaces
from freshvec.cli.errors import EXIT_FAILED, OperatorError
from freshvec.cli.init_proposal import ShapeColumn, TableShape, index_name, propose
from freshvec.command import app
from freshvec.config import PipelineConfig
from freshvec.testing.fakes.cassandra import FakeSchemaSession

COLUMNS = (
    ShapeColumn("id", "integer", is_text=False, is_key=True),
    ShapeColumn("name", "varchar(255)", is_text=True, bounded=True),
    ShapeColumn("description", "text", is_text=True),
    ShapeColumn("notes", "text", is_text=True),
    ShapeColumn("cover", "bytea", is_text=False, filterable=False),
    ShapeColumn("year", "integer", is_text=False),
)


def shape(lengths: dict[str, float], sampled: int) -> TableShape:
    return TableShape("postgres", "public.books", COLUMNS, lengths, sampled)


def test_the_longest_text_by_the_sample_is_embedded_and_long_texts_stay_out_of_metadata() -> None:
    chosen = propose(shape({"name": 9, "description": 120, "notes": 900}, 10))
    assert chosen.embedding_field == "notes"
    # description (120 characters) is short enough to filter on; cover is binary
    assert chosen.metadata_fields == ("id", "name", "description", "year")
    chosen = propose(shape({"name": 9, "description": 700, "notes": 20}, 10))
    assert chosen.embedding_field == "description"
    assert "notes" in chosen.metadata_fields
    assert any("700 characters on average over 10 sampled row(s)" in line for line in chosen.reasons)
    too_long = propose(shape({"name": 9, "description": 700, "notes": 400}, 10))
    assert "notes" not in too_long.metadata_fields
    assert any("notes (400 characters on average: too long to filter on)" in line for line in too_long.reasons)


def test_an_empty_table_embeds_the_first_unbounded_text() -> None:
    chosen = propose(shape({}, 0))
    assert chosen.embedding_field == "description"
    assert any("no rows to measure" in line for line in chosen.reasons)


def test_given_fields_are_checked() -> None:
    assert propose(shape({}, 0), "notes", ["year"]).metadata_fields == ("year",)
    with pytest.raises(OperatorError, match="'year' is integer, not text"):
        propose(shape({}, 0), "year")
    with pytest.raises(OperatorError, match="primary key"):
        propose(TableShape("postgres", "s.t", (ShapeColumn("k", "text", is_text=True, is_key=True),)), "k")
    with pytest.raises(OperatorError, match="no text column outside the primary key"):
        propose(TableShape("postgres", "s.t", (ShapeColumn("k", "text", is_text=True, is_key=True),)))
    with pytest.raises(OperatorError, match=r"--metadata nope: not columns of public\.books"):
        propose(shape({}, 0), None, ["nope"])


def test_index_names_follow_the_s3_vectors_rule() -> None:
    assert index_name("Book_Reviews") == "book-reviews"
    assert index_name("t") == "t00"


class _Cluster:
    def shutdown(self) -> None:
        pass


def test_init_reads_a_keyspaces_table_from_system_schema(monkeypatch, tmp_path: Path) -> None:
    session = FakeSchemaSession()
    session.add_table(
        "media",
        "reviews",
        partition_key={"movie": "text"},
        clustering_key={"reviewed_at": "timestamp", "reviewer": "text"},
        regular={"body": "text", "stars": "int", "tags": "set<text>", "home": "frozen<address>"},
        cdc_view_type="NEW_AND_OLD_IMAGES",
        rows=[{"movie": "Dune", "reviewer": "ann", "body": "Sand, spice and a long walk.", "stars": 4}],
    )
    monkeypatch.setattr(keyspaces, "connect_table", lambda _region, _ca: (_Cluster(), session))
    out = tmp_path / "reviews.json"
    result = CliRunner().invoke(
        app, ["--region", "eu-west-1", "init", "--keyspace", "media", "--table", "reviews", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["partition_key"] == ["movie"]
    assert written["clustering_key"] == ["reviewed_at", "reviewer"]
    assert written["columns"] == {
        "movie": "text",
        "reviewed_at": "timestamp",
        "reviewer": "text",
        "body": "text",
        "stars": "int",
        "tags": "set<text>",
    }  # the user-defined type is left out, with its reason
    assert written["embedding_field"] == "body"
    assert "home" in result.output and "type not supported: left out" in result.output
    assert "CDC: on (NEW_AND_OLD_IMAGES): ok" in result.output
    assert PipelineConfig.from_file(out).clustering_key == ("reviewed_at", "reviewer")


def test_init_says_how_to_turn_keyspaces_cdc_on(monkeypatch, tmp_path: Path) -> None:
    session = FakeSchemaSession()
    session.add_table("media", "movies", partition_key={"title": "text"}, regular={"overview": "text"})
    monkeypatch.setattr(keyspaces, "connect_table", lambda _region, _ca: (_Cluster(), session))
    args = ["--region", "eu-west-1", "init", "--keyspace", "media", "--table", "movies", "-o", str(tmp_path / "m.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "CDC: disabled; the pipeline needs it on: ALTER TABLE media.movies WITH cdc = true" in result.output
    missing = CliRunner().invoke(app, [*args[:-4], "--table", "films", "-o", str(tmp_path / "f.json")])
    assert missing.exit_code == EXIT_FAILED
    assert "table media.films does not exist" in missing.output and "movies" in missing.output
