"""A user's own PostgreSQL table with rows the index cannot hold as they are, typed in psql while
`freshvec local up --attach` runs: each is parked with its reason, nothing older is served for it, and every row
written after it still arrives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from freshvec.local.pgserver import PostgresNotAvailable
from freshvec.testing.newcomer import Newcomer, wait_for

NOTES_SQL = """
CREATE TABLE notes (author text NOT NULL, slug text NOT NULL, body text, rating real, PRIMARY KEY (author, slug));
INSERT INTO notes VALUES ('ann', 'cranes', 'Cranes migrate across Europe in autumn in long grey lines.', 4.5);
"""


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newcomer]:
    try:
        user = Newcomer(tmp_path_factory.mktemp("own-pg-edges"))
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    user.start_server()
    try:
        user.psql(NOTES_SQL)
        init = user.freshvec("init", "--pg-url", user.url, "--table", "notes", "--output", str(user.config_path))
        assert init.returncode == 0, init.stderr
        user.local_up()
        yield user
    finally:
        user.stop()


def authors(newcomer: Newcomer, text: str) -> list[str]:
    return [str(hit["metadata"].get("author")) for hit in newcomer.query(text, k=10)]


def parked(newcomer: Newcomer) -> int:
    return int(newcomer.status()["dlq_visible"])


def test_a_key_no_vector_can_hold_is_parked_and_later_rows_still_arrive(newcomer: Newcomer) -> None:
    newcomer.psql(f"INSERT INTO notes VALUES ('long', '{'s' * 1100}', 'Whales sing in the cold northern sea.', 1)")
    newcomer.psql("INSERT INTO notes VALUES ('bob', 'herons', 'Herons stand still in the shallow river.', 2)")
    wait_for(lambda: "bob" in authors(newcomer, "herons standing in a river"), timeout=90)
    wait_for(lambda: parked(newcomer) >= 1, timeout=30)
    assert "S3 Vectors allows at most 1024); sending it for the DLQ" in "".join(newcomer.up_output)
    assert "long" not in authors(newcomer, "whales singing in the sea")
    assert newcomer.status()["extra"]["forwarder_crashes"] == 0
