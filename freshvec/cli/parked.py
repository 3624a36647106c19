"""Where parked changes wait, and reading them: the sink DLQ (SQS messages) and the on-failure bucket (S3 objects).

A DLQ message holds one change the sink could not apply (``freshvec.sink_report.dead_letter_body``); an
on-failure object is the invocation record Lambda wrote for a discarded batch. Listing and showing leave both
in place; ``freshvec.cli.redrive`` decides what to re-send and removes an item once it was.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.outgoing import OutgoingRecord

DLQ_RECEIVE_WAIT_S = 1  # long polling: a short poll may miss messages on other SQS servers
# `redrive show` hides what it receives for at most this long while it looks further (a message released at once
# would come back on the next receive), and releases every message it received as soon as it is done.
DLQ_SHOW_VISIBILITY_S = 2
REDRIVEN_PREFIX = "redriven/"  # where redriven on-failure objects are moved, so they are not sent twice


@dataclass
class ParkedItem:
    """One parked change: where it waits, why, and what would be re-sent."""

    source: str  # "dlq" | "on-failure"
    ref: str  # SQS message id, or S3 object key
    records: list[OutgoingRecord]
    reason: str
    failed_at: str | None
    position: str  # shard and sequence number(s) where it was read
    handle: str = ""  # SQS receipt handle, or the S3 key
    unreadable: str | None = None  # why it cannot be re-sent (left where it is)


def decode_dlq_body(body: str) -> tuple[list[OutgoingRecord], str, str | None, str, str | None]:
    """(records, reason, failed_at, position, unreadable) of a sink DLQ message."""
    try:
        doc = json.loads(body)
        payload = base64.b64decode(doc["payload_b64"], validate=True)
        key = doc["partition_key"]
        if not isinstance(key, str) or not key:
            raise ValueError("empty partition key")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        return [], "", None, "", f"not a freshvec DLQ message: {exc}"
    reason = f"{doc.get('error_class', '?')}: {doc.get('error_message', '')}".strip()
    position = f"{doc.get('kinesis_shard_id', '?')}/{doc.get('kinesis_sequence_number', '?')}"
    sequence_number = str(doc.get("kinesis_sequence_number") or "")
    return [OutgoingRecord(payload, key, sequence_number)], reason, stated_time(doc.get("failed_at")), position, None


def stated_time(value: Any) -> str | None:
    """A parked item's time as stated: text as it is, anything else shown as malformed (listing must show it)."""
    if value is None or isinstance(value, str):
        return value
    return f"malformed: {json.dumps(value, default=str)[:60]}"


def receive_dlq(sqs: Any, queue_url: str, *, limit: int, visibility_s: int = 300) -> list[ParkedItem]:
    """Take up to ``limit`` DLQ messages out of sight for ``visibility_s`` (release or delete them after)."""
    items: list[ParkedItem] = []
    while len(items) < limit:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, limit - len(items)),
            VisibilityTimeout=visibility_s,
            WaitTimeSeconds=DLQ_RECEIVE_WAIT_S,
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        items.extend(_received(message) for message in messages)
    return items


def release_dlq(sqs: Any, queue_url: str, items: Iterable[ParkedItem]) -> None:
    """Make received messages visible again at once (listing must not hide them for long)."""
    entries = [{"Id": str(i), "ReceiptHandle": item.handle, "VisibilityTimeout": 0} for i, item in enumerate(items)]
    for start in range(0, len(entries), 10):
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries[start : start + 10])


def read_on_failure_object(body: bytes, key: str) -> ParkedItem:
    """An invocation record Lambda wrote for a discarded Kinesis batch, with the batch's records.

    S3 destinations hold the metadata (``requestContext``, ``responseContext``, ``KinesisBatchInfo``) and
    the invocation payload under ``payload``, a JSON string of ``{"Records": [{"kinesis": {"data",
    "partitionKey", "sequenceNumber", ...}, ...}]}`` (an object is accepted too).
    """
    try:
        doc = json.loads(body)
        info = doc.get("KinesisBatchInfo") or {}
        context = doc.get("requestContext") or {}
        reason = (
            f"{context.get('condition', 'discarded')} after {context.get('approximateInvokeCount', '?')} invocation(s)"
        )
        response = doc.get("responseContext") or {}
        if response.get("functionError"):
            reason += f" ({response['functionError']})"
        position = (
            f"{info.get('shardId', '?')}/{info.get('startSequenceNumber', '?')}..{info.get('endSequenceNumber', '?')}"
        )
        payload = doc.get("payload")
        if payload is None:
            missing = "no payload: only the sequence range is known; read it from the stream while retained"
            return ParkedItem("on-failure", key, [], reason, stated_time(doc.get("timestamp")), position, key, missing)
        if isinstance(payload, str):
            payload = json.loads(payload)
        kinesis_records = [r["kinesis"] for r in payload["Records"]]
        kinesis_records.sort(key=lambda r: int(r.get("sequenceNumber", 0)))
        records = [
            OutgoingRecord(
                base64.b64decode(r["data"], validate=True), r["partitionKey"], str(r.get("sequenceNumber", ""))
            )
            for r in kinesis_records
        ]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        return ParkedItem("on-failure", key, [], "", None, "", key, f"not a Lambda invocation record: {exc}")
    return ParkedItem("on-failure", key, records, reason, stated_time(doc.get("timestamp")), position, key)


