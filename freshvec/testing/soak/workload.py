"""The soak's workload: random values of every CQL type, and a seeded mix of changes (``WorkloadGenerator``).

Inserts, text updates, metadata-only updates (whole rows and partial CQL upserts), duplicate writes, deletes,
re-inserts, TTL inserts, empty and null texts, about 1% poison changes on keys of their own (rows the sink
must refuse, and raw Kinesis records no forwarder would write), and about 1% poison changes on live keys that
keep changing: an oversize title written to a live row, followed some writes later by a valid change of the
same key (a metadata-only update, a text update or a delete), after which the key lives on like any other.

Keyspaces' cell-level semantics get their own kinds: column TTLs (``UPDATE ... USING TTL`` of a few columns,
which expire alone), null writes (``UPDATE ... SET c = null``: a cell tombstone), collection-only updates
(``SET tags = tags + [...]``, set and map additions), and writes from a second client whose clock is skewed
from the service's (``USING TIMESTAMP`` from that clock, ahead or behind; last write wins per cell).
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from freshvec.config import PipelineConfig
from freshvec.testing.soak.values import WORDS, random_value, sentence, set_value

POISON_RATE = 0.01
LIVE_POISON_RATE = 0.015
FIX_CHANCE = 0.1  # per write, while a live key is poisoned: its fix comes about ten writes later
TTL_SECONDS = (1, 2, 3)
SKEWED_CLIENT_SHARE = 0.25  # of the updates that may go through the second client
SKEWS_S = (-0.25, -0.05, 0.05, 0.25)  # the second client's clock error, changed now and then (NTP steps)
COLLECTION_COLUMNS = ("tags", "sizes", "stock", "by_code")  # the non-frozen list, set and maps


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
    partial: bool = False  # an UPDATE of the given columns (no row marker), not an INSERT
    skew_s: float | None = None  # written by the second client, whose clock is the service's plus this

    @property
    def call(self) -> tuple[str, int | None, float | None]:
        """Writes with the same call signature go to the table in one call."""
        if self.raw is not None:
            return ("raw", None, None)
        if self.kind in ("delete", "fix_delete"):
            return ("delete", None, None)
        return ("update" if self.partial else "upsert", self.ttl_s, self.skew_s)


@dataclass(frozen=True)
class PoisonChange:
    """A row change the sink must refuse: its key, the oversize title it wrote (None: a long key), and whether the
    key lives on (later valid changes follow) or stays poison in the table."""

    key: dict[str, Any]
    title: str | None
    live: bool


@dataclass
class Workload:
    writes: list[Write]
    calls: list[list[Write]]
    poison_changes: list[PoisonChange]  # row changes that must be rejected (one DLQ entry each)
    poison_raw: list[bytes]  # raw Kinesis payloads that must be rejected
    ttl_keys: list[dict[str, Any]]

    @property
    def changes(self) -> int:
        return len(self.writes)

    @property
    def poison_rows(self) -> list[dict[str, Any]]:
        return [p.key for p in self.poison_changes]

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
    "column_ttl": 0.03,
    "null_write": 0.03,
    "collection_add": 0.04,
    "poison": POISON_RATE,
    "poison_live": LIVE_POISON_RATE,
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
        self.poisoned = _Bag()  # live keys whose last write was poison: no other change until their fix
        self.ever_poisoned: set[str] = set()  # the second client never writes these (see ``_skew``)
        self.skew_s = self.rng.choice(SKEWS_S)
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
            row[column] = set_value(self.types[column], self.rng)
        return row

    def generate(self, changes: int) -> Workload:
        writes: list[Write] = []
        poison_changes: list[PoisonChange] = []
        poison_raw: list[bytes] = []
        ttl_keys: list[dict[str, Any]] = []
        kinds = list(_WEIGHTS)
        weights = list(_WEIGHTS.values())
        while len(writes) < changes:
            # Every poisoned live key gets its fix before the workload ends: the table's final state is valid.
            must_fix = changes - len(writes) <= len(self.poisoned)
            if self.poisoned and (must_fix or self.rng.random() < FIX_CHANCE):
                kind = "fix"
            else:
                kind = self._feasible(self.rng.choices(kinds, weights)[0])
                if kind == "poison_live" and changes - len(writes) <= len(self.poisoned) + 1:
                    kind = self._feasible("insert")  # no room left for its fix
            write = getattr(self, f"_{kind}")()
            writes.append(write)
            if write.kind.startswith("poison_raw"):
                assert write.raw is not None
                poison_raw.append(write.raw)
            elif write.kind.startswith("poison"):
                assert write.row is not None
                key = {k: write.row[k] for k in self.key_columns}
                title = write.row.get("title") if write.kind.endswith("oversize_metadata") else None
                poison_changes.append(PoisonChange(key, title, live=write.kind.startswith("poison_live")))
            elif write.kind == "ttl_insert":
                assert write.row is not None
                ttl_keys.append({k: write.row[k] for k in self.key_columns})
        assert not self.poisoned
        return Workload(writes, self._group(writes), poison_changes, poison_raw, ttl_keys)

    def _feasible(self, kind: str) -> str:
        needs_live = {"text_update", "metadata_update", "partial_update", "duplicate", "delete", "empty_text"}
        needs_live |= {"key_text_change", "column_ttl", "null_write", "collection_add"}
        if kind in needs_live and not self.live:
            kind = "insert"
        if kind == "reinsert" and not self.deleted:
            kind = "insert"
        if kind in ("insert", "ttl_insert") and not self.fresh:
            kind = "reinsert" if self.deleted else "text_update"
        if kind == "text_update" and not self.live:
            kind = "poison"
        if kind == "poison_live" and self._live_key_with_text() is None:
            kind = "poison"
        return kind

    def _live_key_with_text(self) -> str | None:
        """A live key whose row has a text (a text-less row has no metadata to refuse); None if none is found."""
        for _ in range(10):
            if not self.live:
                return None
            key_id = self.live.choice(self.rng)
            if self.rows[key_id].get(self.text):
                return key_id
        return None

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
        return Write("text_update", change, skew_s=self._skew(key_id))

    def _key_text_change(self) -> Write:
        """Text and several other columns in one write."""
        key_id = self.live.choice(self.rng)
        change = {**self._key_of(key_id), self.text: sentence(self.rng)}
        for column in self.rng.sample(self.value_columns, 4):
            change[column] = set_value(self.types[column], self.rng)
        self.rows[key_id].update(change)
        return Write("key_text_change", change)

    def _metadata_update(self) -> Write:
        """The whole row written again with the same text and new values elsewhere (no embedding needed)."""
        key_id = self.live.choice(self.rng)
        row = dict(self.rows[key_id])
        for column in self.rng.sample(self.value_columns, self.rng.randint(1, 5)):
            row[column] = set_value(self.types[column], self.rng)
        self.rows[key_id] = row
        return Write("metadata_update", dict(row), skew_s=self._skew(key_id))

    def _partial_update(self) -> Write:
        """A CQL upsert of a few columns (the others keep their values); sometimes one is set to null."""
        key_id = self.live.choice(self.rng)
        change = self._key_of(key_id)
        for column in self.rng.sample(self.value_columns, self.rng.randint(1, 3)):
            change[column] = None if self.rng.random() < 0.15 else set_value(self.types[column], self.rng)
        self.rows[key_id].update(change)
        return Write("partial_update", change, skew_s=self._skew(key_id))

    def _skew(self, key_id: str) -> float | None:
        """The second client's clock error for a write of ``key_id``, or None (the first client writes it).

        The second client never writes keys that were ever poisoned: an out-of-order timestamp there could
        shadow the poison (or its fix) in the table, and the soak counts each poison change in the DLQ."""
        if key_id in self.ever_poisoned or self.rng.random() >= SKEWED_CLIENT_SHARE:
            return None
        if self.rng.random() < 0.05:
            self.skew_s = self.rng.choice(SKEWS_S)
        return self.skew_s

    def _column_ttl(self) -> Write:
        """``UPDATE ... USING TTL n SET a = ..., b = ...``: those columns expire alone; the row stays."""
        key_id = self.live.choice(self.rng)
        change = self._key_of(key_id)
        for column in self.rng.sample(self.value_columns, self.rng.randint(1, 2)):
            change[column] = set_value(self.types[column], self.rng)
        self.rows[key_id].update(change)
        ttl = self.rng.choice(TTL_SECONDS)
        return Write("column_ttl", change, ttl_s=ttl, partial=True, skew_s=self._skew(key_id))

    def _null_write(self) -> Write:
        """``UPDATE ... SET a = null``: a cell tombstone; the column leaves the row (and its metadata)."""
        key_id = self.live.choice(self.rng)
        change = self._key_of(key_id)
        for column in self.rng.sample(self.value_columns, self.rng.randint(1, 2)):
            change[column] = None
        self.rows[key_id].update(change)
        return Write("null_write", change, partial=True, skew_s=self._skew(key_id))

    def _collection_add(self) -> Write:
        """``SET c = c + ...`` on a list, set or map: the only change of the row (no text, no other column)."""
        key_id = self.live.choice(self.rng)
        column = self.rng.choice(COLLECTION_COLUMNS)
        added = set_value(self.types[column], self.rng)
        return Write("collection_add", {**self._key_of(key_id), "$add": {column: added}}, partial=True)

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
            row["title"] = _oversize_title(self.rng)
        return Write(f"poison_{kind}", row)

    def _poison_live(self) -> Write:
        """An oversize title written to a live row (a partial upsert): refused, while the index keeps the row's
        previous state until the key's next valid change."""
        key_id = self._live_key_with_text()
        if key_id is None:
            return self._poison()
        self.live.remove(key_id)
        self.poisoned.add(key_id)
        self.ever_poisoned.add(key_id)
        change = {**self._key_of(key_id), "title": _oversize_title(self.rng)}
        self.rows[key_id].update(change)
        return Write("poison_live_oversize_metadata", change)

    def _fix(self) -> Write:
        """The valid change that follows a poisoned live key: metadata only, a new text, or a delete."""
        key_id = self.poisoned.choice(self.rng)
        self.poisoned.remove(key_id)
        roll = self.rng.random()
        if roll < 0.15:
            self.deleted.add(key_id)
            del self.rows[key_id]
            return Write("fix_delete", self._key_of(key_id))
        self.live.add(key_id)
        if roll < 0.45:
            change = {
                **self._key_of(key_id),
                self.text: sentence(self.rng),
                "title": random_value(self.types["title"], self.rng),
            }
            self.rows[key_id].update(change)
            return Write("fix_text", change)
        # The whole row again with the same text: no embedding needed, but the metadata must change.
        row = dict(self.rows[key_id])
        row["title"] = random_value(self.types["title"], self.rng)
        for column in self.rng.sample(self.value_columns, self.rng.randint(0, 3)):
            if column != "title":
                row[column] = set_value(self.types[column], self.rng)
        self.rows[key_id] = row
        return Write("fix_metadata", dict(row))

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


def _oversize_title(rng: random.Random) -> str:
    """A title of about 2.9 KB: over the 2 KB S3 Vectors allows for filterable metadata, and unique."""
    return " ".join(rng.choice(WORDS) for _ in range(420))


def generate_workload(config: PipelineConfig, changes: int, *, keys: int | None = None, seed: int = 7) -> Workload:
    """A seeded workload of exactly ``changes`` changes over ``keys`` composite keys (default: changes / 3)."""
    if changes < 1:
        raise ValueError("changes must be at least 1")
    return WorkloadGenerator(config, keys=keys or max(10, changes // 3), seed=seed).generate(changes)
