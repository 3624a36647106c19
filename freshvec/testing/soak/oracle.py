"""The soak's oracle: what the index and the DLQ must hold, built from the final table state, and the report.

The expectations come from the table and the documented rules (``freshvec.testing.soak.rules``), never from the
pipeline's own code: for every row left in the table, the vector is present, its data is the local model's
embedding of the row's current text (cosine >= 0.999), its metadata is the documented mapping of the row's
columns, its ``_fp`` the fingerprint of that text and its ``_ver`` the row's version (the newest cell write
time); every deleted, expired, text-less or poison key is absent; every poison change is in the DLQ with its
payload and a reason, except those a redrive took out of it. Also here: reading the index and the DLQ with
clients no fault touches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from freshvec import constants as c
from freshvec.testing.soak.rules import Poison, SoakRules
from freshvec.testing.soak.workload import PoisonChange

COSINE_MIN = 0.999
# Provenance every vector carries; its values are the pipeline's own order (docs/exactness.md), which the
# oracle does not recompute: an older state shows in the content (text, metadata, fingerprint, vector).
_SOURCE_POSITION_KEYS = (c.META_SEQUENCE, c.META_CHANGED_AT, c.META_VERSION)
_PIPELINE_KEYS = (*_SOURCE_POSITION_KEYS, c.META_FINGERPRINT, c.META_VERSION, c.META_CHUNK, c.META_CHUNKS)
# The workload's texts are single sentences, far below the chunk bound: each row is one vector, chunk 0 of 1.
_ONE_CHUNK = {c.META_CHUNK: 0, c.META_CHUNKS: 1}


@dataclass(frozen=True)
class ExpectedVector:
    text: str
    metadata: dict[str, Any]  # the configured columns (without the text and the pipeline's keys)
    fingerprint: str
    version: int


@dataclass
class Expectations:
    """What the index and the DLQ must hold, derived from the final table state and the workload's poison."""

    present: dict[str, ExpectedVector]  # vector key -> what its vector must be
    absent: set[str]  # vector keys that must not be in the index
    poison: dict[str, str]  # DLQ identity of each poison change (``dlq_identity``) -> why it is poison
    live_poison_keys: set[str]  # canonical keys poisoned while they live on: identities carry the title
    poison_raw: set[bytes]

    @property
    def poison_keys(self) -> dict[str, str]:
        return self.poison


def _title_mark(title: Any) -> str:
    return hashlib.sha256(str(title).encode("utf-8")).hexdigest()[:16]


def poison_identity(canonical_key: str, title: Any, live: bool) -> str:
    """A poison change's identity: its key, and for keys that live on (poisoned more than once, maybe) the
    oversize title that made it poison."""
    return f"row:{canonical_key}#{_title_mark(title)}" if live else f"row:{canonical_key}"


def build_expectations(
    rules: SoakRules,
    final_rows: Iterable[tuple[Mapping[str, Any], int]],
    removed_keys: Sequence[Mapping[str, Any]],
    poison_changes: Sequence[PoisonChange],
    poison_raw: Sequence[bytes],
) -> Expectations:
    """Apply the documented rules to the final table (rows with their versions) and the workload's poison."""
    present: dict[str, ExpectedVector] = {}
    absent: set[str] = set()
    live = {rules.canonical_key(p.key) for p in poison_changes if p.live}
    poison = {
        poison_identity(rules.canonical_key(p.key), p.title, p.live): "the workload wrote it as poison"
        for p in poison_changes
    }
    for row, version in final_rows:
        canonical = rules.canonical_key(row)
        identity = poison_identity(canonical, row.get("title"), canonical in live)
        try:
            key = rules.vector_key(row)
        except Poison as exc:
            poison[identity] = str(exc)
            continue
        try:
            metadata = rules.metadata(row)
        except Poison as exc:
            poison[identity] = str(exc)
            absent.add(key)
            continue
        text = row.get(rules.text_field)
        if not isinstance(text, str) or not text.strip():
            absent.add(key)
            continue
        present[key] = ExpectedVector(text, metadata, rules.fingerprint(text), version)
    for removed in removed_keys:
        try:
            key = rules.vector_key(removed)
        except Poison:
            continue
        if key not in present:
            absent.add(key)
    return Expectations(present, absent - set(present), poison, live, set(poison_raw))


