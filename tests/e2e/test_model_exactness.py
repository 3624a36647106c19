"""The index equals the table after any interleaving: a model-based test of the whole Keyspaces pipeline.

A hypothesis state machine drives the real forwarder, Kinesis (moto), the real sink, S3 Vectors (moto) and the
operator CLI (``backfill``, ``redrive send``, ``reconcile --repair`` against the control API), each stepped by
hand (``freshvec.testing.stepped.SteppedStack``), in random interleavings of: writes with arbitrary client
timestamps (skewed either way), column and row TTLs expiring, null writes, collection-only updates, delete and
re-insert, partition deletes, chunk growth and shrink, lost live records (parked, or trimmed before the
forwarder read them), re-deliveries, forwarder crashes and a PutRecords call that lands after its forwarder
lost its lease, the index damaged behind the pipeline's back (rows swapped whole, ``_ver`` included; a version
from the future; a changed value; a dropped vector; an orphan chunk), backfills, redrives and repairs racing
live writes and each other.

The reference model below is written from Cassandra's documented rules alone (last write wins per cell by
timestamp, ties to the deletion; a deletion at T shadows cells written at or before T; per-cell TTLs; INSERT
writes a row marker, UPDATE does not; collection elements are cells of their own) and knows nothing of
freshvec. The expected index is computed from it with the documented rules: vector keys are the JSON array of
the key values (``#n`` for chunk n), a text of paragraphs each between half the chunk bound and the bound is
one chunk per paragraph (one chunk when it fits the bound), the fingerprint is the documented hash of the model
settings and the chunk's text, and the metadata are the configured columns converted as docs/sink.md says.

Invariants (the pipeline and operator rules and the checks are ``freshvec.testing.stepped_machine``'s): whenever
the pipeline has caught up (re-syncs the sink parked as ambiguous read again by ``redrive send`` after the clock
bounds) and no live record was lost for good (trimmed), every row the index damage did not touch already holds
exactly the expected vectors; and after one ``reconcile --repair`` pass every row does (keys, chunks,
fingerprints, vectors and metadata), and a second ``reconcile`` finds nothing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from freshvec import constants as c
from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.local.moto_server import MotoServer
from freshvec.testing.stepped import SteppedStack
from freshvec.testing.stepped_machine import BODIES, CHUNK_BOUND, Expected, SteppedMachine, expected_vectors

pytestmark = pytest.mark.slow

US = 1_000_000
SHELVES = ("a", "b")
NUMBERS = (1, 2)
KEYS = [(shelf, n) for shelf in SHELVES for n in NUMBERS]
_EXAMPLE = itertools.count()


def pipeline_config(name: str) -> PipelineConfig:
    raw = {
        **DEFAULT_CONFIG,
        "keyspace": "shop",
        "table": "notes",
        "stack_name": name,
        "columns": {"shelf": "text", "n": "int", "body": "text", "votes": "int", "tags": "list<text>"},
        "partition_key": ["shelf"],
        "clustering_key": ["n"],
        "embedding_field": "body",
        "metadata_fields": ["shelf", "n", "votes", "tags"],
        "vector_store": {"index_name": "notes", "distance_metric": "cosine", "bucket_name": f"{name}-vectors"},
        "stream": {"mode": "PROVISIONED", "shard_count": 2},
        "chunking": {"strategy": "recursive", "max_chars": CHUNK_BOUND, "overlap_chars": 0},
    }
    return PipelineConfig.from_dict(raw)


# ---- the reference model of the table (Cassandra's documented rules; no freshvec code) ----------------------
class Cell:
    __slots__ = ("expires", "ts", "value")

    def __init__(self, value: Any, ts: int, expires: float | None) -> None:
        self.value, self.ts, self.expires = value, ts, expires

    def wins_over(self, other: Cell | None) -> bool:
        if other is None or self.ts != other.ts:
            return other is None or self.ts > other.ts
        if (self.value is None) != (other.value is None):
            return self.value is None
        return json.dumps(self.value) > json.dumps(other.value)

    def live(self, now: float, floor: int) -> bool:
        return self.value is not None and self.ts > floor and (self.expires is None or self.expires > now)


class ModelRow:
    def __init__(self) -> None:
        self.marker: Cell | None = None
        self.cells: dict[str, Cell] = {}
        self.tags: dict[int, Cell] = {}  # list elements by the order they arrived (the coordinator's timeuuid)
        self.tags_cleared = -(2**63)
        self.deleted = -(2**63)


class TableModel:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], ModelRow] = {}
        self.partition_deleted: dict[str, int] = {}
        self.arrivals = itertools.count()

    def _row(self, key: tuple[str, int]) -> ModelRow:
        return self.rows.setdefault(key, ModelRow())

    def write(self, key: tuple[str, int], ts: int, expires: float | None, cells: dict[str, Any], *, insert: bool):
        row = self._row(key)
        if insert:
            marker = Cell(True, ts, expires)
            if marker.wins_over(row.marker) or row.marker.ts == ts:
                row.marker = marker
        for column, value in cells.items():
            if column == "tags":
                row.tags_cleared = max(row.tags_cleared, ts - 1)
                for tag in value or []:
                    row.tags[next(self.arrivals)] = Cell(tag, ts, expires)
                continue
            cell = Cell(value, ts, expires)
            if cell.wins_over(row.cells.get(column)):
                row.cells[column] = cell

    def append_tag(self, key: tuple[str, int], ts: int, expires: float | None, tag: str) -> None:
        self._row(key).tags[next(self.arrivals)] = Cell(tag, ts, expires)

    def delete(self, key: tuple[str, int], ts: int) -> None:
        row = self._row(key)
        row.deleted = max(row.deleted, ts)

    def delete_partition(self, shelf: str, ts: int) -> None:
        self.partition_deleted[shelf] = max(self.partition_deleted.get(shelf, -(2**63)), ts)

    def get(self, key: tuple[str, int], now: float) -> dict[str, Any] | None:
        row = self.rows.get(key)
        if row is None:
            return None
        floor = max(row.deleted, self.partition_deleted.get(key[0], -(2**63)))
        values = {column: cell.value for column, cell in row.cells.items() if cell.live(now, floor)}
        tags = [cell.value for eid, cell in sorted(row.tags.items()) if cell.live(now, max(floor, row.tags_cleared))]
        if tags:
            values["tags"] = tags
        marker = row.marker is not None and row.marker.live(now, floor)
        if not marker and not values:
            return None
        return {"shelf": key[0], "n": key[1], **values}


# ---- the expected index, from the documented rules ------------------------------------------------------------
def expected_index(model: TableModel, now: float) -> Expected:
    expected: Expected = {}
    for key in model.rows:
        row = model.get(key, now)
        if row is None:
            continue
        metadata: dict[str, Any] = {"shelf": key[0], "n": key[1]}
        if row.get("votes") is not None:
            metadata["votes"] = row["votes"]
        if row.get("tags"):
            metadata["tags"] = row["tags"]
        row_key = json.dumps([key[0], key[1]], ensure_ascii=False, separators=(",", ":"))
        expected |= expected_vectors(row_key, row.get("body"), metadata)
    return expected


# ---- the state machine -----------------------------------------------------------------------------------------
keys = st.sampled_from(KEYS)
skews_us = st.sampled_from([-3 * US, -2_000, -1, 0, 0, 1, 2_000, 3 * US])
ttls = st.sampled_from([None, None, None, 1, 2, 4])
bodies = st.sampled_from([*BODIES, None, ""])
votes = st.sampled_from([None, 0, 1, 2, 3, 7])
tag_lists = st.sampled_from([None, [], ["x"], ["y", "z"]])
clients = st.integers(0, 1)


class Client:
    """A writer: its clock is the service's plus ``skew``; its timestamps never repeat (a driver's generator)."""

    def __init__(self, skew: int) -> None:
        self.skew = skew
        self.last = -(2**63)

    def stamp(self, service_now: float) -> int:
        self.last = max(int(service_now * US) + self.skew, self.last + 1)
        return self.last


class ExactnessMachine(SteppedMachine):
    server: MotoServer
    REDRIVE = ("redrive", "send", "--source", "on-failure")
    AMBIGUITY_WAIT_S = c.KEYSPACES_READER_CLOCK_BOUND_S + c.KEYSPACES_VISIBILITY_BOUND_S + 0.5

    @initialize(skews=st.tuples(skews_us, skews_us))
    def start(self, skews) -> None:
        self.stack = SteppedStack(self.server, pipeline_config(f"model-{next(_EXAMPLE)}"), self.workdir)
        self.model = TableModel()
        self.damaged = set()
        self.clients = [Client(skew) for skew in skews]  # two writers, each with its clock's own error

    def expected_index(self) -> Expected:
        return expected_index(self.model, self.stack.clock())

    def before_catching_up(self, *, final: bool) -> None:
        if final:
            self.stack.clock.advance(10)  # every TTL runs out while the pipeline is quiet: the purge, its records
        self.stack.table.expire_due()

    # -- the writers and the table --
    def _stamp(self, client: int) -> int:
        return self.clients[client].stamp(self.stack.clock())

    def _expires(self, ttl: int | None) -> float | None:
        return None if ttl is None else self.stack.clock() + ttl

    def _insert(self, key, cells, ttl, ts) -> None:
        self.stack.table.upsert([{"shelf": key[0], "n": key[1], **cells}], ttl_s=ttl, timestamp_us=ts)
        self.model.write(key, ts, self._expires(ttl), cells, insert=True)

    def _delete(self, key, ts, *, whole_partition=False) -> None:
        if whole_partition:
            self.stack.table.delete_partition({"shelf": key[0]}, timestamp_us=ts)
            self.model.delete_partition(key[0], ts)
        else:
            self.stack.table.delete([{"shelf": key[0], "n": key[1]}], timestamp_us=ts)
            self.model.delete(key, ts)

    @rule(client=clients, skew=skews_us)
    def clock_drift(self, client, skew) -> None:
        """A writer's clock error changes (an NTP step, another host)."""
        self.clients[client].skew = skew

    @rule(key=keys, body=bodies, votes=votes, tags=tag_lists, ttl=ttls, client=clients)
    def insert(self, key, body, votes, tags, ttl, client) -> None:
        self._insert(key, {"body": body, "votes": votes, "tags": tags}, ttl, self._stamp(client))

    @rule(key=keys, column=st.sampled_from(["body", "votes"]), data=st.data(), ttl=ttls, client=clients)
    def update_column(self, key, column, data, ttl, client) -> None:
        """UPDATE of one column, maybe with a column TTL, maybe a null write."""
        value = data.draw(bodies if column == "body" else votes)
        ts = self._stamp(client)
        self.stack.table.update([{"shelf": key[0], "n": key[1], column: value}], ttl_s=ttl, timestamp_us=ts)
        self.model.write(key, ts, self._expires(ttl), {column: value}, insert=False)

    @rule(key=keys, value=votes, ttl=st.sampled_from([1, 2, 4]), client=clients)
    def column_ttl(self, key, value, ttl, client) -> None:
        """``UPDATE ... USING TTL n SET votes = ...``: only that column expires."""
        ts = self._stamp(client)
        self.stack.table.update([{"shelf": key[0], "n": key[1], "votes": value}], ttl_s=ttl, timestamp_us=ts)
        self.model.write(key, ts, self._expires(ttl), {"votes": value}, insert=False)

    @rule(key=keys, tag=st.sampled_from(["x", "y", "z"]), ttl=ttls, client=clients)
    def append_tag(self, key, tag, ttl, client) -> None:
        """A collection-only update."""
        ts = self._stamp(client)
        self.stack.table.update([{"shelf": key[0], "n": key[1], "$add": {"tags": [tag]}}], ttl_s=ttl, timestamp_us=ts)
        self.model.append_tag(key, ts, self._expires(ttl), tag)

    @rule(key=keys, client=clients, whole_partition=st.sampled_from([False, False, False, True]))
    def delete(self, key, client, whole_partition) -> None:
        self._delete(key, self._stamp(client), whole_partition=whole_partition)

    @rule(key=keys, body=bodies, client=clients, whole_partition=st.booleans())
    def delete_and_reinsert(self, key, body, client, whole_partition) -> None:
        """DELETE then INSERT of one key by one writer in one go (its timestamps increase; its clock may be
        behind the service's)."""
        self._delete(key, self._stamp(client), whole_partition=whole_partition)
        self._insert(key, {"body": body, "votes": 1}, None, self._stamp(client))

    @rule(
        key=keys,
        body=st.sampled_from(BODIES),
        lag_us=st.sampled_from([2, 2_000, 3 * US]),
        whole_partition=st.booleans(),
    )
    def reinsert_from_a_clock_behind(self, key, body, lag_us, whole_partition) -> None:
        """Some time later, DELETE then INSERT of one key in one go by a writer whose clock is behind the service's
        (which stamps the DELETE's record): the row is back, whatever the two clocks say."""
        self.stack.clock.advance(lag_us / US + 0.5)  # the DELETE is newer than what the key held
        writer = Client(-lag_us)
        self._delete(key, writer.stamp(self.stack.clock()), whole_partition=whole_partition)
        self._insert(key, {"body": body, "votes": 2}, None, writer.stamp(self.stack.clock()))

    @rule(seconds=st.sampled_from([0.001, 0.5, 1.0, 2.5]), purge=st.booleans())
    def clock(self, seconds, purge) -> None:
        """Time passes; the service purges what expired (and emits its TTL records) when it gets to it."""
        self.stack.clock.advance(seconds)
        if purge:
            self.stack.table.expire_due()

    @invariant()
    def stand_in_agrees_with_the_model(self) -> None:
        now = self.stack.clock()
        for key in KEYS:
            assert self.stack.table.get({"shelf": key[0], "n": key[1]}) == self.model.get(key, now), key


ExactnessMachine.TestCase.settings = settings(
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


def test_the_index_equals_the_model_after_any_interleaving(moto_server: MotoServer, tmp_path: Path) -> None:
    ExactnessMachine.server = moto_server
    ExactnessMachine.workdir = tmp_path
    ExactnessMachine.TestCase().runTest()
