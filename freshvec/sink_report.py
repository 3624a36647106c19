"""What the sink reports: per-batch counters, the Lambda partial-batch answer, and a dead letter's body.

Shared by the sink and its TRUNCATE step (``freshvec.truncate``), which each add to one ``SinkStats``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from freshvec.errors import PoisonRecordError
from freshvec.events import format_timestamp
from freshvec.plan import ParsedRecord
from freshvec.ports import DeadLetterQueue, DeadLetterSendError


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
    resyncs_parked: int = 0  # ambiguous Keyspaces re-syncs parked in the DLQ for `freshvec redrive send`
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


def add_stats(total: SinkStats, part: SinkStats) -> None:
    """Add ``part``'s counters (and freshness samples) to ``total``; the batch's own totals are left alone."""
    for spec in fields(SinkStats):
        if spec.name in ("changes_received", "transient_failures", "batch_duration_ms"):
            continue
        value = getattr(part, spec.name)
        if isinstance(value, list):
            getattr(total, spec.name).extend(value)
        else:
            setattr(total, spec.name, getattr(total, spec.name) + value)


def dead_letter_body(record: ParsedRecord) -> dict[str, Any]:
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


def in_sequence_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lambda delivers a shard's records in order; sort anyway when every sequence number is numeric."""
    numbers = [str(r.get("kinesis", {}).get("sequenceNumber", "")) for r in records]
    if all(n.isdigit() for n in numbers):
        return [r for _, r in sorted(zip(map(int, numbers), records, strict=True), key=lambda pair: pair[0])]
    return list(records)


def park_one(
    dlq: DeadLetterQueue,
    index: int,
    record: Mapping[str, Any],
    error: PoisonRecordError,
    *,
    stats: SinkStats,
    dead: list[dict[str, str]],
) -> bool:
    """Send one record that can never be applied to the DLQ; False when it could not be delivered."""
    shard_id = str(record.get("eventID", "")).split(":", 1)[0]
    sequence = str(record.get("kinesis", {}).get("sequenceNumber", ""))
    try:
        dlq.send([dead_letter_body(ParsedRecord(index, sequence, shard_id, record, error=error))])
    except DeadLetterSendError:
        return False
    dead.append({"sequence_number": sequence, "error_class": type(error).__name__, "error_message": str(error)})
    stats.dlq_records += 1
    return True