@dataclass
class SoakReport:
    changes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    rows_final: int = 0
    expected_present: int = 0
    expected_absent: int = 0
    index_vectors: int = 0
    lost: int = 0  # a row's vector missing
    stale_content: int = 0  # present with the wrong embedding, metadata, fingerprint or version
    zombies: int = 0  # present though deleted, expired, text-less or poison
    unknown_vectors: int = 0  # keys the workload never wrote
    dlq_expected: int = 0
    dlq_actual: int = 0  # distinct expected poison changes found in the DLQ with payload and reason
    dlq_messages: int = 0
    dlq_duplicates: int = 0  # the same poison change parked more than once (re-deliveries)
    dlq_unexpected: int = 0  # DLQ messages for changes that were not poison
    dlq_without_reason: int = 0
    dlq_redriven: int = 0  # distinct poison changes a redrive took out of the DLQ (not expected there after)
    resync: dict[str, int] = field(default_factory=dict)  # what the redrive and the backfill sent
    parked_records: int = 0  # records the mapping sent to its on-failure destination
    ttl_rows_left: int = 0
    seconds: float = 0.0
    sync_timeout: str | None = None
    faults: dict[str, int] = field(default_factory=dict)
    pipeline: dict[str, Any] = field(default_factory=dict)
    corruption: dict[str, Any] = field(default_factory=dict)  # the damage done, the repair's and check's exits
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
            and self.corruption.get("reconcile_after_repair_exit_code", 0) == 0
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
            "soak_dlq_redriven": self.dlq_redriven,
            "soak_resync_events": sum(v for k, v in self.resync.items() if k.endswith("_sent")),
            "soak_faults_injected": self.faults_injected,
            "soak_corrupted_vectors": sum(self.corruption.get("damaged", {}).values()),
            "soak_reconcile_after_repair_exit_code": self.corruption.get("reconcile_after_repair_exit_code"),
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
            f"{self.dlq_unexpected} unexpected, {self.dlq_without_reason} without a reason; "
            f"{self.dlq_redriven} redriven)",
            f"re-syncs             {_counts_text(self.resync)}",
            f"on-failure parked    {self.parked_records} records",
            f"faults injected      {self.faults_injected}  ({_counts_text(self.faults)})",
            f"corruption + repair  {_counts_text(self.corruption.get('damaged', {}))}; reconcile --repair exit "
            f"{self.corruption.get('repair_exit_code')}, the reconcile after it exit "
            f"{self.corruption.get('reconcile_after_repair_exit_code')}",
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
    rules: SoakRules,
    expectations: Expectations,
    index: Mapping[str, tuple[Sequence[float], Mapping[str, Any]]],
    embed: Callable[[Sequence[str]], list[list[float]]],
    report: SoakReport,
) -> None:
    """Count lost, stale and unexpected vectors (``index``: key -> (vector, metadata)); ``embed`` is the model."""
    report.expected_present = len(expectations.present)
    report.expected_absent = len(expectations.absent)
    report.index_vectors = len(index)
    keys = sorted(expectations.present)
    texts = [expectations.present[key].text for key in keys]
    vectors = dict(zip(keys, embed(texts), strict=True)) if texts else {}
    for key in keys:
        expected = expectations.present[key]
        if key not in index:
            report.lost += 1
            report.differences.append(f"lost: {key}")
            continue
        stored_vector, stored_metadata = index[key]
        problems = _differences(rules, expected, vectors[key], stored_vector, stored_metadata)
        if problems:
            report.stale_content += 1
            report.differences.append(f"stale: {key}: {'; '.join(problems)}")
    for key in index:
        if key in expectations.absent:
            report.zombies += 1
            stored = index[key][1]
            found = ", ".join(f"{k} {stored.get(k)}" for k in (c.META_VERSION, c.META_SEQUENCE) if k in stored)
            report.differences.append(f"should be absent: {key} ({found})")
        elif key not in expectations.present:
            report.unknown_vectors += 1
            report.differences.append(f"unknown vector: {key}")


