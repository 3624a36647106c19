"""``freshvec load --wait`` and ``freshvec wait``: poll the index until each write is searchable, and how long it took.

A write is visible when the index holds what the sink would write for it: a put when every chunk of the text
written (``freshvec.chunking.expected_chunks``: one for a short text) carries its fingerprint (``_fp``, with the
config's model, dimensions and normalisation and the provider's input limit) and chunk 0 counts them, a delete
(or an update to empty text) when the key has no vector. Keys known only by their primary key (``freshvec
wait`` with a keys file) are visible when a vector exists (or, with ``--delete``, when none does).

Polling is GetVectors of the pending keys and their chunks (at most 100 a call, metadata only) until every write
is visible or the timeout passes; latency is from the write (its acknowledgement, for ``load --wait``; the change's time
``_changed_at`` from the vector, or the start of waiting for deletes, for ``freshvec wait``) to the first poll
that saw it. The same code serves AWS and local mode: local mode polls the moto endpoint of the state file.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from freshvec import constants as c
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.chunking import expected_chunks
from freshvec.cli import console
from freshvec.cli.errors import EXIT_CHECK_FAILED, OperatorError, UsageError
from freshvec.cli.load import LoadReport, RowWriter, WriteOp, WriteResult
from freshvec.cli.settings import settings
from freshvec.config import PipelineConfig
from freshvec.datafiles import read_records
from freshvec.errors import PoisonRecordError
from freshvec.keys import parse_vector_key, vector_key
from freshvec.plan import has_text
from freshvec.sources.keyspaces.driver import CellError, TableSchema, convert_row, row_to_json

PRESENT = object()  # expectation of a key known only by its primary key: any vector
TABLE_TEXT = object()  # a write that left the text column out: whatever text the table's row holds now
POLL_INTERVAL_S = 0.25
DEFAULT_TIMEOUT_S = 120.0


@dataclass
class Expected:
    """What the index should show for one key, and when the write happened (``written_at``: epoch seconds)."""

    key: str
    fingerprint: str | object | None  # chunk 0's fingerprint, None (no vector) or PRESENT (any vector)
    written_at: float | None = None  # None: take the vector's _changed_at (else the start of waiting)
    chunks: dict[str, str] = field(default_factory=dict)  # a long text's further chunks: chunk key -> fingerprint


@dataclass
class WaitOutcome:
    latencies_ms: list[float] = field(default_factory=list)
    never_visible: list[str] = field(default_factory=list)
    polls: int = 0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values`` (nan for none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def max_input_chars(config: PipelineConfig) -> int:
    try:
        # The cut the embedders make (part of the fingerprint): constants.input_char_limit.
        return c.input_char_limit(config.embedding.provider, config.embedding.model_id)
    except KeyError:
        raise OperatorError(f"embedding.provider {config.embedding.provider!r}: its input limit is unknown") from None


class Expectations:
    """Turns rows (driver values, as the loader writes them) into what the index should show."""

    def __init__(self, config: PipelineConfig, schema: TableSchema) -> None:
        self.config = config
        self.schema = schema
        self._limit = max_input_chars(config)

    def of(
        self, row: Mapping[str, Any], *, delete: bool, written_at: float | None, without_text: object = PRESENT
    ) -> Expected:
        """What the index should show after ``row`` was written (or deleted). A row without the text column is
        ``without_text``: PRESENT for a key named alone (any vector), TABLE_TEXT for a write (it left the row's
        text as the table has it: none for a new row, so no vector). PoisonRecordError: no vector can hold it."""
        values = row_to_json(row, self.schema)
        key = vector_key(values, self.config.key_columns)
        if delete:
            return Expected(key, None, written_at)
        if self.schema.text_column not in values:
            return Expected(key, without_text, written_at)
        return self.of_text(key, values.get(self.schema.text_column), written_at)

    def of_text(self, key: str, text: Any, written_at: float | None) -> Expected:
        """The chunks the sink stores for ``text`` (``freshvec.chunking``: stripped, a long text split), each by
        its fingerprint; none for an empty text, as the sink removes the row's vectors. PoisonRecordError when
        the sink refuses the text (a chunk key too long, too many chunks)."""
        chunks = expected_chunks(self.config, key, text, max_input_chars=self._limit) if has_text(text) else []
        if not chunks:
            return Expected(key, None, written_at)
        return Expected(key, chunks[0].fingerprint, written_at, {ch.key: ch.fingerprint for ch in chunks[1:]})


class RecordingWriter:
    """A ``RowWriter`` that remembers when each write was acknowledged (the start of its freshness)."""

    def __init__(self, inner: RowWriter, expectations: Expectations, clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.expectations = expectations
        self.clock = clock
        self.expected: dict[str, Expected] = {}  # by key: the last write of each key is the one to see
        self.unindexable: list[str] = []  # rows written that no vector can hold: key (shortened) and reason

    def write(self, ops: Iterable[WriteOp], report: Callable[[WriteResult], None]) -> None:
        def recorded(result: WriteResult) -> None:
            if result.error is None:
                self._record(result.op)
            report(result)

        self.inner.write(ops, recorded)

    def _record(self, op: WriteOp) -> None:
        try:
            expected = self.expectations.of(
                op.row, delete=op.kind == "delete", written_at=self.clock(), without_text=TABLE_TEXT
            )
        except PoisonRecordError as exc:  # written, but the sink parks it: nothing will become searchable
            values = row_to_json(op.row, self.expectations.schema)
            key = json.dumps([values.get(name) for name in self.expectations.config.key_columns], ensure_ascii=False)
            self.unindexable.append(f"{console.shorten(key)}: {exc}")
            return
        self.expected.pop(expected.key, None)
        self.expected[expected.key] = expected

    def settle(self, reader: Any) -> None:
        """Read the rows whose writes left the text column out (``resync.RowReader``): the text the table holds
        now is what the index should show (none: no vector)."""
        pending = [e for e in self.expected.values() if e.fingerprint is TABLE_TEXT]
        if not pending:
            return
        columns = self.expectations.config.key_columns
        reads = reader.read([parse_vector_key(e.key, columns) for e in pending])
        text_column = self.expectations.schema.text_column
        for e, (row, _version) in zip(pending, reads, strict=True):
            text = (row or {}).get(text_column)
            try:
                self.expected[e.key] = self.expectations.of_text(e.key, text, e.written_at)
            except PoisonRecordError as exc:  # the table's text is one the sink parks: nothing to wait for
                del self.expected[e.key]
                self.unindexable.append(f"{console.shorten(e.key)}: {exc}")


def visible(expected: Expected, found: Mapping[str, Any]) -> bool:
    """Whether the vectors ``found`` (GetVectors of the key and its expected chunks) show the write: every chunk
    the text makes, each with its fingerprint, and chunk 0 counting exactly them."""
    stored = found.get(expected.key)
    if expected.fingerprint is None:
        return stored is None
    if stored is None:
        return False
    if expected.fingerprint is PRESENT:
        return True
    metadata = stored.get("metadata") or {}
    if metadata.get(c.META_FINGERPRINT) != expected.fingerprint:
        return False
    if expected.chunks and metadata.get(c.META_CHUNKS) != len(expected.chunks) + 1:
        return False
    return all(_fingerprint_of(found.get(key)) == fp for key, fp in expected.chunks.items())


def _fingerprint_of(stored: Mapping[str, Any] | None) -> Any:
    return ((stored or {}).get("metadata") or {}).get(c.META_FINGERPRINT)


def wait_visible(
    expected: Sequence[Expected],
    get: Callable[[list[str]], Mapping[str, Any]],
    *,
    timeout_s: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    interval_s: float = POLL_INTERVAL_S,
    on_poll: Callable[[int, int], None] | None = None,
) -> WaitOutcome:
    """Poll ``get`` (GetVectors: key -> stored vector with metadata) until each expectation holds or time is up."""
    started = clock()
    deadline = started + timeout_s
    pending = {e.key: e for e in expected}
    outcome = WaitOutcome()
    while pending:
        keys = list(pending)
        polled = keys + [chunk for e in pending.values() for chunk in e.chunks]
        found: dict[str, Any] = {}
        for start in range(0, len(polled), c.S3V_GET_BATCH):
            found.update(get(polled[start : start + c.S3V_GET_BATCH]))
        seen_at = clock()
        outcome.polls += 1
        for key in keys:
            e = pending[key]
            if visible(e, found):
                since = e.written_at if e.written_at is not None else _changed_at(found.get(key), started)
                outcome.latencies_ms.append(max(0.0, (seen_at - since) * 1000))
                del pending[key]
        if on_poll is not None:
            on_poll(len(expected) - len(pending), len(expected))
        if not pending or clock() >= deadline:
            break
        sleep(min(interval_s, max(0.0, deadline - clock())))
    outcome.never_visible = sorted(pending)
    return outcome


def _changed_at(stored: Mapping[str, Any] | None, default: float) -> float:
    raw = (stored or {}).get("metadata", {}).get(c.META_CHANGED_AT)
    return raw / 1000 if isinstance(raw, int | float) and not isinstance(raw, bool) else default


# ---- the commands' side ------------------------------------------------------------------------------


def index_reader() -> Callable[[list[str]], Mapping[str, Any]]:
    """GetVectors (metadata only) on the stack's index; in local mode on the moto endpoint of the state file."""
    res = settings().resources()
    store = S3VectorsStore(settings().clients()("s3vectors"), res.vector_bucket, res.vector_index)
    return lambda keys: store.get(keys, return_data=False, return_metadata=True)


