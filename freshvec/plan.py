"""What one key's changes in a batch amount to, decided against what the index holds — the exactness rules.

Change history is not trusted to describe the index; what is stored is. Two facts ride with every vector:

- its **fingerprint** (``_fp``): a hash of exactly what was embedded — the model, its dimensions and
  normalisation, the input limit the text is cut to, and the text. A stored vector is reused if and only if
  its fingerprint equals the new text's; the change's old image is never proof (a parked or lost change
  would otherwise let a later metadata-only update put an old text's vector under a new text). A model or
  dimension change alters every fingerprint, so each row is re-embedded on its next change.
- its **version** (``_ver``): the source row state it reflects, in the source's own order. A put or delete
  older than the stored version is skipped and counted. A delete leaves a tombstone (with a bounded
  lifetime) so that a re-sync put read before the delete cannot bring the row back.

A row's text may be stored as several vectors (``freshvec.chunking``): each chunk has its own fingerprint,
and a chunk whose fingerprint equals that of ANY stored chunk of the same row reuses that vector, whatever
its position. The version rule and tombstones apply to the row as a whole (chunk 0 holds its ``_ver``).

The functions here are pure: the sink fetches what is stored and applies what they decide.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from freshvec import constants as c
from freshvec.errors import FreshvecError
from freshvec.events import ChangeEvent
from freshvec.keys import chunk_key

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


def stored_version(stored: Mapping[str, Any] | None) -> int | None:
    """The version a stored vector carries (None: no vector, or one written before versions existed)."""
    if not stored:
        return None
    raw = (stored.get("metadata") or {}).get(c.META_VERSION)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def stored_fingerprint(stored: Mapping[str, Any] | None) -> str | None:
    if not stored:
        return None
    value = (stored.get("metadata") or {}).get(c.META_FINGERPRINT)
    return value if isinstance(value, str) else None


def older(version: int | None, than: int | None) -> bool:
    """Strictly older; an unknown version on either side is never older (it cannot be ordered)."""
    return version is not None and than is not None and version < than


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
    def version(self) -> int | None:
        return self.event.version if self.event is not None else None


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
    def version(self) -> int | None:
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
    """Usable records grouped per vector key, in batch (sequence) order."""
    groups: dict[str, list[ParsedRecord]] = {}
    for record in records:
        if record.usable:
            assert record.key is not None
            groups.setdefault(record.key, []).append(record)
    return groups


def plan_key(key: str, records: list[ParsedRecord]) -> KeyPlan:
    """The newest change of the key wins: by version, and by batch order among equal or unknown versions.

    A record older than one before it (a re-sync read before a live change, say) is stale within the batch.
    """
    effective = records[0]
    stale: list[ParsedRecord] = []
    for record in records[1:]:
        if older(record.version, effective.version):
            stale.append(record)
        else:
            effective = record
    assert effective.event is not None
    removal = effective.event.is_removal or not has_text(effective.text)
    plan = KeyPlan(key, Action.DELETE if removal else Action.PUT, records, effective, stale)
    if plan.action is Action.PUT:
        plan.chunks = [_fresh(chunk) for chunk in effective.chunks] or [_single_chunk(key, effective)]
    return plan


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
    tombstone: int | None,
    pool: Mapping[str, list[float]] | None = None,
) -> None:
    """Settle ``plan`` against the row's stored chunk 0, its tombstone version (None: none) and the vectors of
    all its stored chunks by fingerprint (``pool``; None: chunk 0's only).

    - older than the stored vector: skip;
    - no stored vector: a re-sync put at or below a tombstone's version was read before the delete: skip;
      a delete at or below the tombstone adds nothing: skip;
    - each chunk of a put whose fingerprint matches a stored chunk's reuses that vector (set here).
    """
    if plan.action is Action.SKIP:
        return
    if older(plan.version, stored_version(stored)):
        plan.skip()
        return
    buried = stored is None and tombstone is not None and plan.version is not None and plan.version <= tombstone
    if buried and (plan.action is Action.DELETE or plan.is_resync):
        plan.skip()
        return
    if plan.action is not Action.PUT:
        return
    vectors = reuse_pool([stored]) if pool is None else pool
    for chunk in plan.chunks:
        found = vectors.get(chunk.fingerprint)
        chunk.vector, chunk.reused = (list(found), True) if found is not None else (None, False)


def needs_tombstone_lookup(plan: KeyPlan, stored: Mapping[str, Any] | None) -> bool:
    """Tombstones matter only where no vector is stored: re-sync puts, and deletes (not to weaken one)."""
    if stored is not None or plan.version is None or plan.action is Action.SKIP:
        return False
    return plan.action is Action.DELETE or plan.is_resync
