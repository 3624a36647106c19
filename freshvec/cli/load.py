"""Seed and change table rows from CSV or JSON Lines files: read, convert by CQL type, write concurrently.

One loading loop (``load_rows``) serves every destination through the ``RowWriter`` port:
``CassandraRowWriter`` writes to Amazon Keyspaces with prepared statements and a bounded number of
asynchronous writes in flight, retrying retryable driver errors with exponential backoff;
``ControlApiRowWriter`` writes to a running local mode through its control API.

Values are converted by the table's CQL types: decimals stay exact (``Decimal(str(value))``; JSON Lines
numbers are parsed as ``Decimal``), dates and timestamps are parsed, collections are checked element by
element. A row that cannot be converted is reported with its line number and skipped; the rest loads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from freshvec.datafiles import SourceRecord
from freshvec.retry import RetryPolicy
from freshvec.sources.keyspaces.driver import (
    CellError,
    TableSchema,
    convert_row,
    row_to_json,
    to_json_value,  # noqa: F401 - re-exported for the CLI's backfill
)

# ---- errors ------------------------------------------------------------------------------------


class RowError(ValueError):
    """One row cannot be loaded; ``line`` is its line number in the input file."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.reason = message
        super().__init__(f"line {line}: {message}")


UPDATE_MODES = ("ratings", "text")


@dataclass(frozen=True)
class WriteOp:
    """One write: ``upsert`` a row (driver values) or ``delete`` it by primary key."""

    line: int
    kind: str  # "upsert" | "delete"
    row: dict[str, Any]


@dataclass(frozen=True)
class WriteOptions:
    """How each write is made: ``USING TTL`` (seconds), ``USING TIMESTAMP`` (microseconds), and ``partial``: an
    UPDATE of only the columns given (so a TTL applies to those columns alone) instead of an INSERT."""

    ttl_s: int | None = None
    timestamp_us: int | None = None
    partial: bool = False

    @property
    def using(self) -> str:
        """The ``USING ...`` clause (empty without a TTL or timestamp); both are validated whole numbers."""
        parts = [f"TTL {int(self.ttl_s)}"] if self.ttl_s is not None else []
        parts += [f"TIMESTAMP {int(self.timestamp_us)}"] if self.timestamp_us is not None else []
        return f" USING {' AND '.join(parts)}" if parts else ""


def batches_of_one_kind(ops: Iterable[WriteOp], size: int) -> Iterator[list[WriteOp]]:
    """Consecutive writes in batches of at most ``size``, a batch never mixing upserts and deletes (order kept)."""
    batch: list[WriteOp] = []
    for op in ops:
        if batch and (op.kind != batch[0].kind or len(batch) >= size):
            yield batch
            batch = []
        batch.append(op)
    if batch:
        yield batch


def plan_writes(
    rows: Iterable[tuple[int, dict[str, Any]]],
    schema: TableSchema,
    *,
    update: str | None = None,
    delete: bool = False,
    stamp: str | None = None,
) -> Iterator[WriteOp]:
    """The writes for each converted row: as in the file, with changed ratings or text, or deleted.

    ``update="ratings"`` changes only the numeric non-key columns (the text stays, so no re-embedding
    is expected); ``update="text"`` appends a revision note to the embedded text (a new embedding is
    expected); ``delete`` removes the rows by primary key.
    """
    if update is not None and update not in UPDATE_MODES:
        raise ValueError(f"unknown update mode {update!r}; allowed: {', '.join(UPDATE_MODES)}")
    stamp = stamp or datetime.now(UTC).strftime("%H:%M:%S")
    for line, row in rows:
        if delete:
            yield WriteOp(line, "delete", {name: row[name] for name in schema.primary_key})
        elif update == "ratings":
            yield WriteOp(line, "upsert", _bump_numbers(row, schema))
        elif update == "text":
            changed = dict(row)
            changed[schema.text_column] = f"{row.get(schema.text_column) or ''} (revised {stamp})".strip()
            yield WriteOp(line, "upsert", changed)
        else:
            yield WriteOp(line, "upsert", row)


def _bump_numbers(row: Mapping[str, Any], schema: TableSchema) -> dict[str, Any]:
    """The row with each numeric non-key column nudged, so its metadata visibly changes."""
    changed = dict(row)
    for name, value in row.items():
        kind = schema.column_types[name].base.name
        if name in schema.primary_key or value is None:
            continue
        if kind == "decimal":
            changed[name] = value + Decimal("0.1")
        elif kind in ("float", "double"):
            changed[name] = value + 0.1
        elif kind in ("int", "bigint", "smallint", "varint"):
            changed[name] = value + 1
    return changed


# ---- writers -----------------------------------------------------------------------------------


@dataclass
class WriteResult:
    op: WriteOp
    error: str | None = None
    attempts: int = 1


