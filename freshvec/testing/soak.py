"""The soak: drive the whole local pipeline with a generated workload while faults hit every boundary, then check
the index and the DLQ against an oracle built from the final table state.

``python -m freshvec.testing.soak`` (``make soak``) runs the full size (10,000 changes over about 3,300 composite keys,
the default fault rates) and writes ``soak_*`` figures into bench-results.json; ``run(changes=...)`` is the
same soak at any size, for tests. Everything talks to loopback only (moto server in-process, the in-memory
Keyspaces stand-in, WordLlama) and is bounded in count and time.

The workload: inserts, text updates, metadata-only updates (whole rows and partial CQL upserts), duplicate
writes, deletes, re-inserts, TTL expiries, empty and null texts, on a table with a composite primary key and a
column of every CQL type; about 1% poison changes, on keys of their own: rows whose vector key is too long or
whose filterable metadata is over the S3 Vectors limit (written through the table), and records no forwarder
would write (bad JSON, an unknown contract version, an empty key, bytes that are not UTF-8; put straight into
Kinesis, as a foreign producer could).

The oracle: for every row left in the table, the vector is present, its data is the local embedder's
embedding of the row's text (cosine >= 0.999) and its metadata equals what the sink's metadata mapping
produces for the row (the source position keys aside); every deleted, expired, text-less or poison key is
absent; every poison change is in the DLQ with its payload and a reason. Counts are printed; any difference
makes ``main`` exit non-zero.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.errors import PoisonRecordError
from freshvec.events import format_timestamp
from freshvec.keys import vector_key
from freshvec.metadata import MetadataBuilder
from freshvec.sources.keyspaces.cells import image_to_row, keys_to_json, row_to_image
from freshvec.sources.keyspaces.cqltypes import CqlType
from freshvec.testing.faults import Chaos, FaultPlan

FULL_CHANGES = 10_000
COSINE_MIN = 0.999
POISON_RATE = 0.01
TTL_SECONDS = (1, 2, 3)
_SOURCE_POSITION_KEYS = (c.META_SEQUENCE, c.META_CHANGED_AT)
_PIPELINE_KEYS = (*_SOURCE_POSITION_KEYS, c.META_FINGERPRINT, c.META_VERSION)

# A table with a composite primary key and a column of every CQL type Keyspaces supports (counter aside: a
# counter table holds only counters).
SOAK_CONFIG: dict[str, Any] = {
    "keyspace": "soak",
    "table": "catalog",
    "stack_name": "freshvec-soak",
    "columns": {
        "tenant": "text",
        "item_id": "bigint",
        "variant": "timeuuid",
        "body": "text",
        "title": "varchar",
        "code": "ascii",
        "qty": "int",
        "small": "smallint",
        "tiny": "tinyint",
        "huge": "varint",
        "ratio": "float",
        "score": "double",
        "price": "decimal",
        "active": "boolean",
        "released": "date",
        "updated": "timestamp",
        "opens": "time",
        "lead_time": "duration",
        "addr": "inet",
        "ref": "uuid",
        "raw": "blob",
        "tags": "list<text>",
        "sizes": "set<int>",
        "stock": "map<text, int>",
        "by_code": "map<int, text>",
        "point": "tuple<double, double>",
        "history": "frozen<list<frozen<list<int>>>>",
        "owner": "udt<person>",
        "notes": "text",
    },
    "partition_key": ["tenant", "item_id"],
    "clustering_key": ["variant"],
    "embedding_field": "body",
    "metadata_fields": [
        "tenant",
        "item_id",
        "variant",
        "title",
        "code",
        "qty",
        "small",
        "tiny",
        "huge",
        "ratio",
        "score",
        "price",
        "active",
        "released",
        "updated",
        "opens",
        "lead_time",
        "addr",
        "ref",
        "raw",
        "tags",
        "sizes",
        "stock",
        "by_code",
        "point",
        "history",
        "owner",
        "notes",
    ],
    "embedding": {"provider": "local", "model_id": c.LOCAL_WORDLLAMA, "dimensions": 256},
    "vector_store": {
        "bucket_name": "freshvec-soak",
        "index_name": "soak-catalog",
        "distance_metric": "cosine",
        "non_filterable_keys": ["body", "notes"],
    },
    "stream": {"mode": "PROVISIONED", "shard_count": 2},
    # The injected faults skip the retries the Bedrock provider makes inside the sink, so far more of them
    # reach the mapping than would in AWS; the retry budget is sized for that (see the README's soak section).
    "sink": {"batch_size": 100, "batching_window_s": 0, "retry_attempts": 1000, "max_record_age_s": 21600},
    "forwarder": {"poll_interval_ms": 20},
}
# Local-only mapping settings: poll and back off quickly so the faults cost retries, not wall time.
MAPPING_OVERRIDES = {"poll_interval_s": 0.02, "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.1}

_WORD_TEXT = (
    "amber anchor apple arctic atlas autumn badge bamboo basket beacon berry blanket bloom border breeze bridge "
    "bronze bubble cabin cactus camera candle canyon carbon castle cedar cherry circuit cliff cloud clover coffee "
    "comet copper coral cotton crystal dawn delta desert diamond dragon dune eagle echo ember engine falcon "
    "feather fern festival field flame forest fossil fountain galaxy garden garnet glacier granite harbor hazel "
    "helmet honey horizon island ivory jacket jasmine jungle kettle lagoon lantern lemon lighthouse lily marble "
    "meadow melody meteor mirror mountain nectar needle ocean olive orbit orchard otter paper pepper pebble "
    "piano planet prairie quartz quill rabbit rainbow raven reef ribbon river rocket saddle salmon sapphire "
    "satellite shadow silver spice spiral summit sunset tiger timber tulip tundra valley velvet violet volcano "
    "walnut whale willow window winter wolf yarn zebra"
)
_WORDS = tuple(_WORD_TEXT.split())
_NAMES = ("Ada", "Brook", "Cyrus", "Dana", "Elio", "Fern", "Gale", "Hana", "Ivo", "June")


# ---------------------------------------------------------------------------------------------
# Values of every CQL type, as change-event JSON values
# ---------------------------------------------------------------------------------------------
def random_value(cql_type: CqlType, rng: random.Random) -> Any:
    """A random value of ``cql_type`` in the change-event JSON form (docs/change-event.md)."""
    name = cql_type.base.name
    base = cql_type.base
    if name in ("text", "varchar"):
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
    if name == "ascii":
        return f"SKU-{rng.randint(0, 99_999):05d}"
    if name == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if name == "bigint":
        return rng.randint(-(2**63), 2**63 - 1)
    if name == "smallint":
        return rng.randint(-(2**15), 2**15 - 1)
    if name == "tinyint":
        return rng.randint(-128, 127)
    if name == "varint":
        return rng.choice((rng.randint(-1000, 1000), rng.randint(2**60, 2**80)))
    if name == "float":
        return rng.randint(-(10**6), 10**6) / 64  # exact in binary: survives the float32 round trip
    if name == "double":
        return round(rng.uniform(-1e6, 1e6), 6)
    if name == "decimal":
        return f"{rng.randint(-99_999, 99_999)}.{rng.randint(0, 9999):04d}"
    if name == "boolean":
        return rng.random() < 0.5
    if name == "date":
        return (date(1970, 1, 1) + timedelta(days=rng.randint(0, 25_000))).isoformat()
    if name == "timestamp":
        moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randint(0, 10**12))
        return format_timestamp(moment)
    if name == "time":
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}"
    if name == "duration":
        return f"{rng.randint(0, 48)}h{rng.randint(0, 59)}m"
    if name == "inet":
        if rng.random() < 0.8:
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        return f"2001:db8::{rng.randint(1, 0xFFFF):x}"
    if name == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if name == "timeuuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=1))
    if name == "blob":
        return base64.b64encode(rng.randbytes(rng.randint(1, 24))).decode("ascii")
    if name == "list":
        return [random_value(base.params[0], rng) for _ in range(rng.randint(1, 4))]
    if name == "set":
        return sorted({json.dumps(random_value(base.params[0], rng)) for _ in range(rng.randint(1, 4))})
    if name == "map":
        key_type, value_type = base.params
        entries = {json.dumps(random_value(key_type, rng)): random_value(value_type, rng) for _ in range(3)}
        if key_type.is_text:
            return {json.loads(k): v for k, v in entries.items()}
        return [[json.loads(k), v] for k, v in entries.items()]
    if name == "tuple":
        return [random_value(param, rng) for param in base.params]
    if name == "udt":
        return {"name": rng.choice(_NAMES), "age": rng.randint(18, 90)}
    raise ValueError(f"the soak has no generator for CQL type {cql_type}")


def _set_value(cql_type: CqlType, rng: random.Random) -> Any:
    value = random_value(cql_type, rng)
    if cql_type.base.name == "set":  # random_value keeps set members as JSON text to de-duplicate them
        return [json.loads(item) for item in value]
    return value


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 14)))


# ---------------------------------------------------------------------------------------------
# The workload
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    """One change: a row written (``row``), a key deleted (``row`` = the key), or a raw Kinesis record."""

    kind: str
    row: dict[str, Any] | None = None
    ttl_s: int | None = None
    raw: bytes | None = None
    partition_key: str | None = None

    @property
    def call(self) -> tuple[str, int | None]:
        """Writes with the same call signature go to the table in one call."""
        if self.raw is not None:
            return ("raw", None)
        if self.kind == "delete":
            return ("delete", None)
        return ("upsert", self.ttl_s)


@dataclass
class Workload:
    writes: list[Write]
    calls: list[list[Write]]
    poison_rows: list[dict[str, Any]]  # keys of the rows that must be rejected (one change each)
    poison_raw: list[bytes]  # raw Kinesis payloads that must be rejected
    ttl_keys: list[dict[str, Any]]

    @property
    def changes(self) -> int:
        return len(self.writes)

    def kinds(self) -> dict[str, int]:
        return dict(sorted(Counter(w.kind for w in self.writes).items()))


class _Bag:
    """A set with O(1) random choice (the generator picks live keys at random thousands of times)."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._where: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: str) -> None:
        if item not in self._where:
            self._where[item] = len(self._items)
            self._items.append(item)

    def remove(self, item: str) -> None:
        index = self._where.pop(item)
        last = self._items.pop()
        if index < len(self._items):
            self._items[index] = last
            self._where[last] = index

    def choice(self, rng: random.Random) -> str:
        return self._items[rng.randrange(len(self._items))]


