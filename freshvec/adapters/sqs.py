"""Dead letters as SQS messages: the ``DeadLetterQueue`` port over a boto3 ``sqs`` client."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from freshvec.errors import MisconfigurationError, TransientError, classify
from freshvec.ports import DeadLetterSendError
from freshvec.retry import RetryPolicy

SQS_MAX_MESSAGE_BYTES = 1024 * 1024  # SendMessage and the sum of one SendMessageBatch: 1 MiB
SQS_MAX_BATCH_ENTRIES = 10


class SqsDeadLetterQueue:
    """Dead letters as JSON SQS messages, sent with SendMessageBatch (10 entries, 1 MiB per call).

    A record whose dead letter would exceed SQS's 1 MiB (a Kinesis record can hold 1 MiB before base64)
    is reported undelivered: the sink then fails it, and once the mapping's retries are spent its
    on-failure destination keeps the payload (use an S3 destination, which holds the records).
    """

    def __init__(self, sqs_client: Any, queue_url: str, retry: RetryPolicy | None = None) -> None:
        self._client = sqs_client
        self.queue_url = queue_url
        self._retry = retry or RetryPolicy()

    def send(self, entries: Sequence[Mapping[str, Any]]) -> None:
        undelivered: dict[int, str] = {}
        batch: list[tuple[int, str]] = []
        batch_bytes = 0
        for position, entry in enumerate(entries):
            body = json.dumps(dict(entry), separators=(",", ":"))  # ASCII only: every character SQS allows
            size = len(body.encode("utf-8"))
            if size > SQS_MAX_MESSAGE_BYTES:
                undelivered[position] = f"dead letter is {size} bytes; SQS allows {SQS_MAX_MESSAGE_BYTES}"
                continue
            if batch and (len(batch) == SQS_MAX_BATCH_ENTRIES or batch_bytes + size > SQS_MAX_MESSAGE_BYTES):
                undelivered.update(self._send_batch(batch))
                batch, batch_bytes = [], 0
            batch.append((position, body))
            batch_bytes += size
        if batch:
            undelivered.update(self._send_batch(batch))
        if undelivered:
            raise DeadLetterSendError(undelivered)

    def _send_batch(self, batch: list[tuple[int, str]]) -> dict[int, str]:
        pending = {str(position): body for position, body in batch}
        failures: dict[int, str] = {}
        for attempt in range(self._retry.attempts):
            request = [{"Id": entry_id, "MessageBody": body} for entry_id, body in pending.items()]
            try:
                response = self._retry.call(
                    lambda request=request: self._client.send_message_batch(QueueUrl=self.queue_url, Entries=request),
                    "SQS SendMessageBatch",
                )
            except TransientError as exc:
                return {int(entry_id): str(exc) for entry_id in pending}
            except Exception as exc:
                if classify(exc) is MisconfigurationError:
                    raise MisconfigurationError(f"SQS SendMessageBatch to {self.queue_url} failed: {exc}") from exc
                raise
            failed = {f["Id"]: f for f in response.get("Failed", [])}
            failures = {int(i): f"{f.get('Code')}: {f.get('Message', '')}" for i, f in failed.items()}
            # Sender faults (a malformed entry) will not improve with retries; service faults might.
            pending = {i: pending[i] for i, f in failed.items() if not f.get("SenderFault")}
            if not pending:
                break
            if attempt + 1 < self._retry.attempts:
                self._retry.sleep(self._retry.delay(attempt + 1))
        return failures
