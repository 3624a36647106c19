"""``freshvec reconcile``: compare the table with the index key by key; ``--repair`` re-syncs what differs.

Per vector key the table says what the index should hold (``expected_vectors``: a row can expect several
vector keys, so chunked rows fit the same comparison) and the index says what it holds. Drift comes in four
kinds:

- **missing**: a row with text and no vector;
- **stale**: the stored ``_fp`` is not the fingerprint of the row's text under the configured model;
- **metadata**: the stored metadata is not the row's mapped metadata, chunk numbers and chunk 0's count
  included (``_seq``, ``_changed_at``, ``_fp`` and ``_ver`` are the pipeline's provenance and are not compared);
- **orphan**: a vector with no row (or with a row that has no text).

The index is read first (ListVectors segments in parallel), then the table (token ranges in parallel; one
snapshot for PostgreSQL), so a change that reaches the index after its listing was also read from the table.
Memory stays bounded whatever the table's size: each side is spilled to temporary files in ``buckets``
partitions by key hash (sha256 of the vector key); then each partition is compared alone, holding one
partition of the index side in memory (about 300 bytes a vector: 10 million vectors in 256 partitions is
~12 MB at a time).

``--repair`` is compare-and-set, not version order, so drift that lives in the stored versions themselves (a
restore, a hand edit, another row's vector copied in) is repaired too. For each differing row it reads the
row's chunk 0 from the index, then the row from the table, and sends a re-sync event (origin RECONCILE,
``freshvec.cli.resync``) through the one Kinesis writer naming the write it saw (``if_wid``; "" for none) and
the orphan chunks it saw beyond chunk 0's count. The sink applies it iff the key still holds exactly that
write, whatever its ``_ver``; if anything was written since, the newer write stands and the next reconcile
decides. A stored vector whose key names no row is removed the same way. Once the pipeline has caught up
with the repair, the next reconcile reports 0.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from freshvec import constants as c
from freshvec.chunking import expected_chunks
from freshvec.cli import backfill, console, generations, resync
from freshvec.cli.errors import EXIT_CHECK_FAILED
from freshvec.cli.reconcile_report import (
    UNINDEXABLE,
    ReconcileReport,
    compare_bucket,
    print_report,
    reports_json,
)
from freshvec.cli.settings import settings
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.config import PipelineConfig
from freshvec.errors import PoisonRecordError
from freshvec.events import parse_event, unsendable_reason
from freshvec.keys import parse_vector_key, split_chunk_key, vector_key
from freshvec.metadata import MetadataBuilder
from freshvec.plan import has_text

S3V_MAX_LIST_SEGMENTS = 16  # ListVectors segmentCount (https://docs.aws.amazon.com/AmazonS3/latest/API/API_S3VectorBuckets_ListVectors.html)
S3V_LIST_PAGE = 1000  # ListVectors maxResults
_SPILL_FLUSH_LINES = 20_000  # buffered spill lines (both sides) before they are appended to their files
_REPAIR_BATCH = 500  # keys read and re-synced at a time
# Provenance is not compared; chunk 0's count is (a wrong one makes a later delete leave chunks behind).
_IGNORED_METADATA = frozenset(c.PIPELINE_NON_FILTERABLE_KEYS) - {c.META_CHUNKS}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVENT_HEADROOM = 64 * 1024  # a change event's fields besides the row: far below this


# ---- what a row expects, what a vector holds -------------------------------------------------------------
def canonical(value: Any) -> Any:
    """Metadata as compared: whole floats as integers (a JSON round trip may turn 7.0 into 7), lists in place."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    return value