_WEIGHTS = {
    "insert": 0.27,
    "text_update": 0.20,
    "metadata_update": 0.13,
    "partial_update": 0.06,
    "duplicate": 0.07,
    "delete": 0.10,
    "ttl_insert": 0.05,
    "empty_text": 0.03,
    "reinsert": 0.04,
    "key_text_change": 0.04,
    "poison": POISON_RATE,
}


class WorkloadGenerator:
    """A seeded mix of changes over ``keys`` composite keys; it tracks the rows it wrote to pick sensible ops."""

    def __init__(self, config: PipelineConfig, *, keys: int, seed: int) -> None:
        self.config = config
        self.types = config.column_types
        self.rng = random.Random(seed)
        self.key_columns = config.primary_key
        self.text = config.embedding_field
        self.value_columns = [c for c in config.columns if c not in self.key_columns and c != self.text]
        self.fresh = [self._new_key(i) for i in range(keys)]
        self.rng.shuffle(self.fresh)
        self.rows: dict[str, dict[str, Any]] = {}
        self.live = _Bag()
        self.deleted = _Bag()
        self._raw_count = 0

    def _new_key(self, index: int) -> dict[str, Any]:
        return {
            "tenant": f"tenant-{index % 23:02d}",
            "item_id": self.rng.randint(1, 2**62),
            "variant": random_value(self.types["variant"], self.rng),
        }

    @staticmethod
    def _id(key: Mapping[str, Any]) -> str:
        return json.dumps([key["tenant"], key["item_id"], key["variant"]])

    def _key_of(self, key_id: str) -> dict[str, Any]:
        tenant, item_id, variant = json.loads(key_id)
        return {"tenant": tenant, "item_id": item_id, "variant": variant}

    def _full_row(self, key: Mapping[str, Any]) -> dict[str, Any]:
        row = dict(key)
        row[self.text] = sentence(self.rng)
        for column in self.value_columns:
            row[column] = _set_value(self.types[column], self.rng)
        return row

    def generate(self, changes: int) -> Workload:
        writes: list[Write] = []
        poison_rows: list[dict[str, Any]] = []
        poison_raw: list[bytes] = []
        ttl_keys: list[dict[str, Any]] = []
        kinds = list(_WEIGHTS)
        weights = list(_WEIGHTS.values())
        while len(writes) < changes:
            kind = self._feasible(self.rng.choices(kinds, weights)[0])
            write = getattr(self, f"_{kind}")()
            writes.append(write)
            if write.kind.startswith("poison_raw"):
                assert write.raw is not None
                poison_raw.append(write.raw)
            elif write.kind.startswith("poison"):
                assert write.row is not None
                poison_rows.append({k: write.row[k] for k in self.key_columns})
            elif write.kind == "ttl_insert":
                assert write.row is not None
                ttl_keys.append({k: write.row[k] for k in self.key_columns})
        return Workload(writes, self._group(writes), poison_rows, poison_raw, ttl_keys)

    def _feasible(self, kind: str) -> str:
        needs_live = {"text_update", "metadata_update", "partial_update", "duplicate", "delete", "empty_text"}
        needs_live.add("key_text_change")
        if kind in needs_live and not self.live:
            kind = "insert"
        if kind == "reinsert" and not self.deleted:
            kind = "insert"
        if kind in ("insert", "ttl_insert") and not self.fresh:
            kind = "reinsert" if self.deleted else "text_update"
        if kind == "text_update" and not self.live:
            kind = "poison"
        return kind

    def _group(self, writes: Sequence[Write]) -> list[list[Write]]:
        """Consecutive writes of one kind of call, with distinct keys, in calls of 1 to 30 changes."""
        calls: list[list[Write]] = []
        current: list[Write] = []
        keys: set[str] = set()
        limit = self.rng.randint(1, 30)
        for write in writes:
            key = self._id(write.row) if write.row is not None and "tenant" in write.row else None
            if current and (write.call != current[0].call or len(current) >= limit or (key and key in keys)):
                calls.append(current)
                current, keys, limit = [], set(), self.rng.randint(1, 30)
            current.append(write)
            if key:
                keys.add(key)
        if current:
            calls.append(current)
        return calls

    # ---- one generator per kind of change ----------------------------------------------------
    def _insert(self) -> Write:
        row = self._full_row(self.fresh.pop())
        self._remember(row)
        return Write("insert", row)

    def _reinsert(self) -> Write:
        key_id = self.deleted.choice(self.rng)
        self.deleted.remove(key_id)
        row = self._full_row(self._key_of(key_id))
        self._remember(row)
        return Write("reinsert", row)

    def _ttl_insert(self) -> Write:
        # Rows with a TTL get no later writes: each of them must expire.
        return Write("ttl_insert", self._full_row(self.fresh.pop()), ttl_s=self.rng.choice(TTL_SECONDS))

    def _text_update(self) -> Write:
        key_id = self.live.choice(self.rng)
        change = {**self._key_of(key_id), self.text: sentence(self.rng)}
        self.rows[key_id].update(change)
        return Write("text_update", change)

    def _key_text_change(self) -> Write:
        """Text and several other columns in one write."""
        key_id = self.live.choice(self.rng)
        change = {**self._key_of(key_id), self.text: sentence(self.rng)}
        for column in self.rng.sample(self.value_columns, 4):
            change[column] = _set_value(self.types[column], self.rng)
        self.rows[key_id].update(change)
        return Write("key_text_change", change)

    def _metadata_update(self) -> Write:
        """The whole row written again with the same text and new values elsewhere (no embedding needed)."""
        key_id = self.live.choice(self.rng)
        row = dict(self.rows[key_id])
        for column in self.rng.sample(self.value_columns, self.rng.randint(1, 5)):
            row[column] = _set_value(self.types[column], self.rng)
        self.rows[key_id] = row
        return Write("metadata_update", dict(row))

    def _partial_update(self) -> Write:
        """A CQL upsert of a few columns (the others keep their values); sometimes one is set to null."""
        key_id = self.live.choice(self.rng)
        change = self._key_of(key_id)
        for column in self.rng.sample(self.value_columns, self.rng.randint(1, 3)):
            change[column] = None if self.rng.random() < 0.15 else _set_value(self.types[column], self.rng)
        self.rows[key_id].update(change)
        return Write("partial_update", change)

    def _duplicate(self) -> Write:
        key_id = self.live.choice(self.rng)
        return Write("duplicate", dict(self.rows[key_id]))

    def _empty_text(self) -> Write:
        key_id = self.live.choice(self.rng)
        change = {**self._key_of(key_id), self.text: "" if self.rng.random() < 0.5 else None}
        self.rows[key_id].update(change)
        return Write("empty_text", change)

    def _delete(self) -> Write:
        key_id = self.live.choice(self.rng)
        self.live.remove(key_id)
        self.deleted.add(key_id)
        del self.rows[key_id]
        return Write("delete", self._key_of(key_id))

    def _poison(self) -> Write:
        kind = self.rng.choice(("long_key", "oversize_metadata", "raw"))
        if kind == "raw":
            return self._poison_raw()
        key = self._new_key(self.rng.randrange(10**6))
        row = self._full_row(key)
        if kind == "long_key":
            # The vector key (JSON of the primary key) goes over S3 Vectors' 1,024 characters.
            row["tenant"] = f"tenant-{self.rng.getrandbits(40):x}-" + "long" * 260
        else:
            # A filterable column larger than the 2 KB S3 Vectors allows for filterable metadata.
            row["title"] = " ".join(self.rng.choice(_WORDS) for _ in range(420))
        return Write(f"poison_{kind}", row)

    def _poison_raw(self) -> Write:
        self._raw_count += 1
        n = self._raw_count
        base = {
            "v": 1,
            "source": "keyspaces",
            "keyspace": self.config.keyspace,
            "table": self.config.table,
            "op": "INSERT",
            "key": {"tenant": f"raw-{n}", "item_id": n, "variant": str(uuid.UUID(int=n, version=1))},
            "new": {"body": "written by a foreign producer"},
            "old": None,
            "seq": f"foreign-{n}",
            "shard": "foreign",
            "ts": "2026-01-01T00:00:00.000Z",
            "origin": "USER",
        }
        variant = self.rng.choice(("bad_json", "bad_version", "empty_key", "not_utf8"))
        if variant == "bad_json":
            payload = json.dumps(base).encode()[:-7]
        elif variant == "bad_version":
            payload = json.dumps({**base, "v": 99}).encode()
        elif variant == "empty_key":
            payload = json.dumps({**base, "key": {}}).encode()
        else:
            payload = b"\xff\xfe" + json.dumps(base).encode("utf-16-le")
        return Write(f"poison_raw_{variant}", raw=payload, partition_key=f"foreign-{n}")

    def _remember(self, row: dict[str, Any]) -> None:
        key_id = self._id(row)
        self.rows[key_id] = dict(row)
        self.live.add(key_id)


