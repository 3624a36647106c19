"""A user's own PostgreSQL table with rows the index cannot hold as they are, typed in psql while
`freshvec local up --attach` runs: each is parked with its reason, nothing older is served for it, and every row
written after it still arrives."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from freshvec.local.pgserver import PostgresNotAvailable
from freshvec.testing.newcomer import Newcomer, wait_for

LONG_SLUG = "k" * 1100
NOTES_SQL = f"""
CREATE TABLE notes (author text NOT NULL, slug text NOT NULL, body text, rating real, PRIMARY KEY (author, slug));
INSERT INTO notes VALUES ('ann', 'cranes', 'Cranes migrate across Europe in autumn in long grey lines.', 4.5);
INSERT INTO notes VALUES ('old', '{LONG_SLUG}', 'A row whose key no vector can hold, there before local up.', 1);
"""
HUGE_BODY = "repeat('Moose wade into cold lakes to eat water plants all summer long. ', 17000)"  # over 1 MB


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


def reconcile(newcomer: Newcomer, *args: str) -> tuple[int, dict]:
    done = newcomer.freshvec("--local", "reconcile", "--json", *args)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def test_rows_already_there_are_indexed_and_one_no_vector_can_hold_is_named(newcomer: Newcomer) -> None:
    started = "".join(newcomer.up_output)
    assert '["old", "kkkk' in started and "cannot be indexed: vector key is 1110 characters" in started
    assert "Traceback" not in started
    assert authors(newcomer, "cranes migrating over Europe")[0] == "ann"


def test_a_key_no_vector_can_hold_is_parked_and_later_rows_still_arrive(newcomer: Newcomer) -> None:
    newcomer.psql(f"INSERT INTO notes VALUES ('long', '{'s' * 1100}', 'Whales sing in the cold northern sea.', 1)")
    newcomer.psql("INSERT INTO notes VALUES ('bob', 'herons', 'Herons stand still in the shallow river.', 2)")
    wait_for(lambda: "bob" in authors(newcomer, "herons standing in a river"), timeout=90)
    wait_for(lambda: parked(newcomer) >= 1, timeout=30)
    assert "S3 Vectors allows at most 1024); sending it for the DLQ" in "".join(newcomer.up_output)
    assert "long" not in authors(newcomer, "whales singing in the sea")
    assert newcomer.status()["extra"]["forwarder_crashes"] == 0


def test_a_row_too_large_for_the_change_stream_is_parked_and_its_older_state_removed(newcomer: Newcomer) -> None:
    newcomer.psql("INSERT INTO notes VALUES ('big', 'moose', 'Moose wade into cold lakes in summer.', 3)")
    wait_for(lambda: "big" in authors(newcomer, "moose wading into lakes"), timeout=90)
    newcomer.psql(f"UPDATE notes SET body = {HUGE_BODY} WHERE author = 'big'")
    # The row's new state cannot travel in one Kinesis record: its old text must not stay searchable.
    wait_for(lambda: "big" not in authors(newcomer, "moose wading into lakes"), timeout=90)
    code, report = reconcile(newcomer)
    assert (code, report["drift"]) == (0, 0), report
    assert any("a Kinesis record holds at most 1048576" in line for line in report["examples"]["unindexable"])
    code, report = reconcile(newcomer, "--repair")  # a repair re-sends what it can and never crashes on the row
    assert code == 0, report
    newcomer.psql("UPDATE notes SET body = 'Moose wade into cold lakes again.' WHERE author = 'big'")
    wait_for(lambda: "big" in authors(newcomer, "moose wading into lakes"), timeout=90)


def test_load_writes_the_good_rows_of_a_batch_the_server_refuses_one_row_of(newcomer: Newcomer) -> None:
    rows = newcomer.workdir / "rows.jsonl"
    lines = [
        {"author": "load", "slug": "kestrels", "body": "Kestrels hover over the fields before they dive."},
        {"author": "load", "slug": "nul", "body": "PostgreSQL text cannot hold a NUL \u0000 character."},
        {"author": "load", "slug": "puffins", "body": "Puffins nest in burrows on the cliffs."},
    ]
    rows.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    done = newcomer.freshvec("--local", "load", str(rows))
    assert done.returncode == 1, done.stdout + done.stderr
    output = " ".join((done.stdout + done.stderr).split())
    assert "2 row(s) written" in output and "1 failed" in output, output
    assert "failed rows.jsonl:2:" in output and "failed rows.jsonl:1:" not in output, output
    written = newcomer.psql("SELECT slug FROM notes WHERE author = 'load' ORDER BY slug").split()
    assert written == ["kestrels", "puffins"]
