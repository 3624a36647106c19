"""Where a row state sits in its source's order: versions, how they compare, and the write id beside them.

A version is a string (JSON-safe, never a float, exact at any size) in one of four forms
(docs/change-event.md, docs/exactness.md):

- ``pg:<commit LSN, 16 hex>:<position in its transaction, 8 hex>:<xid>``: a PostgreSQL live change (and a
  TRUNCATE). Live changes are totally ordered by (commit LSN, position); the xid places them against snapshots.
- ``pgsnap:<xmin>:<xmax>:<xip,...>``: a PostgreSQL re-sync read in that snapshot (``pg_current_snapshot()``'s
  text form). A live change is *included* in it iff its xid is visible in the snapshot.
- ``ks:<createdAt µs, 16 digits>:<lineage depth, 4 digits>:<sequence number>:<stream label>``: a Keyspaces
  live change: the record's ``createdAt`` with its stream position as the tie-break.
- ``ksread:<stamp µs>``: a Keyspaces re-sync read at LOCAL_QUORUM, stamped ``read start - B - δ``
  (``constants.KEYSPACES_READER_CLOCK_BOUND_S``, ``constants.KEYSPACES_VISIBILITY_BOUND_S``): every write
  whose ``createdAt`` is at or before the stamp was visible to the read.

``verdict(incoming, stored)`` says whether a change replaces what is stored: APPLY, SKIP, or AMBIGUOUS (a
Keyspaces re-sync that cannot tell whether it saw the stored state: it is parked and read again later).
An unknown version (None, or text in no form above) cannot be ordered and never blocks a change.

Every sink write also stores a write id (``new_write_id``), unique per write, in the same metadata value as
the version (``_ver`` = ``<write id>;<version>``), so a repair can ask for "exactly the write I saw".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum

from freshvec import constants as c

WRITE_ID_SEPARATOR = ";"
_WRITE_ID_HEX = 16  # 64 random bits per write: a collision between two writes of one key is out of reach


@dataclass(frozen=True, order=True)
class PgChange:
    """A PostgreSQL live change: its transaction's commit LSN, its position in that transaction, its xid."""

    lsn: int
    position: int
    xid: int

    def text(self) -> str:
        return f"pg:{self.lsn:016x}:{self.position:08x}:{self.xid}"


