"""TRUNCATE in the sink: one change event for the whole table, applied where it stands in its batch.

A PostgreSQL ``TRUNCATE`` arrives as one change event (op ``TRUNCATE``, key ``{"$table": "<schema>.<table>"}``,
``version`` its commit LSN). The sink splits a batch at each one: the records before it are applied first
(the ordinary sink), then the TRUNCATE, then the rest. Applying it deletes every vector of the index whose
``_ver`` is older than the TRUNCATE's version (or has none: it predates versions and cannot be newer), with a
tombstone at that version for each, so a re-sync put read before the TRUNCATE cannot bring the row back.
Vectors at or above its version stay: those rows were written after the TRUNCATE (on another Kinesis shard,
applied first).

A TRUNCATE's partition key is the table, so it may travel on another Kinesis shard than the row changes
before it, and be applied before them (or before their re-sent copies after a forwarder crash). So it also
leaves a table-wide tombstone (the *floor*, kept as long as a per-key one): with a PostgreSQL source the sink
sets aside every change older than the floor (``set_aside_older``, which also deletes what such a change
may have written), and re-reads the floor after its puts (``recheck``) to undo a put that raced a TRUNCATE
being applied. The floor is written before the index is listed, so a put either sees the floor or is seen
by the listing.

The index is listed whole (ListVectors pages of 1,000 with metadata) before anything is deleted, so the
deletes cannot disturb the listing; tombstones go first, then DeleteVectors in calls of at most 500. A
transient failure leaves the TRUNCATE (and what follows it) to re-delivery; everything it did is idempotent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from freshvec import constants as c
from freshvec.errors import PoisonRecordError, TransientError
from freshvec.events import ChangeEvent, parse_event
from freshvec.metadata import epoch_millis
from freshvec.plan import Action, KeyPlan, ParsedRecord, stored_version
from freshvec.ports import DeadLetterSendError

if TYPE_CHECKING:
    from freshvec.sink import Sink, SinkResult, SinkStats

TRUNCATE_OP = "TRUNCATE"
TABLE_KEY = "$table"  # the key of a TRUNCATE event (as the PostgreSQL reader writes it)
_COUNTERS = (
    "embeddings_computed",
    "embeddings_skipped",
    "texts_truncated",
    "searchable_text_cut",
    "vectors_put",
    "vectors_deleted",
    "stale_skipped",
    "tombstones_written",
    "vectors_read",
)


def floor_key(keyspace: str, table: str) -> str:
    """The tombstone key of a table's last TRUNCATE (vector keys are JSON arrays: no vector key looks like it)."""
    return f"{TABLE_KEY}:{keyspace}.{table}"


def set_aside_older(sink: Sink, parsed: Sequence[ParsedRecord]) -> int:
    """Make the changes older than the table's last TRUNCATE unusable (they describe rows it removed) and delete
    what an earlier attempt may have written for them; returns how many were set aside. PostgreSQL only."""
    if sink.config.source.kind != "postgres":
        return 0
    candidates = [r for r in parsed if r.usable and r.version is not None]
    floor = _floor(sink) if candidates else None
    if floor is None:
        return 0
    older = [r for r in candidates if r.version is not None and r.version < floor]
    keys = sorted({r.key for r in older if r.key is not None})
    if keys:
        stored = sink.store.get(keys, return_data=False, return_metadata=True)
        _remove(sink, [k for k in keys if k in stored and _older_than(stored[k], floor)], floor)
    for record in older:
        record.key = None  # no longer usable: not coalesced, not written, not parked
    return len(older)


def recheck(sink: Sink, written: Sequence[KeyPlan]) -> None:
    """After the puts: delete any put older than a TRUNCATE applied meanwhile (from another shard)."""
    if sink.config.source.kind != "postgres":
        return
    puts = [p for p in written if p.action is Action.PUT and p.version is not None]
    floor = _floor(sink) if puts else None
    if floor is not None:
        _remove(sink, [p.key for p in puts if p.version is not None and p.version < floor], floor)


def _floor(sink: Sink) -> int | None:
    key = floor_key(sink.config.keyspace, sink.config.table)
    return sink.tombstones.get([key]).get(key)


def _remove(sink: Sink, keys: list[str], version: int, stats: SinkStats | None = None) -> None:
    """Tombstones at ``version`` first, then DeleteVectors in calls of at most 500."""
    if not keys:
        return
    expires_at = sink.clock() + sink.config.sink.max_record_age_s + _tombstone_margin_s()
    sink.tombstones.put(dict.fromkeys(keys, version), expires_at)
    if stats is not None:
        stats.tombstones_written += len(keys)
    for start in range(0, len(keys), c.S3V_PUT_BATCH):
        chunk = keys[start : start + c.S3V_PUT_BATCH]
        sink.store.delete(chunk)
        if stats is not None:
            stats.vectors_deleted += len(chunk)


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


