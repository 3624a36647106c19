"""The index equals the table after any interleaving: the model-based test for a PostgreSQL source.

The same stepped pipeline as the Keyspaces test (``freshvec.testing.stepped``), reading a real PostgreSQL's
replication slot, driven by a hypothesis state machine through transactions on two connections: several
statements per transaction (upserts, deletes, TRUNCATE with writes before and after it), transactions left
open while others commit (so a re-sync's snapshot can see a later commit and not an earlier one), commits in
either order, rollbacks; and, racing them, lost and re-delivered records, forwarder crashes, a PutRecords call
landing after its forwarder lost its lease, the index damaged behind the pipeline's back, backfills, redrives
and repairs.

The reference model is PostgreSQL's documented behaviour and nothing else: a transaction's statements take
effect together at its commit, in the order they were made; TRUNCATE empties the table at that point of its
transaction; a rolled-back transaction leaves nothing. Invariants (``freshvec.testing.stepped_machine``):
whenever the pipeline has caught up, every row the index damage did not touch holds exactly the vectors the
model's rows call for; after one ``reconcile --repair`` every row does, and a second ``reconcile`` finds nothing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.local.moto_server import MotoServer
from freshvec.local.pgserver import LocalPostgres, PostgresNotAvailable
from freshvec.testing.stepped import SteppedStack
from freshvec.testing.stepped_machine import BODIES, CHUNK_BOUND, Expected, SteppedMachine, expected_vectors
from freshvec.testing.stepped_sources import PostgresSource

pytestmark = pytest.mark.slow

IDS = (1, 2, 3)
_EXAMPLE = itertools.count()


def pipeline_config(name: str, server: LocalPostgres, database: str) -> PipelineConfig:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    for column in ("keyspace", "table", "columns", "partition_key", "clustering_key"):
        raw.pop(column)
    raw |= {
        "stack_name": name,
        "embedding_field": "body",
        "metadata_fields": ["id", "votes"],
        "vector_store": {"index_name": "docs", "distance_metric": "cosine", "bucket_name": f"{name}-vectors"},
        "stream": {"mode": "PROVISIONED", "shard_count": 2},
        "chunking": {"strategy": "recursive", "max_chars": CHUNK_BOUND, "overlap_chars": 0},
        "source": {
            "kind": "postgres",
            "postgres": {
                "table": "docs",
                "columns": {"id": "bigint", "body": "text", "votes": "integer"},
                "primary_key": ["id"],
                "slot": f"slot_{name.replace('-', '_')}",
                "publication": f"pub_{name.replace('-', '_')}",
                "connection": {
                    "host": server.host,
                    "port": server.port,
                    "database": database,
                    "user": server.user,
                    "password": server.password,
                    "sslmode": "disable",  # loopback only
                },
            },
        },
    }
    return PipelineConfig.from_dict(raw)


# ---- the reference model: committed transactions, applied in commit order -----------------------------------
Statement = tuple[Any, ...]  # ("upsert", id, body, votes) | ("delete", id) | ("truncate",)


def apply(rows: dict[int, dict[str, Any]], statements: list[Statement]) -> None:
    for statement in statements:
        if statement[0] == "upsert":
            _, row_id, body, votes = statement
            rows[row_id] = {"id": row_id, "body": body, "votes": votes}
        elif statement[0] == "delete":
            rows.pop(statement[1], None)
        else:
            rows.clear()


def expected_index(rows: dict[int, dict[str, Any]]) -> Expected:
    expected: Expected = {}
    for row_id, row in rows.items():
        metadata: dict[str, Any] = {"id": row_id}
        if row["votes"] is not None:
            metadata["votes"] = row["votes"]
        expected |= expected_vectors(f"[{row_id}]", row["body"], metadata)
    return expected


def _sql(statement: Statement) -> tuple[str, dict[str, Any]]:
    if statement[0] == "upsert":
        _, row_id, body, votes = statement
        return (
            "INSERT INTO docs (id, body, votes) VALUES (:i, :b, :v) "
            "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, votes = EXCLUDED.votes",
            {"i": row_id, "b": body, "v": votes},
        )
    if statement[0] == "delete":
        return "DELETE FROM docs WHERE id = :i", {"i": statement[1]}
    return "TRUNCATE docs", {}


upserts_with_text = st.tuples(st.just("upsert"), st.sampled_from(IDS), st.sampled_from(BODIES), st.sampled_from([2, 3]))
writes = st.one_of(
    st.tuples(
        st.just("upsert"), st.sampled_from(IDS), st.sampled_from([*BODIES, None, ""]), st.sampled_from([None, 1, 5])
    ),
    upserts_with_text,
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
)
statements = st.one_of(writes, st.just(("truncate",)))
slots = st.integers(0, 1)


class PostgresExactnessMachine(SteppedMachine):
    server: MotoServer
    postgres: LocalPostgres

    @initialize()
    def start(self) -> None:
        name = f"pgmodel-{next(_EXAMPLE)}"
        self.database = name.replace("-", "_")
        admin = _admin(self.postgres, "postgres")
        admin.run(f"CREATE DATABASE {self.database}")
        admin.close()
        config = pipeline_config(name, self.postgres, self.database)
        self.source = PostgresSource(config)
        self.stack = SteppedStack(self.server, config, self.workdir, source=self.source)
        self.connections = [self.source.connection(), self.source.connection()]
        self.open: list[list[Statement] | None] = [None, None]
        self.rows: dict[int, dict[str, Any]] = {}
        self.damaged = set()

    def expected_index(self) -> Expected:
        return expected_index(self.rows)

    def may_read_the_table(self) -> bool:
        """A TRUNCATE not yet committed locks the table: a read would wait for its commit."""
        return not any(held and any(s[0] == "truncate" for s in held) for held in self.open)

    def finish_writes(self) -> None:
        for slot in (0, 1):
            if self.open[slot] is not None:
                self.commit(slot)

    def close(self) -> None:
        try:
            super().close()
        finally:
            _drop(self.postgres, self.database)

    # -- transactions --
    def _blocked(self, slot: int | None, statement: Statement) -> bool:
        """Whether ``statement`` would wait for a lock another open transaction holds (the test is one thread:
        it never issues such a statement)."""
        for other in (0, 1):
            held = self.open[other]
            if other == slot or not held:
                continue
            if any(s[0] == "truncate" for s in held) or statement[0] == "truncate":
                return True
            if statement[1] in {s[1] for s in held}:
                return True
        return False

    @rule(slot=slots)
    def begin(self, slot) -> None:
        if self.open[slot] is None:
            self.connections[slot].run("BEGIN")
            self.connections[slot].run("SELECT txid_current()")  # the xid now: it orders against snapshots
            self.open[slot] = []

    @rule(slot=slots, statement=statements)
    def execute(self, slot, statement) -> None:
        """A statement in the slot's open transaction, or on its own (autocommit) when none is open."""
        if self._blocked(slot, statement):
            return
        sql, params = _sql(statement)
        self.connections[slot].run(sql, **params)
        if self.open[slot] is None:
            apply(self.rows, [statement])
        else:
            self.open[slot].append(statement)

    @rule(slot=slots, first=upserts_with_text, data=st.data())
    def truncate_between_writes(self, slot, first, data) -> None:
        """``BEGIN; writes; TRUNCATE; writes; COMMIT`` in one transaction (the slot's open one, if any; the other
        writer's, whose locks the TRUNCATE would wait for, commits first): only the writes after it survive. The
        writes after it leave the first row alone, so that row's fate is the TRUNCATE's."""
        before = data.draw(st.lists(writes, max_size=2), label="before")
        after = data.draw(st.lists(writes.filter(lambda w: w[1] != first[1]), max_size=2), label="after")
        self.commit(1 - slot)
        self.begin(slot)
        for statement in (first, *before, ("truncate",), *after):
            self.execute(slot, statement)
        self.commit(slot)

    @rule(slot=slots, first=upserts_with_text)
    def truncate_after_writes(self, slot, first) -> None:
        """A write, then a TRUNCATE, in a transaction left open: the other rules commit it later (or roll it back),
        after whatever the pipeline and the other writer did meanwhile."""
        self.commit(1 - slot)
        self.begin(slot)
        for statement in (first, ("truncate",)):
            self.execute(slot, statement)

    @rule(slot=slots)
    def commit(self, slot) -> None:
        if self.open[slot] is not None:
            self.connections[slot].run("COMMIT")
            apply(self.rows, self.open[slot])
            self.open[slot] = None

    @rule(slot=slots)
    def rollback(self, slot) -> None:
        if self.open[slot] is not None:
            self.connections[slot].run("ROLLBACK")
            self.open[slot] = None


PostgresExactnessMachine.TestCase.settings = settings(
    max_examples=5,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _admin(server: LocalPostgres, database: str) -> Any:
    return pg8000.native.Connection(
        server.user, host=server.host, port=server.port, password=server.password, database=database
    )


def _drop(server: LocalPostgres, database: str) -> None:
    admin = _admin(server, "postgres")
    try:
        for (slot,) in admin.run("SELECT slot_name FROM pg_replication_slots WHERE database = :d", d=database):
            admin.run("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = :s", s=slot)
            admin.run("SELECT pg_drop_replication_slot(:s)", s=slot)
        admin.run(f"DROP DATABASE {database} WITH (FORCE)")
    finally:
        admin.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[LocalPostgres]:
    try:
        server = LocalPostgres(wal_level="logical")
    except PostgresNotAvailable as exc:
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


def test_the_index_equals_the_table_after_any_interleaving_of_transactions(
    moto_server: MotoServer, postgres: LocalPostgres, tmp_path: Path
) -> None:
    PostgresExactnessMachine.server = moto_server
    PostgresExactnessMachine.postgres = postgres
    PostgresExactnessMachine.workdir = tmp_path
    PostgresExactnessMachine.TestCase().runTest()
