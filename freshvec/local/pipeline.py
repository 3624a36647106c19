"""``LocalPipeline``: the whole pipeline on one machine, running the same forwarder and sink code as AWS.

What runs as in AWS: the forwarder (``freshvec.forwarder``: leases, checkpoints, lineage, PutRecords),
the sink (``freshvec.sink``: coalescing, re-embedding only changed text, S3 Vectors writes, DLQ), the
metadata mapping, the change-event contract. What stands in:

- Amazon Keyspaces + Keyspaces Streams -> ``freshvec.local.keyspaces`` (rows in memory, change records in
  the exact Keyspaces Streams shape, shards, TTL expiries); with ``source.kind = postgres`` nothing stands
  in: a throwaway PostgreSQL on 127.0.0.1 (``freshvec.local.postgres``), read through its replication slot
- Kinesis, DynamoDB, SQS, S3, S3 Vectors -> moto server on 127.0.0.1
- Amazon Bedrock -> WordLlama, 256 dimensions, offline (whatever the config's provider)
- the EventBridge schedule -> a thread calling the forwarder's ``run_once`` every ``poll_interval_ms``
- the Lambda event source mapping -> ``freshvec.local.esm`` with the config's mapping settings
- QueryVectors, index modes and full-text search (moto lacks them) -> the S3 Vectors front on moto's endpoint
  (``freshvec.local.vectors``): exact vector, BM25 and hybrid search with the service's filter semantics

``faults`` (optional) wraps every client and the embedder the pipeline hands to freshvec's code, and is
the forwarder's ``hooks``; a step that crashes is retried, never skipped.

Size: one class, the local stack: starting and stopping its servers, the wiring of every adapter, the loops,
and the public API (upsert, delete, truncate, query, wait, stats) share one lifecycle and one state; the
stand-ins themselves live in their own modules.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from freshvec.adapters.dynamodb import DynamoDbTombstones
from freshvec.adapters.kinesis import KinesisWriter
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.adapters.wiring import keyspaces_forwarder, postgres_forwarder
from freshvec.chunking import chunk_keys, group_hits, query_top_k, stored_chunk_count
from freshvec.config import PipelineConfig, default_config
from freshvec.constants import S3V_GET_BATCH, S3V_MAX_TOP_K
from freshvec.errors import PoisonRecordError
from freshvec.filters import check_filterable, validate_filter
from freshvec.forwarder import Forwarder
from freshvec.generation_sink import GenerationSink
from freshvec.generations import live_generations
from freshvec.keys import parse_vector_key, vector_key
from freshvec.local.embedder import LocalEmbedder
from freshvec.local.esm import KinesisEventSourceMapping, MappingSettings, S3OnFailureDestination
from freshvec.local.generations import LocalGenerations
from freshvec.local.keyspaces import LocalKeyspacesStreams, LocalTable
from freshvec.local.moto_process import MotoProcess
from freshvec.local.moto_server import MotoServer
from freshvec.local.pg_attach import Attachment
from freshvec.local.postgres import LocalPostgresTable
from freshvec.local.resources import LocalResources, create_resources, local_config
from freshvec.local.tracker import Position, SyncTracker, WriteReceipt
from freshvec.outgoing import plan_calls
from freshvec.search import needs_vector, query_texts, resolve_mode
from freshvec.sink import SinkStats
from freshvec.sources.postgres.snapshot import backfill_record, snapshot_pages
from freshvec.sources.postgres.writer import PgTableWriter
from freshvec.versions import keyspaces_read_stamp

logger = logging.getLogger(__name__)

Row = dict[str, Any]
SOURCE_SHARDS = 2  # Keyspaces decides a table's stream shards; two exercise the forwarder's concurrency
_TTL_INTERVAL_S = 0.2
_CRASH_BACKOFF_S = 0.2
# SinkStats fields summed over every batch (freshness and durations are measured here end to end instead).
_SINK_COUNTERS = (
    "changes_received",
    "embeddings_computed",
    "embeddings_skipped",
    "chunks_embedded",
    "chunks_reused",
    "chunks_deleted",
    "texts_truncated",
    "searchable_text_cut",
    "vectors_put",
    "vectors_deleted",
    "dlq_records",
    "transient_failures",
)


class FaultInjector(Protocol):
    """What the soak test hands in to break things at every boundary."""

    def wrap_client(self, service_name: str, client: Any) -> Any: ...

    def wrap_embedder(self, embedder: Any) -> Any: ...

    def forwarder_hook(self, step: Any = None, *args: Any, **kwargs: Any) -> None: ...


def load_pipeline_config(config: PipelineConfig | Mapping[str, Any] | str | Path | None) -> PipelineConfig:
    """A config object, a dict (cdk.json's ``freshvec`` object), a path to JSON (bare or cdk.json), or the default."""
    if config is None:
        return default_config()
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, Mapping):
        return PipelineConfig.from_dict(config)
    return PipelineConfig.from_file(config)