def wait_and_report(
    expected: Sequence[Expected], timeout_s: float, *, label: str = "write → searchable", delete: bool = False
) -> None:
    """Wait with a progress bar, print p50/p95/max; exit 1 naming how many writes never became visible."""
    if not expected:
        console.out.print("nothing to wait for")
        return
    get = index_reader()
    removals = all(e.fingerprint is None for e in expected)
    with console.progress() as progress:
        task = progress.add_task(
            "waiting until removed" if removals else "waiting until searchable", total=len(expected)
        )
        outcome = wait_visible(
            expected, get, timeout_s=timeout_s, on_poll=lambda done, _n: progress.update(task, completed=done)
        )
    seen = len(outcome.latencies_ms)
    if seen:
        console.out.print(
            f"{_seen_summary(expected, outcome, delete=delete)}; {label}: p50 {outcome.percentile(50):.0f} ms, "
            f"p95 {outcome.percentile(95):.0f} ms, max {max(outcome.latencies_ms):.0f} ms"
        )
    if outcome.never_visible:
        sample = ", ".join(outcome.never_visible[:3])
        removals = all(e.fingerprint is None for e in expected)
        what = "row(s) were still in the index after" if removals else "change(s) did not become searchable within"
        console.err.print(
            f"error: {len(outcome.never_visible)} of {len(expected)} {what} {timeout_s:g} s (e.g. {sample}); "
            "see `freshvec status` and `freshvec redrive list`"
        )
        raise typer.Exit(EXIT_CHECK_FAILED)


