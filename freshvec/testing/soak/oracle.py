"""The soak's oracle: what the index and the DLQ must hold, built from the final table state, and the report.

For every row left in the table, the vector is present, its data is the local embedder's embedding of the row's
text (cosine >= 0.999) and its metadata equals what the sink's metadata mapping produces for the row (the source
position keys aside); every deleted, expired, text-less or poison key is absent; every poison change is in the
DLQ with its payload and a reason. Also here: reading the index and the DLQ with clients no fault touches.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from freshvec import constants as c
from freshvec.config import PipelineConfig
from freshvec.errors import PoisonRecordError
from freshvec.keys import vector_key
from freshvec.metadata import MetadataBuilder
from freshvec.sources.keyspaces.cells import image_to_row, keys_to_json, row_to_image
from freshvec.sources.keyspaces.cqltypes import CqlType

COSINE_MIN = 0.999
_SOURCE_POSITION_KEYS = (c.META_SEQUENCE, c.META_CHANGED_AT)
_PIPELINE_KEYS = (*_SOURCE_POSITION_KEYS, c.META_FINGERPRINT, c.META_VERSION)


@dataclass
class Expectations:
    """What the index and the DLQ must hold, derived from the final table state and the raw poison."""

    present: dict[str, tuple[str, dict[str, Any]]]  # vector key -> (text, metadata without source position)
    absent: set[str]  # vector keys that must not be in the index
    poison_keys: dict[str, str]  # canonical JSON of a poison row's primary key -> why it is poison
    poison_raw: set[bytes]


def _event_row(row: Mapping[str, Any], types: Mapping[str, CqlType]) -> dict[str, Any]:
    """A table row as the change event carries it (through Keyspaces cells and back, like the forwarder)."""
    return image_to_row(row_to_image(row, types)) or {}


def _canonical_key(key: Mapping[str, Any], columns: Sequence[str]) -> str:
    return json.dumps([key.get(column) for column in columns], ensure_ascii=False)


def build_expectations(
    config: PipelineConfig,
    final_rows: Sequence[Mapping[str, Any]],
    removed_keys: Sequence[Mapping[str, Any]],
    poison_raw: Sequence[bytes],
) -> Expectations:
    """Apply the sink's own rules to the final table: key building, metadata mapping and limits, empty text."""
    types = config.column_types
    builder = MetadataBuilder(config)
    present: dict[str, tuple[str, dict[str, Any]]] = {}
    absent: set[str] = set()
    poison_keys: dict[str, str] = {}
    now = datetime.now(UTC)
    for table_row in final_rows:
        row = _event_row(table_row, types)
        try:
            key = vector_key(row, config.key_columns)
        except PoisonRecordError as exc:
            poison_keys[_canonical_key(row, config.primary_key)] = str(exc)
            continue
        try:
            # The workload's texts are single sentences, far below the chunk bound: one chunk, chunk 0, per row.
            metadata = builder.build(row, seq="0", changed_at=now, chunk=(0, 1))
        except PoisonRecordError as exc:
            poison_keys[_canonical_key(row, config.primary_key)] = str(exc)
            absent.add(key)
            continue
        text = row.get(config.embedding_field)
        if not text:
            absent.add(key)
            continue
        present[key] = (text, {k: v for k, v in metadata.items() if k not in _PIPELINE_KEYS})
    for removed in removed_keys:
        try:
            key = vector_key(_event_row(removed, types), config.key_columns)
        except PoisonRecordError:
            continue
        if key not in present:
            absent.add(key)
    return Expectations(present, absent - set(present), poison_keys, set(poison_raw))


