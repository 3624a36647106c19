"""`freshvec load` and `freshvec backfill` against a real PostgreSQL (TLS verified): batched upserts, bad rows,
deletes; a backfill that makes the slot first, reads one snapshot and waits for transactions open at its start."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from freshvec import versions
from freshvec.cli import postgres as cli_pg
from freshvec.cli.load import TableSchema, load_rows
from freshvec.cli.send import ChangeStreamSender
from freshvec.datafiles import read_records
from freshvec.sources.postgres.pgoutput import parse_lsn
from freshvec.sources.postgres.session import ensure_slot
from tests.postgres.conftest import KINESIS_STREAM

ARTICLES = {"id": "bigint", "body": "text", "section": "text", "published": "date", "tags": "text[]", "n": "integer"}


def rows_file(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def load(pg: Any, config: Any, path: Path, **options: Any) -> Any:
    schema = TableSchema.from_config(config)
    conn = cli_pg.connect_source(config, None)
    writer = cli_pg.PostgresRowWriter(conn, config, schema, batch_rows=options.pop("batch_rows", 500))
    try:
        return load_rows(read_records(path, config.columns), schema, writer, **options)
    finally:
        writer.shutdown()


def article(i: int, **over: Any) -> dict[str, Any]:
    row = {"id": i, "body": f"Article {i}.", "section": "news", "published": "2026-03-01", "tags": ["a"], "n": i}
    return row | over


def test_load_upserts_in_batches_and_reports_only_the_bad_rows(pg, tmp_path) -> None:
    pg.create_table(ARTICLES)
    config = pg.config(columns=ARTICLES)
    good = [article(i) for i in range(1, 8)]
    bad = article(99, body="nul \u0000 inside")  # a text cell to the file check; PostgreSQL text holds no NUL
    report = load(pg, config, rows_file(tmp_path, [*good[:3], bad, *good[3:]]), batch_rows=3)
    assert report.written == 7
    assert report.skipped == []
    assert [e.line for e in report.failed] == [4]
    assert "PostgreSQL refused the rows" in report.failed[0].reason
    assert "0x00" in report.failed[0].reason
    assert pg.run("SELECT id, body, tags, published::text FROM docs ORDER BY id")[0] == [
        1,
        "Article 1.",
        ["a"],
        "2026-03-01",
    ]
    assert pg.run("SELECT count(*) FROM docs")[0][0] == 7

    # Loading again changes rows in place (ON CONFLICT DO UPDATE); the other rows stay.
    report = load(pg, config, rows_file(tmp_path, [article(2, body="Rewritten.", tags=["b", "c"])]))
    assert report.written == 1
    assert pg.run("SELECT body, tags FROM docs WHERE id = 2") == [["Rewritten.", ["b", "c"]]]
    assert pg.run("SELECT count(*) FROM docs")[0][0] == 7

    report = load(pg, config, rows_file(tmp_path, [article(2), article(3)]), delete=True)
    assert report.written == 2
    assert sorted(r[0] for r in pg.run("SELECT id FROM docs")) == [1, 4, 5, 6, 7]


def test_the_connection_is_tls_verified(pg) -> None:
    pg.create_table(ARTICLES)
    other_ca = pg.config(columns=ARTICLES, connection={"ca_bundle": str(pg.cluster.wrong_ca.ca_pem)})
    with pytest.raises(Exception, match="certificate"):
        cli_pg.connect_source(other_ca, None)


def test_the_password_comes_from_secrets_manager(pg, moto, monkeypatch) -> None:
    monkeypatch.delenv(cli_pg.PASSWORD_ENV, raising=False)
    secrets = moto.client("secretsmanager")
    arn = secrets.create_secret(Name="freshvec-pg", SecretString=json.dumps({"password": pg.server.password}))["ARN"]
    config = pg.config(columns=ARTICLES, connection={"password": None, "password_secret_arn": arn})
    assert cli_pg.password(config, moto.client) == pg.server.password
    plain = secrets.create_secret(Name="freshvec-pg-plain", SecretString="just-the-password")["ARN"]
    config = pg.config(columns=ARTICLES, connection={"password": None, "password_secret_arn": plain})
    assert cli_pg.password(config, moto.client) == "just-the-password"


def test_backfill_creates_the_slot_and_sends_every_row_with_one_version(pg, pipeline, tmp_path) -> None:
    pg.create_table(ARTICLES)
    config = pg.config(columns=ARTICLES)
    pg.run(
        "INSERT INTO docs (id, body, section, published, tags, n) SELECT i, 'Article ' || i || '.', 'news', "
        "'2026-03-01', '{x}', i FROM generate_series(1, 1205) AS i"
    )
    p = pipeline(config)
    assert pg.run("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'freshvec'")[0][0] == 0
    before = parse_lsn(pg.run("SELECT pg_current_wal_lsn()::text")[0][0])
    conn = cli_pg.connect_source(config, None)
    try:
        sent, version = cli_pg.backfill(conn, config, ChangeStreamSender.for_kinesis(p.kinesis, KINESIS_STREAM))
    finally:
        conn.close()
    assert pg.run("SELECT plugin FROM pg_replication_slots WHERE slot_name = 'freshvec'") == [["pgoutput"]]
    assert sent == 1_205
    assert isinstance(versions.parse(version), versions.PgSnapshot)  # the read's snapshot, no LSN and no wait
    assert before > 0
    events = p.records()
    assert len(events) == 1_205
    assert {e["origin"] for e in events} == {"BACKFILL"}
    assert {e["version"] for e in events} == {version}
    assert {e["source"] for e in events} == {"postgres"}
    assert sorted(e["key"]["id"] for e in events) == list(range(1, 1_206))
    first = next(e for e in events if e["key"]["id"] == 1)
    assert first["new"] == {"id": 1, "body": "Article 1.", "section": "news", "published": "2026-03-01",
                            "tags": ["x"], "n": 1}  # fmt: skip

    # A change after the backfill comes through the slot with a newer version, so it wins at the sink.
    pg.run("UPDATE docs SET body = 'Later.' WHERE id = 1")
    forwarder = p.forwarder()
    forwarder.run_once()
    live = [e for e in p.records() if e["origin"] == "USER"]
    assert [e["new"]["body"] for e in live] == ["Later."]
    assert versions.verdict(versions.parse(live[0]["version"]), versions.parse(version)) is versions.Verdict.APPLY


def test_backfill_never_waits_and_a_transaction_open_while_it_reads_wins_through_the_slot(pg, pipeline) -> None:
    """The snapshot does not see a transaction open when it was taken (its xid is in xip); the backfill does not
    wait for it, and that transaction's change, arriving through the slot, is newer than the snapshot."""
    pg.create_table(ARTICLES)
    config = pg.config(columns=ARTICLES)
    p = pipeline(config)
    pg.run("INSERT INTO docs (id, body) VALUES (1, 'Committed before the backfill.')")
    setup = cli_pg.connect_source(config, None)
    ensure_slot(setup, "freshvec", database=pg.name)
    setup.close()
    other = pg8000.native.Connection(
        "postgres", host="127.0.0.1", port=pg.server.port, password=pg.server.password, database=pg.name
    )
    other.run("BEGIN")
    other.run("INSERT INTO docs (id, body) VALUES (42, 'Written while the backfill reads.')")
    conn = cli_pg.connect_source(config, None)
    try:
        started = time.monotonic()
        sent, version = cli_pg.backfill(conn, config, ChangeStreamSender.for_kinesis(p.kinesis, KINESIS_STREAM))
        assert time.monotonic() - started < 5  # no waiting for the open transaction
        other.run("COMMIT")
    finally:
        conn.close()
        other.close()
    assert sent == 1 and [e["key"]["id"] for e in p.records()] == [1]
    snapshot = versions.parse(version)
    assert isinstance(snapshot, versions.PgSnapshot)
    p.forwarder().run_once()
    live = [e for e in p.records() if e["origin"] == "USER"]
    assert [e["key"]["id"] for e in live] == [42]
    # not included in the snapshot: the live change wins whatever order the commit records have
    assert versions.verdict(versions.parse(live[0]["version"]), snapshot) is versions.Verdict.APPLY


