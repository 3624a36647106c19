"""Re-sync reads: a key's current row, read from the table with the read's version, as the change event to send.

Backfill, redrive and reconcile never replay history: they read what the table holds now and send it as a
change event with origin BACKFILL, REDRIVE or RECONCILE through the one Kinesis writer
(``freshvec.cli.send.ChangeStreamSender``: ``KinesisWriter`` in the calls ``plan_calls`` plans), so the
sink orders them with live changes (``freshvec.versions``):

- a row that exists becomes an UPDATE whose ``new`` is the row; a row that no longer exists (while the index
  holds a vector for it) a DELETE; no row and no vector: nothing to send;
- either carries the version of the read, not of the row: against Amazon Keyspaces the read's stamp
  (``versions.keyspaces_read_stamp``: its start on this machine's clock minus the clock and visibility
  bounds; reads are LOCAL_QUORUM, ``freshvec.cli.keyspaces``), against PostgreSQL the read's snapshot
  (``freshvec.sources.postgres.snapshot``). Cell write times are not versions: a TTL'd or nulled cell takes
  its time with it, and WRITETIME misses key columns, collections and nulls.

A reconcile repair also carries the write it saw in the index (``if_wid``, ``freshvec.cli.reconcile``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from freshvec import constants as c
from freshvec import versions
from freshvec.cli import keyspaces, local_client
from freshvec.cli.errors import OperatorError, RefusedKeyError
from freshvec.cli.load import quote
from freshvec.cli.send import ChangeStreamSender
from freshvec.cli.stack import StackResources
from freshvec.config import PipelineConfig
from freshvec.errors import PoisonRecordError
from freshvec.events import ChangeEvent, format_timestamp, sendable_bytes
from freshvec.keys import STRAY_KEY_FIELD, chunk_key, parse_vector_key, partition_key, vector_key
from freshvec.outgoing import OutgoingRecord
from freshvec.plan import write_token
from freshvec.sources.keyspaces.types import CellError, to_driver_value, to_json_value

LOCAL_READ_BATCH = 500  # keys per /rows/read call
LOCAL_SCAN_PAGE = 5000  # rows per /rows/scan call

Row = dict[str, Any]
RowRead = tuple[Row | None, str | None]  # (the row as change-event JSON values or None, the read's version)


# ---- what a re-sync select reads ---------------------------------------------------------------------------
def select_list(config: PipelineConfig) -> str:
    """``"a", "b", ...``: every configured column."""
    return ", ".join(quote(name) for name in config.columns)


def build_key_select(config: PipelineConfig) -> str:
    where = " AND ".join(f"{quote(name)} = ?" for name in config.primary_key)
    # Identifiers come from the validated config and are quoted; key values are bound.
    return f"SELECT {select_list(config)} FROM {quote(config.keyspace)}.{quote(config.table)} WHERE {where}"  # noqa: S608


def driver_row(raw: Mapping[str, Any], config: PipelineConfig) -> Row:
    """A driver row of a re-sync select as change-event JSON values (columns not configured are left out)."""
    types = config.column_types
    return {name: to_json_value(value, types[name]) for name, value in raw.items() if name in types}


def stamped(rows: Iterable[Any], clock: Callable[[], float] = time.time) -> Iterator[tuple[Any, str]]:
    """Each row of a (paged) Keyspaces read with its stamp: the time before the driver was asked for it, so the
    page that holds it was fetched after that moment (``versions.keyspaces_read_stamp``)."""
    iterator = iter(rows)
    while True:
        started = clock()
        try:
            raw = next(iterator)
        except StopIteration:
            return
        yield raw, versions.keyspaces_read_stamp(started).text()


def driver_key(key: Mapping[str, Any], config: PipelineConfig) -> list[Any]:
    """Bind values for ``build_key_select`` from a change-event key; OperatorError naming a bad column."""
    types = config.column_types
    values = []
    for name in config.primary_key:
        if key.get(name) is None:
            raise RefusedKeyError(f"key {dict(key)} lacks primary key column {name!r}")
        try:
            values.append(to_driver_value(key[name], types[name]))
        except CellError as exc:
            raise RefusedKeyError(f"key {dict(key)}: column {name!r}: {exc}") from exc
    return values


# ---- reading rows -------------------------------------------------------------------------------------------
class RowReader(Protocol):
    def read(self, keys: Sequence[Row]) -> list[RowRead]: ...


class KeyspacesRowReader:
    """Reads rows by primary key from Amazon Keyspaces, a few keys at a time in parallel."""

    def __init__(self, session: Any, config: PipelineConfig, *, workers: int = 8) -> None:
        self.session = session
        self.config = config
        self.workers = workers
        self.statement = session.prepare(build_key_select(config))

    def read(self, keys: Sequence[Row]) -> list[RowRead]:
        binds = [driver_key(key, self.config) for key in keys]

        def one(values: list[Any]) -> RowRead:
            stamp = versions.keyspaces_read_stamp(time.time()).text()
            rows = list(self.session.execute(self.statement, values))
            return (driver_row(rows[0], self.config) if rows else None), stamp

        if len(binds) <= 1:
            return [one(values) for values in binds]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(binds)), thread_name_prefix="resync-read") as pool:
            return list(pool.map(one, binds))


class LocalRowReader:
    """Reads rows through the local control API (``POST /rows/read``); the CLI never imports local mode."""

    def __init__(self, resources: StackResources) -> None:
        self.resources = resources

    def read(self, keys: Sequence[Row]) -> list[RowRead]:
        reads: list[RowRead] = []
        for start in range(0, len(keys), LOCAL_READ_BATCH):
            chunk = [dict(key) for key in keys[start : start + LOCAL_READ_BATCH]]
            rows = local_client.read_rows(self.resources, chunk)
            reads.extend((item.get("row"), item.get("version")) for item in rows)
        return reads


def local_scan_pages(
    resources: StackResources, segment: int, segments: int, *, after: str | None = None, limit: int = LOCAL_SCAN_PAGE
) -> Iterator[tuple[list[RowRead], str | None]]:
    """The pages of one key-hash segment of the local table (``POST /rows/scan``): rows with versions, and the
    cursor after the page (None after the last one)."""
    while True:
        answer = local_client.scan_rows(resources, segment, segments, after, limit)
        after = answer.get("next")
        yield [(item["row"], item.get("version")) for item in answer.get("rows", [])], after
        if after is None:
            return


# ---- what the index holds -----------------------------------------------------------------------------------
def stored_metadata(s3vectors: Any, resources: StackResources, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The metadata of the stored vectors among ``keys`` (GetVectors, 100 keys a call); absent keys are left out."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), c.S3V_GET_BATCH):
        response = s3vectors.get_vectors(
            vectorBucketName=resources.vector_bucket,
            indexName=resources.vector_index,
            keys=unique[start : start + c.S3V_GET_BATCH],
            returnData=False,
            returnMetadata=True,
        )
        for vector in response.get("vectors", []):
            found[vector["key"]] = vector.get("metadata") or {}
    return found


# ---- events -------------------------------------------------------------------------------------------------
def resync_record(
    config: PipelineConfig,
    key: Row,
    row: Row | None,
    version: str | None,
    *,
    origin: str,
    seq: str,
    shard: str,
    if_wid: str | None = None,
    orphan_chunks: Sequence[int] = (),
    generations: Sequence[str] | None = None,
    vectors: Mapping[str, str] | None = None,
) -> OutgoingRecord:
    """The change event of a re-sync: an UPDATE carrying ``row`` (None: a DELETE), with the read's ``version``;
    a reconcile repair also names the write it saw (``if_wid``) and the orphan chunks it saw; with
    ``generations``, for those index generations only, and with ``vectors`` (fingerprint -> base64 float32)
    precomputed vectors of its chunks (``freshvec.generation_sink``)."""
    now = datetime.now(UTC)
    full_key = {name: (row or key)[name] for name in config.primary_key}
    event = ChangeEvent(
        keyspace=config.keyspace,
        table=config.table,
        op="DELETE" if row is None else "UPDATE",
        key=full_key,
        new=None if row is None else row,
        old=None,
        seq=seq,
        shard=shard,
        ts=format_timestamp(now),
        origin=origin,
        source=config.source.kind,
        version=version,
        if_wid=if_wid,
        orphan_chunks=tuple(orphan_chunks),
        extra={
            **({c.EVENT_GENERATIONS: list(generations)} if generations else {}),
            **({c.EVENT_VECTORS: dict(vectors)} if vectors else {}),
        },
    )
    shard_key = partition_key(vector_key(full_key, config.key_columns))
    return OutgoingRecord(sendable_bytes(event, shard_key), shard_key, seq, changed_at=now.timestamp())


@dataclass(frozen=True)
class Observed:
    """What reconcile saw in the index for a row, before it read the table: chunk 0's write
    (``freshvec.plan.write_token``; "" for no vector) and the chunks stored beyond chunk 0's count."""

    write: str = ""
    orphan_chunks: tuple[int, ...] = ()


