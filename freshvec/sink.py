"""The sink: one Kinesis batch of change events -> the fewest Bedrock and S3 Vectors calls that apply it exactly.

Steps, for a batch from one shard in sequence order:

1. Parse: decode and validate each record (contract, table, vector key, metadata of the new image, the
   fingerprint of its text). A record that can never succeed is set aside for the dead-letter queue.
2. Coalesce per vector key; the newest change wins, by version and then by order (``freshvec.plan``).
3. Read what the index holds for those keys (GetVectors, 100 a call) and, where no vector is stored, the
   tombstones of recent deletes; then decide per key (``plan.decide``): skip what is older than the index,
   reuse a stored vector whose fingerprint matches, embed the rest, delete removals.
4. Embed each distinct text once, then PutVectors, tombstones, DeleteVectors, in calls of at most 500.

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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from freshvec import constants as c
from freshvec import truncate
from freshvec.config import PipelineConfig
from freshvec.errors import FreshvecError, MisconfigurationError, PoisonRecordError, TransientError
from freshvec.events import format_timestamp, parse_event
from freshvec.keys import vector_key
from freshvec.metadata import MetadataBuilder, epoch_millis
from freshvec.plan import (
    Action,
    KeyPlan,
    ParsedRecord,
    coalesce,
    decide,
    fingerprint,
    has_text,
    needs_tombstone_lookup,
    plan_key,
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

# A tombstone outlives the oldest change the event source mapping can still deliver, plus this margin for
# the time between a re-sync read and its put to the change stream.
TOMBSTONE_MARGIN_S = 3600


# ---- results ---------------------------------------------------------------------------------------
@dataclass
class SinkStats:
    changes_received: int = 0
    embeddings_computed: int = 0  # distinct texts sent to the embedding model
    embeddings_skipped: int = 0  # keys whose stored vector was reused (same fingerprint)
    texts_truncated: int = 0
    vectors_put: int = 0
    vectors_deleted: int = 0
    stale_skipped: int = 0  # changes older than the index, a tombstone or a newer change in the batch
    tombstones_written: int = 0
    vectors_read: int = 0  # keys asked for with GetVectors
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
                if has_text(text):
                    assert text is not None
                    parsed.fingerprint = self.fingerprint(text)
                    parsed.metadata = self._metadata.build(
                        event.new,
                        seq=event.seq,
                        changed_at=event.changed_at,
                        fingerprint=parsed.fingerprint,
                        version=event.version,
                    )
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
        self.stored: dict[str, Any] = {}  # by key: stored vector (data and metadata) or None
        self.tombstones: dict[str, int | None] = {}  # by key: tombstone version or None
        self.read_failed: dict[str, FreshvecError] = {}  # keys whose vector or tombstone could not be read
        self.cut: dict[str, bool] = {}  # fingerprint -> the text was cut to the model's limit
        self.plans: list[KeyPlan] = []
        self.written: list[KeyPlan] = []
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
                    decide(plan, self.stored.get(plan.key), self.tombstones.get(plan.key))
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
            self.stats.embeddings_skipped = sum(1 for plan in plans if plan.reused)
            self.stats.texts_truncated = sum(1 for fp, cut in self.cut.items() if cut and fp in self.embedded)
            self.plans = plans
            return limit

    def _read_stored(self, plans: list[KeyPlan]) -> None:
        """GetVectors (data and metadata, 100 keys a call) for every planned key, then the tombstones needed."""
        # A delete is checked against the stored version only when it has one; every put needs the stored
        # vector, to reuse it when the fingerprint matches.
        needed = [p for p in plans if p.action is Action.PUT or p.version is not None]
        missing = [p.key for p in needed if p.key not in self.stored and p.key not in self.read_failed]
        for start in range(0, len(missing), c.S3V_GET_BATCH):
            chunk = missing[start : start + c.S3V_GET_BATCH]
            try:
                found = self.sink.store.get(chunk, return_data=True, return_metadata=True)
            except TransientError as exc:
                self.read_failed.update(dict.fromkeys(chunk, exc))
                continue
            self.stats.vectors_read += len(chunk)
            for key in chunk:
                self.stored[key] = found.get(key)
        lookups = [
            p.key
            for p in needed
            if p.key in self.stored and p.key not in self.tombstones and needs_tombstone_lookup(p, self.stored[p.key])
        ]
        if lookups:
            try:
                found_tombstones = self.sink.tombstones.get(lookups)
            except TransientError as exc:
                self.read_failed.update(dict.fromkeys(lookups, exc))
                return
            for key in lookups:
                self.tombstones[key] = found_tombstones.get(key)

    def _embed(self, plans: list[KeyPlan]) -> dict[str, FreshvecError]:
        """Embed each distinct text (by fingerprint) the puts need once; per-key errors come back."""
        limit = self.sink.embedder.max_input_chars
        wanted: dict[str, str] = {}  # fingerprint -> text as sent to the model
        for plan in plans:
            if plan.action is Action.PUT and not plan.reused:
                assert plan.text is not None and plan.fingerprint is not None
                wanted.setdefault(plan.fingerprint, plan.text[:limit])
                self.cut[plan.fingerprint] = self.cut.get(plan.fingerprint, False) or len(plan.text) > limit
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
            if plan.action is Action.PUT and not plan.reused:
                assert plan.fingerprint is not None
                result = self.embedded[plan.fingerprint]
                if result.vector is not None:
                    plan.vector = result.vector
                else:
                    assert result.error is not None
                    failed[plan.key] = result.error
        return failed

    # -- write: puts, tombstones, deletes; a failed call leaves its keys and every unwritten key to re-delivery --
    def write(self, limit: int) -> int:
        puts = [p for p in self.plans if p.action is Action.PUT]
        deletes = [p for p in self.plans if p.action is Action.DELETE]
        self.written.extend(p for p in self.plans if p.action is Action.SKIP)
        versioned = [p for p in deletes if p.version is not None]
        calls: list[tuple[str, list[KeyPlan]]] = [
            ("put", puts[i : i + c.S3V_PUT_BATCH]) for i in range(0, len(puts), c.S3V_PUT_BATCH)
        ]
        # Tombstones before the deletes: a crash in between leaves a tombstone and a vector, which the
        # re-delivered delete removes; the other order could let a re-sync put slip in.
        calls += [("tombstone", versioned)] if versioned else []
        calls += [("delete", deletes[i : i + c.S3V_PUT_BATCH]) for i in range(0, len(deletes), c.S3V_PUT_BATCH)]
        for position, (kind, chunk) in enumerate(calls):
            try:
                if kind == "put":
                    self.sink.store.put([self._vector(p) for p in chunk])
                    self.stats.vectors_put += len(chunk)
                    self.written.extend(chunk)
                elif kind == "tombstone":
                    expires_at = self.sink.clock() + self.sink.config.sink.max_record_age_s + TOMBSTONE_MARGIN_S
                    self.sink.tombstones.put({p.key: p.version for p in chunk if p.version is not None}, expires_at)
                    self.stats.tombstones_written += len(chunk)
                else:
                    self.sink.store.delete([p.key for p in chunk])
                    self.stats.vectors_deleted += len(chunk)
                    self.written.extend(chunk)
            except RejectedVectorsError as exc:
                accepted = [p for p in chunk if p.key not in exc.rejected]
                self.stats.vectors_put += len(accepted)
                self.written.extend(accepted)
                for plan in chunk:
                    if plan.key in exc.rejected:
                        for record in plan.records:
                            record.error = PoisonRecordError(f"S3 Vectors refused the vector: {exc.rejected[plan.key]}")
            except TransientError:
                unwritten = [p for _, rest in calls[position:] for p in rest]
                return min(limit, *(p.first_index for p in unwritten))
        return limit

    @staticmethod
    def _vector(plan: KeyPlan) -> dict[str, Any]:
        return {"key": plan.key, "data": {"float32": plan.vector}, "metadata": plan.metadata}

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
