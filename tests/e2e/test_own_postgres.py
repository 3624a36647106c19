"""A new user's own PostgreSQL table to a correct local query: their DDL (SERIAL key, NOT NULL columns) and
INSERTs through psql, then `freshvec init`, `freshvec local up --attach`, `freshvec --local query`, an update
that leaves the text alone (no embedding), a text update, a delete; the table is left as it was found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from freshvec.config import PipelineConfig
from freshvec.local.pgserver import PostgresNotAvailable
from freshvec.testing.newcomer import BOOKS_SQL, MORE_BOOKS, Newcomer, names, wait_for


@pytest.fixture
def newcomer(tmp_path: Path) -> Iterator[Newcomer]:
    try:
        user = Newcomer(tmp_path)
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    user.start_server()
    try:
        yield user
    finally:
        user.stop()


def test_own_table_to_a_correct_local_query(newcomer: Newcomer) -> None:
    newcomer.psql(file=BOOKS_SQL)  # CREATE TABLE books (id SERIAL PRIMARY KEY, name VARCHAR(255) NOT NULL, ...)

    init = newcomer.init()
    assert init.returncode == 0, init.stderr
    assert "embedding field: description, the longest text" in init.stdout
    config = PipelineConfig.from_file(newcomer.config_path)
    assert config.embedding_field == "description"
    assert config.postgres.columns["id"] == "serial"

    newcomer.local_up()
    started = "".join(newcomer.up_output)
    for line in ("wal_level: logical: ok", "primary key: (id): ok", "replica identity: DEFAULT: setting FULL",
                 "publication: freshvec does not exist: creating it", "replication slot freshvec_local: created",
                 "indexed the 3 row(s) already in the table", "psql on your server: psql -h 127.0.0.1"):  # fmt: skip
        assert line in started, started
    assert newcomer.server.password not in started  # the password is never printed

    assert names(newcomer.query("desert planet sandworms and spice"))[0] == "Dune"
    newcomer.psql(MORE_BOOKS)  # typed while the pipeline runs
    hits = wait_for(lambda: names(newcomer.query("old soldier fights alien wars in space")), timeout=60)
    wait_for(lambda: names(newcomer.query("old soldier fights alien wars in space"))[0] == "Old Man's War", timeout=30)
    assert "Neuromancer" in names(newcomer.query("hacker breaks into cyberspace", k=5)) or hits

    # An update that leaves the embedded text alone changes the metadata and costs no embedding.
    embedded = newcomer.status()["extra"]["embeddings_computed"]
    newcomer.psql("UPDATE books SET publication_year = 2006 WHERE name = 'Old Man''s War'")
    wait_for(
        lambda: newcomer.query("old soldier fights alien wars in space")[0]["metadata"]["publication_year"] == 2006
    )
    after = newcomer.status()["extra"]
    assert after["embeddings_computed"] == embedded and after["embeddings_skipped"] >= 1

    # A text update is searchable by its new words; a delete leaves the index.
    newcomer.psql("UPDATE books SET description = 'A retired soldier tends bees on a quiet farm.' WHERE name = 'Dune'")
    wait_for(lambda: names(newcomer.query("retired soldier keeps bees on a farm"))[0] == "Dune")
    newcomer.psql("DELETE FROM books WHERE name = 'Pride and Prejudice'")
    wait_for(lambda: "Pride and Prejudice" not in names(newcomer.query("Regency England marriage proposals", k=10)))
    assert newcomer.status()["extra"]["rows"] == 4

    output = newcomer.stop_local_up()
    assert "local stack stopped" in output
    # Local mode leaves the user's table and publication, and drops only its own slot.
    assert newcomer.psql("SELECT count(*) FROM books").strip() == "4"
    assert newcomer.psql("SELECT count(*) FROM pg_replication_slots").strip() == "0"
    assert newcomer.psql("SELECT column_default FROM information_schema.columns WHERE table_name = 'books' "
                         "AND column_name = 'id'").startswith("nextval(")  # fmt: skip
