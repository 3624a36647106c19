"""Reading a PostgreSQL table's changes from a logical replication slot: the ``ChangeSource`` for PostgreSQL.

Crash-safe by construction: the reader never consumes. Each read *peeks*
(``pg_logical_slot_peek_binary_changes`` with ``pgoutput``, protocol 1, the configured publication), and the
slot moves (``pg_replication_slot_advance``) only in ``committed``, after Kinesis accepted the changes and
the forwarder's checkpoint moved. A crash anywhere leaves the slot at or before what Kinesis holds, so the
next reader sends some changes again, never skips one.

- One stream (the slot), one partition: a slot has one reader at a time (PostgreSQL refuses a second one,
  ``SlotBusyError``), and the forwarder's lease keeps two forwarders from trying.
- Positions are the end LSN of a transaction's commit record. A change's ``version`` is
  ``freshvec.versions.PgChange``: the transaction's commit LSN, the change's position within the transaction,
  and the transaction's 64-bit xid (pgoutput sends 32 bits; the epoch comes from the server's next xid, read
  after the peek), which places it against re-sync snapshots. Every change of a transaction but the last
  carries the position before the transaction, so the checkpoint never lands inside one: a transaction is
  forwarded whole or read again.
- After a crash between the checkpoint and the slot advance, the slot is behind the checkpoint: the next read
  advances it first and skips transactions at or before the checkpoint.
- At the tip with nothing pending, the slot is advanced to the WAL flush position read before the peek, so
  writes to other tables do not make the slot retain WAL.
- Replica identity FULL (set at start when ``set_replica_identity_full``) makes every update and delete
  carry the whole old row: an unchanged TOASTed text (``u``) is filled in from it instead of dropped.
- An update that changes the primary key becomes a DELETE of the old key and an INSERT of the new one.
- TRUNCATE: the reader emits one ``TRUNCATE`` change event (key ``{"$table": ...}``); the sink deletes every
  vector of the table older than it (docs/sources.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from freshvec import constants as c
from freshvec import versions
from freshvec.errors import PoisonRecordError, TransientError
from freshvec.events import ChangeEvent, format_timestamp, sendable_bytes
from freshvec.keys import partition_key, vector_key
from freshvec.outgoing import OutgoingRecord
from freshvec.ports import LeaseStore, Partition, ReadResult, SourceCursor, StreamEntry, StreamView
from freshvec.sources.postgres import pgoutput as po
from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.errors import PostgresError, classify_pg, sqlstate
from freshvec.sources.postgres.session import check_table, ensure_slot, prepare_session, slot_state

log = logging.getLogger(__name__)

PARTITION_ID = "slot"
SOURCE_NAME = "postgres"
TRUNCATE_OP = "TRUNCATE"
TABLE_KEY = "$table"  # the key of a TRUNCATE event: the whole table
_OBJECT_IN_USE = "55006"  # the slot is active for another process


# One row change of a transaction: op, new image, old image, and why it cannot be a change event (or None).
_RowChange = tuple[str, dict[str, Any] | None, dict[str, Any] | None, str | None]


class SlotBusyError(TransientError):
    """Another process is reading the replication slot right now."""


@dataclass
class PgChange:
    """One change as read from the slot, with the position the checkpoint may move to once it was accepted."""

    position: str  # checkpoint once this change (and every earlier one) was accepted
    event: ChangeEvent | None
    error: str | None = None  # why no change event could be built (sent as an envelope for the DLQ)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class _SlotState:
    connection: Any = None
    relations: dict[int, po.Relation] = field(default_factory=dict)
    idle_position: int | None = None  # after the last read's records: the slot may move here once they are in
    next_xid: int = 0  # the server's next 64-bit xid, read after the last peek (extends pgoutput's 32-bit xids)
    last_position: str | None = None  # the position of the last record of the last read


class PostgresSlotSource:
    """The changes of one PostgreSQL table, read from a logical replication slot without consuming."""

    name = SOURCE_NAME

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        schema: str,
        table: str,
        columns: Mapping[str, str],
        primary_key: Sequence[str],
        key_columns: Sequence[str],
        publication: str,
        slot: str,
        database: str = "postgres",
        max_changes: int = 1000,
        set_replica_identity_full: bool = True,
    ) -> None:
        self._connect = connect
        self.schema = schema
        self.table = table
        self.columns = dict(columns)
        self.primary_key = tuple(primary_key)
        self.key_columns = tuple(key_columns)
        self.publication = publication
        self.slot = slot
        self.database = database
        self.max_changes = max_changes
        self.set_replica_identity_full = set_replica_identity_full
        self.stream_id = f"postgres:{database}:{slot}"
        self._checked = False
        self._state = _SlotState()

    @classmethod
    def for_config(cls, connect: Callable[[], Any], config: Any) -> PostgresSlotSource:
        """The source for a ``PipelineConfig`` with a postgres source (duck-typed, like the Keyspaces one)."""
        pg = config.source.postgres
        return cls(
            connect,
            schema=pg.schema,
            table=pg.table,
            columns=pg.columns,
            primary_key=pg.primary_key,
            key_columns=config.key_columns,
            publication=pg.publication,
            slot=pg.slot,
            database=pg.connection.database,
            max_changes=pg.max_changes_per_read,
            set_replica_identity_full=pg.set_replica_identity_full,
        )

    @property
    def description(self) -> str:
        return f"the replication slot {self.slot} of {self.schema}.{self.table}"

    # ---- discovery ----------------------------------------------------------------------------
    def current_stream(self, leases: LeaseStore) -> tuple[StreamEntry | None, bool]:
        """The slot, after checking (once) that the server, table, publication and slot are fit to read."""
        if not self._checked:
            self._run(self.check, "checking the PostgreSQL source")
            self._checked = True
        return StreamEntry(self.stream_id, label=self.slot, done=False), False

    def check(self, conn: Any) -> None:
        """wal_level, table, primary key, replica identity, publication, slot; PostgresError naming the fix."""
        check_table(
            conn,
            schema=self.schema,
            table=self.table,
            columns=self.columns,
            primary_key=self.primary_key,
            publication=self.publication,
            set_replica_identity_full=self.set_replica_identity_full,
        )
        ensure_slot(conn, self.slot, database=self.database)

    def stream_done(self, leases: LeaseStore, stream_id: str) -> None:
        """Never called: a slot does not close."""

    def describe(self, stream_id: str) -> StreamView:
        return StreamView(stream_id, closed=False, partitions={PARTITION_ID: Partition(PARTITION_ID)})

    def open(
        self,
        stream_id: str,
        partition_id: str,
        position: str | None,
        *,
        fresh: bool,
        resume: str | None = None,
        depth: int = 0,
    ) -> SourceCursor:
        """A cursor at the checkpoint (None: the slot's own position, which the first read takes); the slot keeps
        its own position, so there is no resume token, and one partition, so no lineage (``depth``)."""
        return SourceCursor(stream_id, partition_id, position, "SLOT", self._state)

    # ---- reading --------------------------------------------------------------------------------
    def read(self, cursor: SourceCursor) -> ReadResult:
        return self._run(lambda conn: self._read(conn, cursor), f"reading {self.description}")

    def _read(self, conn: Any, cursor: SourceCursor) -> ReadResult:
        state: _SlotState = cursor.state
        confirmed, _, _ = slot_state(conn, self.slot)
        checkpoint = po.parse_lsn(cursor.position) if cursor.position else None
        if checkpoint is not None and checkpoint > confirmed:
            self._advance(conn, checkpoint)  # a crash came between the checkpoint and the slot advance
            confirmed = checkpoint
        base = max(confirmed, checkpoint or 0)
        flushed = po.parse_lsn(conn.run("SELECT pg_current_wal_flush_lsn()::text")[0][0])
        rows = conn.run(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(:slot, NULL, :n, "
            "'proto_version', '1', 'publication_names', :pub)",
            slot=self.slot,
            n=self.max_changes,
            pub=self.publication,
        )
        state.next_xid = int(conn.run("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")[0][0])
        records = self._changes(state, [bytes(row[0]) for row in rows], base)
        at_tip = len(rows) < self.max_changes
        state.idle_position = flushed if at_tip else None
        state.last_position = records[-1].position if records else None
        if not records and at_tip and flushed > base:
            self._advance(conn, flushed)  # nothing of ours in the WAL read: let the slot release it
        return ReadResult(records, ended=False, at_tip=at_tip)

    def rewind(self, cursor: SourceCursor) -> None:
        """Nothing to forget: every read peeks again from the slot (the checkpoint skips what was sent)."""

    def committed(self, cursor: SourceCursor, position: str) -> None:
        """Kinesis accepted everything up to ``position``: move the slot there (further when that was the
        last record of a read at the tip). A failure here is harmless: the next read advances first."""
        state: _SlotState = cursor.state
        target = po.parse_lsn(position)
        if position == state.last_position and state.idle_position is not None:
            target = max(target, state.idle_position)
        try:
            self._run(lambda conn: self._advance_if_behind(conn, target), f"advancing {self.description}")
        except TransientError as exc:
            log.warning("the slot stays behind the checkpoint until the next read: %s", exc)

    def convert(self, record: PgChange, partition_id: str) -> tuple[OutgoingRecord, bool]:
        if record.event is None:
            return self._envelope(record, record.error or "unknown", self._table_partition_key()), False
        event = record.event
        try:
            key = self._table_partition_key() if event.op == TRUNCATE_OP else partition_key(self._vector_key(event))
        except PoisonRecordError as exc:  # a key no vector can hold: parked, never a forwarder that stops here
            keyed = dataclasses.replace(record, raw={**record.raw, "key": event.key})
            return self._envelope(keyed, str(exc), self._table_partition_key()), False
        data = sendable_bytes(event, key)  # too large: the row's marker, parked by the sink (no older state)
        return OutgoingRecord(data, key, record.position, event.changed_at.timestamp()), True

    # ---- decoding -------------------------------------------------------------------------------
    def _changes(self, state: _SlotState, messages: list[bytes], base: int) -> list[PgChange]:
        """The changes of every whole transaction after ``base``, in commit order."""
        records: list[PgChange] = []
        position = po.format_lsn(base)
        begin: po.Begin | None = None
        pending: list[_RowChange] = []
        for data in messages:
            message = po.decode(data)
            if isinstance(message, po.Relation):
                state.relations[message.oid] = message
            elif isinstance(message, po.Begin):
                begin, pending = message, []
            elif isinstance(message, po.Insert | po.Update | po.Delete | po.Truncate):
                pending.extend(self._rows(state, message))
            elif isinstance(message, po.Commit):
                if begin is None or message.end_lsn <= base or not pending:
                    begin = None
                    continue
                end = po.format_lsn(message.end_lsn)
                for index, row in enumerate(pending):
                    at = end if index == len(pending) - 1 else position
                    records.append(self._record(at, begin, index, row, full_xid(begin.xid, state.next_xid)))
                position, begin = end, None
        return records

    def _rows(self, state: _SlotState, message: po.Insert | po.Update | po.Delete | po.Truncate) -> list[_RowChange]:
        if isinstance(message, po.Truncate):
            ours = [oid for oid in message.relation_oids if self._is_ours(state.relations.get(oid))]
            return [(TRUNCATE_OP, None, None, None)] if ours else []
        relation = state.relations.get(message.relation_oid)
        if not self._is_ours(relation):
            return []
        assert relation is not None
        if isinstance(message, po.Insert):
            return [("INSERT", self._row(relation, message.new), None, None)]
        if isinstance(message, po.Delete):
            return [("DELETE", None, self._row(relation, message.old), None)]
        old = self._row(relation, message.old) if message.old is not None else None
        new = self._row(relation, message.new, old=old if not message.old_is_key_only else None)
        error = None
        missing = [name for name, value in new.items() if value is po.UNCHANGED]
        if missing:
            error = (
                f"a change to {self.schema}.{self.table} came without {', '.join(missing)} (unchanged TOAST) and "
                "without the old row: set REPLICA IDENTITY FULL on the table, then run `freshvec redrive`"
            )
        if old is not None and any(old.get(k) != new.get(k) for k in self.primary_key):
            return [("DELETE", None, old, None), ("INSERT", new, None, error)]  # the primary key changed
        return [("UPDATE", new, old, error)]

    def _row(self, relation: po.Relation, values: po.Tuple, *, old: dict[str, Any] | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for column, value in zip(relation.columns, values, strict=False):
            if value is po.UNCHANGED:
                row[column.name] = old[column.name] if old is not None and column.name in old else po.UNCHANGED
                continue
            type_text = self.columns.get(column.name) or pgtypes.type_name_of_oid(column.type_oid) or "unknown"
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            row[column.name] = pgtypes.from_text(text, type_text)
        return row

    def _record(self, position: str, begin: po.Begin, index: int, row: _RowChange, xid: int) -> PgChange:
        op, new, old, error = row
        seq = f"{begin.xid}#{index}"  # the transaction id: what a writer knows of its own changes
        raw = {"xid": begin.xid, "commit_lsn": po.format_lsn(begin.final_lsn), "index": index, "op": op}
        if error is not None:
            raw["new"] = _json_safe(new)
            return PgChange(position, None, error, raw)
        image = new if new is not None else old
        if op == TRUNCATE_OP:
            key: dict[str, Any] = {TABLE_KEY: f"{self.schema}.{self.table}"}
        else:
            key = {name: (image or {}).get(name) for name in self.primary_key}
            if any(value is None for value in key.values()):
                raw["old"] = _json_safe(old)
                reason = "the change has no primary key values: the table's replica identity sends no old key"
                return PgChange(position, None, reason, raw)
        event = ChangeEvent(
            keyspace=self.schema,
            table=self.table,
            op=op,
            key=key,
            new=_only_columns(new, self.columns),
            old=_only_columns(old, self.columns),
            seq=seq,
            shard=self.slot,
            ts=format_timestamp(begin.commit_time),
            origin="USER",
            source=SOURCE_NAME,
            version=versions.PgChange(begin.final_lsn, index, xid).text(),
        )
        return PgChange(position, event, None, raw)

    # ---- helpers -------------------------------------------------------------------------------
    def _is_ours(self, relation: po.Relation | None) -> bool:
        return relation is not None and relation.namespace == self.schema and relation.name == self.table

    def _vector_key(self, event: ChangeEvent) -> str:
        try:
            return vector_key(event.key, self.key_columns)
        except (KeyError, ValueError, TypeError) as exc:
            raise PoisonRecordError(f"cannot build the vector key: {exc}") from exc

    def _table_partition_key(self) -> str:
        return f"{self.schema}.{self.table}"

    def _advance_if_behind(self, conn: Any, target: int) -> None:
        confirmed, _, _ = slot_state(conn, self.slot)
        if target > confirmed:
            self._advance(conn, target)

    def _advance(self, conn: Any, target: int) -> None:
        conn.run(
            "SELECT pg_replication_slot_advance(:slot, CAST(:lsn AS pg_lsn))", slot=self.slot, lsn=po.format_lsn(target)
        )

    def _run(self, work: Callable[[Any], Any], doing: str) -> Any:
        """``work`` on the reader's connection (made on first use, dropped after a failure)."""
        state = self._state
        if state.connection is None:
            state.connection = self._connect()
            prepare_session(state.connection)
        try:
            return work(state.connection)
        except (PostgresError, TransientError, PoisonRecordError, po.PgOutputError):
            raise
        except Exception as exc:
            self.close()
            if sqlstate(exc) == _OBJECT_IN_USE:
                raise SlotBusyError(f"{doing}: another process is reading the slot ({exc.args[0].get('M')})") from exc
            raise classify_pg(exc, doing) from exc

    def close(self) -> None:
        conn, self._state.connection = self._state.connection, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the PostgreSQL connection failed", exc_info=True)

    def _envelope(self, record: PgChange, reason: str, key: str) -> OutgoingRecord:
        doc = {
            "v": c.EVENT_VERSION,
            "source": SOURCE_NAME,
            "keyspace": self.schema,
            "table": self.table,
            "seq": f"{record.raw.get('xid')}#{record.raw.get('index', 0)}",
            "shard": self.slot,
            "error": f"forwarder could not convert this change: {reason}",
            "record": record.raw,
        }
        data = json.dumps(doc, separators=(",", ":"), ensure_ascii=True, default=str).encode("ascii")
        if len(data) + len(key) > c.KINESIS_MAX_RECORD_BYTES:
            doc["record"] = {k: v for k, v in record.raw.items() if k not in ("new", "old")} | {"truncated": True}
            data = json.dumps(doc, separators=(",", ":"), ensure_ascii=True, default=str).encode("ascii")
        log.error("change %s of %s cannot become a change event (%s); sending it for the DLQ", doc["seq"], key, reason)
        return OutgoingRecord(data, key, record.position, None)


def full_xid(xid32: int, next_xid: int) -> int:
    """The 64-bit xid of a committed transaction's 32-bit one, given the server's next xid read after it
    committed (it is below that, and within 2**31 of it: PostgreSQL's wraparound protection)."""
    if next_xid <= 0:
        return xid32
    return next_xid - ((next_xid - xid32) & 0xFFFFFFFF)


def _only_columns(row: dict[str, Any] | None, columns: Mapping[str, str]) -> dict[str, Any] | None:
    """The configured columns of a row image (others in the table are not the pipeline's)."""
    if row is None:
        return None
    return {name: value for name, value in row.items() if name in columns}


def _json_safe(row: dict[str, Any] | None) -> Any:
    if row is None:
        return None
    return {k: ("(unchanged TOAST value)" if v is po.UNCHANGED else v) for k, v in row.items()}


__all__ = ["PARTITION_ID", "TABLE_KEY", "TRUNCATE_OP", "PgChange", "PostgresSlotSource", "SlotBusyError"]