def process_split(sink: Sink, records: list[dict[str, Any]]) -> SinkResult:
    """Apply a batch (in sequence order) that holds TRUNCATEs: each part between them through ``sink.process``,
    each TRUNCATE here; stop at the first record that must be re-delivered."""
    from freshvec.sink import SinkResult, SinkStats  # deferred: freshvec.sink imports this module

    started = sink.clock()
    total = SinkStats(changes_received=len(records))
    dead_letters: list[dict[str, str]] = []
    part: list[dict[str, Any]] = []
    position = {str(r.get("kinesis", {}).get("sequenceNumber", "")): i for i, r in enumerate(records)}

    def failed_at(index: int) -> SinkResult:
        total.transient_failures = len(records) - index
        total.batch_duration_ms = (sink.clock() - started) * 1000
        failures = [{"itemIdentifier": str(records[index].get("kinesis", {}).get("sequenceNumber", ""))}]
        return SinkResult(failures, total, dead_letters)

    for index, record in enumerate([*records, None]):
        if record is not None and not is_truncate(record):
            part.append(record)
            continue
        if part:
            result = sink.process(part)
            _add(total, result.stats)
            dead_letters.extend(result.dead_letters)
            if result.batch_item_failures:
                return failed_at(position[result.batch_item_failures[0]["itemIdentifier"]])
            part = []
        if record is None:
            break
        if not _apply(sink, index, record, total, dead_letters):
            return failed_at(index)
    total.batch_duration_ms = (sink.clock() - started) * 1000
    return SinkResult([], total, dead_letters)


def _apply(sink: Sink, index: int, record: Mapping[str, Any], stats: SinkStats, dead: list[dict[str, str]]) -> bool:
    """One TRUNCATE record: applied or parked (True), or left to re-delivery (False)."""
    try:
        event = _parse(sink, record)
    except PoisonRecordError as exc:
        return _park(sink, index, record, exc, stats=stats, dead=dead)
    assert event.version is not None  # parse_event requires it for TRUNCATE
    try:
        floor = _floor(sink)
        if floor is None or floor < event.version:  # a re-delivered older TRUNCATE never lowers it
            expires_at = sink.clock() + sink.config.sink.max_record_age_s + _tombstone_margin_s()
            sink.tombstones.put({floor_key(sink.config.keyspace, sink.config.table): event.version}, expires_at)
        doomed = [
            vector["key"]
            for page in sink.store.scan(return_metadata=True)
            for vector in page
            if _older_than(vector, event.version)
        ]
        _remove(sink, doomed, event.version, stats)
    except TransientError:
        return False
    stats.freshness_ms.append(sink.clock() * 1000 - epoch_millis(event.changed_at))
    return True


def _parse(sink: Sink, record: Mapping[str, Any]) -> ChangeEvent:
    try:
        data = base64.b64decode(record.get("kinesis", {}).get("data", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PoisonRecordError(f"Kinesis data is not base64: {exc}") from exc
    event = parse_event(data)
    config = sink.config
    if (event.keyspace, event.table) != (config.keyspace, config.table):
        raise PoisonRecordError(
            f"TRUNCATE is for {event.keyspace}.{event.table}; this sink serves {config.keyspace}.{config.table}"
        )
    expected = {TABLE_KEY: f"{config.keyspace}.{config.table}"}
    if event.key != expected:
        raise PoisonRecordError(f"TRUNCATE key must be {json.dumps(expected)}, got {json.dumps(event.key)}")
    return event


def _older_than(vector: Mapping[str, Any], version: int) -> bool:
    stored = stored_version(vector)
    return stored is None or stored < version


def _park(
    sink: Sink,
    index: int,
    record: Mapping[str, Any],
    error: PoisonRecordError,
    *,
    stats: SinkStats,
    dead: list[dict[str, str]],
) -> bool:
    from freshvec.sink import _dead_letter  # deferred: freshvec.sink imports this module

    kinesis = record.get("kinesis", {})
    shard_id = str(record.get("eventID", "")).split(":", 1)[0]
    parsed = ParsedRecord(index, str(kinesis.get("sequenceNumber", "")), shard_id, record, error=error)
    try:
        sink.dlq.send([_dead_letter(parsed)])
    except DeadLetterSendError:
        return False
    dead.append(
        {"sequence_number": parsed.sequence_number, "error_class": type(error).__name__, "error_message": str(error)}
    )
    stats.dlq_records += 1
    return True


def _tombstone_margin_s() -> int:
    from freshvec.sink import TOMBSTONE_MARGIN_S  # deferred: freshvec.sink imports this module

    return TOMBSTONE_MARGIN_S


def _add(total: SinkStats, part: SinkStats) -> None:
    for name in _COUNTERS:
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.dlq_records += part.dlq_records
    total.freshness_ms.extend(part.freshness_ms)
