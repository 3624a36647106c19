"""The sink: one Kinesis batch of change events -> the fewest Bedrock and S3 Vectors calls that apply it.

Steps, for a batch from one shard in sequence order:

1. Parse: decode and validate each record (contract, table, vector key, metadata of the new image). A record
   that can never succeed is set aside for the dead-letter queue; it never stops the batch.
2. Coalesce per vector key: the last change wins, the first change's old image is "before".
3. Plan per key: delete (DELETE/EXPIRE, or no text), reuse the stored vector (text unchanged: GetVectors and
   put it back with the new metadata, embed only if it is missing), or embed (new or changed text). When the
   before-image is unknown (an INSERT, a backfill) the stored vector is reused if it was embedded from the
   very same text, which makes re-deliveries and repeated backfills free.
4. Embed each distinct text once, then PutVectors / DeleteVectors in calls of at most 500.

Failures: a transient one (after retries) at record *n* means nothing at or after *n* may be applied now,
because the event source mapping re-delivers from there; the plan is rebuilt from the records before *n*
and *n*'s sequence number is reported in ``batch_item_failures``. A write call that fails after others
succeeded may leave later keys written; they are written again, identically, on re-delivery (writes are
idempotent). Poison records go to the DLQ with their payload and reason; misconfiguration raises.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.errors import (
    FreshvecError,
    MisconfigurationError,
    PoisonRecordError,
    TransientError,
)
from freshvec.events import ChangeEvent, format_timestamp, parse_event
from freshvec.keys import vector_key
from freshvec.metadata import MetadataBuilder, epoch_millis
from freshvec.ports import (
    DeadLetterQueue,
    DeadLetterSendError,
    Embedder,
    EmbedResult,
    RejectedVectorsError,
    VectorStore,
)


# ---- results ---------------------------------------------------------------------------------------
@dataclass
class SinkStats:
    changes_received: int = 0
    embeddings_computed: int = 0  # distinct texts sent to the embedding model
    embeddings_skipped: int = 0  # keys whose stored vector was reused (text unchanged)
    texts_truncated: int = 0
    vectors_put: int = 0
    vectors_deleted: int = 0
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


# ---- parsed records and plans ------------------------------------------------------------------------
@dataclass
class ParsedRecord:
    index: int  # position in the batch
    sequence_number: str  # Kinesis sequence number
    shard_id: str
    raw: Mapping[str, Any]  # the Lambda Kinesis record
    event: ChangeEvent | None = None
    key: str | None = None
    text: str | None = None  # the new image's embedded text (None for removals)
    metadata: dict[str, Any] | None = None  # metadata of the new image, when it has text
    error: FreshvecError | None = None  # set when the record is poison

    @property
    def usable(self) -> bool:
        return self.error is None and self.event is not None and self.key is not None


class Action(Enum):
    DELETE = "delete"
    EMBED = "embed"  # new or changed text
    REUSE = "reuse"  # text unchanged: reuse the stored vector, embed only if it is missing
    REUSE_IF_SAME = "reuse_if_same"  # before unknown: reuse the stored vector if it was made from this text


@dataclass
class KeyPlan:
    key: str
    action: Action
    records: list[ParsedRecord]
    text: str | None = None
    metadata: dict[str, Any] | None = None
    vector: list[float] | None = None  # filled in before writing a put
    reused: bool = False  # the vector came from the index, not from the model

    @property
    def first_index(self) -> int:
        return self.records[0].index


def coalesce(records: Sequence[ParsedRecord]) -> dict[str, list[ParsedRecord]]:
    """Usable records grouped per vector key, in batch (sequence) order."""
    groups: dict[str, list[ParsedRecord]] = {}
    for record in records:
        if record.usable:
            assert record.key is not None
            groups.setdefault(record.key, []).append(record)
    return groups


def plan_key(key: str, records: list[ParsedRecord], text_field: str) -> KeyPlan:
    """What one key's changes in this batch amount to."""
    first, last = records[0], records[-1]
    assert first.event is not None and last.event is not None
    if last.event.is_removal or not has_text(last.text):
        return KeyPlan(key, Action.DELETE, records)
    before = first.event.old
    if first.event.op == "INSERT" or before is None:
        action = Action.REUSE_IF_SAME
    elif before.get(text_field) == last.text:
        action = Action.REUSE
    else:
        action = Action.EMBED
    return KeyPlan(key, action, records, text=last.text, metadata=last.metadata)