def generate_workload(config: PipelineConfig, changes: int, *, keys: int | None = None, seed: int = 7) -> Workload:
    """A seeded workload of exactly ``changes`` changes over ``keys`` composite keys (default: changes / 3)."""
    if changes < 1:
        raise ValueError("changes must be at least 1")
    return WorkloadGenerator(config, keys=keys or max(10, changes // 3), seed=seed).generate(changes)


# ---------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------
@dataclass
class Expectations:
    """What the index and the DLQ must hold, derived from the final table state and the raw poison."""

    present: dict[str, tuple[str, dict[str, Any]]]  # vector key -> (text, metadata without source position)
    absent: set[str]  # vector keys that must not be in the index
    poison_keys: dict[str, str]  # canonical JSON of a poison row's primary key -> why it is poison
    poison_raw: set[bytes]


def _event_row(row: Mapping[str, Any], types: Mapping[str, CqlType]) -> dict[str, Any]:
    """A table row as the change event carries it (through Keyspaces cells and back, like the forwarder)."""
    return image_to_row(row_to_image(row, types)) or {}


def _canonical_key(key: Mapping[str, Any], columns: Sequence[str]) -> str:
    return json.dumps([key.get(column) for column in columns], ensure_ascii=False)


def build_expectations(
    config: PipelineConfig,
    final_rows: Sequence[Mapping[str, Any]],
    removed_keys: Sequence[Mapping[str, Any]],
    poison_raw: Sequence[bytes],
) -> Expectations:
    """Apply the sink's own rules to the final table: key building, metadata mapping and limits, empty text."""
    types = config.column_types
    builder = MetadataBuilder(config)
    present: dict[str, tuple[str, dict[str, Any]]] = {}
    absent: set[str] = set()
    poison_keys: dict[str, str] = {}
    now = datetime.now(UTC)
    for table_row in final_rows:
        row = _event_row(table_row, types)
        try:
            key = vector_key(row, config.key_columns)
        except PoisonRecordError as exc:
            poison_keys[_canonical_key(row, config.primary_key)] = str(exc)
            continue
        try:
            metadata = builder.build(row, seq="0", changed_at=now)
        except PoisonRecordError as exc:
            poison_keys[_canonical_key(row, config.primary_key)] = str(exc)
            absent.add(key)
            continue
        text = row.get(config.embedding_field)
        if not text:
            absent.add(key)
            continue
        present[key] = (text, {k: v for k, v in metadata.items() if k not in _PIPELINE_KEYS})
    for removed in removed_keys:
        try:
            key = vector_key(_event_row(removed, types), config.key_columns)
        except PoisonRecordError:
            continue
        if key not in present:
            absent.add(key)
    return Expectations(present, absent - set(present), poison_keys, set(poison_raw))


@dataclass
class SoakReport:
    changes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    rows_final: int = 0
    expected_present: int = 0
    expected_absent: int = 0
    index_vectors: int = 0
    lost: int = 0  # a row's vector missing
    stale_content: int = 0  # present with the wrong embedding or metadata
    zombies: int = 0  # present though deleted, expired, text-less or poison
    unknown_vectors: int = 0  # keys the workload never wrote
    dlq_expected: int = 0
    dlq_actual: int = 0  # distinct expected poison changes found in the DLQ with payload and reason
    dlq_messages: int = 0
    dlq_duplicates: int = 0  # the same poison change parked more than once (re-deliveries)
    dlq_unexpected: int = 0  # DLQ messages for changes that were not poison
    dlq_without_reason: int = 0
    parked_records: int = 0  # records the mapping sent to its on-failure destination
    ttl_rows_left: int = 0
    seconds: float = 0.0
    sync_timeout: str | None = None
    faults: dict[str, int] = field(default_factory=dict)
    pipeline: dict[str, Any] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def stale(self) -> int:
        return self.stale_content + self.zombies + self.unknown_vectors

    @property
    def faults_injected(self) -> int:
        """Fault events (a partial PutRecords is one event, however many of its records failed)."""
        return sum(count for kind, count in self.faults.items() if kind != "kinesis_records_failed")

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.stale == 0
            and self.dlq_actual == self.dlq_expected
            and self.dlq_unexpected == 0
            and self.dlq_without_reason == 0
            and self.parked_records == 0
            and self.ttl_rows_left == 0
            and self.sync_timeout is None
        )

    def figures(self) -> dict[str, Any]:
        return {
            "soak_changes": self.changes,
            "soak_lost": self.lost,
            "soak_stale": self.stale,
            "soak_dlq_expected": self.dlq_expected,
            "soak_dlq_actual": self.dlq_actual,
            "soak_dlq_duplicates": self.dlq_duplicates,
            "soak_parked_records": self.parked_records,
            "soak_faults_injected": self.faults_injected,
            "soak_seconds": round(self.seconds, 1),
            "soak_ok": self.ok,
        }

    def lines(self) -> list[str]:
        out = [
            f"changes written      {self.changes}  ({_counts_text(self.kinds)})",
            f"rows in the table    {self.rows_final}",
            f"vectors expected     {self.expected_present} present, {self.expected_absent} absent",
            f"vectors in the index {self.index_vectors}",
            f"lost                 {self.lost}",
            f"stale                {self.stale}  (wrong content {self.stale_content}, should be gone "
            f"{self.zombies}, unknown {self.unknown_vectors})",
            f"DLQ                  expected {self.dlq_expected}, found {self.dlq_actual} "
            f"({self.dlq_messages} messages, {self.dlq_duplicates} re-delivered duplicates, "
            f"{self.dlq_unexpected} unexpected, {self.dlq_without_reason} without a reason)",
            f"on-failure parked    {self.parked_records} records",
            f"faults injected      {self.faults_injected}  ({_counts_text(self.faults)})",
            f"wall time            {self.seconds:.1f} s",
        ]
        if self.ttl_rows_left:
            out.append(f"rows with a TTL still in the table: {self.ttl_rows_left}")
        if self.sync_timeout:
            out.append(f"not in sync: {self.sync_timeout}")
        out.extend(f"  difference: {d}" for d in self.differences[:20])
        if len(self.differences) > 20:
            out.append(f"  ... and {len(self.differences) - 20} more differences")
        out.append("RESULT: " + ("OK, nothing lost, nothing stale" if self.ok else "DIFFERENCES FOUND"))
        return out


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb) / denominator if denominator else 0.0