NOTHING_SEEN = Observed()


@dataclass
class Resynced:
    """What a re-sync did for one key."""

    key: Row
    vector_key: str
    action: str  # "update" (row sent), "delete" (removal sent), "none" (no row and no vector)
    version: str | None


class Resyncer:
    """Reads keys' current rows (and, for rows gone, the stored vectors' versions) and sends re-sync events."""

    def __init__(
        self, config: PipelineConfig, reader: RowReader, s3vectors: Any, resources: StackResources, sender: Any
    ) -> None:
        self.config = config
        self.reader = reader
        self.s3vectors = s3vectors
        self.resources = resources
        self.sender: ChangeStreamSender = sender
        self._run = f"{int(time.time() * 1000)}"
        self._counter = itertools.count(1)
        self.generations: Sequence[str] | None = None  # index generations the re-syncs are for (None: every live one)

    def plan(
        self,
        keys: Sequence[Row],
        *,
        origin: str,
        seqs: Sequence[str] | None = None,
        observed: Mapping[str, Observed] | None = None,
        reads: Sequence[RowRead | None] | None = None,
    ) -> tuple[list[OutgoingRecord], list[Resynced]]:
        """The records to send for ``keys`` (one per key that needs one) and what each key amounts to.

        ``observed`` (reconcile's repair): per vector key, what the index held when it was read before the
        table; each record then is a compare-and-set on that write (``if_wid``) and removes the orphan chunks
        seen. Without it, whether a vector is stored for a row that is gone is read now.
        """
        if origin not in c.RESYNC_ORIGINS:
            raise ValueError(f"{origin} is not a re-sync origin")
        vector_keys = [vector_key(key, self.config.key_columns) for key in keys]
        # A key the table refuses (None) names no row: nothing to read, nothing to send (a vector stored under
        # it is a stray, which reconcile removes).
        read_each = self._read_each(keys) if reads is None else list(reads)
        refused = {position for position, read in enumerate(read_each) if read is None}
        reads = [read if read is not None else (None, None) for read in read_each]
        gone = [
            vk
            for i, (vk, (row, _)) in enumerate(zip(vector_keys, reads, strict=True))
            if row is None and i not in refused
        ]
        if observed is None:
            stored = stored_metadata(self.s3vectors, self.resources, gone) if gone else {}
        else:
            stored = {vk: {} for vk in gone if observed.get(vk, NOTHING_SEEN) != NOTHING_SEEN}
        records: list[OutgoingRecord] = []
        results: list[Resynced] = []
        shard = origin.lower()
        for position, (key, vk, (row, read_version)) in enumerate(zip(keys, vector_keys, reads, strict=True)):
            seq = seqs[position] if seqs is not None else f"{shard}:{self._run}:{next(self._counter)}"
            version = read_version
            if position in refused or (row is None and vk not in stored):
                results.append(Resynced(dict(key), vk, "none", None))
                continue
            seen = observed.get(vk, NOTHING_SEEN) if observed is not None else None
            records.append(
                resync_record(
                    self.config,
                    dict(key),
                    row,
                    version,
                    origin=origin,
                    seq=seq,
                    shard=shard,
                    if_wid=seen.write if seen is not None else None,
                    orphan_chunks=seen.orphan_chunks if seen is not None else (),
                    generations=self.generations,
                )
            )
            results.append(Resynced(dict(key), vk, "delete" if row is None else "update", version))
        return records, results

    def repair(self, rows: Mapping[str, Sequence[int]], *, seqs: Sequence[str] | None = None) -> list[Resynced]:
        """Reconcile's repair of ``rows`` (vector key -> orphan chunk numbers seen beyond chunk 0's count): read
        each row's chunk 0 from the index, THEN the row from the table, and send a compare-and-set re-sync on
        the write read first (``Observed``). A write that lands in between makes the sink refuse the repair:
        the newer write stands, and the next reconcile decides."""
        vector_keys = list(rows)
        stored = stored_metadata(self.s3vectors, self.resources, vector_keys)
        observed = {
            vk: Observed(write_token({"metadata": stored[vk]}) if vk in stored else "", tuple(rows[vk]))
            for vk in vector_keys
        }
        keys = [parse_vector_key(vk, self.config.key_columns) for vk in vector_keys]
        reads = self._read_each(keys)
        results: list[Resynced] = []
        strays: list[str] = []
        kept: list[tuple[Row, RowRead, str | None]] = []
        for position, (vk, key, read) in enumerate(zip(vector_keys, keys, reads, strict=True)):
            row = read[0] if read is not None else None
            found = key_of_row(row, self.config) if row is not None else key
            if read is None or found is None or checked_vector_key(found, self.config) != vk:
                # The table refuses the key (``["abc"]`` for an integer column: no row can have it), or the row

                # lives under another key (``["7"]`` or ``[7.0]`` for 7): these vectors are no row's.
                strays += [vk, *(chunk_key(vk, n) for n in rows[vk])]
                continue
            kept.append((key, read, seqs[position] if seqs is not None else None))
        for vk in self._remove(strays):
            results.append(Resynced({}, vk, "stray", None))
        records, planned = self.plan(
            [key for key, _, _ in kept],
            origin="RECONCILE",
            seqs=[seq for _, _, seq in kept] if seqs is not None else None,
            observed=observed,
            reads=[read for _, read, _ in kept],
        )
        if records:
            self.sender.send(records)
        return planned + results

    def _read_each(self, keys: Sequence[Row]) -> list[RowRead | None]:
        """Every key's read; when the table refuses a key in a batch, each key alone, so one key it refuses
        (None: no row can have it) does not stop the others. Any other failure stops the repair."""
        if not keys:
            return []
        try:
            return list(self.reader.read(keys))
        except RefusedKeyError:
            if len(keys) == 1:
                return [None]
        reads: list[RowRead | None] = []
        for key in keys:
            try:
                reads.extend(self.reader.read([key]))
            except RefusedKeyError:
                reads.append(None)
        return reads

    def remove_strays(self, vector_keys: Sequence[str]) -> int:
        """Remove stored vectors whose keys name no row, each a compare-and-set on the write read now (through
        the sink, like every index write); returns how many removals were sent."""
        return len(self._remove(vector_keys))

    def _remove(self, vector_keys: Sequence[str]) -> list[str]:
        """Send a compare-and-set removal for each of ``vector_keys`` stored now; returns the keys sent."""
        if not vector_keys:
            return []
        stored = stored_metadata(self.s3vectors, self.resources, vector_keys)
        records = []
        sent = []
        for vk in vector_keys:
            if vk not in stored:
                continue
            sent.append(vk)
            seq = f"reconcile:{self._run}:{next(self._counter)}"
            event = ChangeEvent(
                keyspace=self.config.keyspace,
                table=self.config.table,
                op="DELETE",
                key={STRAY_KEY_FIELD: vk},
                new=None,
                old=None,
                seq=seq,
                shard="reconcile",
                ts=format_timestamp(datetime.now(UTC)),
                origin="RECONCILE",
                source=self.config.source.kind,
                if_wid=write_token({"metadata": stored[vk]}),
                extra={c.EVENT_GENERATIONS: list(self.generations)} if self.generations else {},
            )
            records.append(OutgoingRecord(event.to_bytes(), partition_key(vk), seq, changed_at=time.time()))
        if records:
            self.sender.send(records)
        return sent

    def resync(
        self,
        keys: Sequence[Row],
        *,
        origin: str,
        seqs: Sequence[str] | None = None,
        observed: Mapping[str, Observed] | None = None,
    ) -> list[Resynced]:
        """Read, then send every record through the one writer; returns what was done per key."""
        records, results = self.plan(keys, origin=origin, seqs=seqs, observed=observed)
        if records:
            self.sender.send(records)
        return results


