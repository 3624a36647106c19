"""A decoder for PostgreSQL's ``pgoutput`` logical replication messages, protocol version 1.

The messages are those ``pg_logical_slot_peek_binary_changes(..., 'proto_version', '1', 'publication_names',
...)`` returns one per row (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html):
Begin, Commit, Origin, Relation, Type, Insert, Update, Delete, Truncate and (ignored) logical Message. Integers
are big-endian; strings are NUL-terminated UTF-8. A tuple holds one entry per column: ``n`` null, ``u`` an
unchanged TOASTed value the server did not send, ``t`` text, ``b`` binary (only with the binary option).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL timestamps count microseconds from here


class PgOutputError(ValueError):
    """A message that is not valid pgoutput (truncated, unknown kind, bad tuple entry)."""


class Unchanged:
    """An unchanged TOASTed value: the server did not send it (see REPLICA IDENTITY FULL in docs/sources.md)."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()
Tuple = list[str | bytes | Unchanged | None]  # per column: text, binary, NULL or UNCHANGED


@dataclass(frozen=True)
class Begin:
    final_lsn: int  # the LSN of the transaction's commit record
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int  # the end of the commit record: where a reader that consumed this transaction resumes
    commit_time: datetime


@dataclass(frozen=True)
class Origin:
    lsn: int
    name: str


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # d default, n nothing, f full, i index
    columns: tuple[Column, ...] = field(default=())


@dataclass(frozen=True)
class TypeMessage:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relation_oid: int
    new: Tuple


@dataclass(frozen=True)
class Update:
    relation_oid: int
    new: Tuple
    old: Tuple | None  # the old row (REPLICA IDENTITY FULL) or its key ('K'), when the server sent one
    old_is_key_only: bool = False


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old: Tuple
    old_is_key_only: bool = False


@dataclass(frozen=True)
class Truncate:
    relation_oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class LogicalMessage:
    prefix: str
    content: bytes


Message = Begin | Commit | Origin | Relation | TypeMessage | Insert | Update | Delete | Truncate | LogicalMessage


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise PgOutputError(f"message ends after {len(self.data)} bytes; {self.at + n} needed")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def int8(self) -> int:
        return self.take(1)[0]

    def int16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack(">q", self.take(8))[0])

    def uint64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def string(self) -> str:
        end = self.data.find(b"\x00", self.at)
        if end < 0:
            raise PgOutputError("string without its terminating NUL")
        text = self.data[self.at : end].decode("utf-8")
        self.at = end + 1
        return text

    def time(self) -> datetime:
        return PG_EPOCH + timedelta(microseconds=self.int64())

    def tuple(self) -> Tuple:
        values: Tuple = []
        for _ in range(self.int16()):
            kind = self.take(1)
            if kind == b"n":
                values.append(None)
            elif kind == b"u":
                values.append(UNCHANGED)
            elif kind == b"t":
                values.append(self.take(self.int32()).decode("utf-8"))
            elif kind == b"b":
                values.append(self.take(self.int32()))
            else:
                raise PgOutputError(f"unknown tuple entry kind {kind!r}")
        return values


def decode(data: bytes) -> Message:  # noqa: PLR0911, PLR0912 - one branch per message kind
    """One pgoutput message; PgOutputError when it is not one."""
    if not data:
        raise PgOutputError("empty message")
    r = _Reader(bytes(data))
    kind = r.take(1)
    if kind == b"B":
        return Begin(final_lsn=r.uint64(), commit_time=r.time(), xid=r.uint32())
    if kind == b"C":
        return Commit(flags=r.int8(), commit_lsn=r.uint64(), end_lsn=r.uint64(), commit_time=r.time())
    if kind == b"O":
        return Origin(lsn=r.uint64(), name=r.string())
    if kind == b"R":
        oid, namespace, name, identity = r.uint32(), r.string(), r.string(), chr(r.int8())
        columns = []
        for _ in range(r.int16()):
            flags = r.int8()
            columns.append(
                Column(name=r.string(), type_oid=r.uint32(), type_modifier=r.int32(), is_key=bool(flags & 1))
            )
        return Relation(oid, namespace or "pg_catalog", name, identity, tuple(columns))
    if kind == b"Y":
        return TypeMessage(oid=r.uint32(), namespace=r.string(), name=r.string())
    if kind == b"I":
        oid = r.uint32()
        if r.take(1) != b"N":
            raise PgOutputError("Insert without its new tuple")
        return Insert(oid, r.tuple())
    if kind == b"U":
        oid = r.uint32()
        marker = r.take(1)
        old: Tuple | None = None
        key_only = False
        if marker in (b"K", b"O"):
            key_only = marker == b"K"
            old = r.tuple()
            marker = r.take(1)
        if marker != b"N":
            raise PgOutputError("Update without its new tuple")
        return Update(oid, r.tuple(), old, key_only)
    if kind == b"D":
        oid = r.uint32()
        marker = r.take(1)
        if marker not in (b"K", b"O"):
            raise PgOutputError("Delete without its old tuple or key")
        return Delete(oid, r.tuple(), marker == b"K")
    if kind == b"T":
        count, options = r.int32(), r.int8()
        return Truncate(tuple(r.uint32() for _ in range(count)), bool(options & 1), bool(options & 2))
    if kind == b"M":
        r.int8()  # flags (transactional)
        r.uint64()  # lsn
        prefix = r.string()
        return LogicalMessage(prefix, r.take(r.int32()))
    raise PgOutputError(f"unknown pgoutput message kind {kind!r}")


def format_lsn(lsn: int) -> str:
    """PostgreSQL's text form of an LSN: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The integer of an LSN's text form; ValueError when it is not one."""
    high, sep, low = text.partition("/")
    if not sep:
        raise ValueError(f"{text!r} is not an LSN (expected hex/hex)")
    return (int(high, 16) << 32) | int(low, 16)
