"""What one key's changes in a batch amount to, decided against what the index holds — the exactness rules.

Change history is not trusted to describe the index; what is stored is. Two facts ride with every vector:

- its **fingerprint** (``_fp``): a hash of exactly what was embedded — the model, its dimensions and
  normalisation, the input limit the text is cut to, and the text. A stored vector is reused if and only if
  its fingerprint equals the new text's; the change's old image is never proof (a parked or lost change
  would otherwise let a later metadata-only update put an old text's vector under a new text). A model or
  dimension change alters every fingerprint, so each row is re-embedded on its next change.
- its **version** and **write id** (``_ver`` = ``<write id>;<version>``, ``freshvec.versions``): where the row
  state sits in the source's order, and which sink write stored it. A change that the stored version
  supersedes is skipped and counted; a Keyspaces re-sync that cannot tell (``Verdict.AMBIGUOUS``) is parked
  for a new read. A delete leaves a tombstone (with a bounded lifetime, and only ever raised) so that a
  change older than the delete cannot bring the row back. A reconcile repair is not ordered by version: it is
  applied iff the key still holds exactly the write reconcile saw (``if_wid``), whatever that write's version.

A row's text may be stored as several vectors (``freshvec.chunking``): each chunk has its own fingerprint,
and a chunk whose fingerprint equals that of ANY stored chunk of the same row reuses that vector, whatever
its position. The version rule and tombstones apply to the row as a whole (chunk 0 holds its ``_ver``).

The functions here are pure: the sink fetches what is stored and applies what they decide.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from freshvec import constants as c
from freshvec import versions
from freshvec.errors import AmbiguousResyncError, FreshvecError, PoisonRecordError
from freshvec.events import ChangeEvent
from freshvec.keys import chunk_key
from freshvec.versions import Verdict, Version

_FINGERPRINT_HEX_CHARS = 32  # 128 bits: collisions are out of reach, and the metadata stays small


def fingerprint(*, model_id: str, dimensions: int, normalize: bool, max_input_chars: int, text: str) -> str:
    """The hash of what embedding ``text`` sends to the model, and how (the cut to the limit is part of it).

    The material is ``json.dumps([model_id, dimensions, normalize, max_input_chars, text], ensure_ascii=False)``;
    it is assembled from the (cached) encoding of the first four and the text's, which gives the same bytes.
    """
    material = _fingerprint_head(model_id, dimensions, normalize, max_input_chars) + _encode_string(text) + "]"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:_FINGERPRINT_HEX_CHARS]


_encode_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) encodes a str with


@functools.lru_cache(maxsize=64)
def _fingerprint_head(model_id: str, dimensions: int, normalize: bool, max_input_chars: int) -> str:
    if not isinstance(model_id, str):  # the head must be JSON exactly as json.dumps writes it
        raise TypeError(f"model_id must be a string, not {type(model_id).__name__}")
    return json.dumps([model_id, dimensions, normalize, max_input_chars], ensure_ascii=False)[:-1] + ", "


def stored_version(stored: Mapping[str, Any] | None) -> Version | None:
    """The version a stored vector carries (None: no vector, or one whose version cannot be ordered)."""
    return versions.parse(stored_write(stored)[1])


def stored_write(stored: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """``(write id, version text)`` of a stored vector (None for what it does not carry)."""
    if not stored:
        return None, None
    return versions.unstamp((stored.get("metadata") or {}).get(c.META_VERSION))


def stored_fingerprint(stored: Mapping[str, Any] | None) -> str | None:
    if not stored:
        return None
    value = (stored.get("metadata") or {}).get(c.META_FINGERPRINT)
    return value if isinstance(value, str) else None


def has_text(text: str | None) -> bool:
    """Not None, and not only whitespace (what ``text.strip()`` would leave empty), without copying the text."""
    return text is not None and text != "" and not text.isspace()


@dataclass
class ChunkPlan:
    """One vector of a row: chunk ``number`` of its text, stored under ``key``."""

    number: int
    key: str
    text: str
    fingerprint: str
    metadata: dict[str, Any]
    vector: list[float] | None = None  # filled in before writing
    reused: bool = False  # the vector came from the index (a stored chunk of the row with this fingerprint)


@dataclass
class ParsedRecord:
    index: int  # position in the batch
    sequence_number: str  # Kinesis sequence number
    shard_id: str
    raw: Mapping[str, Any]  # the Lambda Kinesis record
    event: ChangeEvent | None = None
    key: str | None = None
    text: str | None = None  # the new image's embedded text (None for removals)
    metadata: dict[str, Any] | None = None  # metadata of the new image, when it has text
    fingerprint: str | None = None  # of ``text`` (of its chunk 0 when chunked), when it has text
    error: FreshvecError | None = None  # set when the record is poison
    chunks: list[ChunkPlan] = field(default_factory=list)  # the vectors of the new image, in order

    @property
    def usable(self) -> bool:
        return self.error is None and self.event is not None and self.key is not None

    @property
    def version(self) -> Version | None:
        return self.event.position if self.event is not None else None


class Action(Enum):
    DELETE = "delete"  # remove the vector and leave a tombstone
    PUT = "put"  # write the vector: reused when the stored fingerprint matches, else embedded
    SKIP = "skip"  # older than what the index (or a tombstone) holds: nothing to write


@dataclass
class KeyPlan:
    key: str
    action: Action
    records: list[ParsedRecord]  # every usable record of the key in this batch, in order
    effective: ParsedRecord  # the newest of them: the state the index should end in
    stale: list[ParsedRecord] = field(default_factory=list)  # records skipped as older than another
    chunks: list[ChunkPlan] = field(default_factory=list)  # a put's vectors (the effective record's chunks)
    stored_count: int = 0  # chunks the index holds for the row (read from chunk 0; 0: none)
    orphans: list[int] = field(default_factory=list)  # chunk numbers a repair removes beyond the stored count

    @property
    def vector(self) -> list[float] | None:
        """Chunk 0's vector (a one-chunk row's only one)."""
        return self.chunks[0].vector if self.chunks else None

    @property
    def reused(self) -> bool:
        """Every vector of the put came from the index: the model is not needed."""
        return bool(self.chunks) and all(chunk.reused for chunk in self.chunks)

    @property
    def surplus_keys(self) -> list[str]:
        """Stored chunk keys a put no longer has (the text shrank); a delete's keys: every stored chunk, 0 last."""
        keep = len(self.chunks) if self.action is Action.PUT else 0
        surplus = [chunk_key(self.key, n) for n in range(max(keep, 1), self.stored_count)]
        surplus += [chunk_key(self.key, n) for n in self.orphans if n >= max(keep, 1, self.stored_count)]
        return surplus + ([self.key] if self.action is Action.DELETE else [])

    @property
    def first_index(self) -> int:
        return self.records[0].index

    @property
    def text(self) -> str | None:
        return self.effective.text

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self.effective.metadata

    @property
    def version(self) -> Version | None:
        return self.effective.version

    @property
    def fingerprint(self) -> str | None:
        return self.effective.fingerprint

    @property
    def is_resync(self) -> bool:
        return self.effective.event is not None and self.effective.event.is_resync

    def skip(self) -> None:
        """Nothing of this key is written: every record counts as stale."""
        self.action = Action.SKIP
        self.stale = list(self.records)