class LocalPipeline:
    """A running local pipeline. Build it with ``LocalPipeline.start(config)``; use it as a context manager."""

    def __init__(
        self,
        config: PipelineConfig,
        server: MotoServer,
        resources: LocalResources,
        *,
        owns_server: bool,
        reset_on_stop: bool,
        faults: FaultInjector | None,
        mapping_settings: MappingSettings,
        postgres: LocalPostgresTable | None = None,
    ) -> None:
        self.config = config
        self.server = server
        self.resources = resources
        self._owns_server = owns_server
        self._reset_on_stop = reset_on_stop
        self._faults = faults
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._kinesis_put_lock = threading.Lock()
        self._tracker = SyncTracker()
        self._resyncs = SyncTracker()  # re-syncs other producers put on the stream (backfill, migrations, ...)
        self._counters_lock = threading.Lock()
        self._counters = {"forwarder_passes": 0, "changes_forwarded": 0, "forwarder_crashes": 0, "ttl_expiries": 0}
        self._sink_totals: dict[str, int] = dict.fromkeys(_SINK_COUNTERS, 0)
        self._forwarder_lag_ms: float | None = None  # the last pass's, as the Lambda's metric

        self.embedder = LocalEmbedder(config.embedding.dimensions)
        self._s3vectors = server.client("s3vectors")
        self.generations = LocalGenerations(self, server.client("ssm"), resources.pointer_parameter)
        self.postgres = postgres
        self.streams = LocalKeyspacesStreams()
        self.stream_arn = self.streams.enable_stream(config.keyspace, config.table, SOURCE_SHARDS)
        self.table: LocalTable | LocalPostgresTable = postgres or LocalTable(
            config.keyspace,
            config.table,
            config.column_types,
            config.partition_key,
            config.clustering_key,
            self.streams,
        )
        self.on_failure = S3OnFailureDestination(
            server.client("s3"), resources.on_failure_bucket, mapping_id=str(uuid.uuid4())
        )
        self.mapping = KinesisEventSourceMapping(
            server.client("kinesis"),  # the mapping is the Lambda service's own reader, not freshvec code
            resources.stream_name,
            self._new_sink_handler,
            mapping_settings,
            self.on_failure,
            function_arn=f"arn:aws:lambda:{resources.region}:{resources.account}:function:{config.stack_name}-sink",
            on_done=self._mapping_done,
        )
        self._threads: list[threading.Thread] = []
        self.initial_fill: WriteReceipt | None = None  # an attached table's rows at start, sent to the index

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        config: PipelineConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        faults: FaultInjector | None = None,
        server: MotoServer | None = None,
        mapping_overrides: Mapping[str, Any] | None = None,
        isolated: bool = True,
        attach: Attachment | None = None,
        say: Callable[[str], None] = lambda _line: None,
    ) -> LocalPipeline:
        """Create the resources in a moto server and start every loop.

        Without ``server`` a new moto server is started: in a child process (``isolated``, the default:
        it then has a core of its own) or in this process. ``mapping_overrides`` changes
        ``MappingSettings`` fields the config does not hold (poll interval, retry back-off) or overrides
        the config's mapping settings. ``attach`` (a postgres source): use that server and its table as they are
        instead of a throwaway server, saying each check and change with ``say``, and index the rows already there.
        """
        effective = local_config(load_pipeline_config(config))
        postgres = None
        if effective.source.kind == "postgres":  # a real server stands in for nothing: the rows live there
            postgres = LocalPostgresTable(effective, attach=attach, say=say).start()
            effective = postgres.config
        owns_server = server is None
        try:
            if server is not None:
                running = server
            elif isolated:
                child = MotoProcess(legacy_buckets=effective.text_search.index_mode == "CLASSIC")
                LocalEmbedder(effective.embedding.dimensions)  # load the model while the child starts
                running = child.wait_ready()
            else:
                running = MotoServer.start(legacy_buckets=effective.text_search.index_mode == "CLASSIC")
        except BaseException:
            if postgres is not None:
                postgres.stop()
            raise
        try:
            resources = create_resources(running.client, effective)
            settings = MappingSettings.from_sink_config(effective.sink)
            if mapping_overrides:
                settings = MappingSettings(**{**settings.__dict__, **mapping_overrides})
            pipeline = cls(
                effective,
                running,
                resources,
                owns_server=owns_server,
                reset_on_stop=server is None and not isolated,
                faults=faults,
                mapping_settings=settings,
                postgres=postgres,
            )
            pipeline._start_loops()
            if attach is not None:
                pipeline.initial_fill = pipeline.backfill_postgres()
        except BaseException:
            if owns_server:
                running.stop()
            if postgres is not None:
                postgres.stop()
            raise
        return pipeline

    def stream_producer(self) -> Any:
        """A Kinesis client for other producers on the change stream (tests, the soak), free of injected faults.

        Its puts are serialized with the forwarder's, as moto's per-shard sequence numbering races under
        concurrent puts (real Kinesis does not)."""
        return _SerializedPuts(self.server.client("kinesis"), self._kinesis_put_lock)

    def _client(self, service: str) -> Any:
        """A client for freshvec's own code: through the fault injector when there is one."""
        client = self.server.client(service)
        if service == "kinesis":
            client = _SerializedPuts(client, self._kinesis_put_lock)
        return self._faults.wrap_client(service, client) if self._faults else client

    def _new_sink_handler(self) -> Any:
        """One sink per shard lane, like one Lambda execution environment per concurrent batch: a sink per live
        index generation (``GenerationSink``), rebuilt when the live generations change."""
        built: dict[str, Any] = {}

        def handler(event: Mapping[str, Any]) -> dict[str, Any]:
            with self.generations.batch() as config:
                if built.get("config") is not config:
                    built["config"], built["sink"] = config, self._generation_sink(config)
                result = built["sink"].process(list(event["Records"]))
            self._add_sink_stats(result.stats)
            self.generations.count(result.generations)
            return result.response()

        return handler

    def _generation_sink(self, config: PipelineConfig) -> GenerationSink:
        live = live_generations(config)
        embedders = {}
        for generation in live:
            embedder = self.generations.embedder(generation.config.embedding.dimensions)
            embedders[generation.name] = self._faults.wrap_embedder(embedder) if self._faults else embedder
        bucket = self.resources.vector_bucket
        return GenerationSink(
            live,
            embedders,
            {g.name: S3VectorsStore(self._client("s3vectors"), bucket, g.index_name) for g in live},
            SqsDeadLetterQueue(self._client("sqs"), self.resources.dlq_url),
            tombstones=DynamoDbTombstones(self._client("dynamodb"), self.resources.checkpoint_table, clock=time.time),
        )

    def _start_loops(self) -> None:
        self.mapping.start()
        for name, target in (("forwarder", self._forwarder_loop), ("ttl", self._ttl_loop)):
            thread = threading.Thread(target=target, name=f"local-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    # ---- loops -------------------------------------------------------------------------------
    def _new_forwarder(self, owner_id: str) -> Forwarder:
        if self.postgres is not None:
            return postgres_forwarder(
                self.config,
                self.postgres.connect,
                self._client("kinesis"),
                self._client("dynamodb"),
                stream_name=self.resources.stream_name,
                checkpoint_table=self.resources.checkpoint_table,
                owner_id=owner_id,
                sleep=self._stop.wait,
                hooks=self._faults.forwarder_hook if self._faults else None,
            )
        return keyspaces_forwarder(
            self.config,
            self.streams,
            self._client("kinesis"),
            self._client("dynamodb"),
            stream_name=self.resources.stream_name,
            checkpoint_table=self.resources.checkpoint_table,
            owner_id=owner_id,
            sleep=self._stop.wait,
            hooks=self._faults.forwarder_hook if self._faults else None,
        )

    def _forwarder_loop(self) -> None:
        """The schedule: a pass every poll interval while at the tip, back to back while behind.

        A crashed forwarder is replaced by a new one with the same identity, which takes its own leases
        back and resumes from the checkpoints."""
        owner_id = f"local-forwarder-{uuid.uuid4().hex[:8]}"
        forwarder = self._new_forwarder(owner_id)
        interval = self.config.forwarder.poll_interval_ms / 1000
        while not self._stop.is_set():
            pass_started = time.monotonic()
            try:
                stats = forwarder.run_once()
            except Exception as exc:  # noqa: BLE001 - any crash: start over from the checkpoints
                self._count(forwarder_crashes=1)
                logger.warning("forwarder pass failed (%s: %s); restarting it", type(exc).__name__, exc)
                forwarder = self._new_forwarder(owner_id)
                self._stop.wait(_CRASH_BACKOFF_S)
                continue
            self._count(forwarder_passes=1, changes_forwarded=stats.changes_forwarded)
            self._record_lag(stats)
            if stats.at_tip:  # at the tip: next pass one interval after this one started
                self._stop.wait(max(0.0, interval - (time.monotonic() - pass_started)))
        try:
            forwarder.release()
        except Exception:
            logger.exception("releasing the forwarder's leases failed")

    def _record_lag(self, stats: Any) -> None:
        """The forwarder lag as the Lambda reports it (``ForwarderLagMs``): now minus the newest change forwarded,
        0 when nothing new and every shard is at its tip, unchanged otherwise."""
        lag = stats.lag_ms(time.time())
        if lag is None and stats.at_tip:
            lag = 0.0
        if lag is not None:
            with self._counters_lock:
                self._forwarder_lag_ms = lag

    def _ttl_loop(self) -> None:
        while not self._stop.wait(_TTL_INTERVAL_S):
            try:
                self.expire_due()
            except Exception:
                logger.exception("expiring rows failed; retrying")

    def _mapping_done(self, records: Sequence[Mapping[str, Any]], outcome: str) -> None:
        positions = [p for p in map(_source_position, records) if p is not None]
        self._tracker.finished(positions, outcome)
        self._resyncs.finished(positions, outcome)

    def _add_sink_stats(self, stats: SinkStats) -> None:
        with self._counters_lock:
            for name in _SINK_COUNTERS:
                self._sink_totals[name] += getattr(stats, name)

    def _count(self, **counts: int) -> None:
        with self._counters_lock:
            for name, value in counts.items():
                self._counters[name] += value

    # ---- the table -----------------------------------------------------------------------------
    def upsert(
        self, rows: Iterable[Row], ttl_s: int | None = None, *, timestamp_us: int | None = None, partial: bool = False
    ) -> WriteReceipt:
        """Insert rows, or with ``partial`` update only the given columns (JSON-safe values, as in change events).

        Keyspaces source only: ``ttl_s`` is ``USING TTL`` for the cells written here (a column TTL when
        ``partial``), ``timestamp_us`` is ``USING TIMESTAMP``; a partial update may carry ``"$add"``/``"$remove"``
        collection changes (``LocalTable.update``). ValueError names a bad row.
        """
        rows = list(rows)
        with self._write_lock:
            at = self._tracker.now()
            if self.postgres is not None:
                if timestamp_us is not None or partial:
                    raise ValueError(
                        "a client timestamp and partial updates are Keyspaces writes (source.kind keyspaces)"
                    )
                records = self.postgres.upsert(rows, ttl_s=ttl_s)
            else:
                write = self.table.update if partial else self.table.upsert
                records = write(rows, ttl_s=ttl_s, timestamp_us=timestamp_us)
            return self._tracker.written(self._positions(records), at)

    def delete(self, keys: Iterable[Row], *, timestamp_us: int | None = None) -> WriteReceipt:
        """Delete rows by primary key (every key column given); ``timestamp_us`` is ``USING TIMESTAMP``."""
        keys = list(keys)
        with self._write_lock:
            at = self._tracker.now()
            if self.postgres is not None:
                if timestamp_us is not None:
                    raise ValueError("a client timestamp is a Keyspaces write (source.kind keyspaces)")
                records = self.postgres.delete(keys)
            else:
                records = self.table.delete(keys, timestamp_us=timestamp_us)
            return self._tracker.written(self._positions(records), at)

    def truncate(self) -> WriteReceipt:
        """TRUNCATE the table (PostgreSQL only): one change; the sink removes every vector older than it."""
        if self.postgres is None:
            raise ValueError("TRUNCATE needs a postgres source (source.kind = postgres)")
        with self._write_lock:
            at = self._tracker.now()
            return self._tracker.written(self.postgres.truncate(), at)

    def expire_due(self) -> WriteReceipt:
        """Expire rows whose TTL has passed now (the TTL loop also does this a few times a second)."""
        with self._write_lock:
            at = self._tracker.now()
            records = self.table.expire_due()
            receipt = self._tracker.written(self._positions(records), at)
        if receipt.changes:
            self._count(ttl_expiries=receipt.changes)
        return receipt

    def put_stream_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """PutRecords to the change stream for another producer (the CLI's re-syncs), serialized with the
        forwarder's puts; the answer keeps only what PutRecords callers read."""
        at = self._resyncs.now()
        response = self.stream_producer().put_records(StreamName=self.resources.stream_name, Records=records)
        accepted = [
            r for r, answer in zip(records, response.get("Records", []), strict=False) if "ErrorCode" not in answer
        ]
        # ``wait_synced()`` also waits for these (by the source position their change event names).
        self._resyncs.written([p for p in (_source_position({"kinesis": {"data": base64.b64encode(r["Data"])}})
                                           for r in accepted) if p is not None], at)  # fmt: skip
        keep = ("SequenceNumber", "ShardId", "ErrorCode", "ErrorMessage")
        return {
            "FailedRecordCount": response.get("FailedRecordCount", 0),
            "Records": [{k: v for k, v in r.items() if k in keep} for r in response.get("Records", [])],
        }

    def read_rows(self, keys: Iterable[Row]) -> list[dict[str, Any]]:
        """Each key's current row and the read's version (``{"key", "row", "version"}``; row None when there is
        none): a PostgreSQL read's snapshot, a Keyspaces stand-in read's stamp (``freshvec.versions``)."""
        keys = [dict(key) for key in keys]
        if self.postgres is not None:
            version, rows = self.postgres.read_keys(keys)
            return [{"key": key, "row": row, "version": version} for key, row in zip(keys, rows, strict=True)]
        stamp = keyspaces_read_stamp(time.time()).text()
        return [{"key": key, "row": self.table.read(key)[0], "version": stamp} for key in keys]

    def scan_rows(self, segment: int, segments: int, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
        """One page of a segment's rows with the read's version and the next cursor."""
        if self.postgres is not None:
            version, rows, cursor = self.postgres.scan(segment, segments, after=after, limit=limit)
            return {"rows": [{"row": row, "version": version} for row in rows], "next": cursor}
        stamp = keyspaces_read_stamp(time.time()).text()
        page, cursor = self.table.scan(segment, segments, after=after, limit=limit)
        return {"rows": [{"row": row, "version": stamp} for row, _ in page], "next": cursor}

    def backfill_postgres(self) -> WriteReceipt:
        """Every row of the PostgreSQL table into the change stream as BACKFILL at one version, read in one snapshot
        after the slot exists, so nothing is missed and a later change wins (``sources.postgres.snapshot``)."""
        if self.postgres is None:
            raise ValueError("backfill_postgres needs a postgres source")
        pg = self.config.postgres
        writer = KinesisWriter(self._client("kinesis"), self.resources.stream_name)
        conn = self.postgres.connect_extra()
        positions: list[Position] = []
        try:
            at = self._tracker.now()
            table = PgTableWriter(pg.schema, pg.table, dict(pg.columns), tuple(pg.primary_key))
            for version, page in snapshot_pages(conn, table, 500):
                records = []
                for row in page:
                    try:
                        records.append(backfill_record(
                            row, keyspace=self.config.keyspace, table=self.config.table,
                            primary_key=self.config.primary_key, key_columns=self.config.key_columns,
                            version=version, index=len(positions) + len(records),
                        ))  # fmt: skip
                    except PoisonRecordError as exc:  # a key no vector can hold: named and left out, as backfill does
                        key = json.dumps(
                            [row.get(name) for name in self.config.primary_key], ensure_ascii=False, default=str
                        )
                        logger.warning("row %s cannot be indexed: %s", key if len(key) <= 80 else key[:79] + "…", exc)
                for call in plan_calls(records):
                    writer.put([records[i] for i in call])
                positions.extend(record.sequence_number for record in records)
        finally:
            conn.close()
        return self._tracker.written(positions, at)

    @staticmethod
    def _positions(sequence_numbers: Iterable[str | None]) -> list[Position]:
        return [seq for seq in sequence_numbers if seq is not None]  # None: nothing captured

    # ---- sync, query, stats --------------------------------------------------------------------
    def wait_synced(self, timeout: float = 30, receipt: WriteReceipt | None = None) -> None:
        """Block until every change written so far (or only ``receipt``'s) is applied to the index or
        parked (DLQ, on-failure destination), re-syncs put through ``put_stream_records`` too; TimeoutError says
        how many are still pending and which."""
        started = time.monotonic()
        self._tracker.wait(timeout, receipt.positions if receipt is not None else None)
        if receipt is None:
            self._resyncs.wait(max(0.1, timeout - (time.monotonic() - started)))

    def freshness_ms(self, receipt: WriteReceipt) -> float:
        """Write call to searchable (or parked), in ms, for a write that is in sync."""
        return self._tracker.freshness_ms(receipt)

    def latencies_ms(self) -> list[float]:
        """Write-to-searchable time of every change finished so far, in ms."""
        return self._tracker.latencies_ms()

    def query(
        self,
        text: str,
        k: int = 5,
        filter: Mapping[str, Any] | None = None,
        generation: str | None = None,
        mode: str | None = None,
    ) -> list[dict[str, Any]]:
        """Best rows first (``k`` rows, not chunks): ``[{"key", "primary_key", "distance", "metadata", "chunk",
        "passage", "chunks", "scores"}]`` — the row's best chunk (its number, text, metadata and scores) and every
        matching chunk of the row (``[{"chunk", "key", "distance", "passage", "scores"}]``, best first).

        The index is the active generation's, as the index pointer names it (or ``generation``'s); ``mode``
        (``freshvec.search``): ``vector``, ``text`` or ``hybrid`` (default: hybrid where text search is
        configured). The text is embedded like that generation's sink embeds rows; QueryVectors is asked through
        the local S3 Vectors endpoint, over-fetching chunks (``query_top_k``) to fill ``k`` rows.
        """
        if not text or not text.strip():
            raise ValueError("the query text is empty")
        if not 1 <= k <= S3V_MAX_TOP_K:
            raise ValueError(f"k must be between 1 and {S3V_MAX_TOP_K}, got {k}")
        chosen = resolve_mode(self.config, mode)
        texts = query_texts(self.config, text, chosen)
        if filter is not None:  # a bad filter is the caller's mistake (400), not the endpoint's
            validate_filter(filter, enhanced=self.config.text_search.index_mode == "ENHANCED")
            check_filterable(filter, self.config)
        entry = self.generations.resolve(generation)
        vector = self.generations.embedder(entry.dimensions).embed_query(text) if needs_vector(chosen) else None
        store = self.generations.search(entry.index)
        filter_doc = dict(filter) if filter is not None else None
        hits = store.query(vector, query_top_k(k), filter_doc, texts=texts, return_scores=bool(texts))
        rows = []
        for row in group_hits(hits, k, self.config.embedding_field):
            found = asdict(row)
            try:
                found["primary_key"] = parse_vector_key(row.key, self.config.key_columns)
            except ValueError:  # a vector no sink wrote for a row (reconcile reports and removes it)
                found["primary_key"] = {}
            rows.append(found)
        return rows

    def indexed_chunks(self, key: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every stored chunk of one row, in chunk order (chunk 0's ``_chunks`` says how many)."""
        chunk0 = self.indexed(key)
        keys = chunk_keys(vector_key(key, self.config.key_columns), stored_chunk_count(chunk0), start=1)
        by_key: dict[str, Any] = {}
        for start in range(0, len(keys), S3V_GET_BATCH):
            found = self._s3vectors.get_vectors(
                vectorBucketName=self.resources.vector_bucket,
                indexName=self.resources.vector_index,
                keys=keys[start : start + S3V_GET_BATCH],
                returnData=False,
                returnMetadata=True,
            )["vectors"]
            by_key.update({v["key"]: v for v in found})
        return ([chunk0] if chunk0 else []) + [by_key[k] for k in keys if k in by_key]

    def indexed(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored vector of one row (``{"key", "data", "metadata"}``), or None when it is not indexed."""
        vector_key_text = vector_key(key, self.config.key_columns)
        found = self._s3vectors.get_vectors(
            vectorBucketName=self.resources.vector_bucket,
            indexName=self.resources.vector_index,
            keys=[vector_key_text],
            returnData=True,
            returnMetadata=True,
        )["vectors"]
        return found[0] if found else None

    def stats(self) -> dict[str, Any]:
        """Counters: rows, changes written, forwarded, embeddings computed/skipped, puts, deletes, DLQ, parked."""
        with self._counters_lock:
            counters = dict(self._counters)
            sink_totals = dict(self._sink_totals)
            lag = self._forwarder_lag_ms
        mapping = self.mapping.stats.as_dict()
        return {
            "generations": self.generations.stats(),
            "forwarder_lag_ms": lag,
            "sink_iterator_age_ms": mapping.pop("iterator_age_ms"),
            "rows": self.table.count(),
            "changes": len(self._tracker.pending()) + sum(self._tracker.outcomes().values()),
            "pending": len(self._tracker.pending()),
            **counters,
            **sink_totals,
            "records_to_on_failure_destination": mapping["records_parked"],
            "mapping": mapping,
        }

    # ---- lifecycle ---------------------------------------------------------------------------------
    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.mapping.stop()
        for thread in self._threads:
            thread.join(10)
        if self.postgres is not None:
            self.postgres.stop()  # after the forwarder stopped reading the slot
        if self._owns_server:
            if self._reset_on_stop:
                # moto keeps its state per process: forget it, so a later pipeline here starts from nothing.
                self.server.reset()
            self.server.stop()

    def __enter__(self) -> LocalPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _SerializedPuts:
    """A Kinesis client whose PutRecord(s) calls run one at a time.

    moto numbers a shard's records as "last + 1" without a lock, so two concurrent puts to one shard can
    get the same sequence number and one record silently replaces the other. Kinesis itself has no such
    race; serializing the forwarder's puts keeps local mode from losing changes AWS would not lose.
    """

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock

    def put_records(self, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.put_records(**kwargs)

    def put_record(self, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.put_record(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _source_position(record: Mapping[str, Any]) -> Position | None:
    """The source position named inside a Lambda Kinesis record's change event (or error envelope)."""
    try:
        doc = json.loads(base64.b64decode(record["kinesis"]["data"]))
    except (ValueError, KeyError, TypeError):
        return None  # not something the forwarder wrote; nothing to account for
    if not isinstance(doc, dict) or not isinstance(doc.get("seq"), str):
        return None
    return doc["seq"]