def change_stream_sender(resources: StackResources, clients: Any) -> ChangeStreamSender:
    """The one writer for re-syncs: Kinesis on AWS; locally the pipeline's producer through the control API."""
    kinesis = local_client.LocalKinesis(resources) if resources.is_local else clients("kinesis")
    return ChangeStreamSender.for_kinesis(kinesis, resources.stream_name)


def row_reader(resources: StackResources, session: Any = None) -> RowReader:
    """The reader for the stack: the local control API, else the table's ``session`` (from ``connect_table``):
    a PostgreSQL connection for a postgres source, a Keyspaces session otherwise."""
    if resources.is_local:
        return LocalRowReader(resources)
    source = resources.config.source.kind
    if session is None:
        raise OperatorError(f"reading rows from {'PostgreSQL' if source == 'postgres' else 'Amazon Keyspaces'} "
                            "needs a connection")  # fmt: skip
    if source == "postgres":
        from freshvec.cli import postgres  # deferred: only PostgreSQL sources load the driver

        return postgres.PostgresRowReader(session, resources.config)
    return KeyspacesRowReader(session, resources.config)


def connect_table(resources: StackResources, clients: Any, ca_bundle: Any = None) -> tuple[Callable[[], None], Any]:
    """``(close, session)`` for reading the stack's table: a PostgreSQL connection (TLS and password as
    ``freshvec.cli.postgres`` takes them) for a postgres source, else a Keyspaces session."""
    if resources.config.source.kind == "postgres":
        from freshvec.cli import postgres

        conn = postgres.connect_source(resources.config, clients)
        return conn.close, conn
    cluster, session = keyspaces.connect_table(resources.region, ca_bundle)
    return cluster.shutdown, session


def key_of_row(row: Mapping[str, Any], config: PipelineConfig) -> Row | None:
    """The primary key of a change-event row, or None when a key column is missing."""
    if any(row.get(name) is None for name in config.primary_key):
        return None
    return {name: row[name] for name in config.primary_key}


def checked_vector_key(key: Mapping[str, Any], config: PipelineConfig) -> str | None:
    try:
        return vector_key(key, config.key_columns)
    except PoisonRecordError:
        return None