def coalesce(records: Sequence[ParsedRecord]) -> dict[str, list[ParsedRecord]]:
    """Usable records grouped per vector key, in batch (sequence) order; a poison change of a known row stands
    as a removal at its version (``unindexable``)."""
    groups: dict[str, list[ParsedRecord]] = {}
    for record in records:
        usable = record if record.usable else unindexable(record)
        if usable is not None:
            assert usable.key is not None
            groups.setdefault(usable.key, []).append(usable)
    return groups


def unindexable(record: ParsedRecord) -> ParsedRecord | None:
    """A removal standing for a poison change of a known row (metadata or a chunk key S3 Vectors refuses, a text
    the model refuses): the row's state at that version can never be indexed as it is, so the index must not
    serve an older one — its vectors go, and a tombstone at the version keeps older changes out. The poison
    change itself is parked. None for any other record (an ambiguous re-sync is read again, not a state)."""
    event = record.event
    error = record.error
    if event is None or record.key is None or not isinstance(error, PoisonRecordError):
        return None
    if isinstance(error, AmbiguousResyncError):
        return None
    removal = dataclasses.replace(event, op="DELETE", new=None)
    return ParsedRecord(record.index, record.sequence_number, record.shard_id, record.raw, removal, record.key)


def plan_key(key: str, records: list[ParsedRecord]) -> KeyPlan:
    """A provisional plan: the last change of the key wins. ``decide`` settles it against what is stored."""
    plan = KeyPlan(key, Action.PUT, records, records[-1])
    _settle(plan, records[-1], [])
    return plan