def _differences(
    rules: SoakRules,
    expected: ExpectedVector,
    vector: Sequence[float],
    stored_vector: Sequence[float],
    stored_metadata: Mapping[str, Any],
) -> list[str]:
    problems = []
    similarity = _cosine(vector, stored_vector)
    if similarity < COSINE_MIN:
        problems.append(f"cosine {similarity:.4f} with the current text's embedding")
    columns = {k: v for k, v in stored_metadata.items() if k not in _PIPELINE_KEYS and k != rules.text_field}
    wrong = sorted(
        k for k in set(columns) | set(expected.metadata) if not _same_value(expected.metadata.get(k), columns.get(k))
    )
    if wrong:
        shown = ", ".join(f"{k} {columns.get(k)!r:.40} (table {expected.metadata.get(k)!r:.40})" for k in wrong[:4])
        problems.append(f"metadata differs in {shown}")
    if not rules.stored_text_ok(expected.text, stored_metadata.get(rules.text_field)):
        problems.append(f"stored text {str(stored_metadata.get(rules.text_field))!r:.60} is not the row's")
    if stored_metadata.get(c.META_FINGERPRINT) != expected.fingerprint:
        problems.append(
            f"{c.META_FINGERPRINT} {stored_metadata.get(c.META_FINGERPRINT)} (text's {expected.fingerprint})"
        )
    # ``_ver`` is "<write id>;<version>": the version is the live record's position (or a re-sync's read), which
    # the table cannot say; what every vector must carry is a write id and a version (docs/change-event.md).
    write_id, _, version = str(stored_metadata.get(c.META_VERSION) or "").partition(";")
    if not write_id or not version:
        problems.append(f"{c.META_VERSION} {stored_metadata.get(c.META_VERSION)!r} lacks a write id or a version")
    for key, value in _ONE_CHUNK.items():
        if stored_metadata.get(key) != value:
            problems.append(f"{key} {stored_metadata.get(key)!r} (one chunk: {value})")
    missing_position = [k for k in _SOURCE_POSITION_KEYS if k not in stored_metadata]
    if missing_position:
        problems.append(f"no {', '.join(missing_position)}")
    return problems


def compare_dlq(
    rules: SoakRules,
    expectations: Expectations,
    messages: Sequence[Mapping[str, Any]],
    report: SoakReport,
    redriven: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Match DLQ messages (parsed bodies) to the expected poison changes, by payload.

    ``redriven``: the bodies a redrive took out of the DLQ. Their changes are no longer expected there (the
    redrive re-synced their keys from the table instead), though one may be parked again (a re-delivered
    copy, or a re-sync read while the row was still poison).
    """
    gone: set[str] = set()
    for body in redriven:
        identity = dlq_identity(rules, expectations, _payload(body))
        if identity is None:  # the redrive took out something that should never have been parked
            report.dlq_unexpected += 1
            report.differences.append(f"unexpected DLQ message (redriven): {_payload(body)[:160]!r}")
        else:
            gone.add(identity)
    expected = (set(expectations.poison) | {f"raw:{p.hex()}" for p in expectations.poison_raw}) - gone
    report.dlq_redriven = len(gone)
    report.dlq_expected = len(expected)
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
        payload = _payload(body)
        identity = dlq_identity(rules, expectations, payload)
        if identity is None:
            report.dlq_unexpected += 1
            report.differences.append(
                f"unexpected DLQ message ({body.get('error_class')}: {body.get('error_message')}): {payload[:160]!r}"
            )
            continue
        found[identity] += 1
    report.dlq_actual = len(expected & set(found))
    report.dlq_duplicates = sum(found.values()) - len(found)
    for identity in sorted(expected - set(found)):
        reason = expectations.poison.get(identity, "raw record")
        report.differences.append(f"poison change not in the DLQ: {identity[:120]} ({reason[:80]})")


def _payload(body: Mapping[str, Any]) -> bytes:
    try:
        return base64.b64decode(body.get("payload_b64", ""), validate=True)
    except ValueError:
        return b""


def dlq_identity(rules: SoakRules, expectations: Expectations, payload: bytes) -> str | None:
    """Which expected poison change a DLQ payload is (None: none of them)."""
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
        key_values = _record_key(rules, record)
    if not isinstance(key_values, dict):
        return None
    canonical = rules.canonical_key(key_values)
    title = (event.get("new") or {}).get("title") if isinstance(event.get("new"), dict) else None
    identity = poison_identity(canonical, title, canonical in expectations.live_poison_keys)
    return identity if identity in expectations.poison else None


def _record_key(rules: SoakRules, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The primary key of a Keyspaces Streams record: each key cell holds one typed member (``{"textT": ..}``,
    integers as decimal text)."""
    cells = {**(record.get("partitionKeys") or {}), **(record.get("clusteringKeys") or {})}
    key: dict[str, Any] = {}
    for column in rules.key_columns:
        cell = cells.get(column)
        if not isinstance(cell, dict) or len(cell) != 1:
            return None
        value = next(iter(cell.values()))
        is_integer = rules.columns[column] in ("int", "bigint", "smallint", "tinyint", "varint")
        key[column] = int(value) if is_integer else value
    return key


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
