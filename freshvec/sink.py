"""The sink: one Kinesis batch of change events -> the fewest Bedrock and S3 Vectors calls that apply it exactly.

Steps, for a batch from one shard in sequence order:

1. Parse: decode and validate each record (contract, table, vector key, metadata of the new image, the
   fingerprint of its text). A record that can never succeed is set aside for the dead-letter queue.
2. Coalesce per vector key; the newest change wins, by version and then by order (``freshvec.plan``).
3. Read what the index holds for those keys (GetVectors, 100 a call): each row's chunk 0, then the row's
   other stored chunks (chunk 0 says how many), and, where no vector is stored, the tombstones of recent
   deletes; then decide per key (``plan.decide``): skip what is older than the index, reuse the vector of
   any stored chunk of the row whose fingerprint matches a new chunk's, embed the rest, delete removals.
4. Embed each distinct text once, then write in calls of at most 500: surplus chunks of rows whose text
   shrank (DeleteVectors), PutVectors (a row's chunks together, chunk 0 first), tombstones, and the chunks
   of deleted rows (chunk 0 last). So chunk 0's count always covers every chunk stored: none is orphaned.

Failures: a transient one (after retries) at record *n* means nothing at or after *n* may be applied now,
because the event source mapping re-delivers from there; the plan is rebuilt from the records before *n*
and *n*'s sequence number is reported in ``batch_item_failures``. A write call that fails after others
succeeded may leave later keys written; they are written again, identically, on re-delivery (writes are
idempotent, and versions keep a re-delivered older change from winning). Poison records go to the DLQ with
their payload and reason; misconfiguration raises.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from freshvec import constants as c
from freshvec import truncate
from freshvec.chunking import chunk_keys, expected_chunks, stored_chunk_count
from freshvec.config import PipelineConfig
from freshvec.errors import FreshvecError, MisconfigurationError, PoisonRecordError, TransientError
from freshvec.events import format_timestamp, parse_event
from freshvec.keys import split_chunk_key, vector_key
from freshvec.metadata import MetadataBuilder, epoch_millis, passages_cut
from freshvec.plan import (
    Action,
    ChunkPlan,
    KeyPlan,
    ParsedRecord,
    coalesce,
    decide,
    fingerprint,
    needs_tombstone_lookup,
    plan_key,
    reuse_pool,
)
from freshvec.ports import (
    DeadLetterQueue,
    DeadLetterSendError,
    Embedder,
    EmbedResult,
    RejectedVectorsError,
    TombstoneStore,
    VectorStore,
)
from freshvec.sink_calls import key_calls, put_calls

# A tombstone outlives the oldest change the event source mapping can still deliver, plus this margin for
# the time between a re-sync read and its put to the change stream.
TOMBSTONE_MARGIN_S = 3600


# ---- results ---------------------------------------------------------------------------------------
@dataclass
class SinkStats:
    changes_received: int = 0
    embeddings_computed: int = 0  # distinct texts sent to the embedding model
    embeddings_skipped: int = 0  # rows put with every vector reused from the index (same fingerprints)
    chunks_embedded: int = 0  # chunk vectors that came from the model
    chunks_reused: int = 0  # chunk vectors reused from a stored chunk of the same row
    chunks_deleted: int = 0  # surplus chunks removed because a row's text shrank
    texts_truncated: int = 0
    # chunks whose stored passage (the searchable text) is shorter than their text: over the metadata limits
    searchable_text_cut: int = 0
    vectors_put: int = 0  # vectors written (every chunk)
    vectors_deleted: int = 0  # vectors removed (every chunk: of deleted rows and surplus ones)
    stale_skipped: int = 0  # changes older than the index, a tombstone or a newer change in the batch
    tombstones_written: int = 0
    vectors_read: int = 0  # keys asked for with GetVectors (chunk 0s, then other chunks)
    dlq_records: int = 0
    transient_failures: int = 0  # records left for the event source mapping to re-deliver
    freshness_ms: list[float] = field(default_factory=list)  # per applied change: now minus change time
    batch_duration_ms: float = 0.0


@dataclass
class SinkResult:
    batch_item_failures: list[dict[str, str]]
    stats: SinkStats
    dead_letters: list[dict[str, str]] = field(default_factory=list)  # sequence number, error class and message

    def response(self) -> dict[str, Any]:
        """The Lambda partial-batch response."""
        return {"batchItemFailures": self.batch_item_failures}


# ---- the sink ----------------------------------------------------------------------------------------
class Sink:
    """Applies batches of change events to the vector index. Free of Lambda: local mode calls it too."""

    def __init__(
        self,
        config: PipelineConfig,
        embedder: Embedder,
        store: VectorStore,
        dlq: DeadLetterQueue,
        *,
        tombstones: TombstoneStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.store = store
        self.dlq = dlq
        self.tombstones = tombstones
        self.clock = clock
        self._metadata = MetadataBuilder(config)
        self._index_checked = False

    def process(self, records: list[dict[str, Any]]) -> SinkResult:
        if truncate.in_batch(records):  # a TRUNCATE splits the batch: what is before it is applied first
            return truncate.process_split(self, _in_sequence_order(records))
        started = self.clock()
        self._check_index()
        stats = SinkStats(changes_received=len(records))
        parsed = [self._parse(index, record) for index, record in enumerate(_in_sequence_order(records))]
        truncated = truncate.set_aside_older(self, parsed)  # older than the table's last TRUNCATE (PostgreSQL)
        run = _Run(self, stats)
        limit = run.prepare(parsed)  # parks the poison records, before any write
        limit = run.write(limit)
        truncate.recheck(self, run.written)  # a TRUNCATE applied meanwhile on another shard
        limit = run.dead_letter(parsed, limit)  # vectors S3 Vectors refused while writing
        now_ms = self.clock() * 1000
        for plan in run.written:
            for record in plan.records:
                applied = record.index < limit and record.error is None and record not in plan.stale
                if applied and record.event is not None:
                    stats.freshness_ms.append(now_ms - epoch_millis(record.event.changed_at))
        stats.stale_skipped = truncated + sum(
            1 for plan in run.plans for record in plan.stale if record.index < limit and record.error is None
        )
        stats.transient_failures = len(parsed) - limit
        failures = [{"itemIdentifier": parsed[limit].sequence_number}] if limit < len(parsed) else []
        stats.batch_duration_ms = (self.clock() - started) * 1000
        return SinkResult(failures, stats, run.dead_letters)

    def fingerprint(self, text: str) -> str:
        """The fingerprint of ``text`` as this sink embeds it (the CLI and reconcile compute the same)."""
        embedding = self.config.embedding
        return fingerprint(
            model_id=embedding.model_id,
            dimensions=embedding.dimensions,
            normalize=embedding.normalize,
            max_input_chars=self.embedder.max_input_chars,
            text=text,
        )

    def _check_index(self) -> None:
        """Once per Sink: the index exists and has the embedder's dimension (else nothing can succeed)."""
        if self._index_checked:
            return
        info = self.store.describe()
        if info.dimension != self.embedder.dimensions:
            raise MisconfigurationError(
                f"the vector index has {info.dimension} dimensions but {self.embedder.model_id} is configured "
                f"for {self.embedder.dimensions}"
            )
        self._index_checked = True

    def _parse(self, index: int, record: Mapping[str, Any]) -> ParsedRecord:
        kinesis = record.get("kinesis", {})
        shard_id = str(record.get("eventID", "")).split(":", 1)[0]
        parsed = ParsedRecord(index, str(kinesis.get("sequenceNumber", "")), shard_id, record)
        try:
            try:
                data = base64.b64decode(kinesis.get("data", ""), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PoisonRecordError(f"Kinesis data is not base64: {exc}") from exc
            event = parse_event(data)
            if (event.keyspace, event.table) != (self.config.keyspace, self.config.table):
                raise PoisonRecordError(
                    f"change event is for {event.keyspace}.{event.table}; this sink serves "
                    f"{self.config.keyspace}.{self.config.table}"
                )
            parsed.key = vector_key(event.key, self.config.key_columns)
            if not event.is_removal:
                assert event.new is not None  # parse_event guarantees a new image for INSERT/UPDATE
                text = event.new.get(self.config.embedding_field)
                if text is not None and not isinstance(text, str):
                    raise PoisonRecordError(
                        f"embedding field '{self.config.embedding_field}' is {type(text).__name__}, not text"
                    )
                parsed.text = text
                expected = expected_chunks(self.config, parsed.key, text, max_input_chars=self.embedder.max_input_chars)
                for chunk in expected:
                    metadata = self._metadata.build(
                        event.new,
                        seq=event.seq,
                        changed_at=event.changed_at,
                        fingerprint=chunk.fingerprint,
                        version=event.version,
                        chunk=(chunk.number, len(expected)),
                        text=chunk.text,
                    )
                    parsed.chunks.append(ChunkPlan(chunk.number, chunk.key, chunk.text, chunk.fingerprint, metadata))
                if parsed.chunks:
                    parsed.fingerprint, parsed.metadata = parsed.chunks[0].fingerprint, parsed.chunks[0].metadata
            parsed.event = event
        except PoisonRecordError as exc:
            parsed.error = exc
        return parsed


class _Run:
    """The state of one ``process`` call: caches that survive re-planning, the writes done."""

    def __init__(self, sink: Sink, stats: SinkStats) -> None:
        self.sink = sink
        self.stats = stats
        self.embedded: dict[str, EmbedResult] = {}  # by fingerprint: each distinct text embedded once
        self.stored: dict[str, Any] = {}  # by row key: its stored chunk 0 (data and metadata) or None
        self.pools: dict[str, dict[str, list[float]]] = {}  # by row key: fingerprint -> vector of its stored chunks
        self.tombstones: dict[str, int | None] = {}  # by key: tombstone version or None
        self.read_failed: dict[str, FreshvecError] = {}  # keys whose vector or tombstone could not be read
        self.cut: dict[str, bool] = {}  # fingerprint -> the text was cut to the model's limit
        self.plans: list[KeyPlan] = []
        self.written: list[KeyPlan] = []
        self._written_ids: set[int] = set()
        self.dead_letters: list[dict[str, str]] = []
        self.parked: set[int] = set()  # indexes of records delivered to the DLQ

    # -- prepare: plan, read what is stored, embed; shrink to the prefix before any transient failure --
    def prepare(self, parsed: list[ParsedRecord]) -> int:
        limit = len(parsed)
        while True:
            groups = coalesce(parsed[:limit])
            plans = [plan_key(key, records) for key, records in groups.items()]
            self._read_stored(plans)
            for plan in plans:
                if plan.key not in self.read_failed:
                    stored = self.stored.get(plan.key)
                    plan.stored_count = stored_chunk_count(stored)
                    decide(plan, stored, self.tombstones.get(plan.key), self.pools.get(plan.key))
            failed = self._embed([p for p in plans if p.key not in self.read_failed])
            failed.update({p.key: self.read_failed[p.key] for p in plans if p.key in self.read_failed})
            poisoned = {key: err for key, err in failed.items() if isinstance(err, PoisonRecordError)}
            if poisoned:
                # The text of the key's newest change is refused: park that change and plan the key again.
                for plan in plans:
                    if plan.key in poisoned:
                        plan.effective.error = poisoned[plan.key]
                continue
            if failed:
                limit = min(p.first_index for p in plans if p.key in failed)
                continue
            parked_limit = self.dead_letter(parsed, limit)
            if parked_limit < limit:  # a dead letter could not be delivered: stop before that record
                limit = parked_limit
                continue
            puts = [plan for plan in plans if plan.action is Action.PUT]
            self.stats.embeddings_skipped = sum(1 for plan in puts if plan.reused)
            self.stats.chunks_reused = sum(1 for plan in puts for chunk in plan.chunks if chunk.reused)
            self.stats.chunks_embedded = sum(1 for plan in puts for chunk in plan.chunks if not chunk.reused)
            self.stats.texts_truncated = sum(1 for fp, cut in self.cut.items() if cut and fp in self.embedded)
            self.plans = plans
            return limit

    def _read_stored(self, plans: list[KeyPlan]) -> None:
        """GetVectors (data and metadata, 100 keys a call) for every planned row's chunk 0, then the other
        stored chunks of the rows put (chunk 0 says how many), then the tombstones needed."""
        # Every put needs the stored vectors, to reuse those whose fingerprint matches; every delete needs chunk
        # 0's count, to remove all of the row's chunks (and its version, when the delete has one).
        needed = [p for p in plans if p.action is not Action.SKIP]
        missing = [p.key for p in needed if p.key not in self.stored and p.key not in self.read_failed]
        found = self._get(missing, missing)
        self.stored.update({key: found.get(key) for key in missing if key not in self.read_failed})
        # The other chunks of each row put: any of them may hold a new chunk's text, whatever its position.
        rows = [p.key for p in needed if p.action is Action.PUT and p.key in self.stored and p.key not in self.pools]
        wanted = {key: chunk_keys(key, stored_chunk_count(self.stored[key]), start=1) for key in rows}
        others = [chunk for keys in wanted.values() for chunk in keys]
        found = self._get(others, [split_chunk_key(k)[0] for k in others])
        for key in rows:
            if key not in self.read_failed:
                self.pools[key] = reuse_pool([self.stored[key], *(found.get(k) for k in wanted[key])])
        lookups = [
            p.key
            for p in needed
            if p.key in self.stored
            and p.key not in self.tombstones
            and p.key not in self.read_failed
            and needs_tombstone_lookup(p, self.stored[p.key])
        ]
        if lookups:
            try:
                found_tombstones = self.sink.tombstones.get(lookups)
            except TransientError as exc:
                self.read_failed.update(dict.fromkeys(lookups, exc))
                return
            for key in lookups:
                self.tombstones[key] = found_tombstones.get(key)

    def _get(self, keys: list[str], rows: list[str]) -> dict[str, Any]:
        """Stored vectors of ``keys`` (``rows[i]`` is the row of ``keys[i]``); a failed call marks its rows."""
        found: dict[str, Any] = {}
        for start in range(0, len(keys), c.S3V_GET_BATCH):
            chunk = keys[start : start + c.S3V_GET_BATCH]
            try:
                found.update(self.sink.store.get(chunk, return_data=True, return_metadata=True))
            except TransientError as exc:
                self.read_failed.update(dict.fromkeys(rows[start : start + c.S3V_GET_BATCH], exc))
                continue
            self.stats.vectors_read += len(chunk)
        return found

    def _embed(self, plans: list[KeyPlan]) -> dict[str, FreshvecError]:
        """Embed each distinct chunk text (by fingerprint) the puts need once; per-row errors come back."""
        limit = self.sink.embedder.max_input_chars
        wanted: dict[str, str] = {}  # fingerprint -> text as sent to the model
        for chunk in self._to_embed(plans):
            wanted.setdefault(chunk.fingerprint, chunk.text[:limit])
            self.cut[chunk.fingerprint] = self.cut.get(chunk.fingerprint, False) or len(chunk.text) > limit
        new = [fp for fp in wanted if fp not in self.embedded]
        if new:
            results = self.sink.embedder.try_embed_documents([wanted[fp] for fp in new])
            for fp, result in zip(new, results, strict=True):
                self.embedded[fp] = result
                self.cut[fp] = self.cut[fp] or result.truncated
                if result.vector is not None:
                    self.stats.embeddings_computed += 1
        failed: dict[str, FreshvecError] = {}
        for plan in plans:
            for chunk in self._to_embed([plan]):
                result = self.embedded[chunk.fingerprint]
                if result.vector is not None:
                    chunk.vector = result.vector
                else:
                    assert result.error is not None
                    # A poison text poisons the row; a transient failure of any chunk holds the row back.
                    if not isinstance(failed.get(plan.key), PoisonRecordError):
                        failed[plan.key] = result.error
        return failed

    @staticmethod
    def _to_embed(plans: list[KeyPlan]) -> list[ChunkPlan]:
        return [chunk for p in plans if p.action is Action.PUT for chunk in p.chunks if not chunk.reused]

    # -- write: surplus chunks, puts, tombstones, deletes; a failed call leaves its rows and every unwritten
    # row to re-delivery --
    def write(self, limit: int) -> int:
        puts = self._valid_vectors([p for p in self.plans if p.action is Action.PUT])
        deletes = [p for p in self.plans if p.action is Action.DELETE]
        self._written(p for p in self.plans if p.action is Action.SKIP)
        versioned = [p for p in deletes if p.version is not None]
        # Surplus chunks go before the puts that lower chunk 0's count; a deleted row's chunk 0 goes after its
        # other chunks. Either way a crash in between leaves a count that covers every chunk still stored.
        calls = key_calls("surplus", [(p, p.surplus_keys) for p in puts if p.surplus_keys])
        calls += put_calls(puts)
        calls += [("tombstone", versioned, [])] if versioned else []
        calls += key_calls("delete", [(p, p.surplus_keys[:-1]) for p in deletes if p.stored_count > 1])
        calls += key_calls("delete", [(p, [p.key]) for p in deletes])
        position = 0
        while position < len(calls):
            kind, plans, items = calls[position]
            try:
                if kind == "put":
                    self.sink.store.put(items)
                    self.stats.vectors_put += len(items)
                    cut = passages_cut(items, [c for p in plans for c in p.chunks], self.sink.config.embedding_field)
                    self.stats.searchable_text_cut += cut
                    self._written(plans)
                elif kind == "tombstone":
                    expires_at = self.sink.clock() + self.sink.config.sink.max_record_age_s + TOMBSTONE_MARGIN_S
                    self.sink.tombstones.put({p.key: p.version for p in plans if p.version is not None}, expires_at)
                    self.stats.tombstones_written += len(plans)
                else:
                    self.sink.store.delete(items)
                    self.stats.vectors_deleted += len(items)
                    self.stats.chunks_deleted += len(items) if kind == "surplus" else 0
                    self._written(plans if kind == "delete" else [])
            except RejectedVectorsError as exc:
                calls += self._refused(plans, items, exc)
            except TransientError:
                unwritten = [p for _, rest, _ in calls[position:] for p in rest]
                return min(limit, *(p.first_index for p in unwritten))
            position += 1
        return limit

    def _refused(self, plans: list[KeyPlan], items: list[dict[str, Any]], exc: RejectedVectorsError) -> list[Any]:
        """Rows with a refused chunk are parked; chunks they added beyond the stored count are removed again
        when their chunk 0 (which would have counted them) was refused."""
        refused_rows = {split_chunk_key(key)[0]: reason for key, reason in exc.rejected.items()}
        accepted = [v for v in items if v["key"] not in exc.rejected]
        self.stats.vectors_put += len(accepted)
        self._written(p for p in plans if p.key not in refused_rows)
        cleanup: list[tuple[KeyPlan, list[str]]] = []
        for plan in plans:
            if plan.key in refused_rows:
                for record in plan.records:
                    record.error = PoisonRecordError(f"S3 Vectors refused the vector: {refused_rows[plan.key]}")
                if plan.key in exc.rejected:
                    beyond = {chunk.key for chunk in plan.chunks[plan.stored_count :]}
                    added = [v["key"] for v in accepted if v["key"] in beyond]
                    cleanup += [(plan, added)] if added else []
        return key_calls("surplus", cleanup)

    def _written(self, plans: Any) -> None:
        for plan in plans:
            if id(plan) not in self._written_ids:
                self._written_ids.add(id(plan))
                self.written.append(plan)

    def _valid_vectors(self, plans: list[KeyPlan]) -> list[KeyPlan]:
        """The plans whose every chunk vector has the index's dimension and only finite floats; the others are
        poison.

        S3 Vectors would refuse the others too, but the SDK's own validation of every float is turned off for
        vector writes (it costs more CPU than the sink), so this check is the one that counts.
        """
        dimension = self.sink.embedder.dimensions
        valid = []
        for plan in plans:
            problem = None
            for chunk in plan.chunks:
                vector = chunk.vector or []
                if len(vector) != dimension:
                    problem = f"the vector has {len(vector)} dimensions; the index has {dimension}"
                # A non-finite value makes the sum non-finite; only then (or on overflow) is each value checked.
                elif not math.isfinite(sum(vector)) and not all(math.isfinite(x) for x in vector):
                    problem = "the vector holds a value that is not a finite number"
                if problem:
                    break
            if problem is None:
                valid.append(plan)
                continue
            for record in plan.records:
                record.error = PoisonRecordError(problem)
        return valid

    # -- dead letters: every poison record before the limit, sent before any write -------------------------
    def dead_letter(self, parsed: list[ParsedRecord], limit: int) -> int:
        """Park the poison records before ``limit`` not parked yet; the new limit excludes any undelivered."""
        poison = [r for r in parsed[:limit] if r.error is not None and r.index not in self.parked]
        if not poison:
            return limit
        try:
            self.sink.dlq.send([_dead_letter(r) for r in poison])
            delivered = poison
        except DeadLetterSendError as exc:
            limit = min(limit, *(poison[position].index for position in exc.undelivered))
            delivered = [r for position, r in enumerate(poison) if position not in exc.undelivered]
        for record in delivered:
            self.parked.add(record.index)
            assert record.error is not None
            self.dead_letters.append(
                {
                    "sequence_number": record.sequence_number,
                    "error_class": type(record.error).__name__,
                    "error_message": str(record.error),
                }
            )
        self.stats.dlq_records = len(self.dead_letters)
        return limit


def _dead_letter(record: ParsedRecord) -> dict[str, Any]:
    kinesis = record.raw.get("kinesis", {})
    error = record.error
    return {
        "payload_b64": kinesis.get("data", ""),
        "partition_key": kinesis.get("partitionKey", ""),
        "error_class": type(error).__name__,
        "error_message": str(error),
        "kinesis_shard_id": record.shard_id,
        "kinesis_sequence_number": record.sequence_number,
        "event_source_arn": record.raw.get("eventSourceARN", ""),
        "failed_at": format_timestamp(datetime.now(UTC)),
    }


def _in_sequence_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lambda delivers a shard's records in order; sort anyway when every sequence number is numeric."""
    numbers = [str(r.get("kinesis", {}).get("sequenceNumber", "")) for r in records]
    if all(n.isdigit() for n in numbers):
        return [r for _, r in sorted(zip(map(int, numbers), records, strict=True), key=lambda pair: pair[0])]
    return list(records)