def list_on_failure(s3: Any, bucket: str, *, limit: int) -> list[ParkedItem]:
    items: list[ParkedItem] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if obj["Key"].startswith(REDRIVEN_PREFIX):
                continue
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            items.append(read_on_failure_object(body, obj["Key"]))
            if len(items) >= limit:
                return items
    return items


def move_redriven(s3: Any, bucket: str, key: str) -> None:
    """Copy to ``redriven/<key>``, then delete: the object stays for audit but is not sent again."""
    s3.copy_object(Bucket=bucket, Key=REDRIVEN_PREFIX + key, CopySource={"Bucket": bucket, "Key": key})
    s3.delete_object(Bucket=bucket, Key=key)


def peek_parked(clients: ClientFactory, resources: StackResources, *, source: str, limit: int) -> list[ParkedItem]:
    """Parked items for listing/showing; DLQ messages are made visible again before returning."""
    items: list[ParkedItem] = []
    if source in ("dlq", "all"):
        sqs = clients("sqs")
        received = receive_dlq(sqs, resources.dlq_url, limit=limit, visibility_s=30)
        release_dlq(sqs, resources.dlq_url, received)
        items.extend(received)
    if source in ("on-failure", "all"):
        items.extend(list_on_failure(clients("s3"), resources.on_failure_bucket, limit=limit))
    return items


def find_parked(
    clients: ClientFactory, resources: StackResources, ref: str, *, source: str, limit: int
) -> tuple[ParkedItem | None, int]:
    """The parked item ``ref`` (a DLQ message id or an on-failure object key) and how many items were looked at.

    DLQ messages are received with a visibility of ``DLQ_SHOW_VISIBILITY_S`` and all made visible again at
    once before returning, the sought one too: showing an item never hides the queue from the sink's operators.
    An on-failure object is read by its key, not found by listing the bucket.
    """
    looked = 0
    if source in ("dlq", "all"):
        sqs = clients("sqs")
        received: list[ParkedItem] = []
        seen: set[str] = set()
        try:
            while len(seen) < limit:
                messages = sqs.receive_message(
                    QueueUrl=resources.dlq_url,
                    MaxNumberOfMessages=min(10, limit - len(seen)),
                    VisibilityTimeout=DLQ_SHOW_VISIBILITY_S,
                    WaitTimeSeconds=DLQ_RECEIVE_WAIT_S,
                ).get("Messages", [])
                new = [m for m in messages if m["MessageId"] not in seen]
                if not new:  # nothing left, or only messages whose short visibility has already run out
                    release_dlq(sqs, resources.dlq_url, [_received(m) for m in messages])
                    break
                for message in new:
                    seen.add(message["MessageId"])
                    received.append(_received(message))
                found = next((item for item in received if item.ref == ref), None)
                if found is not None:
                    return found, len(seen)
        finally:
            release_dlq(sqs, resources.dlq_url, received)
        looked += len(seen)
    if source in ("on-failure", "all") and not ref.startswith(REDRIVEN_PREFIX):
        from botocore.exceptions import ClientError

        s3 = clients("s3")
        try:
            body = s3.get_object(Bucket=resources.on_failure_bucket, Key=ref)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404", "NotFound"):
                raise
        else:
            return read_on_failure_object(body, ref), looked + 1
        looked += 1
    return None, looked


def _received(message: dict[str, Any]) -> ParkedItem:
    records, reason, failed_at, position, unreadable = decode_dlq_body(message.get("Body", ""))
    return ParkedItem(
        "dlq", message["MessageId"], records, reason, failed_at, position, message["ReceiptHandle"], unreadable
    )
