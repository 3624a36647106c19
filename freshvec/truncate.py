"""TRUNCATE, a step of the sink's plan: one change event for the whole table, applied where it stands.

A PostgreSQL ``TRUNCATE`` arrives as one change event (op ``TRUNCATE``, key ``{"$table": "<schema>.<table>"}``)
whose version is a live change version (``freshvec.versions.PgChange``: commit LSN, position in its
transaction, xid). The sink (``freshvec.sink``) splits a batch at each one: the records before it are applied
first, then the TRUNCATE (``apply_truncate``), then the rest. Applying it removes every vector the TRUNCATE
supersedes: a live change's vector at an earlier (commit LSN, position) — so writes its own transaction made
before it go too, and those after it stay — and a re-sync's vector whose snapshot does not see the TRUNCATE's
transaction (or a vector with no version it can be ordered by). Every chunk of such a row carries the row's
version, so whole rows go, never chunk 0 alone.

A TRUNCATE's partition key is the table, so it may travel on another Kinesis shard than the row changes
before it, and be applied before them (or before their re-sent copies after a forwarder crash). So it leaves
a table-wide tombstone, the *floor* (kept as long as a per-key one, and only ever raised): with a PostgreSQL
source the sink sets aside every change the floor supersedes (``set_aside_older``, which also removes what
such a change may have written, every chunk of the row), and re-reads the floor after its puts (``recheck``)
to remove every chunk of a put that raced a TRUNCATE being applied. The floor is written before the index is
listed, so a put either sees the floor or is seen by the listing (ListVectors is strongly consistent:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-list.html).

A put *newer* than the floor can race it too: the TRUNCATE lists the index, another shard's sink replaces a
listed (older) vector with a newer row, and the TRUNCATE's delete by its listing removes it. S3 Vectors has no
conditional delete, so a GetVectors re-check before each delete would only narrow that window. Instead the
floor has a state per index: two more tombstones, *started* and *done*, rise to the TRUNCATE's version before
its listing and after its deletes (all only rise, so a re-delivered TRUNCATE completes it again and an older
one never lowers it; a TRUNCATE this index is already done with, or an older one, deletes nothing again); the
index is *applying* while done is below started. A sink reads the state before its puts and again after them;
a put is safe iff the state did not change and is not applying (then every delete of every TRUNCATE up to
the floor happened before the put, and a later one starts, and lists, after it). Otherwise the sink waits
(bounded) for the index to be done and puts the row again, or, past its budget, leaves the record to
re-delivery — never the DLQ. A TRUNCATE is parked only when it cannot be parsed, before it raises anything, so
a parked TRUNCATE never leaves an index applying; one that keeps failing leaves it applying at most for the
tombstones' lifetime.

The index is listed whole (ListVectors pages of 1,000 with metadata) before anything is deleted, so the
deletes cannot disturb the listing; DeleteVectors then goes in calls of at most 500. A transient failure
leaves the TRUNCATE (and what follows it) to re-delivery; everything it does is idempotent.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from freshvec import constants as c
from freshvec import versions
from freshvec.chunking import chunk_keys, stored_chunk_count
from freshvec.config import PipelineConfig
from freshvec.errors import FreshvecError, PoisonRecordError
from freshvec.events import ChangeEvent, parse_event
from freshvec.keys import chunk_key
from freshvec.plan import Action, KeyPlan, ParsedRecord, stored_version
from freshvec.ports import TombstoneStore, VectorStore
from freshvec.sink_calls import put_calls
from freshvec.versions import Version

TRUNCATE_OP = "TRUNCATE"
TABLE_KEY = "$table"  # the key of a TRUNCATE event (as the PostgreSQL reader writes it)


def floor_key(keyspace: str, table: str) -> str:
    """The tombstone key of a table's last TRUNCATE (vector keys are JSON arrays: no vector key looks like it)."""
    return f"{TABLE_KEY}:{keyspace}.{table}"


