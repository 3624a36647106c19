"""``freshvec backfill``: send every existing row to the change stream as a re-sync event (origin BACKFILL).

Each row goes with the version of its read (a Keyspaces read's conservative stamp, ``freshvec.cli.resync``),
so a backfill never overwrites a newer change CDC delivered, and cannot bring back a row deleted after it was
read: the sink's version rule and tombstones decide (a row it cannot place is parked for ``redrive send``).
The table is read in token-range segments (local mode: key-hash segments through the control API), in
parallel, with progress saved after every page Kinesis accepted, so an interrupted backfill resumes where it
stopped.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from freshvec.cli import console, generations, keyspaces, local_client, resync
from freshvec.cli.errors import EXIT_CHECK_FAILED, OperatorError
from freshvec.cli.load import quote
from freshvec.cli.send import ChangeStreamSender, RateLimiter
from freshvec.cli.settings import settings
from freshvec.cli.stack import StackResources
from freshvec.config import PipelineConfig
from freshvec.errors import PoisonRecordError
from freshvec.outgoing import OutgoingRecord
from freshvec.ports import ChangeStreamWriter

MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1


def token_segments(count: int) -> list[tuple[int, int]]:
    """``count`` contiguous (low, high] token ranges covering the whole Murmur3 ring."""
    if count < 1:
        raise ValueError("at least one segment")
    span = (MAX_TOKEN - MIN_TOKEN) // count
    bounds = [MIN_TOKEN + i * span for i in range(count)] + [MAX_TOKEN]
    return list(itertools.pairwise(bounds))


def build_range_select(
    keyspace: str,
    table: str,
    partition_key: Sequence[str],
    columns: Sequence[str],
    *,
    inclusive: bool,
) -> str:
    """A token-range select of ``columns``."""
    token = f"token({', '.join(quote(k) for k in partition_key)})"
    selected = ", ".join(quote(col) for col in columns)
    low = ">=" if inclusive else ">"
    # Identifiers come from the validated config and are quoted; token bounds are bound values.
    return (
        f"SELECT {token} AS fv_token, {selected} FROM {quote(keyspace)}.{quote(table)} "  # noqa: S608
        f"WHERE {token} {low} ? AND {token} <= ?"
    )


@dataclass
class BackfillState:
    """Progress that survives an interruption: per segment, the last token fully sent (local mode: the scan
    cursor), or done."""

    path: Path
    segments: int
    started_ms: int
    positions: dict[int, int | str] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    sent: int = 0
    unindexable: list[str] = field(default_factory=list)  # one line per row that no vector can hold

    @classmethod
    def open(cls, path: Path, segments: int, *, restart: bool = False) -> BackfillState:
        if path.is_file() and not restart:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                if raw["segments"] != segments:
                    raise OperatorError(
                        f"{path} is a backfill over {raw['segments']} segments; pass --segments "
                        f"{raw['segments']} to resume it, or --restart to start over"
                    )
                return cls(
                    path,
                    segments,
                    int(raw["started_ms"]),
                    {int(k): v if isinstance(v, str) else int(v) for k, v in raw["positions"].items()},
                    {int(s) for s in raw["done"]},
                    int(raw["sent"]),
                    [str(line) for line in raw.get("unindexable", [])],
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise OperatorError(f"{path} is not a backfill state file ({exc}); pass --restart") from exc
        return cls(path, segments, int(time.time() * 1000))

    @property
    def complete(self) -> bool:
        return len(self.done) == self.segments

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "segments": self.segments,
            "started_ms": self.started_ms,
            "positions": {str(k): v for k, v in sorted(self.positions.items())},
            "done": sorted(self.done),
            "sent": self.sent,
            "unindexable": self.unindexable,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(self.path)


@dataclass
class BackfillReport:
    sent: int = 0
    segments_done: int = 0
    segments: int = 0
    resumed: bool = False
    unindexable: list[str] = field(default_factory=list)  # rows no vector can hold: key (shortened) and reason


def backfill(
    session: Any,
    kinesis: Any,
    resources: StackResources,
    state: BackfillState,
    *,
    workers: int = 4,
    rate_per_s: float = 500.0,
    page_rows: int = 500,
    on_progress: Callable[[int], None] | None = None,
    writer: ChangeStreamWriter | None = None,
    generations: Sequence[str] | None = None,
    vectors_for: Callable[[dict[str, Any]], dict[str, str]] | None = None,
) -> BackfillReport:
    """Send every existing row, with the version it was read with, as a re-sync event (origin BACKFILL).

    ``session`` is the Keyspaces session (None in local mode: rows come from the control API). Token-range
    segments are read in parallel; after each page of rows Kinesis accepted, the segment's
    last token is saved, so a rerun resumes there (re-sending at most the rows of that token: the sink
    is idempotent). When one segment fails, the others stop at their next page. Pages go through
    ``writer`` (default: the Kinesis writer on the stack's stream) in the calls ``plan_calls`` plans. With
    ``generations`` the re-syncs are for those index generations only; ``vectors_for(row)`` adds precomputed
    vectors of the row's chunks (a migration's batch jobs).
    """
    run = _BackfillRun(
        session,
        resources,
        state,
        sender=(
            ChangeStreamSender(writer, resources.stream_name)
            if writer is not None
            else ChangeStreamSender.for_kinesis(kinesis, resources.stream_name)
        ),
        limiter=RateLimiter(rate_per_s),
        page_rows=page_rows,
        on_progress=on_progress,
        generations=generations,
        vectors_for=vectors_for,
    )
    return run.run(workers)


class _BackfillRun:
    def __init__(
        self,
        session: Any,
        resources: StackResources,
        state: BackfillState,
        *,
        sender: ChangeStreamSender,
        limiter: RateLimiter,
        page_rows: int,
        on_progress: Callable[[int], None] | None,
        generations: Sequence[str] | None = None,
        vectors_for: Callable[[dict[str, Any]], dict[str, str]] | None = None,
    ) -> None:
        self.generations = generations
        self.vectors_for = vectors_for
        self.session = session
        self.resources = resources
        self.config = resources.config
        self.state = state
        self.sender = sender
        self.limiter = limiter
        self.page_rows = page_rows
        self.on_progress = on_progress
        self.lock = threading.Lock()
        self.stop = threading.Event()
        # Digits only, so anything that orders sequence numbers numerically still can: run start, then a counter.
        self.seq_base = state.started_ms * 10**9 + state.sent
        self.counter = itertools.count(1)
        c_ = self.config
        columns = list(c_.columns)
        self.statements = (
            {}
            if resources.is_local
            else {
                inclusive: session.prepare(
                    build_range_select(c_.keyspace, c_.table, c_.partition_key, columns, inclusive=inclusive)
                )
                for inclusive in (False, True)
            }
        )

    def run(self, workers: int) -> BackfillReport:
        state = self.state
        resumed = bool(state.positions or state.done)
        todo = [(i, lo, hi) for i, (lo, hi) in enumerate(token_segments(state.segments)) if i not in state.done]
        before = state.sent
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="backfill") as pool:
            futures = [pool.submit(self._segment, *segment) for segment in todo]
            try:
                for future in futures:
                    future.result()
            except BaseException:  # a failed segment or Ctrl-C: the others stop after their current page
                self.stop.set()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return BackfillReport(state.sent - before, len(state.done), state.segments, resumed, list(state.unindexable))

    def _segment(self, index: int, low: int, high: int) -> None:
        try:
            if not self.stop.is_set() and self._read(index, low, high):
                with self.lock:
                    self.state.done.add(index)
                    self.state.save()
        except BaseException:
            self.stop.set()
            raise

    def _read(self, index: int, low: int, high: int) -> bool:
        """Send the segment page by page; False when stopped early because another segment failed."""
        page: list[OutgoingRecord] = []
        last: int | str | None = None
        for raw, position in self._rows(index, low, high):
            row, version = raw
            last = position
            with self.lock:
                seq = str(self.seq_base + next(self.counter))
            try:
                vectors = self.vectors_for(row) if self.vectors_for is not None else None
                page.append(_backfill_record(row, version, self.config, seq, self.generations, vectors=vectors))
            except PoisonRecordError as exc:
                # A row no vector can hold (its key is longer than S3 Vectors allows): the sink would park it
                # too. Counted and named, and the rest of the range goes on.
                with self.lock:
                    self.state.unindexable.append(f"{console.shorten(_row_key(row, self.config))}: {exc}")
                continue
            if len(page) >= self.page_rows:
                if self.stop.is_set():
                    return False
                self._flush(index, page, last)
                page = []
        if self.stop.is_set():
            return False
        if page:
            self._flush(index, page, last)
        return True

    def _rows(self, index: int, low: int, high: int) -> Iterator[tuple[resync.RowRead, int | str | None]]:
        """(row and version, resume position) of each row of the segment, from where a previous run stopped."""
        resume_at = self.state.positions.get(index)
        if self.resources.is_local:
            # Key-hash segments; the position is the scan cursor, so a resumed page starts after the saved row.
            after = resume_at if isinstance(resume_at, str) else None
            pages = resync.local_scan_pages(self.resources, index, self.state.segments, after=after)
            for page, _cursor in pages:
                for row, version in page:
                    yield (row, version), _local_cursor(row, self.config)
            return
        statement = self.statements[resume_at is not None]
        rows = self.session.execute(statement, (low if resume_at is None else resume_at, high))
        for raw, stamp in resync.stamped(rows):
            token = raw.pop("fv_token")
            yield (resync.driver_row(raw, self.config), stamp), token

    def _flush(self, index: int, page: list[OutgoingRecord], last_token: int | None) -> None:
        self.limiter.acquire(len(page))
        self.sender.send(page)
        with self.lock:
            self.state.sent += len(page)
            if last_token is not None:
                self.state.positions[index] = last_token
            self.state.save()
        if self.on_progress is not None:
            self.on_progress(len(page))


def _backfill_record(
    row: dict[str, Any],
    version: str | None,
    config: PipelineConfig,
    seq: str,
    generations: Sequence[str] | None,
    *,
    vectors: dict[str, str] | None = None,
) -> OutgoingRecord:
    key = {name: row[name] for name in config.primary_key}
    return resync.resync_record(
        config, key, row, version, origin="BACKFILL", seq=seq, shard="backfill", generations=generations,
        vectors=vectors,
    )  # fmt: skip


def _row_key(row: dict[str, Any], config: PipelineConfig) -> str:
    return json.dumps([row.get(name) for name in config.primary_key], separators=(",", ":"), ensure_ascii=False)


def _local_cursor(row: dict[str, Any], config: PipelineConfig) -> str:
    """The local table's scan cursor for a row: its primary key values as compact JSON (``LocalTable`` key id)."""
    return json.dumps([row[name] for name in config.primary_key], separators=(",", ":"), ensure_ascii=False)