@dataclass(frozen=True)
class PgSnapshot:
    """A PostgreSQL snapshot (64-bit xids): what a re-sync read saw."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    def visible(self, xid: int) -> bool:
        """Whether a committed transaction ``xid`` is visible in this snapshot."""
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)

    def covers(self, other: PgSnapshot) -> bool:
        """Every transaction visible in ``other`` is visible in this one (this snapshot is at least as new)."""
        if self.xmax < other.xmax:  # ids in [self.xmax, other.xmax) must all be invisible in ``other``
            hidden = sum(1 for x in other.xip if self.xmax <= x < other.xmax)
            if hidden != other.xmax - self.xmax:
                return False
        return not any(other.visible(x) for x in self.xip)

    def text(self) -> str:
        return f"pgsnap:{self.xmin}:{self.xmax}:{','.join(map(str, sorted(self.xip)))}"


@dataclass(frozen=True, order=True)
class KsChange:
    """A Keyspaces live change: ``createdAt`` (µs) then its stream position (label, lineage depth, sequence)."""

    created_us: int
    label: str
    depth: int
    sequence: int

    def text(self) -> str:
        return f"ks:{self.created_us:016d}:{self.depth:04d}:{self.sequence}:{self.label}"


@dataclass(frozen=True)
class KsRead:
    """A Keyspaces re-sync read: every write with ``createdAt`` at or before ``stamp_us`` was visible to it."""

    stamp_us: int

    def text(self) -> str:
        return f"ksread:{self.stamp_us}"


Version = PgChange | PgSnapshot | KsChange | KsRead


class Verdict(Enum):
    APPLY = "apply"  # the incoming state is at least as new: write it (an equal version is written again)
    SKIP = "skip"  # the stored state is newer, or the incoming one is already part of it
    AMBIGUOUS = "ambiguous"  # a Keyspaces re-sync that may not have seen the stored state


def parse(text: str | None) -> Version | None:  # noqa: PLR0911 - one return per form
    """The version a text names; None for None or a text in no known form (it cannot be ordered)."""
    if not isinstance(text, str):
        return None
    kind, _, rest = text.partition(":")
    try:
        if kind == "pg":
            lsn, position, xid = rest.split(":")
            return PgChange(int(lsn, 16), int(position, 16), int(xid))
        if kind == "pgsnap":
            xmin, xmax, xip = rest.split(":")
            return PgSnapshot(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))
        if kind == "ks":
            created, depth, sequence, label = rest.split(":", 3)
            return KsChange(int(created), label, int(depth), int(sequence))
        if kind == "ksread":
            return KsRead(int(rest))
    except ValueError:
        return None
    return None


def text_of(version: Version | None) -> str | None:
    return None if version is None else version.text()


def verdict(incoming: Version | None, stored: Version | None) -> Verdict:  # noqa: PLR0911 - one per pair
    """Whether a change at ``incoming`` replaces a state stored at ``stored`` (see the module docstring)."""
    if incoming is None or stored is None:
        return Verdict.APPLY
    match incoming, stored:
        case PgChange(), PgChange():
            return _apply_if((incoming.lsn, incoming.position) >= (stored.lsn, stored.position))
        case PgChange(), PgSnapshot():
            return _apply_if(not stored.visible(incoming.xid))  # included in the snapshot: already there
        case PgSnapshot(), PgChange():
            return _apply_if(incoming.visible(stored.xid))  # the read saw that change (or later)
        case PgSnapshot(), PgSnapshot():
            return _apply_if(incoming.covers(stored))
        case KsChange(), KsChange():
            return _apply_if(incoming >= stored)
        case KsChange(), KsRead():
            return _apply_if(incoming.created_us > stored.stamp_us)
        case KsRead(), KsChange():
            return Verdict.APPLY if stored.created_us <= incoming.stamp_us else Verdict.AMBIGUOUS
        case KsRead(), KsRead():
            return _apply_if(incoming.stamp_us >= stored.stamp_us)
    return Verdict.APPLY  # versions of two different sources: nothing to order them by


def newer(candidate: Version | None, than: Version | None) -> bool:
    """Strictly newer: replaces ``than`` and is not the same state (tombstones and floors only rise)."""
    if candidate is None:
        return False
    if than is None:
        return True
    return candidate != than and verdict(candidate, than) is Verdict.APPLY


def _apply_if(condition: bool) -> Verdict:
    return Verdict.APPLY if condition else Verdict.SKIP


# ---- Keyspaces re-sync stamps --------------------------------------------------------------------------------
def keyspaces_read_stamp(read_started_s: float) -> KsRead:
    """The stamp of a Keyspaces re-sync whose read started at ``read_started_s`` on the reader's clock."""
    bound_s = c.KEYSPACES_READER_CLOCK_BOUND_S + c.KEYSPACES_VISIBILITY_BOUND_S
    return KsRead(int((read_started_s - bound_s) * 1_000_000))


# ---- write ids -----------------------------------------------------------------------------------------------
def new_write_id() -> str:
    return secrets.token_hex(_WRITE_ID_HEX // 2)


def stamp(write_id: str, version: str | None) -> str:
    """The ``_ver`` metadata value: the write id, then the version text (empty when the change has none)."""
    return f"{write_id}{WRITE_ID_SEPARATOR}{version or ''}"


def unstamp(value: object) -> tuple[str | None, str | None]:
    """``(write id, version text)`` of a ``_ver`` metadata value; (None, None) when it holds neither."""
    if not isinstance(value, str) or WRITE_ID_SEPARATOR not in value:
        return None, None
    write_id, _, version = value.partition(WRITE_ID_SEPARATOR)
    return write_id or None, version or None