# ---- preflight ---------------------------------------------------------------------------------
def test_preflight_passes_a_ready_source_and_changes_nothing(pg) -> None:
    from freshvec.cli import preflight

    pg.create_table(ARTICLES)
    check = preflight.check_postgres(None, pg.config(columns=ARTICLES))
    assert check.status == preflight.OK, check
    assert "wal_level logical" in check.detail
    assert "the forwarder sets it at start" in check.detail
    identity = pg.run("SELECT relreplident FROM pg_class WHERE relname = 'docs'")[0][0]
    assert identity == "d"  # preflight did not set FULL itself
    assert pg.run("SELECT count(*) FROM pg_replication_slots")[0][0] == 0  # nor create the slot


def test_preflight_names_what_is_missing(pg) -> None:
    from freshvec.cli import preflight

    pg.run(f"CREATE TABLE docs ({', '.join(f'{n} {t}' for n, t in ARTICLES.items())}, PRIMARY KEY (id))")
    check = preflight.check_postgres(None, pg.config(columns=ARTICLES))
    assert check.status == preflight.FAIL
    assert "publication 'freshvec' does not exist" in check.detail

    pg.run("CREATE PUBLICATION freshvec FOR TABLE docs")
    pg.run("ALTER TABLE docs REPLICA IDENTITY FULL")
    pg.run("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
    pg.run("GRANT SELECT ON docs TO reader")
    as_reader = pg.config(columns=ARTICLES, connection={"user": "reader", "password": "reader-pw"})
    check = preflight.check_postgres(None, as_reader)
    assert check.status == preflight.FAIL
    assert "may not use replication slots" in check.detail
    pg.run("ALTER ROLE reader REPLICATION")
    assert preflight.check_postgres(None, as_reader).status == preflight.OK
    pg.run("DROP OWNED BY reader")
    pg.run("DROP ROLE reader")


def test_preflight_skips_a_database_it_cannot_reach(pg) -> None:
    from freshvec.cli import preflight
    from freshvec.local.pgserver import free_port

    config = pg.config(columns=ARTICLES, connection={"port": free_port(), "connect_timeout_s": 2})
    check = preflight.check_postgres(None, config)
    assert check.status == preflight.SKIP
    assert "run preflight where it is reachable" in check.detail


def test_backfill_names_a_row_no_vector_can_hold_and_sends_the_rest(pg, pipeline) -> None:
    columns = {"id": "text", "body": "text"}
    pg.create_table(columns)
    config = pg.config(columns=columns)
    pg.run("INSERT INTO docs (id, body) VALUES (:a, 'a long key'), ('short', 'a short key')", a="x" * 1100)
    p = pipeline(config)
    unindexable: list[str] = []
    conn = cli_pg.connect_source(config, None)
    try:
        sender = ChangeStreamSender.for_kinesis(p.kinesis, KINESIS_STREAM)
        sent, _version = cli_pg.backfill(conn, config, sender, on_unindexable=unindexable.append)
    finally:
        conn.close()
    assert sent == 1 and [e["key"] for e in p.records()] == [{"id": "short"}]
    (line,) = unindexable
    assert "vector key is 1104 characters" in line and "x" * 100 not in line
