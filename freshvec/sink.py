"""The sink: one Kinesis batch of change events -> the fewest Bedrock and S3 Vectors calls that apply it exactly.

Steps, for a batch from one shard in sequence order:
1. Parse: decode and validate each record (contract, table, vector key, metadata of the new image, the
   fingerprint of its text). A record that can never succeed is set aside for the dead-letter queue.
2. Coalesce per vector key; each key's changes are folded in order against what is stored (``freshvec.plan``).
3. Read what the index holds for those keys (GetVectors, 100 a call): each row's chunk 0, then the row's
   other stored chunks (chunk 0 says how many), and, where no vector is stored, the tombstones of recent
   deletes; then decide per key (``plan.decide``): skip what the stored version supersedes (a repair: what no
   longer holds the write it saw), park ambiguous Keyspaces re-syncs in the DLQ, reuse the vector of any
   stored chunk of the row whose fingerprint matches a new chunk's, embed the rest, delete removals.
4. Embed each distinct text once, then write in calls of at most 500: surplus chunks of rows whose text
   shrank (DeleteVectors), PutVectors (a row's chunks together, chunk 0 first), tombstones, and the chunks
   of deleted rows (chunk 0 last). So chunk 0's count always covers every chunk stored: none is orphaned.

Failures: a transient one (after retries) at record *n* means nothing at or after *n* is applied now (the
event source mapping re-delivers from there): the plan is rebuilt from the records before *n*, and *n*'s
sequence number is reported. Keys written by calls before a failed one are written again, identically, on
re-delivery (versions keep an older change from winning). Poison records go to the DLQ with their payload
and reason; misconfiguration raises.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from typing import Any

from freshvec import constants as c
from freshvec import truncate, versions
from freshvec.chunking import chunk_keys, expected_chunks, stored_chunk_count
from freshvec.config import PipelineConfig
from freshvec.errors import FreshvecError, MisconfigurationError, PoisonRecordError, TransientError
from freshvec.events import parse_event, unsendable_reason
from freshvec.keys import split_chunk_key, stray_vector_key, vector_key
from freshvec.metadata import MetadataBuilder, epoch_millis, passages_cut
from freshvec.plan import (
    Action,
    ChunkPlan,
    KeyPlan,
    ParsedRecord,
    coalesce,
    decide,
    fingerprint,
    has_text,
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
from freshvec.sink_calls import key_calls, put_calls, valid_vectors
from freshvec.sink_report import SinkResult, SinkStats, add_stats, dead_letter_body, in_sequence_order, park_one


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
        truncate_wait_s: float = c.TRUNCATE_RACE_WAIT_S,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.store = store
        self.dlq = dlq
        self.tombstones = tombstones
        self.clock = clock
        self.truncate_wait_s = truncate_wait_s  # how long a put that raced a TRUNCATE waits for it (PostgreSQL)
        self._metadata = MetadataBuilder(config)
        self._index_checked = False

    def process(self, records: list[dict[str, Any]]) -> SinkResult:
        ordered = in_sequence_order(records)
        if truncate.in_batch(ordered):  # a TRUNCATE splits the batch: what is before it is applied first
            return self._process_with_truncates(ordered)
        return self._process_part(ordered)

    def _process_with_truncates(self, records: list[dict[str, Any]]) -> SinkResult:
        """Each part between TRUNCATEs through ``_process_part``, each TRUNCATE in its place, until a failure."""
        started = self.clock()
        total = SinkStats(changes_received=len(records))
        dead_letters: list[dict[str, str]] = []
        part: list[dict[str, Any]] = []
        position = {str(r.get("kinesis", {}).get("sequenceNumber", "")): i for i, r in enumerate(records)}

        def failed_at(index: int) -> SinkResult:
            total.transient_failures = len(records) - index
            total.batch_duration_ms = (self.clock() - started) * 1000
            failures = [{"itemIdentifier": str(records[index].get("kinesis", {}).get("sequenceNumber", ""))}]
            return SinkResult(failures, total, dead_letters)

        for index, record in enumerate([*records, None]):
            if record is not None and not truncate.is_truncate(record):
                part.append(record)
                continue
            if part:
                result = self._process_part(part)
                add_stats(total, result.stats)
                dead_letters.extend(result.dead_letters)
                if result.batch_item_failures:
                    return failed_at(position[result.batch_item_failures[0]["itemIdentifier"]])
                part = []
            if record is None:
                break
            if not self._truncate(index, record, total, dead_letters):
                return failed_at(index)
        total.batch_duration_ms = (self.clock() - started) * 1000
        return SinkResult([], total, dead_letters)

    def _truncate(self, index: int, record: dict[str, Any], stats: SinkStats, dead: list[dict[str, str]]) -> bool:
        """One TRUNCATE record: applied or parked (True), or left to re-delivery (False)."""
        try:
            event = truncate.parse_truncate(record, self.config)
        except PoisonRecordError as exc:
            return park_one(self.dlq, index, record, exc, stats=stats, dead=dead)
        try:
            expires_at = self.clock() + truncate.tombstone_lifetime_s(self.config)
            stats.vectors_deleted += truncate.apply_truncate(
                self.store, self.tombstones, self.config, event, expires_at
            )
        except TransientError:
            return False
        stats.tombstones_written += 1
        stats.freshness_ms.append(self.clock() * 1000 - epoch_millis(event.changed_at))
        return True

    def _process_part(self, records: list[dict[str, Any]]) -> SinkResult:
        started = self.clock()
        self._check_index()
        stats = SinkStats(changes_received=len(records))
        parsed = [self._parse(index, record) for index, record in enumerate(records)]
        # Changes the table's last TRUNCATE supersedes (PostgreSQL) are set aside; puts are checked against it after.
        floor = truncate.read_state(self.tombstones, self.config)
        truncated = truncate.set_aside_older(self.store, floor, parsed)
        run = _Run(self, stats)
        limit = run.prepare(parsed)  # parks the poison records, before any write
        limit = run.write(limit)
        racing = truncate.recheck(  # a TRUNCATE applied meanwhile; what it could not confirm goes to re-delivery
            self.store, self.tombstones, self.config, run.written, floor, wait_s=self.truncate_wait_s
        )
        limit = min([limit, *(p.first_index for p in racing)])
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

    def _check_index(self) -> None:  # once per Sink: the index exists and has the embedder's dimension
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
            parsed.event = event  # from here on a poison change still names its row and version
            stray = stray_vector_key(event.key, self.config.key_columns) if event.is_repair else None
            if stray is not None and event.op != "DELETE":
                raise PoisonRecordError("a repair of a vector key that names no row can only remove it")
            parsed.key = stray if stray is not None else vector_key(event.key, self.config.key_columns)
            unsendable = unsendable_reason(event)
            if unsendable is not None:  # the row's state did not fit a Kinesis record: it can never arrive whole
                raise PoisonRecordError(unsendable)
            if not event.is_removal:
                assert event.new is not None  # parse_event guarantees a new image for INSERT/UPDATE
                text = event.new.get(self.config.embedding_field)
                if text is not None and not isinstance(text, str):
                    raise PoisonRecordError(
                        f"embedding field '{self.config.embedding_field}' is {type(text).__name__}, not text"
                    )
                parsed.text = text
                write = versions.stamp(versions.new_write_id(), event.version)  # one id for the row's chunks
                expected = expected_chunks(self.config, parsed.key, text, max_input_chars=self.embedder.max_input_chars)
                for chunk in expected:
                    metadata = self._metadata.build(
                        event.new,
                        seq=event.seq,
                        changed_at=event.changed_at,
                        fingerprint=chunk.fingerprint,
                        version=write,
                        chunk=(chunk.number, len(expected)),
                        text=chunk.text,
                    )
                    parsed.chunks.append(ChunkPlan(chunk.number, chunk.key, chunk.text, chunk.fingerprint, metadata))
                if parsed.chunks:
                    parsed.fingerprint, parsed.metadata = parsed.chunks[0].fingerprint, parsed.chunks[0].metadata
        except PoisonRecordError as exc:
            parsed.error = exc
        return parsed


def _puts(plan: KeyPlan) -> bool:
    """Whether any change of the key would put a vector (its stored chunks are then read, to reuse them)."""
    return any(r.event is not None and not r.event.is_removal and has_text(r.text) for r in plan.records)


class _Run:
    """The state of one ``process`` call: caches that survive re-planning, the writes done."""

    def __init__(self, sink: Sink, stats: SinkStats) -> None:
        self.sink = sink
        self.stats = stats
        self.embedded: dict[str, EmbedResult] = {}  # by fingerprint: each distinct text embedded once
        self.stored: dict[str, Any] = {}  # by row key: its stored chunk 0 (data and metadata) or None
        self.pools: dict[str, dict[str, list[float]]] = {}  # by row key: fingerprint -> vector of its stored chunks
        self.tombstones: dict[str, str | None] = {}  # by key: tombstone version text or None
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
            now_s, horizon_s = self.sink.clock(), truncate.tombstone_lifetime_s(self.sink.config)
            parked = []
            for plan in plans:
                if plan.key not in self.read_failed:
                    stored = self.stored.get(plan.key)
                    plan.stored_count = stored_chunk_count(stored)
                    tombstone = versions.parse(self.tombstones.get(plan.key))
                    pool = self.pools.get(plan.key)
                    parked += decide(plan, stored, tombstone, pool, now_s=now_s, horizon_s=horizon_s)
            if parked:  # ambiguous re-syncs go to the DLQ (for a new read); plan their keys again without them
                for record in parked:  # a removal standing for a poison change is rebuilt each pass: mark the change
                    parsed[record.index].error = record.error
                self.stats.resyncs_parked += len(parked)
                continue
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
        rows = [p.key for p in needed if _puts(p) and p.key in self.stored and p.key not in self.pools]
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

    # -- write: surplus chunks, puts, tombstones, deletes; a failed call leaves its rows and later ones to re-delivery
    def write(self, limit: int) -> int:
        puts = valid_vectors([p for p in self.plans if p.action is Action.PUT], self.sink.embedder.dimensions)
        deletes = [p for p in self.plans if p.action is Action.DELETE]
        self._written(p for p in self.plans if p.action is Action.SKIP)
        versioned = [p for p in deletes if p.version is not None]  # each delete's tombstone rises to it
        # Surplus chunks go before the puts that lower chunk 0's count; a deleted row's chunk 0 goes after its
        # other chunks. Either way a crash in between leaves a count that covers every chunk still stored.
        calls = key_calls("surplus", [(p, p.surplus_keys) for p in puts if p.surplus_keys])
        calls += put_calls(puts)
        calls += [("tombstone", versioned, [])] if versioned else []
        calls += key_calls("delete", [(p, p.surplus_keys[:-1]) for p in deletes if p.surplus_keys[:-1]])
        calls += key_calls("delete", [(p, [p.key]) for p in deletes])
        position = 0
        while position < len(calls):
            kind, plans, items = calls[position]
            try:
                if kind == "put":
                    self.sink.store.put(items)
                    self.stats.vectors_put += len(items)
                    self.stats.searchable_text_cut += passages_cut(items, plans, self.sink.config.embedding_field)
                    self._written(plans)
                elif kind == "tombstone":
                    expires_at = self.sink.clock() + truncate.tombstone_lifetime_s(self.sink.config)
                    self.sink.tombstones.put({p.key: versions.text_of(p.version) for p in plans}, expires_at)
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
        """Rows with a refused chunk are parked, and (their newest state cannot be indexed) lose every vector the
        index held or this put added, chunk 0 last, behind a tombstone at the refused change's version."""
        refused_rows = {split_chunk_key(key)[0]: reason for key, reason in exc.rejected.items()}
        self.stats.vectors_put += sum(1 for v in items if v["key"] not in exc.rejected)
        self._written(p for p in plans if p.key not in refused_rows)
        refused = [p for p in plans if p.key in refused_rows]
        for plan in refused:
            for record in plan.records:
                record.error = PoisonRecordError(f"S3 Vectors refused the vector: {refused_rows[plan.key]}")
        versioned = [p for p in refused if p.version is not None]
        calls: list[Any] = [("tombstone", versioned, [])] if versioned else []
        rows = [(p, [*chunk_keys(p.key, max(len(p.chunks), p.stored_count), start=1), p.key]) for p in refused]
        return calls + key_calls("surplus", rows)

    def _written(self, plans: Any) -> None:
        for plan in plans:
            if id(plan) not in self._written_ids:
                self._written_ids.add(id(plan))
                self.written.append(plan)

    # -- dead letters: every poison record before the limit, sent before any write -------------------------
    def dead_letter(self, parsed: list[ParsedRecord], limit: int) -> int:
        """Park the poison records before ``limit`` not parked yet; the new limit excludes any undelivered."""
        poison = [r for r in parsed[:limit] if r.error is not None and r.index not in self.parked]
        if not poison:
            return limit
        try:
            self.sink.dlq.send([dead_letter_body(r) for r in poison])
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