def _same_value(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return math.isclose(expected, actual, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(_same_value, expected, actual))
    return type(expected) is type(actual) and expected == actual


def compare_index(
    expectations: Expectations,
    index: Mapping[str, tuple[Sequence[float], Mapping[str, Any]]],
    embed: Callable[[Sequence[str]], list[list[float]]],
    report: SoakReport,
) -> None:
    """Count lost, stale and unexpected vectors (``index``: key -> (vector, metadata))."""
    report.expected_present = len(expectations.present)
    report.expected_absent = len(expectations.absent)
    report.index_vectors = len(index)
    keys = sorted(expectations.present)
    texts = [expectations.present[key][0] for key in keys]
    vectors = dict(zip(keys, embed(texts), strict=True)) if texts else {}
    for key in keys:
        metadata = expectations.present[key][1]
        if key not in index:
            report.lost += 1
            report.differences.append(f"lost: {key}")
            continue
        stored_vector, stored_metadata = index[key]
        similarity = _cosine(vectors[key], stored_vector)
        stored = {k: v for k, v in stored_metadata.items() if k not in _PIPELINE_KEYS}
        missing_position = [k for k in _SOURCE_POSITION_KEYS if k not in stored_metadata]
        wrong = sorted(k for k in set(stored) | set(metadata) if not _same_value(metadata.get(k), stored.get(k)))
        if similarity < COSINE_MIN or wrong or missing_position:
            report.stale_content += 1
            detail = f"cosine {similarity:.4f}" if similarity < COSINE_MIN else ""
            if wrong:
                detail += f" metadata differs in {', '.join(wrong[:5])}"
            if missing_position:
                detail += f" no {', '.join(missing_position)}"
            report.differences.append(f"stale: {key}:{detail}")
    for key in index:
        if key in expectations.absent:
            report.zombies += 1
            report.differences.append(f"should be absent: {key}")
        elif key not in expectations.present:
            report.unknown_vectors += 1
            report.differences.append(f"unknown vector: {key}")


def compare_dlq(
    config: PipelineConfig,
    expectations: Expectations,
    messages: Sequence[Mapping[str, Any]],
    report: SoakReport,
) -> None:
    """Match DLQ messages (parsed bodies) to the expected poison changes, by payload."""
    report.dlq_expected = len(expectations.poison_keys) + len(expectations.poison_raw)
    report.dlq_messages = len(messages)
    found: Counter[str] = Counter()
    for body in messages:
        if (
            any(name not in body for name in c.DLQ_FIELDS)
            or not body.get("error_class")
            or not body.get("error_message")
        ):
            report.dlq_without_reason += 1
            report.differences.append(f"DLQ message without payload or reason: {json.dumps(body)[:200]}")
        try:
            payload = base64.b64decode(body.get("payload_b64", ""), validate=True)
        except ValueError:
            payload = b""
        identity = _dlq_identity(config, expectations, payload)
        if identity is None:
            report.dlq_unexpected += 1
            report.differences.append(
                f"unexpected DLQ message ({body.get('error_class')}: {body.get('error_message')}): {payload[:160]!r}"
            )
            continue
        found[identity] += 1
    report.dlq_actual = len(found)
    report.dlq_duplicates = sum(found.values()) - len(found)
    for key, reason in expectations.poison_keys.items():
        if f"row:{key}" not in found:
            report.differences.append(f"poison change not in the DLQ: {key[:120]} ({reason[:80]})")
    for payload in expectations.poison_raw:
        if f"raw:{payload.hex()}" not in found:
            report.differences.append(f"raw poison record not in the DLQ: {payload[:80]!r}")


def _dlq_identity(config: PipelineConfig, expectations: Expectations, payload: bytes) -> str | None:
    if payload in expectations.poison_raw:
        return f"raw:{payload.hex()}"
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    key_values = event.get("key")
    record = event.get("record")
    if not isinstance(key_values, dict) and isinstance(record, dict):
        # The forwarder's error envelope for a record that cannot become a change event: the raw stream record.
        try:
            key_values = {**keys_to_json(record.get("partitionKeys")), **keys_to_json(record.get("clusteringKeys"))}
        except (TypeError, ValueError):
            return None
    if not isinstance(key_values, dict):
        return None
    key = _canonical_key(key_values, config.primary_key)
    return f"row:{key}" if key in expectations.poison_keys else None


# ---------------------------------------------------------------------------------------------
# Reading what the pipeline produced (with clients that no fault touches)
# ---------------------------------------------------------------------------------------------
def read_index(s3vectors: Any, bucket: str, index: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
    vectors: dict[str, tuple[list[float], dict[str, Any]]] = {}
    kwargs: dict[str, Any] = {"vectorBucketName": bucket, "indexName": index, "returnData": True}
    kwargs["returnMetadata"] = True
    while True:
        page = s3vectors.list_vectors(**kwargs)
        for vector in page.get("vectors", []):
            vectors[vector["key"]] = (vector["data"]["float32"], vector.get("metadata") or {})
        if not page.get("nextToken"):
            return vectors
        kwargs["nextToken"] = page["nextToken"]


class DlqReader:
    """Collects every DLQ message once (received messages stay invisible while the soak reads on)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url
        self.bodies: list[dict[str, Any]] = []
        self._seen: set[str] = set()

    def drain(self) -> list[dict[str, Any]]:
        empty = 0
        while empty < 2:
            response = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, VisibilityTimeout=3600, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            empty = 0 if messages else empty + 1
            for message in messages:
                if message["MessageId"] in self._seen:
                    continue
                self._seen.add(message["MessageId"])
                try:
                    self.bodies.append(json.loads(message["Body"]))
                except ValueError:
                    self.bodies.append({"unparsable_body": message["Body"]})
        return self.bodies


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
@dataclass
class _Disruptions:
    """Shard splits, merges and iterator expiries in the Keyspaces stand-in, spread over the run."""

    plan: FaultPlan
    calls: int
    rng: random.Random
    schedule: dict[int, list[str]] = field(default_factory=dict)
    split_children: list[tuple[str, str]] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        def at(fraction: float, what: str) -> None:
            self.schedule.setdefault(min(self.calls - 1, int(fraction * self.calls)), []).append(what)

        for i in range(self.plan.shard_splits):
            at(0.1 + 0.5 * i / max(1, self.plan.shard_splits), "split")
        for i in range(self.plan.shard_merges):
            at(0.7 + 0.2 * i / max(1, self.plan.shard_merges), "merge")
        for i in range(self.plan.iterator_expiries):
            at((i + 1) / (self.plan.iterator_expiries + 1), "expire_iterators")

    def apply(self, call_index: int, streams: Any, stream_arn: str) -> None:
        for what in self.schedule.get(call_index, []):
            if what == "split":
                shard = self.rng.choice(streams.shard_ids(stream_arn, open_only=True))
                self.split_children.append(streams.split_shard(stream_arn, shard))
            elif what == "merge":
                open_shards = set(streams.shard_ids(stream_arn, open_only=True))
                pairs = [p for p in self.split_children if p[0] in open_shards and p[1] in open_shards]
                if not pairs:
                    continue
                pair = pairs.pop(0)
                self.split_children.remove(pair)
                streams.merge_shards(stream_arn, *pair)
            else:
                streams.expire_iterators()
            self.done[what] += 1


def _put_raw(kinesis: Any, stream_name: str, writes: Sequence[Write]) -> None:
    """Put raw records, re-sending any the stream did not accept (none should fail: no faults here)."""
    pending = [{"Data": w.raw, "PartitionKey": w.partition_key} for w in writes]
    while pending:
        response = kinesis.put_records(StreamName=stream_name, Records=pending)
        pending = [r for r, entry in zip(pending, response["Records"], strict=True) if "ErrorCode" in entry]


def _wait_quiet(pipeline: Any, deadline: float, quiet_s: float = 1.0) -> None:
    """Until nothing moves: the mapping idle and no change forwarded or invocation made for ``quiet_s``."""

    def snapshot() -> tuple[int, int]:
        stats = pipeline.stats()
        return stats["changes_forwarded"], stats["mapping"]["invocations"]

    last, since = snapshot(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = snapshot()
        if now != last or not pipeline.mapping.idle():
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def run(
    changes: int = FULL_CHANGES,
    *,
    keys: int | None = None,
    plan: FaultPlan | None = None,
    seed: int = 7,
    timeout_s: float = 540.0,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
    chaos: Chaos | None = None,
) -> SoakReport:
    """Run the soak and return its report (``report.ok`` is the verdict).

    ``chaos`` replaces the fault injector built from ``plan`` (tests hand in one that breaks the pipeline
    on purpose, to show the oracle notices).
    """
    from freshvec.local.pipeline import LocalPipeline

    started = time.monotonic()
    deadline = started + timeout_s
    plan = plan or FaultPlan(seed=seed)
    config = PipelineConfig.from_dict(SOAK_CONFIG)
    workload = generate_workload(config, changes, keys=keys, seed=seed)
    chaos = chaos or Chaos(plan)
    plan = chaos.plan
    report = SoakReport(changes=workload.changes, kinds=workload.kinds())
    log(f"soak: {workload.changes} changes in {len(workload.calls)} calls, faults: {plan.to_dict()}")
    removed: list[dict[str, Any]] = []
    with LocalPipeline.start(config, faults=chaos, mapping_overrides=MAPPING_OVERRIDES) as pipeline:
        streams, arn = pipeline.streams, pipeline.stream_arn
        if plan.keyspaces_throttle:
            streams.throttle(plan.keyspaces_throttle, seed=plan.seed)
        producer = pipeline.stream_producer()
        disruptions = _Disruptions(plan, len(workload.calls), random.Random(seed))
        progress_step = max(1, len(workload.calls) // 10)
        for index, call in enumerate(workload.calls):
            disruptions.apply(index, streams, arn)
            kind, ttl_s = call[0].call
            if kind == "raw":
                _put_raw(producer, pipeline.resources.stream_name, call)
            elif kind == "delete":
                keys_to_delete = [w.row for w in call if w.row is not None]
                pipeline.delete(keys_to_delete)
                removed.extend(keys_to_delete)
            else:
                pipeline.upsert([w.row for w in call if w.row is not None], ttl_s=ttl_s)
            if index % progress_step == 0:
                log(f"  {index}/{len(workload.calls)} calls written, {pipeline.stats()['pending']} changes pending")
        log(f"soak: all changes written after {time.monotonic() - started:.1f} s; disruptions {dict(disruptions.done)}")
        _wait_for_ttl(pipeline, workload.ttl_keys, deadline)
        removed.extend(workload.ttl_keys)
        report.ttl_rows_left = sum(1 for key in workload.ttl_keys if pipeline.table.get(key) is not None)
        report.sync_timeout = _wait_synced(pipeline, deadline, log, started)
        dlq = DlqReader(pipeline.server.client("sqs"), pipeline.resources.dlq_url)
        _wait_for_raw_poison(dlq, workload.poison_raw, deadline)
        _wait_quiet(pipeline, deadline)
        state = "in sync" if report.sync_timeout is None else "NOT in sync"
        log(f"soak: {state} after {time.monotonic() - started:.1f} s; comparing with the oracle")
        final_rows = list(pipeline.table.rows())
        expectations = build_expectations(config, final_rows, removed, workload.poison_raw)
        index = read_index(
            pipeline.server.client("s3vectors"), pipeline.resources.vector_bucket, pipeline.resources.vector_index
        )
        report.rows_final = len(final_rows)
        compare_index(expectations, index, pipeline.embedder.embed_documents, report)
        compare_dlq(config, expectations, dlq.drain(), report)
        stats = pipeline.stats()
        report.parked_records = stats["records_to_on_failure_destination"]
        report.pipeline = {k: v for k, v in stats.items() if k != "mapping"} | {"mapping": stats["mapping"]}
        report.pipeline["keyspaces_streams"] = streams.counters()
        report.pipeline["disruptions"] = dict(disruptions.done)
    report.faults = chaos.counts()
    report.seconds = time.monotonic() - started
    _check_workload(workload, report)
    return report


def _wait_synced(pipeline: Any, deadline: float, log: Callable[[str], None], started: float) -> str | None:
    """Wait for the pipeline to apply or park every change, logging progress; the reason if it never did."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            pipeline.wait_synced(timeout=max(0.1, min(10.0, remaining)))
            return None
        except TimeoutError as exc:
            if remaining <= 10.0:
                return str(exc)
            stats = pipeline.stats()
            log(
                f"  {time.monotonic() - started:.0f} s: {stats['pending']} changes pending, "
                f"{stats['mapping']['invocations']} sink invocations, {stats['forwarder_crashes']} forwarder crashes"
            )


def _wait_for_ttl(pipeline: Any, ttl_keys: Sequence[Mapping[str, Any]], deadline: float) -> None:
    """Until every row written with a TTL has expired (the pipeline's TTL loop removes due rows)."""
    while time.monotonic() < deadline:
        if all(pipeline.table.get(key) is None for key in ttl_keys):
            return
        time.sleep(0.2)


def _wait_for_raw_poison(dlq: DlqReader, payloads: Sequence[bytes], deadline: float) -> None:
    """Raw records have no source position to wait for: wait until the DLQ holds each of them."""
    wanted = {base64.b64encode(p).decode("ascii") for p in payloads}
    while time.monotonic() < deadline:
        seen = {body.get("payload_b64") for body in dlq.drain()}
        if wanted <= seen:
            return
        time.sleep(0.2)


def _check_workload(workload: Workload, report: SoakReport) -> None:
    """The workload must have exercised every kind of change it claims to (a soak that skipped deletes proves
    nothing about deletes)."""
    wanted = {"insert", "text_update", "metadata_update", "partial_update", "duplicate", "delete", "ttl_insert"}
    if workload.changes >= 300:
        missing = sorted(wanted - set(report.kinds))
        if missing:
            report.differences.append(f"workload did not exercise: {', '.join(missing)}")
            report.sync_timeout = report.sync_timeout or "incomplete workload"


# ---------------------------------------------------------------------------------------------
# make soak
# ---------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshvec.testing.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=FULL_CHANGES, help="changes to write (default 10000)")
    parser.add_argument("--keys", type=int, default=None, help="distinct keys (default: changes / 3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=540.0, help="seconds before the soak gives up")
    parser.add_argument("--no-faults", action="store_true", help="run without injected faults (a baseline)")
    parser.add_argument(
        "--bedrock-scope",
        choices=("call", "text"),
        default="call",
        help="a Bedrock fault fails a whole embedder call (default) or single texts, as Titan's one-text requests",
    )
    parser.add_argument("--no-results", action="store_true", help="do not write bench-results.json")
    parser.add_argument("--verbose", action="store_true", help="show the pipeline's warnings (every injected fault)")
    args = parser.parse_args(argv)
    # Every injected fault makes the pipeline log a warning; the soak's own report is what matters here.
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL, format="%(levelname)s %(message)s")
    plan = FaultPlan.none(seed=args.seed) if args.no_faults else FaultPlan(seed=args.seed)
    plan = plan.with_rates(bedrock_scope=args.bedrock_scope)
    report = run(args.changes, keys=args.keys, plan=plan, seed=args.seed, timeout_s=args.timeout)
    for line in report.lines():
        print(line)
    if not args.no_results:
        from bench.__main__ import write_results

        write_results(report.figures())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