def _settle(plan: KeyPlan, effective: ParsedRecord, stale: list[ParsedRecord]) -> None:
    assert effective.event is not None
    plan.effective, plan.stale = effective, stale
    removal = effective.event.is_removal or not has_text(effective.text)
    plan.action = Action.DELETE if removal else Action.PUT
    plan.chunks = []
    if plan.action is Action.PUT:
        plan.chunks = [_fresh(chunk) for chunk in effective.chunks] or [_single_chunk(plan.key, effective)]
    plan.orphans = sorted({n for r in plan.records if r.event is not None for n in r.event.orphan_chunks})


def _fresh(chunk: ChunkPlan) -> ChunkPlan:
    """A copy without a vector: a record's chunks are planned again after a failure shrinks the batch."""
    return ChunkPlan(chunk.number, chunk.key, chunk.text, chunk.fingerprint, chunk.metadata)


def _single_chunk(key: str, record: ParsedRecord) -> ChunkPlan:
    assert record.text is not None and record.fingerprint is not None
    return ChunkPlan(0, key, record.text, record.fingerprint, record.metadata or {})


def reuse_pool(stored_chunks: Iterable[Mapping[str, Any] | None]) -> dict[str, list[float]]:
    """Fingerprint -> vector of every stored chunk of one row (those without data or fingerprint left out)."""
    pool: dict[str, list[float]] = {}
    for stored in stored_chunks:
        fp = stored_fingerprint(stored)
        if stored and fp is not None and stored.get("data"):
            pool.setdefault(fp, list(map(float, stored["data"])))
    return pool


def decide(
    plan: KeyPlan,
    stored: Mapping[str, Any] | None,
    tombstone: Version | None,
    pool: Mapping[str, list[float]] | None = None,
    *,
    now_s: float | None = None,
    horizon_s: float | None = None,
) -> list[ParsedRecord]:
    """Settle ``plan`` against the row's stored chunk 0, its tombstone (None: none) and the vectors of all its
    stored chunks by fingerprint (``pool``; None: chunk 0's only). Returns the records to park as ambiguous
    re-syncs (each with its error set); the plan then covers the others.

    The key's changes are folded in batch order, starting from the stored state (or the tombstone, where no
    vector is stored): a repair applies iff nothing before it in the batch won and the key holds exactly the
    write it saw (or, expecting no vector, none is stored and the tombstone does not supersede it); any other
    change applies iff ``versions.verdict`` says so against the state so far. The last change that applies is
    the plan's; if none does, the plan is skipped. Each chunk of a put whose fingerprint matches a stored
    chunk's reuses that vector (set here).
    """
    observed = write_token(stored)
    state = stored_version(stored) if stored is not None else tombstone
    effective: ParsedRecord | None = None
    stale: list[ParsedRecord] = []
    parked: list[ParsedRecord] = []
    vectors = reuse_pool([stored]) if pool is None else pool
    for record in plan.records:
        event = record.event
        assert event is not None
        if event.is_repair:
            holds = effective is None and event.if_wid == observed
            if holds:
                holds = _repair_holds(record.version, stored, tombstone, state, now_s)
            if holds:
                effective, state = record, record.version
            else:
                stale.append(record)
            continue
        refusal = _stamp_refusal(record.version, now_s, horizon_s)
        verdict = Verdict.AMBIGUOUS if refusal else versions.verdict(record.version, state)
        if verdict is Verdict.APPLY:
            effective, state = record, record.version
        elif verdict is Verdict.SKIP or (effective is None and not refusal and _no_news(record, stored, vectors)):
            stale.append(record)
        else:
            record.error = AmbiguousResyncError(refusal or _ambiguity(record.version, state, now_s))
            parked.append(record)
    if parked:
        return parked  # the caller plans the key again without them
    if effective is None:
        plan.skip()
        return []
    _settle(plan, effective, stale)
    if plan.action is Action.PUT:
        for chunk in plan.chunks:
            found = vectors.get(chunk.fingerprint)
            chunk.vector, chunk.reused = (list(found), True) if found is not None else (None, False)
    return []


def write_token(stored: Mapping[str, Any] | None) -> str:
    """What a repair names as "the write I saw": the stored write id; "" for no vector; for a vector written
    before write ids existed, its ``_ver`` text marked as such."""
    if not stored:
        return ""
    write_id, _ = stored_write(stored)
    if write_id is not None:
        return write_id
    return f"unstamped:{(stored.get('metadata') or {}).get(c.META_VERSION)}"