@dataclass
class SoakReport:
    changes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    rows_final: int = 0
    expected_present: int = 0
    expected_absent: int = 0
    index_vectors: int = 0
    lost: int = 0  # a row's vector missing
    stale_content: int = 0  # present with the wrong embedding or metadata
    zombies: int = 0  # present though deleted, expired, text-less or poison
    unknown_vectors: int = 0  # keys the workload never wrote
    dlq_expected: int = 0
    dlq_actual: int = 0  # distinct expected poison changes found in the DLQ with payload and reason
    dlq_messages: int = 0
    dlq_duplicates: int = 0  # the same poison change parked more than once (re-deliveries)
    dlq_unexpected: int = 0  # DLQ messages for changes that were not poison
    dlq_without_reason: int = 0
    parked_records: int = 0  # records the mapping sent to its on-failure destination
    ttl_rows_left: int = 0
    seconds: float = 0.0
    sync_timeout: str | None = None
    faults: dict[str, int] = field(default_factory=dict)
    pipeline: dict[str, Any] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def stale(self) -> int:
        return self.stale_content + self.zombies + self.unknown_vectors

    @property
    def faults_injected(self) -> int:
        """Fault events (a partial PutRecords is one event, however many of its records failed)."""
        return sum(count for kind, count in self.faults.items() if kind != "kinesis_records_failed")

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.stale == 0
            and self.dlq_actual == self.dlq_expected
            and self.dlq_unexpected == 0
            and self.dlq_without_reason == 0
            and self.parked_records == 0
            and self.ttl_rows_left == 0
            and self.sync_timeout is None
        )

    def figures(self) -> dict[str, Any]:
        return {
            "soak_changes": self.changes,
            "soak_lost": self.lost,
            "soak_stale": self.stale,
            "soak_dlq_expected": self.dlq_expected,
            "soak_dlq_actual": self.dlq_actual,
            "soak_dlq_duplicates": self.dlq_duplicates,
            "soak_parked_records": self.parked_records,
            "soak_faults_injected": self.faults_injected,
            "soak_seconds": round(self.seconds, 1),
            "soak_ok": self.ok,
        }

    def lines(self) -> list[str]:
        out = [
            f"changes written      {self.changes}  ({_counts_text(self.kinds)})",
            f"rows in the table    {self.rows_final}",
            f"vectors expected     {self.expected_present} present, {self.expected_absent} absent",
            f"vectors in the index {self.index_vectors}",
            f"lost                 {self.lost}",
            f"stale                {self.stale}  (wrong content {self.stale_content}, should be gone "
            f"{self.zombies}, unknown {self.unknown_vectors})",
            f"DLQ                  expected {self.dlq_expected}, found {self.dlq_actual} "
            f"({self.dlq_messages} messages, {self.dlq_duplicates} re-delivered duplicates, "
            f"{self.dlq_unexpected} unexpected, {self.dlq_without_reason} without a reason)",
            f"on-failure parked    {self.parked_records} records",
            f"faults injected      {self.faults_injected}  ({_counts_text(self.faults)})",
            f"wall time            {self.seconds:.1f} s",
        ]
        if self.ttl_rows_left:
            out.append(f"rows with a TTL still in the table: {self.ttl_rows_left}")
        if self.sync_timeout:
            out.append(f"not in sync: {self.sync_timeout}")
        out.extend(f"  difference: {d}" for d in self.differences[:20])
        if len(self.differences) > 20:
            out.append(f"  ... and {len(self.differences) - 20} more differences")
        out.append("RESULT: " + ("OK, nothing lost, nothing stale" if self.ok else "DIFFERENCES FOUND"))
        return out


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb) / denominator if denominator else 0.0