def metadata_digest(metadata: Mapping[str, Any]) -> str:
    compared = {key: canonical(value) for key, value in metadata.items() if key not in _IGNORED_METADATA}
    text = json.dumps(compared, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Expectation:
    """What the sink would store for a row: per vector key, the fingerprint and the metadata digest."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.builder = MetadataBuilder(config)
        self.max_input_chars = c.input_char_limit(config.embedding.provider, config.embedding.model_id)

    def expected_vectors(self, row: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
        """``{vector key: (fingerprint, metadata digest)}`` for a row: one entry per chunk of its text (one with
        chunking off or a short text); empty when it has no text to embed.

        A missing chunk is then **missing** and a surplus stored chunk an **orphan**, like whole rows. A row
        the sink would refuse (metadata too large, a chunk key too long) expects its key with the fingerprint
        ``UNINDEXABLE`` and the reason in place of the digest: it is reported as unindexable, and any vector
        still stored for it is stale.
        """
        key = resync.checked_vector_key(row, self.config)
        text = row.get(self.config.embedding_field)
        if not isinstance(text, str) or not has_text(text) or resync.key_of_row(row, self.config) is None:
            return {}
        if key is None:  # a key no vector can hold: named shortened, as no stored (canonical JSON) key can be
            try:
                vector_key(row, self.config.key_columns)
            except PoisonRecordError as exc:
                values = json.dumps([row[name] for name in self.config.key_columns], ensure_ascii=False, default=str)
                return {console.shorten(values): (UNINDEXABLE, str(exc))}
            return {}
        unsendable = self.unsendable(row)
        if unsendable is not None:
            return {key: (UNINDEXABLE, unsendable)}
        try:
            chunks = expected_chunks(self.config, key, text, max_input_chars=self.max_input_chars)
            expected = {}
            for chunk in chunks:
                metadata = self.builder.build(
                    row,
                    seq="",
                    changed_at=_EPOCH,
                    fingerprint=chunk.fingerprint,
                    chunk=(chunk.number, len(chunks)),
                    text=chunk.text,
                )
                expected[chunk.key] = (chunk.fingerprint, metadata_digest(metadata))
            return expected
        except PoisonRecordError as exc:
            return {key: (UNINDEXABLE, str(exc))}

    def unsendable(self, row: Mapping[str, Any]) -> str | None:
        """Why the row's re-sync cannot travel in one Kinesis record (the sink parks its marker), or None."""
        image = json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
        if len(image) < c.KINESIS_MAX_RECORD_BYTES - _EVENT_HEADROOM:
            return None
        record = resync.resync_record(
            self.config, row, dict(row), None, origin="RECONCILE", seq="reconcile", shard="reconcile", if_wid=""
        )
        return unsendable_reason(parse_event(record.data))


def stored_entry(vector: Mapping[str, Any]) -> tuple[str, str, str]:
    """(vector key, stored fingerprint, metadata digest) of a listed vector."""
    metadata = vector.get("metadata") or {}
    fp = metadata.get(c.META_FINGERPRINT)
    return vector["key"], fp if isinstance(fp, str) else "", metadata_digest(metadata)


# ---- spilling both sides to partitions ---------------------------------------------------------------------
def bucket_of(key: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % buckets


class Spill:
    """One side's (key, fingerprint, digest) entries, appended to one file per key-hash bucket."""

    def __init__(self, directory: Path, side: str, buckets: int) -> None:
        self.paths = [directory / f"{side}-{i}.jsonl" for i in range(buckets)]
        self._buffers: list[list[str]] = [[] for _ in range(buckets)]
        self._buffered = 0
        self._lock = threading.Lock()
        self.count = 0

    def add(self, entries: Iterable[tuple[str, str, str]]) -> None:
        lines = [(bucket_of(e[0], len(self.paths)), json.dumps(e, ensure_ascii=False)) for e in entries]
        with self._lock:
            for bucket, line in lines:
                self._buffers[bucket].append(line)
            self._buffered += len(lines)
            self.count += len(lines)
            if self._buffered >= _SPILL_FLUSH_LINES:
                self._flush()

    def close(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        for path, buffer in zip(self.paths, self._buffers, strict=True):
            if buffer:
                with path.open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(buffer) + "\n")
                buffer.clear()
        self._buffered = 0

    def read(self, bucket: int) -> Iterator[tuple[str, str, str]]:
        path = self.paths[bucket]
        if not path.exists():
            return
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                key, fp, digest = json.loads(line)
                yield key, fp, digest


# ---- reading both sides -------------------------------------------------------------------------------------
def table_pages(
    resources: StackResources, session: Any, segments: int
) -> list[Callable[[], Iterator[list[resync.RowRead]]]]:
    """One page source per segment of the table: token ranges in Keyspaces, key-hash segments locally.

    A PostgreSQL table is read as ONE segment whatever ``segments`` says: one REPEATABLE READ snapshot through a
    server-side cursor, 1,000 rows a page, on the connection ``session`` (one connection serves one cursor).
    """
    config = resources.config
    if resources.is_local:
        return [
            (lambda i=i: (page for page, _ in resync.local_scan_pages(resources, i, segments))) for i in range(segments)
        ]
    if config.source.kind == "postgres":
        from freshvec.cli import postgres  # deferred: only PostgreSQL sources load the driver

        return [lambda: postgres.table_rows(session, config, page_rows=S3V_LIST_PAGE)]
    statement = session.prepare(
        backfill.build_range_select(
            config.keyspace, config.table, config.partition_key, list(config.columns), inclusive=False
        )
    )

    def pages(low: int, high: int) -> Iterator[list[resync.RowRead]]:
        page: list[resync.RowRead] = []
        for raw in session.execute(statement, (low, high)):  # the driver pages the read (fetch_size)
            raw.pop("fv_token", None)
            page.append((resync.driver_row(raw, config), None))  # compared by content: no version needed
            if len(page) >= S3V_LIST_PAGE:
                yield page
                page = []
        if page:
            yield page

    return [(lambda lo=lo, hi=hi: pages(lo, hi)) for lo, hi in backfill.token_segments(segments)]


def index_pages(s3vectors: Any, resources: StackResources, segments: int) -> list[Callable[[], Iterator[list[Any]]]]:
    """One page source per ListVectors segment (metadata, no data, 1,000 a page)."""

    def pages(index: int) -> Iterator[list[Any]]:
        kwargs: dict[str, Any] = {
            "vectorBucketName": resources.vector_bucket,
            "indexName": resources.vector_index,
            "maxResults": S3V_LIST_PAGE,
            "returnMetadata": True,
            "returnData": False,
        }
        if segments > 1:
            kwargs.update(segmentCount=segments, segmentIndex=index)
        while True:
            response = s3vectors.list_vectors(**kwargs)
            yield response.get("vectors", [])
            token = response.get("nextToken")
            if not token:
                return
            kwargs["nextToken"] = token

    return [(lambda i=i: pages(i)) for i in range(segments)]


# ---- the comparison -----------------------------------------------------------------------------------------
@dataclass
class Sides:
    """Page sources of both sides (from ``table_pages`` and ``index_pages``)."""

    table: list[Callable[[], Iterator[list[resync.RowRead]]]]
    index: list[Callable[[], Iterator[list[Any]]]]


def reconcile(
    resources: StackResources,
    sides: Sides,
    *,
    buckets: int = 256,
    show: int = 10,
    workers: int = 8,
    resyncer: resync.Resyncer | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    workdir: Path | None = None,
) -> ReconcileReport:
    """Read both sides in parallel into key-hash partitions, compare each partition, and (with ``resyncer``)
    re-sync every differing key. ``on_progress(side, n)`` is told of every page read."""
    started = time.monotonic()
    expectation = Expectation(resources.config)
    report = ReconcileReport()
    with tempfile.TemporaryDirectory(prefix="freshvec-reconcile-", dir=workdir) as tmp:
        directory = Path(tmp)
        table_spill, index_spill = Spill(directory, "table", buckets), Spill(directory, "index", buckets)

        def read_table(source: Callable[[], Iterator[list[resync.RowRead]]]) -> int:
            rows = 0
            for page in source():
                entries = [(k, fp, d) for row, _ in page for k, (fp, d) in expectation.expected_vectors(row).items()]
                table_spill.add(entries)
                rows += len(page)
                if on_progress:
                    on_progress("table", len(page))
            return rows

        def read_index(source: Callable[[], Iterator[list[Any]]]) -> int:
            for page in source():
                index_spill.add(stored_entry(vector) for vector in page)
                if on_progress:
                    on_progress("index", len(page))
            return 0

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="reconcile") as pool:
            # The index before the table: what the listing missed was written after it, so the table has it.
            for future in [pool.submit(read_index, source) for source in sides.index]:
                future.result()
            report.rows = sum(f.result() for f in [pool.submit(read_table, source) for source in sides.table])
        table_spill.close()
        index_spill.close()

        repair_path = directory / "repair.jsonl"
        with repair_path.open("w", encoding="utf-8") as repair:

            def note(_kind: str, key: str) -> None:
                repair.write(json.dumps(key, ensure_ascii=False) + "\n")

            for bucket in range(buckets):
                report.vectors += compare_bucket(table_spill.read(bucket), index_spill.read(bucket), report, show, note)
        if resyncer is not None:
            report.repaired = repair_keys(repair_path, resources.config, resyncer)
    report.seconds = time.monotonic() - started
    return report


def repair_keys(path: Path, config: PipelineConfig, resyncer: resync.Resyncer) -> dict[str, int]:
    """Repair every key listed in ``path`` (one JSON vector key a line): rows a batch at a time
    (``Resyncer.repair``), chunks beyond what their row counts named as its orphans, and keys that name no row
    removed (``Resyncer.remove_strays``)."""
    done = {"update": 0, "delete": 0, "none": 0, "stray": 0}
    rows: dict[str, list[int]] = {}  # row key -> orphan chunk numbers seen (memory: one entry per differing row)
    strays: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            key = json.loads(line)
            row_key, chunk = split_chunk_key(key)
            try:
                parse_vector_key(row_key, config.key_columns)
            except (ValueError, TypeError):  # a vector no freshvec sink wrote for a row: it cannot name one
                strays.append(key)
                continue
            orphans = rows.setdefault(row_key, [])
            if chunk > 0:
                orphans.append(chunk)
    batch = list(rows.items())
    for start in range(0, len(batch), _REPAIR_BATCH):
        for result in resyncer.repair(dict(batch[start : start + _REPAIR_BATCH])):
            done[result.action] += 1
    for start in range(0, len(strays), _REPAIR_BATCH):
        done["stray"] += resyncer.remove_strays(strays[start : start + _REPAIR_BATCH])
    return done


def sides_for(
    resources: StackResources, clients: ClientFactory, session: Any, *, segments: int, index_segments: int
) -> Sides:
    # moto (local mode) ignores ListVectors segments and would answer every segment with the whole index.
    index_count = 1 if resources.is_local else index_segments
    return Sides(table_pages(resources, session, segments), index_pages(clients("s3vectors"), resources, index_count))


# ---- the command --------------------------------------------------------------------------------------------
def reconcile_command(
    *,
    repair: Annotated[bool, typer.Option("--repair", help="Re-sync every differing key from the table")] = False,
    show: Annotated[int, typer.Option("--show", min=0, max=10_000, help="Examples to print per kind of drift")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    segments: Annotated[
        int,
        typer.Option("--segments", min=1, max=4096, help="Token ranges of the table read in parallel (Keyspaces)"),
    ] = 16,
    index_segments: Annotated[
        int, typer.Option("--index-segments", min=1, max=S3V_MAX_LIST_SEGMENTS, help="ListVectors segments")
    ] = 8,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Reads in flight")] = 8,
    buckets: Annotated[
        int, typer.Option("--buckets", min=1, max=65_536, help="Key-hash partitions compared one at a time")
    ] = 256,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS")] = None,
    generation: generations.GenerationOption = None,
) -> None:
    """Compare the table with each live index generation; exit 0 when all are in sync, 1 when drift was found, 2 on
    a usage error, 3 when it could not finish."""
    s = settings()
    res = s.resources()
    clients = s.clients()
    reports: dict[str, ReconcileReport] = {}
    close, session = (None, None) if res.is_local else resync.connect_table(res, clients, ca_bundle)
    try:
        for chosen in generations.chosen(res, generation):
            # Each generation against the table on its own: its fingerprints, chunks and index; repairs for it only.
            scoped = generations.resources_for(res, chosen)
            resyncer = None
            if repair:
                sender = resync.change_stream_sender(res, clients)
                reader = resync.row_reader(scoped, session)
                resyncer = resync.Resyncer(scoped.config, reader, clients("s3vectors"), scoped, sender)
                resyncer.generations = generations.targets(res, [chosen.name])
            sides = sides_for(scoped, clients, session, segments=segments, index_segments=index_segments)
            with console.progress() as progress:
                tasks = {side: progress.add_task(f"{chosen.name}: {side}", total=None) for side in ("table", "index")}
                lock = threading.Lock()

                def advance(side: str, n: int, tasks: dict[str, Any] = tasks, lock: threading.Lock = lock) -> None:
                    with lock:
                        progress.advance(tasks[side], n)

                reports[chosen.name] = reconcile(
                    scoped, sides, buckets=buckets, show=show, workers=workers, resyncer=resyncer, on_progress=advance
                )
    finally:
        if close is not None:
            close()
    if as_json:
        console.out.print_json(json.dumps(reports_json(reports)))
    else:
        for name, report in reports.items():
            print_report(report, generations.resources_for(res, generations.chosen(res, [name])[0]), name)
    # Unindexable rows are reported, not drift: no repair can index them (their changes wait in the DLQ).
    if any(report.drift for report in reports.values()):
        raise typer.Exit(EXIT_CHECK_FAILED)