def _seen_summary(expected: Sequence[Expected], outcome: WaitOutcome, *, delete: bool) -> str:
    """What became visible, by kind: rows searchable (a vector with the text written) and rows removed (none:
    deleted, or written without text)."""
    pending = set(outcome.never_visible)
    removed = sum(1 for e in expected if e.fingerprint is None and e.key not in pending)
    searchable = sum(1 for e in expected if e.fingerprint is not None and e.key not in pending)
    parts = [f"{searchable} change(s) searchable"] if searchable else []
    if removed:
        parts.append(
            f"{removed} row(s) removed from the index" if delete else f"{removed} row(s) without text, not in the index"
        )
    return ", ".join(parts)


def after_load(
    report: LoadReport, recorder: RecordingWriter | None, timeout_s: float, *, file: str, delete: bool
) -> None:
    """``load``'s last words: wait (``--wait``), or say when the changes become searchable and how to wait."""
    if recorder is not None:
        if recorder.unindexable:
            console.unindexable_rows(recorder.unindexable, "written, parked in the DLQ (`freshvec redrive list`)")
        label = "delete → absent" if delete else "write → searchable"
        wait_and_report(list(recorder.expected.values()), timeout_s, label=label, delete=delete)
        if recorder.unindexable:
            raise typer.Exit(EXIT_CHECK_FAILED)
    elif report.written:
        again = " --delete" if delete else ""
        console.out.print(
            "the changes become searchable in a few seconds; to wait for them: "
            f"`freshvec load {file}{again} --wait` or `freshvec wait --keys-file {file}{again}`"
        )