def _same_value(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return math.isclose(expected, actual, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(_same_value, expected, actual))
    return type(expected) is type(actual) and expected == actual


def compare_index(
    expectations: Expectations,
    index: Mapping[str, tuple[Sequence[float], Mapping[str, Any]]],
    embed: Callable[[Sequence[str]], list[list[float]]],
    report: SoakReport,
) -> None:
    """Count lost, stale and unexpected vectors (``index``: key -> (vector, metadata))."""
    report.expected_present = len(expectations.present)
    report.expected_absent = len(expectations.absent)
    report.index_vectors = len(index)
    keys = sorted(expectations.present)
    texts = [expectations.present[key][0] for key in keys]
    vectors = dict(zip(keys, embed(texts), strict=True)) if texts else {}
    for key in keys:
        metadata = expectations.present[key][1]
        if key not in index:
            report.lost += 1
            report.differences.append(f"lost: {key}")
            continue
        stored_vector, stored_metadata = index[key]
        similarity = _cosine(vectors[key], stored_vector)
        stored = {k: v for k, v in stored_metadata.items() if k not in _PIPELINE_KEYS}
        missing_position = [k for k in _SOURCE_POSITION_KEYS if k not in stored_metadata]
        wrong = sorted(k for k in set(stored) | set(metadata) if not _same_value(metadata.get(k), stored.get(k)))
        if similarity < COSINE_MIN or wrong or missing_position:
            report.stale_content += 1
            detail = f"cosine {similarity:.4f}" if similarity < COSINE_MIN else ""
            if wrong:
                detail += f" metadata differs in {', '.join(wrong[:5])}"
            if missing_position:
                detail += f" no {', '.join(missing_position)}"
            report.differences.append(f"stale: {key}:{detail}")
    for key in index:
        if key in expectations.absent:
            report.zombies += 1
            report.differences.append(f"should be absent: {key}")
        elif key not in expectations.present:
            report.unknown_vectors += 1
            report.differences.append(f"unknown vector: {key}")


def compare_dlq(
    config: PipelineConfig,
    expectations: Expectations,
    messages: Sequence[Mapping[str, Any]],
    report: SoakReport,
) -> None:
    """Match DLQ messages (parsed bodies) to the expected poison changes, by payload."""
    report.dlq_expected = len(expectations.poison_keys) + len(expectations.poison_raw)
    report.dlq_messages = len(messages)
    found: Counter[str] = Counter()
    for body in messages:
        if (
            any(name not in body for name in c.DLQ_FIELDS)
            or not body.get("error_class")
            or not body.get("error_message")
        ):
            report.dlq_without_reason += 1
            report.differences.append(f"DLQ message without payload or reason: {json.dumps(body)[:200]}")
        try:
            payload = base64.b64decode(body.get("payload_b64", ""), validate=True)
        except ValueError:
            payload = b""
        identity = _dlq_identity(config, expectations, payload)
        if identity is None:
            report.dlq_unexpected += 1
            report.differences.append(
                f"unexpected DLQ message ({body.get('error_class')}: {body.get('error_message')}): {payload[:160]!r}"
            )
            continue
        found[identity] += 1
    report.dlq_actual = len(found)
    report.dlq_duplicates = sum(found.values()) - len(found)
    for key, reason in expectations.poison_keys.items():
        if f"row:{key}" not in found:
            report.differences.append(f"poison change not in the DLQ: {key[:120]} ({reason[:80]})")
    for payload in expectations.poison_raw:
        if f"raw:{payload.hex()}" not in found:
            report.differences.append(f"raw poison record not in the DLQ: {payload[:80]!r}")


def _dlq_identity(config: PipelineConfig, expectations: Expectations, payload: bytes) -> str | None:
    if payload in expectations.poison_raw:
        return f"raw:{payload.hex()}"
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    key_values = event.get("key")
    record = event.get("record")
    if not isinstance(key_values, dict) and isinstance(record, dict):
        # The forwarder's error envelope for a record that cannot become a change event: the raw stream record.
        try:
            key_values = {**keys_to_json(record.get("partitionKeys")), **keys_to_json(record.get("clusteringKeys"))}
        except (TypeError, ValueError):
            return None
    if not isinstance(key_values, dict):
        return None
    key = _canonical_key(key_values, config.primary_key)
    return f"row:{key}" if key in expectations.poison_keys else None


# ---------------------------------------------------------------------------------------------
# Reading what the pipeline produced (with clients that no fault touches)
# ---------------------------------------------------------------------------------------------
def read_index(s3vectors: Any, bucket: str, index: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
    vectors: dict[str, tuple[list[float], dict[str, Any]]] = {}
    kwargs: dict[str, Any] = {"vectorBucketName": bucket, "indexName": index, "returnData": True}
    kwargs["returnMetadata"] = True
    while True:
        page = s3vectors.list_vectors(**kwargs)
        for vector in page.get("vectors", []):
            vectors[vector["key"]] = (vector["data"]["float32"], vector.get("metadata") or {})
        if not page.get("nextToken"):
            return vectors
        kwargs["nextToken"] = page["nextToken"]


class DlqReader:
    """Collects every DLQ message once (received messages stay invisible while the soak reads on)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url
        self.bodies: list[dict[str, Any]] = []
        self._seen: set[str] = set()

    def drain(self) -> list[dict[str, Any]]:
        empty = 0
        while empty < 2:
            response = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, VisibilityTimeout=3600, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            empty = 0 if messages else empty + 1
            for message in messages:
                if message["MessageId"] in self._seen:
                    continue
                self._seen.add(message["MessageId"])
                try:
                    self.bodies.append(json.loads(message["Body"]))
                except ValueError:
                    self.bodies.append({"unparsable_body": message["Body"]})
        return self.bodies