def has_text(text: str | None) -> bool:
    return text is not None and bool(text.strip())


# ---- the sink ----------------------------------------------------------------------------------------
class Sink:
    """Applies batches of change events to the vector index. Free of Lambda: local mode calls it too."""

    def __init__(
        self,
        config: PipelineConfig,
        embedder: Embedder,
        store: VectorStore,
        dlq: DeadLetterQueue,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.store = store
        self.dlq = dlq
        self.clock = clock
        self._metadata = MetadataBuilder(config)
        self._index_checked = False

    def process(self, records: list[dict[str, Any]]) -> SinkResult:
        started = self.clock()
        self._check_index()
        stats = SinkStats(changes_received=len(records))
        parsed = [self._parse(index, record) for index, record in enumerate(_in_sequence_order(records))]
        run = _Run(self, stats)
        limit = run.prepare(parsed)  # parks the poison records, before any write
        limit = run.write(limit)
        limit = run.dead_letter(parsed, limit)  # vectors S3 Vectors refused while writing
        now_ms = self.clock() * 1000
        for plan in run.written:
            for record in plan.records:
                if record.index < limit and record.error is None and record.event is not None:
                    stats.freshness_ms.append(now_ms - epoch_millis(record.event.changed_at))
        stats.transient_failures = len(parsed) - limit
        failures = [{"itemIdentifier": parsed[limit].sequence_number}] if limit < len(parsed) else []
        stats.batch_duration_ms = (self.clock() - started) * 1000
        return SinkResult(failures, stats, run.dead_letters)

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
                    parsed.metadata = self._metadata.build(event.new, seq=event.seq, changed_at=event.changed_at)
            parsed.event = event
        except PoisonRecordError as exc:
            parsed.error = exc
        return parsed


class _Run:
    """The state of one ``process`` call: caches that survive re-planning, the writes done."""

    def __init__(self, sink: Sink, stats: SinkStats) -> None:
        self.sink = sink
        self.stats = stats
        self.text_field = sink.config.embedding_field
        self.embedded: dict[str, EmbedResult] = {}  # by (truncated) text: each distinct text embedded once
        self.stored: dict[str, Any] = {}  # by key: stored vector or None
        self.fetch_failed: dict[str, FreshvecError] = {}
        self.reused: set[str] = set()  # keys whose stored vector is put back
        self.cut: dict[str, bool] = {}  # text as sent to the model -> it was cut to the model's limit
        self.plans: list[KeyPlan] = []
        self.written: list[KeyPlan] = []
        self.dead_letters: list[dict[str, str]] = []
        self.parked: set[int] = set()  # indexes of records delivered to the DLQ

    # -- prepare: plan, fetch stored vectors, embed; shrink to the prefix before any transient failure --
    def prepare(self, parsed: list[ParsedRecord]) -> int:
        limit = len(parsed)
        while True:
            groups = coalesce(parsed[:limit])
            plans = [plan_key(key, records, self.text_field) for key, records in groups.items()]
            self._fetch([p for p in plans if p.action in (Action.REUSE, Action.REUSE_IF_SAME)])
            vectors, failed = self._vectors_for(plans)
            poisoned = {key: err for key, err in failed.items() if isinstance(err, PoisonRecordError)}
            transient = [p.first_index for p in plans if p.key in failed and p.key not in poisoned]
            if poisoned:
                # The text of the key's last change is refused: park that change and plan the key again.
                for plan in plans:
                    if plan.key in poisoned:
                        plan.records[-1].error = poisoned[plan.key]
                continue
            if transient:
                limit = min(transient)
                continue
            parked_limit = self.dead_letter(parsed, limit)
            if parked_limit < limit:  # a dead letter could not be delivered: stop before that record
                limit = parked_limit
                continue
            for plan in plans:
                if plan.action is not Action.DELETE:
                    plan.vector = vectors[plan.key]
                    plan.reused = plan.key in self.reused
            self.stats.embeddings_skipped = sum(1 for plan in plans if plan.reused)
            self.stats.texts_truncated = sum(1 for text, cut in self.cut.items() if cut and text in self.embedded)
            self.plans = plans
            return limit

    def _fetch(self, plans: list[KeyPlan]) -> None:
        missing = [p.key for p in plans if p.key not in self.stored and p.key not in self.fetch_failed]
        for start in range(0, len(missing), c.S3V_GET_BATCH):
            chunk = missing[start : start + c.S3V_GET_BATCH]
            try:
                found = self.sink.store.get(chunk, return_data=True, return_metadata=True)
            except TransientError as exc:
                self.fetch_failed.update(dict.fromkeys(chunk, exc))
                continue
            for key in chunk:
                self.stored[key] = found.get(key)

    def _vectors_for(self, plans: list[KeyPlan]) -> tuple[dict[str, list[float]], dict[str, FreshvecError]]:
        """The vector each put needs: reused from the index where allowed, else embedded (once per text)."""
        vectors: dict[str, list[float]] = {}
        failed: dict[str, FreshvecError] = {}
        to_embed: dict[str, str] = {}  # key -> text as sent to the model
        limit = self.sink.embedder.max_input_chars
        for plan in plans:
            if plan.action is Action.DELETE:
                continue
            if plan.key in self.fetch_failed:
                failed[plan.key] = self.fetch_failed[plan.key]
                continue
            stored = self.stored.get(plan.key)
            reusable = stored is not None and stored.get("data")
            if plan.action is Action.REUSE_IF_SAME:
                reusable = reusable and stored["metadata"].get(self.text_field) == plan.text
            if plan.action is not Action.EMBED and reusable:
                vectors[plan.key] = [float(x) for x in stored["data"]]
                self.reused.add(plan.key)
                continue
            self.reused.discard(plan.key)
            assert plan.text is not None
            text = plan.text[:limit]
            self.cut[text] = self.cut.get(text, False) or len(plan.text) > limit
            to_embed[plan.key] = text
        new_texts = [t for t in dict.fromkeys(to_embed.values()) if t not in self.embedded]
        if new_texts:
            results = self.sink.embedder.try_embed_documents(new_texts)
            for text, result in zip(new_texts, results, strict=True):
                self.embedded[text] = result
                self.cut[text] = self.cut[text] or result.truncated
                if result.vector is not None:
                    self.stats.embeddings_computed += 1
        for key, text in to_embed.items():
            result = self.embedded[text]
            if result.vector is not None:
                vectors[key] = result.vector
            else:
                assert result.error is not None
                failed[key] = result.error
        return vectors, failed

    # -- write: puts, then deletes; a failed call leaves its keys and every unwritten key to re-delivery --
    def write(self, limit: int) -> int:
        puts = [p for p in self.plans if p.action is not Action.DELETE]
        deletes = [p for p in self.plans if p.action is Action.DELETE]
        calls: list[tuple[str, list[KeyPlan]]] = [
            ("put", puts[i : i + c.S3V_PUT_BATCH]) for i in range(0, len(puts), c.S3V_PUT_BATCH)
        ] + [("delete", deletes[i : i + c.S3V_PUT_BATCH]) for i in range(0, len(deletes), c.S3V_PUT_BATCH)]
        for position, (kind, chunk) in enumerate(calls):
            try:
                if kind == "put":
                    self.sink.store.put([self._vector(p) for p in chunk])
                    self.stats.vectors_put += len(chunk)
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