def progress_keys(config: PipelineConfig) -> tuple[str, str]:
    """The tombstone keys that rise to a TRUNCATE's version when it starts, and when it has done, its deletes in
    this sink's index (each generation's index has its own: one may be done while another is applying)."""
    base = floor_key(config.keyspace, config.table)
    return f"{base}#started:{config.vector_index_name}", f"{base}#done:{config.vector_index_name}"


@dataclass(frozen=True)
class FloorState:
    """The table's floor, and how far TRUNCATEs went in this index (version texts; None: none)."""

    floor: str | None = None
    started: str | None = None
    done: str | None = None

    @property
    def version(self) -> Version | None:
        return versions.parse(self.floor)

    @property
    def applying(self) -> bool:
        """A TRUNCATE started on this index and has not finished its deletes."""
        return versions.newer(versions.parse(self.started), versions.parse(self.done))


def read_state(tombstones: TombstoneStore, config: PipelineConfig) -> FloorState:
    """The floor's state (PostgreSQL only: other sources have no floor)."""
    if config.source.kind != "postgres":
        return FloorState()
    floor, (started, done) = floor_key(config.keyspace, config.table), progress_keys(config)
    found = tombstones.get([floor, started, done])
    return FloorState(found.get(floor), found.get(started), found.get(done))


def tombstone_lifetime_s(config: PipelineConfig) -> float:
    """How long a tombstone (and the floor) lives: the oldest change the event source mapping can still deliver,
    plus a margin for the time between a re-sync read and its put to the change stream."""
    return config.sink.max_record_age_s + c.TOMBSTONE_MARGIN_S


def superseded(floor: Version, version: Version | None) -> bool:
    """Whether the TRUNCATE at ``floor`` removed the state at ``version`` (unknown versions: yes, they predate
    versions and cannot be newer)."""
    return version is None or versions.newer(floor, version)


def set_aside_older(store: VectorStore, state: FloorState, parsed: Sequence[ParsedRecord]) -> int:
    """Make the changes the table's last TRUNCATE (``state``, read before) supersedes unusable (they describe rows
    it removed) and remove every chunk an earlier attempt may have written for them; returns how many were set
    aside."""
    candidates = [r for r in parsed if r.usable]
    floor = state.version
    if floor is None:
        return 0
    older = [r for r in candidates if r.version is not None and superseded(floor, r.version)]
    keys = sorted({r.key for r in older if r.key is not None})
    if keys:
        stored = store.get(keys, return_data=False, return_metadata=True)
        doomed = [k for k in keys if k in stored and superseded(floor, stored_version(stored[k]))]
        _delete_rows(store, {k: stored_chunk_count(stored[k]) for k in doomed})
    for record in older:
        record.key = None  # no longer usable: not coalesced, not written, not parked
    return len(older)


