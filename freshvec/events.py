"""The change event: one JSON document per row change, forwarder -> Kinesis -> sink (docs/change-event.md).

The contract is versioned (``v``) and independent of the source. Values inside ``key``, ``new`` and ``old``
are JSON-safe cell values as listed in the docs (decimals as exact strings, dates as ``YYYY-MM-DD``, ...).
``parse_event`` is the sink's gate: anything that does not match raises ``PoisonRecordError`` naming the
first problem, so it can be parked with its payload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from freshvec import versions
from freshvec.constants import (
    EVENT_UNSENDABLE,
    EVENT_VECTORS,
    EVENT_VERSION,
    KINESIS_MAX_RECORD_BYTES,
    OPS,
    ORIGINS,
    RESYNC_ORIGINS,
)
from freshvec.errors import PoisonRecordError

Row = dict[str, Any]


@dataclass(frozen=True)
class ChangeEvent:
    keyspace: str
    table: str
    op: str  # INSERT | UPDATE | DELETE | EXPIRE | TRUNCATE (the whole table; key {"$table": ...})
    key: Row  # partition + clustering columns, in primary-key order
    new: Row | None  # whole row after the change (None for DELETE/EXPIRE)
    old: Row | None  # whole row before the change (None for INSERT, or unknown)
    seq: str  # source position (Keyspaces sequence number, or a backfill position)
    shard: str  # source shard id
    ts: str  # change time, ISO 8601 UTC
    origin: str = "USER"  # USER | TTL | REPLICATION | BACKFILL | REDRIVE | RECONCILE
    source: str = "keyspaces"
    # Where the row state this change reflects sits in the source's order (``freshvec.versions``: a string such
    # as ``pg:...``, ``pgsnap:...``, ``ks:...`` or ``ksread:...``). None only from producers that predate it.
    version: str | None = None
    # A reconcile repair is compare-and-set: applied iff the key still holds exactly the write reconcile saw
    # (``if_wid``: that write's id; "" for "no vector"), whatever its version. None: not a repair.
    if_wid: str | None = None
    # Chunk numbers (> 0) reconcile saw stored for the row beyond what chunk 0 counts: removed with the repair.
    orphan_chunks: tuple[int, ...] = ()
    v: int = EVENT_VERSION
    extra: Row = field(default_factory=dict, compare=False)  # unknown top-level fields, kept for forward compat

    @property
    def is_removal(self) -> bool:
        return self.op in ("DELETE", "EXPIRE")

    @property
    def is_resync(self) -> bool:
        """Read from the table by backfill, redrive or reconcile, not taken from the live change stream."""
        return self.origin in RESYNC_ORIGINS

    @property
    def is_repair(self) -> bool:
        """A reconcile repair: compare-and-set on the write id it saw (``if_wid``), not ordered by version."""
        return self.if_wid is not None

    @property
    def position(self) -> versions.Version | None:
        """The parsed version (None: unknown)."""
        return versions.parse(self.version)

    @property
    def changed_at(self) -> datetime:
        return parse_timestamp(self.ts)

    def to_dict(self) -> Row:
        doc: Row = {
            "v": self.v,
            "source": self.source,
            "keyspace": self.keyspace,
            "table": self.table,
            "op": self.op,
            "key": self.key,
            "new": self.new,
            "old": self.old,
            "seq": self.seq,
            "shard": self.shard,
            "ts": self.ts,
            "origin": self.origin,
        }
        if self.version is not None:
            doc["version"] = self.version
        if self.if_wid is not None:
            doc["if_wid"] = self.if_wid
        if self.orphan_chunks:
            doc["orphan_chunks"] = list(self.orphan_chunks)
        doc.update(self.extra)
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def to_bytes(self) -> bytes:
        return self.to_json().encode("utf-8")


def sendable_bytes(event: ChangeEvent, partition_key: str) -> bytes:
    """The event's bytes as they fit one Kinesis record with ``partition_key``.

    Too large whole, it goes without its old image (only a hint to the sink: ``old_omitted``), then without the
    vectors a batch job computed (the sink embeds instead). Still too large — a row whose text alone passes the
    limit — it goes as the row's marker: key, op, version and origin, an empty row image and the reason
    (``unsendable``). The sink parks the marker with that reason and removes the row's older vectors, as for
    any change it can never index, so the index never serves an older state of the row; a later change that
    fits indexes it again."""
    room = KINESIS_MAX_RECORD_BYTES - len(partition_key.encode("utf-8"))
    data = event.to_bytes()
    if len(data) <= room:
        return data
    if event.old is not None:
        event = replace(event, old=None, extra={**event.extra, "old_omitted": True})
        data = event.to_bytes()
        if len(data) <= room:
            return data
    extra = {k: v for k, v in event.extra.items() if k != EVENT_VECTORS}
    if len(extra) < len(event.extra):
        event = replace(event, extra=extra)
        data = event.to_bytes()
        if len(data) <= room:
            return data
    reason = f"change event is {len(data)} bytes; a Kinesis record holds at most {KINESIS_MAX_RECORD_BYTES}"
    marker = replace(event, new=None if event.new is None else {}, extra={**extra, EVENT_UNSENDABLE: reason})
    return marker.to_bytes()


def unsendable_reason(event: ChangeEvent) -> str | None:
    """Why the producer sent only the row's marker (``sendable_bytes``), or None for a whole change event."""
    reason = event.extra.get(EVENT_UNSENDABLE)
    return reason if isinstance(reason, str) else None


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "source": str,
    "keyspace": str,
    "table": str,
    "op": str,
    "key": dict,
    "seq": str,
    "shard": str,
    "ts": str,
    "origin": str,
}
_KNOWN = set(_REQUIRED) | {"new", "old", "version", "if_wid", "orphan_chunks"}


