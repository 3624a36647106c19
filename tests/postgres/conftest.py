"""A real PostgreSQL for the PostgreSQL source's tests: one server per session (TLS on, wal_level logical),
one fresh database per test, everything stopped and removed at the end."""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from freshvec.adapters.dynamodb import create_checkpoint_table
from freshvec.adapters.postgres import connect
from freshvec.adapters.wiring import postgres_connector, postgres_forwarder
from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.forwarder import Forwarder
from freshvec.local.pgserver import LocalPostgres, PostgresNotAvailable, TlsFiles
from freshvec.sources.postgres.session import prepare_session
from freshvec.testing.tls import TestCa, make_ca

KINESIS_STREAM = "freshvec-changes"
CHECKPOINT_TABLE = "freshvec-checkpoints"

# Every supported type, one column each (the embedded text is "body").
COLUMNS = {
    "id": "bigint",
    "body": "text",
    "title": "varchar(200)",
    "code": "char(3)",
    "small": "smallint",
    "count": "integer",
    "price": "numeric(12,4)",
    "ratio": "real",
    "score": "double precision",
    "active": "boolean",
    "day": "date",
    "at": "timestamp",
    "at_tz": "timestamptz",
    "uid": "uuid",
    "doc": "jsonb",
    "tags": "text[]",
    "nums": "integer[]",
    "raw": "bytea",
}
_database_numbers = itertools.count(1)


@dataclass
class PgCluster:
    server: LocalPostgres
    ca: TestCa
    wrong_ca: TestCa


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    folder = Path(tempfile.mkdtemp(prefix="freshvec-pg-tls-"))
    ca = make_ca(folder / "ca", hosts=("localhost",))  # not 127.0.0.1: a test connects there to see it refused
    wrong_ca = make_ca(folder / "other", name="some other CA")
    try:
        server = LocalPostgres(tls=TlsFiles(ca.cert_pem, ca.key_pem))
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    server.start()
    try:
        yield PgCluster(server, ca, wrong_ca)
    finally:
        server.stop()


@dataclass
class PgDatabase:
    """One database of the session's server, with the superuser's connection and helpers to build configs."""

    cluster: PgCluster
    name: str
    sql: Any  # pg8000.native.Connection as superuser

    @property
    def server(self) -> LocalPostgres:
        return self.cluster.server

    def run(self, statement: str, **params: Any) -> Any:
        return self.sql.run(statement, **params)

    def create_table(self, columns: dict[str, str] = COLUMNS, *, table: str = "docs", publication: str = "freshvec"):
        body = ", ".join(f'"{name}" {type_text}' for name, type_text in columns.items())
        self.run(f"CREATE TABLE {table} ({body}, PRIMARY KEY (id))")
        self.run(f"CREATE PUBLICATION {publication} FOR TABLE {table}")

    def raw_config(self, *, columns: dict[str, str] = COLUMNS, **postgres: Any) -> dict[str, Any]:
        raw = json.loads(json.dumps(DEFAULT_CONFIG))
        for name in ("keyspace", "table", "columns", "partition_key", "clustering_key"):
            raw.pop(name)
        raw["embedding_field"] = "body"
        raw["metadata_fields"] = [name for name in columns if name != "body"]
        raw["forwarder"] = {"poll_interval_ms": 50, "lease_duration_s": 60}
        connection = {
            "host": "localhost",
            "port": self.server.port,
            "database": self.name,
            "user": "postgres",
            "password": self.server.password,
            "sslmode": "verify-full",
            "ca_bundle": str(self.cluster.ca.ca_pem),
            **postgres.pop("connection", {}),
        }
        raw["source"] = {
            "kind": "postgres",
            "postgres": {
                "table": "docs",
                "columns": columns,
                "primary_key": ["id"],
                "connection": connection,
                **postgres,
            },
        }
        return raw

    def config(self, **options: Any) -> PipelineConfig:
        return PipelineConfig.from_dict(self.raw_config(**options))

    def connect(self, config: PipelineConfig) -> Any:
        conn = connect(config.postgres.connection, config.postgres.connection.password)
        prepare_session(conn)
        return conn


@pytest.fixture
def pg(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    name = f"t{next(_database_numbers)}"
    admin = _superuser(pg_cluster.server, "postgres")
    admin.run(f"CREATE DATABASE {name}")
    sql = _superuser(pg_cluster.server, name)
    try:
        yield PgDatabase(pg_cluster, name, sql)
    finally:
        sql.close()
        for (slot,) in admin.run("SELECT slot_name FROM pg_replication_slots WHERE database = :d", d=name):
            admin.run("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = :s", s=slot)
            admin.run("SELECT pg_drop_replication_slot(:s)", s=slot)
        admin.run(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def _superuser(server: LocalPostgres, database: str) -> Any:
    return pg8000.native.Connection(
        server.user, host=server.host, port=server.port, password=server.password, database=database
    )


@dataclass
class Pipeline:
    """The PostgreSQL forwarder's surroundings: moto Kinesis and DynamoDB, and a way to read Kinesis back."""

    config: PipelineConfig
    kinesis: Any
    dynamodb: Any

    def forwarder(self, owner: str = "forwarder-1", **options: Any) -> Forwarder:
        connection = self.config.postgres.connection
        return postgres_forwarder(
            self.config,
            postgres_connector(self.config, connection.password),
            self.kinesis,
            self.dynamodb,
            stream_name=KINESIS_STREAM,
            checkpoint_table=CHECKPOINT_TABLE,
            owner_id=owner,
            **options,
        )

    def records(self) -> list[dict[str, Any]]:
        """Every record in the Kinesis stream, shard by shard, in each shard's order, as JSON."""
        found = []
        for shard in self.kinesis.list_shards(StreamName=KINESIS_STREAM)["Shards"]:
            iterator = self.kinesis.get_shard_iterator(
                StreamName=KINESIS_STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                found.extend(json.loads(record["Data"]) for record in page["Records"])
                iterator = page.get("NextShardIterator") if page["Records"] else None
        return found


@pytest.fixture
def pipeline(moto: Any, pg: PgDatabase) -> Iterator[Any]:
    def make(config: PipelineConfig | None = None) -> Pipeline:
        config = config or pg.config()
        kinesis = moto.client("kinesis")
        kinesis.create_stream(StreamName=KINESIS_STREAM, ShardCount=2)
        kinesis.get_waiter("stream_exists").wait(StreamName=KINESIS_STREAM, WaiterConfig={"Delay": 0.1})
        dynamodb = moto.client("dynamodb")
        create_checkpoint_table(dynamodb, CHECKPOINT_TABLE)
        return Pipeline(config, kinesis, dynamodb)

    yield make
