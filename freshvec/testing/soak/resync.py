"""Re-syncs during the soak: a redrive of part of the DLQ and a backfill read early and sent late.

Both work as the operator tools do: read the current row from the table, stamp the read
(``versions.keyspaces_read_stamp`` of the time before it), and send it as a change event (origin REDRIVE or
BACKFILL) through the pipeline's Kinesis producer with the one writer (``KinesisWriter`` in the calls
``plan_calls`` groups them into). A redriven key whose row no longer exists becomes a DELETE at the read's
stamp, or nothing when no vector is stored. A re-sync the sink cannot place (``AmbiguousResyncError``) is
parked in the DLQ and redriven again, as an operator would with ``freshvec redrive send``.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from freshvec import constants as c
from freshvec.adapters.kinesis import KinesisWriter
from freshvec.config import PipelineConfig
from freshvec.errors import AmbiguousResyncError, PoisonRecordError
from freshvec.events import ChangeEvent, format_timestamp
from freshvec.keys import partition_key, vector_key
from freshvec.outgoing import OutgoingRecord, plan_calls
from freshvec.versions import keyspaces_read_stamp

Row = dict[str, Any]


class ResyncSender:
    """Builds re-sync change events and sends them through one ``KinesisWriter``, call by call."""

    def __init__(self, config: PipelineConfig, kinesis: Any, stream_name: str) -> None:
        self.config = config
        self.writer = KinesisWriter(kinesis, stream_name)
        self._count = 0

    def event(self, key: Row, row: Row | None, version: str | None, origin: str) -> ChangeEvent:
        """The row as found (None: a DELETE of ``key`` at ``version``)."""
        self._count += 1
        op = "DELETE" if row is None else ("INSERT" if origin == "BACKFILL" else "UPDATE")
        return ChangeEvent(
            keyspace=self.config.keyspace,
            table=self.config.table,
            op=op,
            key={column: key[column] for column in self.config.primary_key},
            new=row,
            old=None,
            seq=f"{origin.lower()}-{self._count}",
            shard=origin.lower(),
            ts=format_timestamp(datetime.now(UTC)),
            origin=origin,
            version=version,
        )

    def send(self, events: Sequence[ChangeEvent]) -> None:
        records = [OutgoingRecord(e.to_bytes(), self._partition_key(e.key), e.seq) for e in events]
        for call in plan_calls(records):
            self.writer.put([records[i] for i in call])

    def _partition_key(self, key: Row) -> str:
        try:
            text = vector_key(key, self.config.key_columns)
        except PoisonRecordError:  # a key too long for a vector: the sink parks it, the stream still takes it
            text = json.dumps([key.get(k) for k in self.config.key_columns], separators=(",", ":"))
        return partition_key(text)


def receive_dlq(sqs: Any, queue_url: str, take: Callable[[Mapping[str, Any]], bool]) -> list[dict[str, Any]]:
    """Take the DLQ messages ``take`` accepts out of the queue (deleted: redriven); the others stay visible.

    Returns the bodies taken."""
    taken: list[dict[str, Any]] = []
    seen: set[str] = set()
    release: list[str] = []
    empty = 0
    while empty < 2:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=120, WaitTimeSeconds=0
        ).get("Messages", [])
        empty = 0 if messages else empty + 1
        drained = []
        for message in messages:
            if message["MessageId"] in seen:
                continue
            seen.add(message["MessageId"])
            body = json.loads(message["Body"])
            if take(body):
                taken.append(body)
                drained.append(message["ReceiptHandle"])
            else:
                release.append(message["ReceiptHandle"])
        for start in range(0, len(drained), 10):
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(drained[start : start + 10])]
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    for start in range(0, len(release), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(release[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
    return taken


def is_ambiguous_resync(body: Mapping[str, Any]) -> bool:
    """A DLQ message of a re-sync the sink could not place: it is read again (``redrive``)."""
    return body.get("error_class") == AmbiguousResyncError.__name__


def event_key(body: Mapping[str, Any]) -> Row | None:
    """The primary key of the change a DLQ message parked (None: not a change event)."""
    try:
        event = json.loads(base64.b64decode(body.get("payload_b64", ""), validate=True))
    except ValueError:
        return None
    key = event.get("key") if isinstance(event, dict) else None
    return key if isinstance(key, dict) and key else None


def stored_versions(s3vectors: Any, bucket: str, index: str, keys: Sequence[str]) -> dict[str, str | None]:
    """The ``_ver`` of each stored vector (GetVectors, 100 keys a call); keys without a vector are left out."""
    found: dict[str, str | None] = {}
    for start in range(0, len(keys), c.S3V_GET_BATCH):
        response = s3vectors.get_vectors(
            vectorBucketName=bucket,
            indexName=index,
            keys=list(keys[start : start + c.S3V_GET_BATCH]),
            returnMetadata=True,
        )
        for vector in response.get("vectors", []):
            raw = (vector.get("metadata") or {}).get(c.META_VERSION)
            found[vector["key"]] = str(raw) if raw is not None else None
    return found


def redrive(
    sender: ResyncSender,
    read: Callable[[Row], tuple[Row | None, Any]],
    stored: Callable[[Sequence[str]], dict[str, str | None]],
    keys: Iterable[Row],
) -> Counter[str]:
    """Re-sync each parked key from the table: its current row, or a DELETE when the row is gone (nothing when
    no vector is stored either), at the read's stamp."""
    counts: Counter[str] = Counter()
    distinct = {vector_key(key, sender.config.key_columns): key for key in keys}
    rows = {}
    for text, key in distinct.items():
        stamp = keyspaces_read_stamp(time.time()).text()
        rows[text] = (read(key)[0], stamp)
    versions = stored([text for text, (row, _) in rows.items() if row is None])
    events = []
    for text, (row, version) in rows.items():
        if row is not None:
            events.append(sender.event(distinct[text], row, version, "REDRIVE"))
            counts["redrive_puts_sent"] += 1
        elif text in versions:
            events.append(sender.event(distinct[text], None, version, "REDRIVE"))
            counts["redrive_deletes_sent"] += 1
        else:
            counts["redrive_nothing_stored"] += 1
    sender.send(events)
    return counts


def backfill(sender: ResyncSender, snapshot: Iterable[tuple[Row, str]]) -> int:
    """Send rows read earlier (with their read's stamp) as BACKFILL inserts; returns how many."""
    events = [sender.event(row, row, version, "BACKFILL") for row, version in snapshot]
    for start in range(0, len(events), 500):
        sender.send(events[start : start + 500])
    return len(events)
