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
transaction; a rolled-back transaction leaves nothing. Invariants: once the pipeline is quiet, with the index
undamaged, it holds exactly the vectors the model's rows call for; after one ``reconcile --repair`` it always
does, and a second ``reconcile`` finds nothing.
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
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.local.moto_server import MotoServer
from freshvec.local.pgserver import LocalPostgres, PostgresNotAvailable
from freshvec.testing.fakes.bedrock import fake_vector
from freshvec.testing.stepped import SteppedStack
from freshvec.testing.stepped_sources import PostgresSource
from tests.e2e.test_model_exactness import (
    BODIES,
    CHUNK_BOUND,
    IGNORED_METADATA,
    RECONCILE,
    expected_chunks,
    fingerprint,
)

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


def expected_index(rows: dict[int, dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    expected: dict[str, tuple[str, dict[str, Any]]] = {}
    for row_id, row in rows.items():
        chunks = expected_chunks(row["body"])
        for number, text in enumerate(chunks):
            metadata: dict[str, Any] = {"id": row_id, "body": text, "_chunk": number, "_fp": fingerprint(text)}
            if row["votes"] is not None:
                metadata["votes"] = row["votes"]
            if number == 0:
                metadata["_chunks"] = len(chunks)
            expected[f"[{row_id}]" if number == 0 else f"[{row_id}]#{number}"] = (text, metadata)
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


statements = st.one_of(
    st.tuples(
        st.just("upsert"), st.sampled_from(IDS), st.sampled_from([*BODIES, None, ""]), st.sampled_from([None, 1, 5])
    ),
    st.tuples(st.just("upsert"), st.sampled_from(IDS), st.sampled_from(BODIES), st.sampled_from([2, 3])),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.just(("truncate",)),
)
slots = st.integers(0, 1)


class PostgresExactnessMachine(RuleBasedStateMachine):
    server: MotoServer
    postgres: LocalPostgres
    workdir: Path

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
        self.lossy = False  # the index damaged: only a repair helps

    def teardown(self) -> None:
        if not hasattr(self, "stack"):
            return
        try:
            for slot in (0, 1):
                if self.open[slot] is not None:
                    self.commit(slot)
            self.check_converges()
        finally:
            self.stack.close()
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

    @rule(
        slot=slots,
        before=st.lists(statements.filter(lambda x: x[0] != "truncate"), min_size=1, max_size=3),
        after=st.lists(statements.filter(lambda x: x[0] != "truncate"), max_size=2),
    )
    def truncate_between_writes(self, slot, before, after) -> None:
        """``BEGIN; writes; TRUNCATE; writes; COMMIT`` in one transaction: only the writes after it survive."""
        if self.open[slot] is not None or any(self.open):
            return
        self.begin(slot)
        for statement in (*before, ("truncate",), *after):
            self.execute(slot, statement)
        self.commit(slot)

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

    # -- the pipeline --
    @rule()
    def forward(self) -> None:
        self.stack.forward()

    @rule(shard=st.integers(0, 1), limit=st.integers(1, 5))
    def deliver(self, shard, limit) -> None:
        self.stack.deliver(self.stack.shard_ids[shard], limit)

    @rule(
        fault=st.sampled_from(["lose", "redeliver", "crash", "hold_put", "land_puts"]),
        shard=st.integers(0, 1),
        count=st.integers(1, 4),
    )
    def fault(self, fault, shard, count) -> None:
        stack, shard_id = self.stack, self.stack.shard_ids[shard]
        if fault == "lose":
            stack.lose(shard_id, count)
        elif fault == "redeliver":
            stack.redeliver(shard_id, count)
        elif fault == "crash":
            stack.crash_forwarder()
        elif fault == "hold_put":
            stack.hold_next_put()
        else:
            stack.land_held_puts()

    @rule(kind=st.sampled_from(["swap", "tamper", "drop", "orphan", "future"]))
    def damage_index(self, kind) -> None:
        """Drift behind the pipeline's back, in the versions too (a swap carries the other row's ``_ver``)."""
        self.lossy |= self.stack.damage(kind)

    @rule(command=st.sampled_from(["backfill", "redrive", "reconcile"]))
    def operator(self, command) -> None:
        """A re-sync racing the transactions. A TRUNCATE not yet committed locks the table: a read would wait for
        its commit (the test is one thread, so it does not start one then)."""
        if any(held and any(s[0] == "truncate" for s in held) for held in self.open):
            return
        stack = self.stack
        if command == "backfill":
            state = self.workdir / f"{stack.config.stack_name}-backfill.json"
            code, output = stack.cli(
                "backfill", "--segments", "2", "--workers", "1", "--restart", "--state", str(state)
            )
            assert code == 0, output
        elif command == "redrive":
            code, output = stack.cli("redrive", "send")
            assert code == 0, output
        else:
            code, output = stack.cli(*RECONCILE, "--repair")
            assert code in (0, 1), output

    # -- the end --
    def settle(self) -> None:
        for _ in range(10):
            self.stack.quiesce()
            if not self.stack.parked_count():
                return
            code, output = self.stack.cli("redrive", "send")
            assert code == 0, output
            if output.startswith("0 parked"):  # what is left is in flight, not parked
                return
        raise AssertionError(f"parked changes keep coming back: {output}")

    def assert_index_equals_the_table(self, when: str) -> None:
        stack = self.stack
        want = expected_index(self.rows)
        have = stack.index()
        assert sorted(have) == sorted(want), f"{when}: keys differ: index {sorted(have)}, table {sorted(want)}"
        for key, (text, metadata) in want.items():
            vector, stored = have[key]
            assert {k: v for k, v in stored.items() if k not in IGNORED_METADATA} == metadata, f"{when}: {key}"
            assert vector == pytest.approx(fake_vector(text, 256), rel=1e-5), f"{when}: {key}"

    def check_converges(self) -> None:
        stack = self.stack
        stack.land_held_puts()
        self.settle()
        if not self.lossy:  # nothing was lost for good (no trim, no damage): the pipeline alone converged
            self.assert_index_equals_the_table("with nothing lost for good, before the final repair")
        code, output = stack.cli(*RECONCILE, "--repair")
        assert code in (0, 1), output
        self.settle()
        self.assert_index_equals_the_table("after one reconcile --repair")
        code, output = stack.cli(*RECONCILE)
        assert code == 0, f"reconcile still reports drift after the repair:\n{output}"


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
