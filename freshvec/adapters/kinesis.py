"""The ``ChangeStreamWriter`` port over Kinesis PutRecords: only rejected records are re-sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from freshvec.errors import MISCONFIGURATION_CODES, MisconfigurationError, TransientError, classify, error_code
from freshvec.outgoing import OutgoingRecord
from freshvec.retry import RetryPolicy

# PutRecords retries: quick at first, at most 5 s apart; the budget counts attempts without progress.
KINESIS_RETRY = RetryPolicy(attempts=20, base_delay_s=0.05, max_delay_s=5.0)


class KinesisWriter:
    """PutRecords until Kinesis accepted every record of a call, re-sending only the records it rejected.

    Calls come from ``plan_calls`` (one change per row per call), so re-sending a rejected record cannot put
    it behind a later change of its row. Whole-call errors are classified once: transient ones are retried
    with backoff, anything else is a misconfiguration. ``retry.attempts`` counts attempts without progress:
    a call in which Kinesis accepted some records starts the count over. ``before_retry`` runs before every
    re-send (the forwarder renews its lease there, and raises to stop writing when it lost it).
    """

    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        *,
        retry: RetryPolicy = KINESIS_RETRY,
        should_stop: Callable[[], bool] = lambda: False,
        on_throttle: Callable[[], None] = lambda: None,
        before_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self._kinesis = kinesis
        self._retry = retry
        self._stream_name = stream_name
        self._should_stop = should_stop
        self._on_throttle = on_throttle
        self._before_retry = before_retry

    def put(
        self,
        records: Sequence[OutgoingRecord],
        *,
        should_stop: Callable[[], bool] | None = None,
        on_throttle: Callable[[], None] | None = None,
        before_retry: Callable[[], None] | None = None,
    ) -> int:
        """Send one call's records until Kinesis accepted all of them; returns the number of PutRecords calls.

        Raises TransientError when ``should_stop`` says time is up (or retries stop helping) before that,
        MisconfigurationError when retrying cannot help (stream missing, access denied, KMS key unusable).
        The keyword callbacks override the writer's own for this call; whatever ``before_retry`` raises
        (a lost lease) stops the call at once.
        """
        should_stop = should_stop or self._should_stop
        on_throttle = on_throttle or self._on_throttle
        before_retry = before_retry or self._before_retry
        pending = list(records)
        calls = 0
        attempts = 0
        while pending:
            calls += 1
            attempts += 1
            try:
                response = self._kinesis.put_records(
                    StreamName=self._stream_name,
                    Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
                )
            except ClientError as exc:
                if classify(exc) is not TransientError:
                    raise MisconfigurationError(f"PutRecords to {self._stream_name} failed: {exc}") from exc
                on_throttle()
                self._wait(f"PutRecords failed: {error_code(exc)}", attempts, should_stop, before_retry)
                continue
            if not response.get("FailedRecordCount"):
                return calls
            results = response["Records"]
            failed = [i for i, result in enumerate(results) if result.get("ErrorCode")]
            codes = sorted({results[i]["ErrorCode"] for i in failed})
            refused = [code for code in codes if code in MISCONFIGURATION_CODES]
            if refused:
                message = next(results[i].get("ErrorMessage") for i in failed if results[i]["ErrorCode"] in refused)
                raise MisconfigurationError(f"PutRecords to {self._stream_name} refused records: {refused}: {message}")
            on_throttle()
            if len(failed) < len(pending):
                attempts = 0  # progress was made; start the count over
            pending = [pending[i] for i in failed]
            why = f"{len(pending)} records to re-send after {', '.join(codes)}"
            self._wait(why, max(attempts, 1), should_stop, before_retry)
        return calls

    def _wait(self, why: str, attempts: int, should_stop: Callable[[], bool], before_retry: Callable[[], None]) -> None:
        if should_stop():
            raise TransientError(f"Kinesis did not accept the batch before the deadline ({why})")
        if self._retry.exhausted(attempts):
            raise TransientError(f"Kinesis did not accept the batch after {attempts} attempts ({why})")
        self._retry.sleep(self._retry.delay(attempts))
        before_retry()