def parse_event(payload: bytes | str | Mapping[str, Any]) -> ChangeEvent:
    """Decode and validate one change event; raise PoisonRecordError naming the first problem."""
    doc = _decode(payload)
    if isinstance(doc.get("error"), str) and "op" not in doc:
        # An error envelope: the forwarder could not build a change event and says why; park it with that reason.
        raise PoisonRecordError(doc["error"])
    for name, expected in _REQUIRED.items():
        if name not in doc:
            raise PoisonRecordError(f"change event is missing '{name}'")
        value = doc[name]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise PoisonRecordError(f"change event field '{name}' has the wrong type ({type(value).__name__})")
    if doc["v"] != EVENT_VERSION:
        raise PoisonRecordError(f"change event version {doc['v']} is not supported (expected {EVENT_VERSION})")
    if doc["op"] not in OPS:
        raise PoisonRecordError(f"change event op {doc['op']!r} is not one of {', '.join(OPS)}")
    if doc["origin"] not in ORIGINS:
        raise PoisonRecordError(f"change event origin {doc['origin']!r} is not one of {', '.join(ORIGINS)}")
    if not doc["key"]:
        raise PoisonRecordError("change event 'key' is empty")
    for image in ("new", "old"):
        if doc.get(image) is not None and not isinstance(doc[image], dict):
            raise PoisonRecordError(f"change event field '{image}' must be an object or null")
    new, old = doc.get("new"), doc.get("old")
    if doc["op"] in ("INSERT", "UPDATE") and new is None:
        raise PoisonRecordError(f"{doc['op']} change event has no 'new' image")
    version = _version(doc.get("version"), doc["op"])
    if_wid, orphans = _repair(doc)
    try:
        parse_timestamp(doc["ts"])
    except ValueError as exc:
        raise PoisonRecordError(f"change event 'ts' is not an ISO 8601 time: {doc['ts']!r}") from exc
    return ChangeEvent(
        keyspace=doc["keyspace"],
        table=doc["table"],
        op=doc["op"],
        key=doc["key"],
        new=new,
        old=old,
        seq=doc["seq"],
        shard=doc["shard"],
        ts=doc["ts"],
        origin=doc["origin"],
        version=version,
        if_wid=if_wid,
        orphan_chunks=orphans,
        source=doc["source"],
        v=doc["v"],
        extra={k: v for k, v in doc.items() if k not in _KNOWN},
    )


def _version(value: Any, op: str) -> str | None:
    """A version text (``freshvec.versions``). An integer is a version from before versions were texts: it
    cannot be ordered, so it reads as unknown."""
    if op == "TRUNCATE" and not isinstance(value, str):
        raise PoisonRecordError("TRUNCATE change event has no 'version': what it removes cannot be told apart")
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return None
    if not isinstance(value, str) or versions.parse(value) is None:
        raise PoisonRecordError(f"change event 'version' is not a version (docs/change-event.md): {value!r}")
    if op == "TRUNCATE" and not isinstance(versions.parse(value), versions.PgChange):
        raise PoisonRecordError(f"TRUNCATE change event 'version' must be a PostgreSQL change version: {value!r}")
    return value


def _repair(doc: Mapping[str, Any]) -> tuple[str | None, tuple[int, ...]]:
    if_wid, orphans = doc.get("if_wid"), doc.get("orphan_chunks") or []
    if if_wid is not None and not isinstance(if_wid, str):
        raise PoisonRecordError(f"change event 'if_wid' must be a string, got {type(if_wid).__name__}")
    if if_wid is not None and doc["origin"] != "RECONCILE":
        raise PoisonRecordError("only a RECONCILE change event may carry 'if_wid'")
    if not isinstance(orphans, list) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in orphans):
        raise PoisonRecordError("change event 'orphan_chunks' must be a list of chunk numbers above 0")
    if orphans and if_wid is None:
        raise PoisonRecordError("change event 'orphan_chunks' needs 'if_wid' (it is part of a repair)")
    return if_wid, tuple(orphans)


def _decode(payload: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(payload, Mapping):
        return dict(payload)
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PoisonRecordError(f"change event is not UTF-8 text: {exc}") from exc
    try:
        doc = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise PoisonRecordError(f"change event is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise PoisonRecordError(f"change event must be a JSON object, got {type(doc).__name__}")
    return doc


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 with a zone (``Z`` accepted); raises ValueError otherwise."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def format_timestamp(moment: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix: the one timestamp form the pipeline writes."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