DATA_FILE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")  # what ``freshvec load`` reads (datafiles)


def expectations_from_file(path: Path, expectations: Expectations, *, delete: bool) -> list[Expected]:
    """Keys from a CSV/JSON Lines data file (text given: its fingerprint is expected) or, by any other name
    (``x.keys``, ``x.txt``), JSON Lines of keys as on stdin."""
    if path.suffix.lower() not in DATA_FILE_SUFFIXES:
        try:
            with path.open(encoding="utf-8") as handle:
                return expectations_from_lines(handle, expectations, delete=delete, source=path.name)
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise OperatorError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    records = read_records(path, expectations.schema.column_types)
    return _expected(((r.line, r.values, r.error) for r in records), expectations, delete=delete, source=path.name)


def expectations_from_lines(
    lines: Iterable[str], expectations: Expectations, *, delete: bool, source: str = "stdin"
) -> list[Expected]:
    """JSON Lines (objects of key columns, or whole rows), from stdin or a keys file."""

    def parsed() -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                yield number, None, f"not JSON: {exc}"
                continue
            if not isinstance(value, dict):
                yield number, None, "not a JSON object of primary key columns"
                continue
            yield number, value, None

    return _expected(parsed(), expectations, delete=delete, source=source)


def _expected(
    rows: Iterable[tuple[int, Mapping[str, Any] | None, str | None]],
    expectations: Expectations,
    *,
    delete: bool,
    source: str,
) -> list[Expected]:
    found: dict[str, Expected] = {}
    known = expectations.schema.column_types
    for line, values, error in rows:
        if values is None:
            raise UsageError(f"{source}:{line}: {error or 'unreadable'}")
        unknown = [name for name in values if name not in known]
        if unknown:
            raise UsageError(f"{source}:{line}: unknown column {unknown[0]!r}")
        try:
            row = convert_row(values, expectations.schema)
        except CellError as exc:
            raise UsageError(f"{source}:{line}: {exc}") from exc
        try:
            e = expectations.of(row, delete=delete, written_at=None)
        except PoisonRecordError as exc:  # a key no vector can have: waiting for it could never end
            raise UsageError(f"{source}:{line}: {exc}") from exc
        found.pop(e.key, None)
        found[e.key] = e
    return list(found.values())


def wait_command(
    keys_file: Annotated[
        Path | None,
        typer.Option(
            "--keys-file",
            help="JSON Lines of primary keys, or the CSV/JSON Lines data file that was loaded [default: stdin]",
        ),
    ] = None,
    *,
    delete: Annotated[bool, typer.Option("--delete", help="The rows were deleted: wait until they are gone")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Give up after this many seconds")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Wait until rows written by other means are searchable (or gone); print write → searchable latency."""
    res = settings().resources()
    expectations = Expectations(res.config, TableSchema.from_config(res.config))
    if keys_file is not None:
        expected = expectations_from_file(keys_file, expectations, delete=delete)
    else:
        if sys.stdin.isatty():
            raise typer.BadParameter(
                "give --keys-file FILE or primary keys as JSON Lines on stdin", param_hint="--keys-file"
            )
        expected = expectations_from_lines(sys.stdin, expectations, delete=delete)
    wait_and_report(expected, timeout, label="delete → absent" if delete else "change → searchable", delete=delete)