def default_backfill_state_path(stack_name: str, generations: Sequence[str] | None = None) -> Path:
    suffix = "".join(f"-{name}" for name in generations or ())
    return Path(".freshvec") / f"backfill-{stack_name}{suffix}.json"


# ---- the command ------------------------------------------------------------------------------


def backfill_command(
    *,
    segments: Annotated[
        int, typer.Option("--segments", min=1, max=4096, help="Token ranges to split the table into")
    ] = 16,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Token ranges read in parallel")] = 4,
    rate: Annotated[float, typer.Option("--rate", min=1, help="At most this many records per second to Kinesis")] = 500,
    state_file: Annotated[
        Path | None, typer.Option("--state", help="Progress file for resuming [.freshvec/backfill-<stack>-<id>.json]")
    ] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore saved progress and start over")] = False,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS")] = None,
    generation: generations.GenerationOption = None,
) -> None:
    """Send every existing row to the change stream (CDC only captures changes made after it was enabled)."""
    s = settings()
    res = s.resources()
    targets = generations.targets(res, generation)
    # PostgreSQL in AWS: one snapshot, nothing to resume (a rerun is harmless). Locally the table is read through
    # the control API like any local table: the pipeline holds the password, the CLI never needs it.
    if res.config.source.kind == "postgres" and not res.is_local:
        from freshvec.cli import postgres

        return postgres.backfill_command(res, s.clients(), rate_per_s=rate, generations=targets)
    path = state_file or default_backfill_state_path(res.progress_name, targets)
    state = BackfillState.open(path, segments, restart=restart)
    if state.complete:
        console.out.print(f"backfill already complete ({state.sent} rows sent); pass --restart to run it again")
        return report_unindexable(state.unindexable)
    cluster, session = (None, None) if res.is_local else keyspaces.connect_table(res.region, ca_bundle)
    try:
        with console.progress() as progress:
            task = progress.add_task("backfill", total=None, completed=state.sent)
            report = backfill(
                session,
                local_client.LocalKinesis(res) if res.is_local else s.clients()("kinesis"),
                res,
                state,
                workers=workers,
                rate_per_s=rate,
                on_progress=lambda n: progress.advance(task, n),
                generations=targets,
            )
    finally:
        if cluster is not None:
            cluster.shutdown()
    resumed = " (resumed)" if report.resumed else ""
    scope = f" for generation(s) {', '.join(targets)}" if targets else ""
    console.out.print(
        f"backfill{resumed}: {report.sent} row(s) sent to {res.stream_name}{scope}; "
        f"{report.segments_done}/{report.segments} token ranges done; progress in {path}"
    )
    report_unindexable(report.unindexable)


def report_unindexable(lines: Sequence[str]) -> None:
    """Rows no vector can hold: how many, the first few (key shortened, reason); exit 1, as a failed check."""
    if lines:
        console.unindexable_rows(list(lines), "they were not sent (shorten their keys in the table)")
        raise typer.Exit(EXIT_CHECK_FAILED)