def _stamp_refusal(version: Version | None, now_s: float | None, horizon_s: float | None) -> str | None:
    """Why a Keyspaces re-sync's stamp is refused (None: it is not): older than the tombstone horizon, or
    ahead of the sink's clock by more than the reader's clock bound."""
    if not isinstance(version, versions.KsRead) or now_s is None:
        return None
    stamp_s = version.stamp_us / 1_000_000
    if stamp_s > now_s + c.KEYSPACES_READER_CLOCK_BOUND_S:
        return (
            f"the re-sync is stamped {stamp_s - now_s:.1f} s ahead of the sink's clock (more than the "
            f"{c.KEYSPACES_READER_CLOCK_BOUND_S:g} s clock bound): the reader's clock is wrong; read it again"
        )
    if horizon_s is not None and stamp_s < now_s - horizon_s:
        return f"the re-sync was read more than {horizon_s:.0f} s ago (the tombstone horizon); read it again"
    return None


def _repair_holds(
    version: Version | None,
    stored: Mapping[str, Any] | None,
    tombstone: Version | None,
    state: Version | None,
    now_s: float | None,
) -> bool:
    """A repair that found the write it saw: it applies unless, expecting no vector, a delete since left a newer
    tombstone, or its read may not have seen that write (then the next reconcile, reading later, decides)."""
    if stored is None:
        return versions.verdict(version, tombstone) is Verdict.APPLY
    return not _unseen_by_read(version, state, now_s)


def _unseen_by_read(version: Version | None, stored: Version | None, now_s: float | None) -> bool:
    """A Keyspaces repair whose read may not have seen the stored write: a real write (stamped no later than the
    sink's clock allows) newer than the read's stamp, so within the visibility bound of the read. A version
    from beyond that (corrupt) does not count: the repair replaces it."""
    if not isinstance(version, versions.KsRead) or now_s is None:
        return False
    if versions.verdict(version, stored) is Verdict.APPLY:
        return False
    if isinstance(stored, versions.KsChange):
        at_us = stored.created_us
    elif isinstance(stored, versions.KsRead):
        at_us = stored.stamp_us
    else:
        return False
    return at_us <= (now_s + c.KEYSPACES_READER_CLOCK_BOUND_S) * 1_000_000


def _ambiguity(version: Version | None, state: Version | None, now_s: float | None) -> str:
    seen = f"the re-sync (stamped {versions.text_of(version)}) cannot tell whether its read saw the stored state"
    ahead_s = state.created_us / 1_000_000 - now_s if isinstance(state, versions.KsChange) and now_s else 0.0
    if ahead_s > c.KEYSPACES_READER_CLOCK_BOUND_S:  # no createdAt is that far ahead: a restore or a bug wrote it
        return (
            f"{seen} ({versions.text_of(state)}, {ahead_s:.0f} s ahead of the sink's clock: no read passes it); "
            "`freshvec reconcile --repair` mends the row, then `freshvec redrive send` clears this"
        )
    return f"{seen} ({versions.text_of(state)}); `freshvec redrive send` reads the row again"


def _no_news(record: ParsedRecord, stored: Mapping[str, Any] | None, pool: Mapping[str, list[float]]) -> bool:
    """An ambiguous re-sync that would store exactly what is stored (or remove what is not there) changes
    nothing, whichever state it read: no need to park it."""
    event = record.event
    assert event is not None
    if event.is_removal or not has_text(record.text):
        return stored is None
    if stored is None or not record.chunks:
        return False
    chunk0 = record.chunks[0]
    ignored = set(c.PIPELINE_NON_FILTERABLE_KEYS)
    mine = {k: v for k, v in chunk0.metadata.items() if k not in ignored}
    theirs = {k: v for k, v in (stored.get("metadata") or {}).items() if k not in ignored}
    count = (stored.get("metadata") or {}).get(c.META_CHUNKS, 1)
    return (
        stored_fingerprint(stored) == chunk0.fingerprint
        and mine == theirs
        and count == len(record.chunks)
        and all(chunk.fingerprint in pool for chunk in record.chunks)
    )


def needs_tombstone_lookup(plan: KeyPlan, stored: Mapping[str, Any] | None) -> bool:
    """Where no vector is stored, the tombstone is the state a change is ordered against (a live put too: a
    stray re-send of a change older than a delete must not bring the row back)."""
    return stored is None and plan.action is not Action.SKIP
