"""Bad settings and bad tables fail with an error that says what to fix, against a real server."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from freshvec.adapters.postgres import connect
from freshvec.adapters.wiring import postgres_connector
from freshvec.config import ConfigError, PipelineConfig
from freshvec.local.pgserver import LocalPostgres
from freshvec.sources.postgres.catalog import describe_table
from freshvec.sources.postgres.errors import PostgresError
from freshvec.sources.postgres.reader import PostgresSlotSource, SlotBusyError
from freshvec.sources.postgres.session import check_table, primary_key_columns

SMALL = {"id": "bigint", "body": "text", "n": "integer"}


def source(config: PipelineConfig) -> PostgresSlotSource:
    return PostgresSlotSource.for_config(postgres_connector(config, config.postgres.connection.password), config)


def start(config: PipelineConfig) -> PostgresSlotSource:
    reader = source(config)
    reader.current_stream(leases=None)  # the checks run before the first read
    return reader


def test_wrong_password_is_refused_naming_the_user(pg):
    pg.create_table(SMALL)
    config = pg.config(columns=SMALL, connection={"password": "not-the-password"})
    with pytest.raises(PostgresError, match=r"postgres@localhost.*password authentication failed"):
        start(config)


def test_a_certificate_from_another_ca_is_refused(pg):
    pg.create_table(SMALL)
    config = pg.config(columns=SMALL, connection={"ca_bundle": str(pg.cluster.wrong_ca.ca_pem)})
    with pytest.raises(PostgresError, match=r"TLS certificate was refused: .*certificate"):
        start(config)


def test_a_certificate_for_another_host_name_is_refused_and_verify_ca_shows_why(pg):
    pg.create_table(SMALL)
    with pytest.raises(PostgresError, match=r"TLS certificate was refused: .*(IP address mismatch|hostname)"):
        start(pg.config(columns=SMALL, connection={"host": "127.0.0.1"}))
    start(pg.config(columns=SMALL, connection={"host": "127.0.0.1", "sslmode": "verify-ca"}))  # chain is fine


def test_the_system_trust_store_does_not_know_a_private_ca(pg):
    pg.create_table(SMALL)
    with pytest.raises(PostgresError, match="TLS certificate was refused"):
        start(pg.config(columns=SMALL, connection={"ca_bundle": None}))


def test_a_missing_publication_names_the_statement_that_creates_it(pg):
    pg.run("CREATE TABLE docs (id bigint PRIMARY KEY, body text, n integer)")
    with pytest.raises(PostgresError, match=r"publication 'freshvec' does not exist.*CREATE PUBLICATION"):
        start(pg.config(columns=SMALL))
    pg.run("CREATE TABLE other (id int PRIMARY KEY)")
    pg.run("CREATE PUBLICATION freshvec FOR TABLE other")
    with pytest.raises(PostgresError, match=r"does not include public.docs.*ALTER PUBLICATION"):
        start(pg.config(columns=SMALL))


def test_a_table_without_a_primary_key_is_refused(pg):
    pg.run("CREATE TABLE docs (id bigint, body text, n integer)")
    pg.run("CREATE PUBLICATION freshvec FOR TABLE docs")
    with pytest.raises(PostgresError, match="has no primary key"):
        start(pg.config(columns=SMALL))


def test_a_config_that_does_not_match_the_table_is_refused(pg):
    pg.create_table(SMALL)
    with pytest.raises(PostgresError, match=r"column 'n' of public.docs is integer, but the config says text"):
        start(pg.config(columns={**SMALL, "n": "text"}))
    with pytest.raises(PostgresError, match=r"column 'missing' is configured"):
        start(pg.config(columns={**SMALL, "missing": "text"}))


def test_replica_identity_is_not_changed_when_the_config_says_not_to(pg):
    pg.create_table(SMALL)
    with pytest.raises(PostgresError, match="REPLICA IDENTITY FULL"):
        start(pg.config(columns=SMALL, set_replica_identity_full=False))
    assert pg.run("SELECT relreplident FROM pg_class WHERE relname = 'docs'")[0][0] == "d"


def test_a_slot_held_by_another_reader_is_reported_as_busy(pg):
    pg.create_table(SMALL)
    config = pg.config(columns=SMALL)
    reader = start(config)  # creates the slot
    server = pg.server
    env = {**os.environ, "PGPASSWORD": server.password, "PGSSLMODE": "require"}
    holder = subprocess.Popen(  # a fixed binary: another logical replication client on the slot
        [str(server.bin_dir / "pg_recvlogical"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres",
         "-d", pg.name, "--slot", "freshvec", "--start", "-o", "proto_version=1", "-o", "publication_names=freshvec",
         "-f", os.devnull],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not pg.run("SELECT active FROM pg_replication_slots")[0][0]:
            assert time.monotonic() < deadline, "pg_recvlogical did not take the slot"
            time.sleep(0.05)
        cursor = reader.open(reader.stream_id, "slot", None, fresh=True)
        with pytest.raises(SlotBusyError, match="another process is reading the slot"):
            reader.read(cursor)
    finally:
        holder.terminate()
        holder.wait(10)


def test_wal_level_replica_is_refused_with_the_rds_setting_to_change():
    with LocalPostgres(wal_level="replica") as server:
        raw = {
            "embedding_field": "body",
            "source": {
                "kind": "postgres",
                "postgres": {
                    "table": "docs",
                    "columns": SMALL,
                    "primary_key": ["id"],
                    "connection": {"host": "127.0.0.1", "port": server.port, "user": "postgres",
                                   "password": server.password, "sslmode": "disable"},
                },
            },
        }  # fmt: skip
        config = PipelineConfig.from_dict(raw)
        conn = connect(config.postgres.connection, server.password)
        conn.run("CREATE TABLE docs (id bigint PRIMARY KEY, body text, n integer)")
        conn.close()
        with pytest.raises(PostgresError, match=r"wal_level is 'replica'.*rds.logical_replication = 1"):
            start(config)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"primary_key": []}, "source.postgres.primary_key"),
        ({"primary_key": ["nope"]}, "source.postgres.primary_key"),
        ({"slot": "Bad-Slot"}, "source.postgres.slot"),
        ({"connection": {"sslmode": "sometimes"}}, "source.postgres.connection.sslmode"),
        ({"connection": {"password_secret_arn": "secret"}}, "source.postgres.connection.password_secret_arn"),
        ({"network": {"vpc_id": "vpc-0123456789abcdef0"}}, "source.postgres.network"),
        ({"columns": {"id": "bigint", "body": "integer"}}, "embedding_field"),
    ],
)
def test_bad_source_settings_name_the_field(change, field):
    raw = {
        "embedding_field": "body",
        "source": {
            "kind": "postgres",
            "postgres": {"table": "docs", "columns": SMALL, "primary_key": ["id"], **change},
        },
    }
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_dict(raw)
    assert caught.value.field == field


def test_top_level_table_settings_conflicting_with_a_postgres_source_are_refused():
    raw = {
        "keyspace": "media",
        "embedding_field": "body",
        "source": {"kind": "postgres", "postgres": {"table": "docs", "columns": SMALL, "primary_key": ["id"]}},
    }
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_dict(raw)
    assert caught.value.field == "keyspace"
    config = PipelineConfig.from_dict({k: v for k, v in raw.items() if k != "keyspace"})
    assert PipelineConfig.from_json(config.to_json()) == config  # the Lambda's copy round-trips
    assert (config.keyspace, config.table, config.partition_key) == ("public", "docs", ("id",))


def test_the_primary_key_is_read_in_key_order_not_column_order(pg):
    """One catalog query serves the source check and ``describe_table`` (init): both see (b, a) for a key declared
    in that order over columns declared a, b."""
    pg.run("CREATE TABLE pair (a int, b text, body text, PRIMARY KEY (b, a))")
    pg.run("CREATE TABLE keyless (a int)")
    oid = pg.run("SELECT 'public.pair'::regclass::oid")[0][0]
    keyless = pg.run("SELECT 'public.keyless'::regclass::oid")[0][0]
    assert primary_key_columns(pg.sql, oid) == ["b", "a"]
    assert primary_key_columns(pg.sql, keyless) == []
    assert describe_table(pg.sql, "public", "pair").primary_key == ("b", "a")
    pg.run("CREATE PUBLICATION freshvec FOR TABLE pair")
    check = {"schema": "public", "table": "pair", "columns": {"a": "integer", "b": "text"}, "publication": None}
    check_table(pg.sql, **check, primary_key=("b", "a"))
    with pytest.raises(
        PostgresError, match=r"the primary key of public.pair is \(b, a\), but the config says \(a, b\)"
    ):
        check_table(pg.sql, **check, primary_key=("a", "b"))
