"""`freshvec init` against a real PostgreSQL: a table made with the user's own DDL becomes a validated config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from freshvec.cli.errors import EXIT_FAILED
from freshvec.command import app
from freshvec.config import PipelineConfig

BOOKS_DDL = (
    "CREATE TABLE books (id SERIAL PRIMARY KEY, name VARCHAR(255) NOT NULL, description TEXT NOT NULL, "
    "author VARCHAR(255), publication_year INT, cover BYTEA)"
)
DUNE = "A desert planet, a noble family betrayed, and a young heir who leads the Fremen against the empire."


def url(pg: Any) -> str:
    return f"postgresql://postgres:{pg.server.password}@127.0.0.1:{pg.server.port}/{pg.name}"


def init(*args: str) -> Any:
    return CliRunner().invoke(app, ["init", *args], catch_exceptions=False)


def test_init_writes_a_validated_config_from_the_catalog(pg, tmp_path: Path) -> None:
    pg.run(BOOKS_DDL)
    pg.run("INSERT INTO books (name, description, author, publication_year) VALUES ('Dune', :d, 'Frank Herbert', 1965)",
           d=DUNE)  # fmt: skip
    out = tmp_path / "books.json"
    result = init("--pg-url", url(pg), "--table", "books", "--output", str(out))
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    pg_source = written["source"]["postgres"]
    assert pg_source["columns"] == {
        "id": "serial",
        "name": "character varying(255)",
        "description": "text",
        "author": "character varying(255)",
        "publication_year": "integer",
        "cover": "bytea",
    }
    assert pg_source["primary_key"] == ["id"]
    assert pg_source["connection"] == {
        "host": "127.0.0.1",
        "port": pg.server.port,
        "database": pg.name,
        "user": "postgres",
        "sslmode": "disable",
    }
    assert "password" not in json.dumps(written)  # never written to a file
    assert pg.server.password not in out.read_text()
    assert written["embedding_field"] == "description"
    assert written["metadata_fields"] == ["id", "name", "author", "publication_year"]  # bytea is not filterable
    config = PipelineConfig.from_file(out)  # what every other command reads
    assert config.postgres.table == "books" and config.embedding_field == "description"
    assert "description, the longest text" in result.output
    assert "replica identity: DEFAULT" in result.output
    assert "publication: none includes the table yet" in result.output
    assert "wal_level: logical: ok" in result.output
    assert "cover (bytea: not filterable)" in result.output


def test_init_names_the_publication_that_holds_the_table_and_an_identity_key(pg, tmp_path: Path) -> None:
    pg.run("CREATE TABLE notes (nid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text, body text)")
    pg.run("ALTER TABLE notes REPLICA IDENTITY FULL")
    pg.run("CREATE PUBLICATION notes_pub FOR TABLE notes")
    out = tmp_path / "notes.json"
    result = init("--pg-url", url(pg), "--table", "public.notes", "--output", str(out))
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())["source"]["postgres"]
    assert written["columns"]["nid"] == "bigserial"
    assert written["publication"] == "notes_pub"
    assert "replica identity: FULL: ok" in result.output
    assert "publication: notes_pub includes the table: ok" in result.output
    # No rows to measure: the first text column without a length limit.
    assert json.loads(out.read_text())["embedding_field"] == "title"
    assert "no rows to measure" in result.output


def test_init_follows_the_flags_and_updates_a_cdk_json_in_place(pg, tmp_path: Path) -> None:
    pg.run(BOOKS_DDL)
    target = tmp_path / "cdk.json"
    target.write_text(json.dumps({"app": "python app.py", "context": {"other": 1, "freshvec": {"old": True}}}))
    args = ["--pg-url", url(pg), "--table", "books", "--output", str(target), "--embedding-field", "description"]
    refused = init(*args, "--metadata", "author")
    assert refused.exit_code == EXIT_FAILED
    assert "already holds a freshvec config (not the sample); pass --yes" in refused.output
    assert json.loads(target.read_text())["context"]["freshvec"] == {"old": True}
    result = init(*args, "--metadata", "author,publication_year", "--yes")
    assert result.exit_code == 0, result.output
    whole = json.loads(target.read_text())
    assert whole["app"] == "python app.py" and whole["context"]["other"] == 1
    assert whole["context"]["freshvec"]["metadata_fields"] == ["author", "publication_year"]
    assert PipelineConfig.from_file(target).metadata_fields == ("author", "publication_year")


def test_init_explains_what_it_cannot_use(pg, tmp_path: Path) -> None:
    pg.run(BOOKS_DDL)
    pg.run("CREATE TABLE logs (line text)")
    out = str(tmp_path / "c.json")
    missing = init("--pg-url", url(pg), "--table", "bookz", "--output", out)
    assert missing.exit_code == EXIT_FAILED
    assert "table public.bookz does not exist" in missing.output and "books" in missing.output
    keyless = init("--pg-url", url(pg), "--table", "logs", "--output", out)
    assert keyless.exit_code == EXIT_FAILED and "has no primary key" in keyless.output
    not_text = init("--pg-url", url(pg), "--table", "books", "--embedding-field", "publication_year", "--output", out)
    assert not_text.exit_code == EXIT_FAILED and "publication_year' is integer, not text" in not_text.output
    wrong_password = init("--pg-url", url(pg).replace(pg.server.password, "nope"), "--table", "books", "--output", out)
    assert wrong_password.exit_code == EXIT_FAILED and "password authentication failed" in wrong_password.output
    assert not Path(out).exists()
    for result in (missing, keyless, not_text, wrong_password):
        assert "Traceback" not in result.output


def test_init_replaces_the_shipped_sample_config_without_asking(pg, tmp_path: Path) -> None:
    from freshvec.config import DEFAULT_CONFIG

    pg.run(BOOKS_DDL)
    target = tmp_path / "cdk.json"
    target.write_text(json.dumps({"app": "python app.py", "context": {"freshvec": DEFAULT_CONFIG}}))
    result = init("--pg-url", url(pg), "--table", "books", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert "replacing the sample movies config" in result.output
    assert PipelineConfig.from_file(target).postgres.table == "books"


def test_init_reads_the_password_file_psql_reads(pg, tmp_path: Path, monkeypatch) -> None:
    pg.run(BOOKS_DDL)
    for name in ("FRESHVEC_PG_PASSWORD", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    passfile = tmp_path / "pgpass"
    secret = pg.server.password.replace("\\", "\\\\").replace(":", "\\:")
    passfile.write_text(f"# mine\nelsewhere:5432:*:postgres:wrong\n127.0.0.1:{pg.server.port}:*:postgres:{secret}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    no_password = f"postgresql://postgres@127.0.0.1:{pg.server.port}/{pg.name}"

    result = init("--pg-url", no_password, "--table", "books", "--output", str(tmp_path / "books.json"))

    assert result.exit_code == 0, result.output
    passfile.chmod(0o644)  # as libpq does, a file others may read is not used
    refused = init("--pg-url", no_password, "--table", "books", "--output", str(tmp_path / "other.json"))
    assert refused.exit_code == EXIT_FAILED
    assert "the server asks for a password and none was found" in refused.output
    assert "PGPASSFILE or ~/.pgpass" in refused.output and "NoneType" not in refused.output