class RowWriter(Protocol):
    """Where rows go. ``write`` returns once every op was reported to ``report`` (success or final error)."""

    def write(self, ops: Iterable[WriteOp], report: Callable[[WriteResult], None]) -> None: ...


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def build_insert(keyspace: str, table: str, columns: Sequence[str], options: WriteOptions = WriteOptions()) -> str:
    names = ", ".join(quote(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    # Identifiers come from the validated config and are quoted; values are always bound; USING holds integers.
    return f"INSERT INTO {quote(keyspace)}.{quote(table)} ({names}) VALUES ({marks}){options.using}"  # noqa: S608


def build_update(
    keyspace: str, table: str, columns: Sequence[str], key_columns: Sequence[str], options: WriteOptions
) -> str:
    """``UPDATE ... USING TTL/TIMESTAMP SET c = ? ... WHERE key = ?``: columns first, then the key, as bound."""
    sets = ", ".join(f"{quote(c)} = ?" for c in columns)
    where = " AND ".join(f"{quote(c)} = ?" for c in key_columns)
    return f"UPDATE {quote(keyspace)}.{quote(table)}{options.using} SET {sets} WHERE {where}"  # noqa: S608


def build_delete(keyspace: str, table: str, key_columns: Sequence[str], options: WriteOptions = WriteOptions()) -> str:
    where = " AND ".join(f"{quote(c)} = ?" for c in key_columns)
    using = f" USING TIMESTAMP {int(options.timestamp_us)}" if options.timestamp_us is not None else ""
    return f"DELETE FROM {quote(keyspace)}.{quote(table)}{using} WHERE {where}"  # noqa: S608


def _retryable_driver_errors() -> tuple[type[BaseException], ...]:
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteFailure, WriteTimeout
    from cassandra.cluster import NoHostAvailable
    from cassandra.protocol import OverloadedErrorMessage, ServerError

    return (
        WriteTimeout,
        WriteFailure,
        ReadTimeout,
        Unavailable,
        OperationTimedOut,
        NoHostAvailable,
        OverloadedErrorMessage,
        ServerError,
    )


# Driver writes: retryable errors (timeouts, unavailable, overloaded) are retried up to 6 attempts in all.
DRIVER_RETRY = RetryPolicy(attempts=6, base_delay_s=0.05, max_delay_s=5.0)
# Local control API: connection errors and 5xx answers, up to 4 attempts.
CONTROL_API_RETRY = RetryPolicy(attempts=4, base_delay_s=0.2, max_delay_s=2.0)


class CassandraRowWriter:
    """Asynchronous writes through a Cassandra session, at most ``max_in_flight`` at once.

    A slot is taken before a write is sent and given back when it finally succeeds or fails, so retries
    (scheduled on a timer, never blocking the driver's event loop) count against the same bound.
    """

    def __init__(
        self,
        session: Any,
        schema: TableSchema,
        *,
        max_in_flight: int = 64,
        retry: RetryPolicy = DRIVER_RETRY,
        consistency_level: Any = None,
        options: WriteOptions = WriteOptions(),
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.session = session
        self.schema = schema
        self.max_in_flight = max_in_flight
        self.retry = retry
        self.consistency_level = consistency_level
        self.options = options
        self._prepared: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._retryable = _retryable_driver_errors()

    def _statement(self, op: WriteOp) -> tuple[Any, list[Any]]:
        s = self.schema
        partial = op.kind != "delete" and self.options.partial
        if op.kind == "delete":
            columns = s.primary_key
        elif partial:  # UPDATE binds the set columns first, then the key
            columns = tuple(c for c in op.row if c not in s.primary_key) + s.primary_key
        else:
            columns = tuple(op.row)
        cache_key = (op.kind, columns)
        if cache_key not in self._prepared:
            if op.kind == "delete":
                text = build_delete(s.keyspace, s.table, columns, self.options)
            elif partial:
                text = build_update(s.keyspace, s.table, columns[: -len(s.primary_key)], s.primary_key, self.options)
            else:
                text = build_insert(s.keyspace, s.table, columns, self.options)
            prepared = self.session.prepare(text)
            if self.consistency_level is not None:
                prepared.consistency_level = self.consistency_level
            self._prepared[cache_key] = prepared
        return self._prepared[cache_key], [op.row[c] for c in columns]

    def write(self, ops: Iterable[WriteOp], report: Callable[[WriteResult], None]) -> None:
        for op in ops:
            try:
                statement, params = self._statement(op)
            except Exception as exc:  # noqa: BLE001 - a statement the server refuses to prepare is that row's error
                report(WriteResult(op, error=_error_text(exc)))
                continue
            self._slots.acquire()
            self._send(_Job(op, statement, params, report))
        for _ in range(self.max_in_flight):  # every slot back: every write has finished
            self._slots.acquire()
        for _ in range(self.max_in_flight):
            self._slots.release()

    def _send(self, job: _Job) -> None:
        try:
            future = self.session.execute_async(job.statement, job.params)
        except Exception as exc:  # noqa: BLE001 - the driver may refuse before sending (e.g. no host)
            self._failed(exc, job)
            return
        future.add_callbacks(callback=lambda _rows: self._done(job, None), errback=lambda exc: self._failed(exc, job))

    def _failed(self, exc: BaseException, job: _Job) -> None:
        if isinstance(exc, self._retryable) and not self.retry.exhausted(job.attempt):
            delay = self.retry.delay(job.attempt)
            job.attempt += 1
            timer = threading.Timer(delay, self._send, (job,))
            timer.daemon = True
            timer.start()
            return
        self._done(job, _error_text(exc))

    def _done(self, job: _Job, error: str | None) -> None:
        try:
            job.report(WriteResult(job.op, error=error, attempts=job.attempt))
        finally:
            self._slots.release()


@dataclass
class _Job:
    op: WriteOp
    statement: Any
    params: list[Any]
    report: Callable[[WriteResult], None]
    attempt: int = 1


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or "no detail"
    return f"{type(exc).__name__}: {text}"


class ControlApiRowWriter:
    """Writes rows to a running local mode through its control API, in batches, retrying connection errors; a
    batch the table refuses (400) is written again row by row, so only the bad rows fail."""

    def __init__(
        self,
        control_url: str,
        schema: TableSchema,
        *,
        batch_size: int = 200,
        retry: RetryPolicy = CONTROL_API_RETRY,
        headers: Mapping[str, str] | None = None,
        options: WriteOptions = WriteOptions(),
    ) -> None:
        self.options = options
        self.control_url = control_url.rstrip("/")
        self.schema = schema
        self.batch_size = batch_size
        self.retry = retry
        self.headers = dict(headers or {})

    def write(self, ops: Iterable[WriteOp], report: Callable[[WriteResult], None]) -> None:
        for batch in batches_of_one_kind(ops, self.batch_size):
            self._flush(batch, report)

    def _flush(self, batch: list[WriteOp], report: Callable[[WriteResult], None]) -> None:
        import requests

        o = self.options
        body: dict[str, Any] = {} if o.timestamp_us is None else {"timestamp_us": o.timestamp_us}
        if batch[0].kind == "delete":
            path, body["keys"] = "rows/delete", [row_to_json(op.row, self.schema) for op in batch]
        else:
            path, body["rows"] = "rows/upsert", [row_to_json(op.row, self.schema) for op in batch]
            body |= {"partial": o.partial} | ({"ttl_s": o.ttl_s} if o.ttl_s is not None else {})
        error: str | None = None
        attempt = 1
        while True:
            try:
                response = requests.post(f"{self.control_url}/{path}", json=body, headers=self.headers, timeout=30)
                if response.status_code == 400 and len(batch) > 1:  # one bad row refuses the call: find it
                    for op in batch:
                        self._flush([op], report)
                    return
                if response.status_code < 500:
                    if response.status_code >= 400:
                        error = f"local control API refused the rows ({response.status_code}): {response.text[:200]}"
                    break
                error = f"local control API failed ({response.status_code})"
            except requests.ConnectionError as exc:
                error = f"local control API unreachable at {self.control_url}: {type(exc).__name__}"
            if self.retry.exhausted(attempt):
                break
            self.retry.sleep(self.retry.delay(attempt))
            attempt += 1
            error = None
        for op in batch:
            report(WriteResult(op, error=error, attempts=attempt))


# ---- the loading loop --------------------------------------------------------------------------


@dataclass
class LoadReport:
    read: int = 0
    written: int = 0
    skipped: list[RowError] = field(default_factory=list)  # bad rows: not sent
    failed: list[RowError] = field(default_factory=list)  # sent, but the write failed after retries
    retried: int = 0  # writes that needed more than one attempt

    @property
    def ok(self) -> bool:
        return not self.skipped and not self.failed


def load_rows(
    records: Iterable[SourceRecord],
    schema: TableSchema,
    writer: RowWriter,
    *,
    update: str | None = None,
    delete: bool = False,
    limit: int | None = None,
    on_progress: Callable[[LoadReport], None] | None = None,
) -> LoadReport:
    """Convert each record, skip (and report) bad ones, and hand the rest to the writer."""
    report = LoadReport()
    lock = threading.Lock()

    def converted() -> Iterator[tuple[int, dict[str, Any]]]:
        taken = 0
        for record in records:
            if limit is not None and taken >= limit:
                return
            report.read += 1
            if record.values is None:
                report.skipped.append(RowError(record.line, record.error or "unreadable"))
                continue
            try:
                row = convert_row(record.values, schema)
            except CellError as exc:
                report.skipped.append(RowError(record.line, str(exc)))
                continue
            taken += 1
            yield record.line, row

    def on_result(result: WriteResult) -> None:
        with lock:
            if result.error is None:
                report.written += 1
            else:
                report.failed.append(RowError(result.op.line, result.error))
            if result.attempts > 1:
                report.retried += 1
            if on_progress is not None:
                on_progress(report)

    writer.write(plan_writes(converted(), schema, update=update, delete=delete), on_result)
    report.skipped.sort(key=lambda e: e.line)
    report.failed.sort(key=lambda e: e.line)
    return report