def recheck(
    store: VectorStore,
    tombstones: TombstoneStore,
    config: PipelineConfig,
    written: Sequence[KeyPlan],
    before: FloorState,
    *,
    wait_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[KeyPlan]:
    """After the puts (made under the floor state ``before``): remove every chunk of a put the table's last
    TRUNCATE supersedes (applied meanwhile from another shard), and make good a newer put a TRUNCATE being
    applied may have deleted by its listing: wait up to ``wait_s`` for its deletes to be done, then put the row
    again. Returns the puts still unconfirmed (their records go back to re-delivery). PostgreSQL only."""
    if config.source.kind != "postgres":
        return []
    puts = [p for p in written if p.action is Action.PUT and p.version is not None]
    deadline = clock() + wait_s
    delay = c.TRUNCATE_WAIT_FIRST_S
    while puts:
        after = read_state(tombstones, config)
        floor = after.version
        if floor is not None:
            _delete_rows(store, {p.key: len(p.chunks) for p in puts if superseded(floor, p.version)})
            puts = [p for p in puts if not superseded(floor, p.version)]
        if not puts or (after == before and not after.applying):
            return []
        # A TRUNCATE raised the floor or deleted since ``before``: its listing may have removed these puts.
        while after.applying and clock() + delay <= deadline:
            sleep(delay)
            delay = min(delay * 2, c.TRUNCATE_WAIT_MAX_S)
            after = read_state(tombstones, config)
        if after.applying:
            return puts
        try:
            for _, _, items in put_calls(puts):
                store.put(items)
        except FreshvecError:
            return puts
        before = after
    return []


def apply_truncate(
    store: VectorStore, tombstones: TombstoneStore, config: PipelineConfig, event: ChangeEvent, expires_at: float
) -> int:
    """Raise the floor to the TRUNCATE, remove every vector it supersedes, then mark it done; returns how many
    were removed. TransientError leaves it to re-delivery (it is idempotent, and completes the done)."""
    truncated_at = versions.parse(event.version)
    assert truncated_at is not None  # parse_event requires a PostgreSQL change version for TRUNCATE
    version = truncated_at.text()
    started, done = progress_keys(config)
    tombstones.put({floor_key(config.keyspace, config.table): version}, expires_at)
    if not versions.newer(truncated_at, versions.parse(tombstones.get([done]).get(done))):
        return 0  # this index is done with it, or with a newer TRUNCATE (which removed all this one would)
    tombstones.put({started: version}, expires_at)  # applying: puts from now on wait for the done
    doomed = [
        vector["key"]
        for page in store.scan(return_metadata=True)
        for vector in page
        if superseded(truncated_at, stored_version(vector))
    ]
    _delete_keys(store, doomed)
    # Done: a put made under this state was made after every delete above.
    tombstones.put({done: version}, expires_at)
    return len(doomed)


def _delete_rows(store: VectorStore, counts: Mapping[str, int]) -> None:
    """Every chunk of each row (``counts``: row key -> chunks), chunk 0 of each row last."""
    others = [key for row, count in counts.items() for key in chunk_keys(row, count, start=1)]
    _delete_keys(store, others + [chunk_key(row, 0) for row in counts])


def _delete_keys(store: VectorStore, keys: list[str]) -> None:
    for start in range(0, len(keys), c.S3V_PUT_BATCH):
        store.delete(keys[start : start + c.S3V_PUT_BATCH])


def is_truncate(record: Mapping[str, Any]) -> bool:
    """Whether a Lambda Kinesis record carries a TRUNCATE change event (anything unreadable: no)."""
    try:
        data = base64.b64decode(record.get("kinesis", {}).get("data", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    if TRUNCATE_OP.encode() not in data:  # cheap: most records are not
        return False
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("op") == TRUNCATE_OP


def in_batch(records: Sequence[Mapping[str, Any]]) -> bool:
    return any(is_truncate(record) for record in records)


def parse_truncate(record: Mapping[str, Any], config: PipelineConfig) -> ChangeEvent:
    """The TRUNCATE change event of a Kinesis record; PoisonRecordError when it cannot be applied here."""
    try:
        data = base64.b64decode(record.get("kinesis", {}).get("data", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PoisonRecordError(f"Kinesis data is not base64: {exc}") from exc
    return check_truncate(data, config)


def check_truncate(data: bytes, config: PipelineConfig) -> ChangeEvent:
    """The TRUNCATE change event ``data`` holds; PoisonRecordError when this sink cannot apply it (also what
    ``freshvec redrive send`` checks before it re-sends a parked one)."""
    event = parse_event(data)
    if event.op != TRUNCATE_OP:
        raise PoisonRecordError(f"not a TRUNCATE: op {event.op}")
    if config.source.kind != "postgres":  # unordered against this source's versions, it would remove every vector
        raise PoisonRecordError(f"TRUNCATE comes from PostgreSQL; this sink serves a {config.source.kind} table")
    if (event.keyspace, event.table) != (config.keyspace, config.table):
        raise PoisonRecordError(
            f"TRUNCATE is for {event.keyspace}.{event.table}; this sink serves {config.keyspace}.{config.table}"
        )
    expected = {TABLE_KEY: f"{config.keyspace}.{config.table}"}
    if event.key != expected:
        raise PoisonRecordError(f"TRUNCATE key must be {json.dumps(expected)}, got {json.dumps(event.key)}")
    return event
