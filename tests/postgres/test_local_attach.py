"""Local mode attached to the user's own PostgreSQL: the table used as it is, each check one line, only the
replica identity, the publication membership and local mode's own slot changed, the slot dropped at stop; and
the throwaway server's psql line, whose password file lets psql in without printing the password."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from freshvec.config import PipelineConfig
from freshvec.local.pg_attach import Attachment
from freshvec.local.pgserver import LocalPostgres
from freshvec.local.postgres import LocalPostgresTable
from freshvec.local.resources import local_config
from freshvec.sources.postgres.errors import PostgresError

BOOKS = {"id": "serial", "name": "varchar(255)", "description": "text"}


def books(pg: Any, publication: str | None = None) -> None:
    pg.run("CREATE TABLE books (id SERIAL PRIMARY KEY, name VARCHAR(255) NOT NULL, description TEXT NOT NULL)")
    pg.run("INSERT INTO books (name, description) VALUES ('Dune', 'Sand and spice.')")
    if publication:
        pg.run(f"CREATE PUBLICATION {publication}")  # exists, without the table


def books_config(pg: Any, columns: dict[str, str] = BOOKS, **postgres: Any) -> Any:
    raw = pg.raw_config(columns=columns, table="books", **postgres)
    raw["embedding_field"], raw["metadata_fields"] = "description", ["name"]
    return local_config(PipelineConfig.from_dict(raw))


def attachment(pg: Any, config: Any) -> Attachment:
    return Attachment(config.postgres.connection, pg.server.password)


def test_attach_checks_each_thing_once_and_changes_only_what_it_needs(pg) -> None:
    books(pg, publication="freshvec")
    config = books_config(pg)
    said: list[str] = []
    table = LocalPostgresTable(config, attach=attachment(pg, config), say=said.append).start()
    try:
        assert said == [
            "wal_level: logical: ok",
            "primary key: (id): ok",
            'replica identity: DEFAULT: setting FULL, so updates carry the whole row (ALTER TABLE "public"."books" '
            "REPLICA IDENTITY FULL)",
            'publication: freshvec does not include public.books: adding it (ALTER PUBLICATION "freshvec" ADD TABLE '
            '"public"."books")',
            "replication slot freshvec_local: created (dropped when local mode stops)",
        ]
        assert table.config.postgres.slot == "freshvec_local"
        assert pg.run("SELECT relreplident FROM pg_class WHERE relname = 'books'") == [["f"]]
        assert pg.run("SELECT tablename FROM pg_publication_tables WHERE pubname = 'freshvec'") == [["books"]]
        assert pg.run("SELECT slot_name FROM pg_replication_slots WHERE database = :d", d=pg.name) == [
            ["freshvec_local"]
        ]
        assert table.upsert([{"id": 10, "name": "Emma", "description": "Matchmaking."}])  # cast as integer
        assert table.count() == 2
    finally:
        table.stop()
    assert pg.run("SELECT slot_name FROM pg_replication_slots WHERE database = :d", d=pg.name) == []
    assert pg.run("SELECT count(*) FROM books") == [[2]]  # the table stays as it was, rows and all


def test_a_second_attach_finds_everything_in_place(pg) -> None:
    books(pg)
    pg.run("ALTER TABLE books REPLICA IDENTITY FULL")
    pg.run("CREATE PUBLICATION freshvec FOR TABLE books")
    pg.run("SELECT pg_create_logical_replication_slot('freshvec_local', 'pgoutput')")  # a crashed run's leftover
    config = books_config(pg)
    said: list[str] = []
    table = LocalPostgresTable(config, attach=attachment(pg, config), say=said.append).start()
    table.stop()
    assert "replica identity: FULL: ok" in said
    assert "publication: freshvec includes public.books: ok" in said
    assert "replication slot freshvec_local: left by an earlier local run: dropping it" in said


@pytest.mark.parametrize(
    ("columns", "primary_key", "message"),
    [
        ({**BOOKS, "author": "text"}, ["id"], "column 'author' is in the config but public.books has no such column"),
        ({**BOOKS, "id": "bigint"}, ["id"], "column 'id' of public.books is integer, but the config says bigint"),
        (BOOKS, ["name"], "the primary key of public.books is (id), but the config says (name)"),
    ],
)
def test_attach_refuses_a_table_unlike_the_config(pg, columns, primary_key, message) -> None:
    books(pg)
    config = books_config(pg, columns, primary_key=primary_key)
    with pytest.raises(PostgresError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        LocalPostgresTable(config, attach=attachment(pg, config)).start()
    # ... and says what to run (no password in it: init reads it as psql does)
    run = f"`freshvec init --pg-url postgresql://postgres@localhost:{pg.server.port}/{pg.name} --table public.books`"
    assert run in str(refused.value)
    assert pg.run("SELECT count(*) FROM pg_replication_slots WHERE database = :d", d=pg.name) == [[0]]


def test_attach_names_the_wal_level_fix(pg) -> None:
    server = LocalPostgres(wal_level="replica").start()
    try:
        server.psql("CREATE TABLE books (id int PRIMARY KEY, description text)")
        raw = pg.raw_config(columns={"id": "int", "description": "text"}, table="books")
        raw["embedding_field"], raw["metadata_fields"] = "description", []
        raw["source"]["postgres"]["connection"] = {"host": "127.0.0.1", "port": server.port, "user": "postgres",
                                                   "database": "postgres", "sslmode": "disable"}  # fmt: skip
        config = local_config(PipelineConfig.from_dict(raw))
        with pytest.raises(PostgresError, match=r"wal_level is replica: .*ALTER SYSTEM SET wal_level = logical"):
            LocalPostgresTable(config, attach=Attachment(config.postgres.connection, server.password)).start()
    finally:
        server.stop()


def test_the_throwaway_servers_psql_line_connects_without_showing_the_password(pg) -> None:
    config = books_config(pg)
    table = LocalPostgresTable(config).start()
    try:
        line = table.psql_command()
        assert table.password not in line
        assert line.startswith("PGPASSFILE=") and f"-p {table.config.postgres.connection.port} -U postgres" in line
        assert table.passfile is not None and oct(table.passfile.stat().st_mode & 0o777) == "0o600"
        env_part, command = line.split(" ", 1)
        psql = str(table.server.bin_dir / "psql") if table.server else "psql"
        done = subprocess.run(
            [psql, *command.split()[1:], "-Atc", "SELECT count(*) FROM books"],
            env={"PGPASSFILE": env_part.split("=", 1)[1], "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "0"
    finally:
        table.stop()
    assert table.passfile is None


def test_attach_with_a_role_that_may_not_replicate_says_what_to_grant(pg) -> None:
    books(pg)
    pg.run("ALTER TABLE books REPLICA IDENTITY FULL")
    pg.run("CREATE PUBLICATION freshvec FOR TABLE books")
    pg.run("CREATE ROLE reader LOGIN PASSWORD 'pw-reader'")
    pg.run("GRANT SELECT ON books TO reader")
    config = books_config(pg, connection={"user": "reader"})
    with pytest.raises(PostgresError, match=r"could not create replication slot freshvec_local .*ALTER ROLE"):
        LocalPostgresTable(config, attach=Attachment(config.postgres.connection, "pw-reader")).start()


def test_a_second_attach_while_the_first_runs_is_refused_in_one_line(pg) -> None:
    books(pg)
    config = books_config(pg)
    first = LocalPostgresTable(config, attach=attachment(pg, config)).start()
    try:
        with pytest.raises(PostgresError, match="another `freshvec local up --attach` is using replication slot"):
            LocalPostgresTable(config, attach=attachment(pg, config)).start()
        # The first one's slot is still there.
        assert pg.run("SELECT slot_name FROM pg_replication_slots WHERE database = :d", d=pg.name) == [
            ["freshvec_local"]
        ]
    finally:
        first.stop()
    again = LocalPostgresTable(config, attach=attachment(pg, config)).start()  # the lock went with the first
    again.stop()
