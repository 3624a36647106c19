"""A Kinesis event source mapping on one machine: the loop AWS Lambda runs in front of the sink.

It honours the mapping settings the CDK app deploys (``SinkConfig``): batch size, batching window,
ReportBatchItemFailures (restart from the lowest failed sequence number), bisect on function error
(splitting does not consume the retry quota), a finite retry quota, a maximum record age, and an
on-failure destination that receives the same JSON document Lambda writes to an S3 destination for a
Kinesis source (invocation record plus the batch payload).

One worker thread per Kinesis shard reads it in order. With a parallelization factor of N, up to N
batches of a shard are processed at once, records spread over N lanes by partition key so that the
changes of one key stay in order (as Lambda does); the shard's checkpoint moves once every lane is done.
A child shard starts only after its parents are read to the end. Checkpoints are kept in memory, as the
managed service keeps them out of the user's sight. Anything that goes wrong while reading is retried
from the checkpoint, so a crashed step is repeated, never skipped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from freshvec.config import SinkConfig
from freshvec.retry import RetryPolicy

logger = logging.getLogger(__name__)

LambdaEvent = dict[str, Any]
Handler = Callable[[LambdaEvent], dict[str, Any] | None]  # the function: event -> response
DoneListener = Callable[[Sequence[dict[str, Any]], str], None]  # (Lambda records, outcome) after each batch

APPLIED = "applied"
PARKED = "parked"
CONDITION_RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
CONDITION_RECORD_AGE = "RecordAgeExceeded"
_READ_LIMIT = 10_000  # GetRecords maximum
_SHARD_DISCOVERY_S = 1.0


@dataclass(frozen=True)
class MappingSettings:
    batch_size: int = 100
    batching_window_s: float = 1.0
    retry_attempts: int = 5
    max_record_age_s: float = 3600
    bisect_on_error: bool = True
    parallelization_factor: int = 1
    # An idle shard is polled once a second, as Lambda does for a standard (shared-throughput) Kinesis consumer
    # (https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html#kinesis-polling-and-batching); a read
    # that returned records is followed by the next one at once.
    poll_interval_s: float = 1.0
    retry_base_delay_s: float = 0.05  # back-off ceiling after the first failed invocation, doubled each retry
    retry_max_delay_s: float = 2.0

    def retry_policy(self) -> RetryPolicy:
        """Retries of a failed invocation: ``retry_attempts`` retries after the first try, with full jitter."""
        return RetryPolicy(
            attempts=self.retry_attempts + 1,
            base_delay_s=self.retry_base_delay_s,
            max_delay_s=self.retry_max_delay_s,
        )

    @classmethod
    def from_sink_config(cls, sink: SinkConfig, **overrides: Any) -> MappingSettings:
        return cls(
            batch_size=sink.batch_size,
            batching_window_s=float(sink.batching_window_s),
            retry_attempts=sink.retry_attempts,
            max_record_age_s=float(sink.max_record_age_s),
            bisect_on_error=sink.bisect_on_error,
            parallelization_factor=sink.parallelization_factor,
            **overrides,
        )


class OnFailureDestination(Protocol):
    def send(self, shard_id: str, document: dict[str, Any]) -> None: ...


class S3OnFailureDestination:
    """Writes each discarded batch as one object, under the key layout Lambda uses for S3 destinations."""

    def __init__(self, s3_client: Any, bucket: str, mapping_id: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._mapping_id = mapping_id

    def send(self, shard_id: str, document: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        key = f"aws/lambda/{self._mapping_id}/{shard_id}/{now:%Y/%m/%d}/{now:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=json.dumps(document).encode("utf-8"))

    def documents(self) -> list[dict[str, Any]]:
        """Every document written so far (oldest key first)."""
        found: list[dict[str, Any]] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix="aws/lambda/"):
            for item in page.get("Contents", []):
                body = self._s3.get_object(Bucket=self._bucket, Key=item["Key"])["Body"].read()
                found.append(json.loads(body))
        return found


@dataclass
class MappingStats:
    invocations: int = 0
    records_delivered: int = 0  # records in successful (or partially successful) invocations
    function_errors: int = 0  # invocations that raised or returned an unusable response
    partial_failures: int = 0  # invocations that reported batchItemFailures
    retries: int = 0
    bisections: int = 0
    records_parked: int = 0  # sent to the on-failure destination
    records_aged_out: int = 0
    read_errors: int = 0
    # Lambda's IteratorAge for Kinesis: when the last batch was invoked, the age of its last record (now minus its
    # arrival in the stream); None before the first batch
    # (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html).
    iterator_age_ms: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def invoked(self, batch: list[dict[str, Any]]) -> None:
        """One invocation of ``batch``: counted, and the iterator age of its last record."""
        arrival = batch[-1]["kinesis"]["approximateArrivalTimestamp"]
        with self._lock:
            self.invocations += 1
            self.iterator_age_ms = max(0.0, (time.time() - float(arrival)) * 1000)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class _FunctionError(Exception):
    """The function raised, or answered with something Lambda treats as a whole-batch failure."""


class KinesisEventSourceMapping:
    """Polls every shard of one Kinesis stream and delivers batches to ``handler`` like Lambda does."""

    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        handler_factory: Callable[[], Handler],
        settings: MappingSettings,
        on_failure: OnFailureDestination | None,
        *,
        function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:freshvec-sink-local",
        on_done: DoneListener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kinesis = kinesis
        self._stream_name = stream_name
        self._handler_factory = handler_factory
        self._settings = settings
        self._retry = settings.retry_policy()
        self._on_failure = on_failure
        self._function_arn = function_arn
        self._on_done = on_done
        self._clock = clock
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._finished: set[str] = set()
        self._busy: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._discovery: threading.Thread | None = None
        self.stats = MappingStats()
        summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        self.stream_arn: str = summary["StreamARN"]
        self._region = self.stream_arn.split(":")[3]
        self._role_arn = f"arn:aws:iam::{self.stream_arn.split(':')[4]}:role/freshvec-sink-local"
        self._endings: dict[str, str] = {}  # shard id -> ending sequence number, once the shard is closed

    @property
    def settings(self) -> MappingSettings:
        return self._settings

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._discover_shards()
        self._discovery = threading.Thread(target=self._discovery_loop, name="esm-discovery", daemon=True)
        self._discovery.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        threads = [*self._threads.values(), *([self._discovery] if self._discovery else [])]
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def idle(self) -> bool:
        """True when no shard holds a batch it has read but not yet finished."""
        with self._lock:
            return not any(self._busy.values())

    def _discovery_loop(self) -> None:
        while not self._stop.wait(_SHARD_DISCOVERY_S):
            try:
                self._discover_shards()
            except Exception:  # a failed ListShards is retried on the next tick
                logger.exception("listing the shards of %s failed", self._stream_name)

    def _discover_shards(self) -> None:
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": self._stream_name}
        while True:
            page = self._kinesis.list_shards(**kwargs)
            shards.extend(page["Shards"])
            if not page.get("NextToken"):
                break
            kwargs = {"NextToken": page["NextToken"]}
        known = {s["ShardId"] for s in shards}
        with self._lock:
            for shard in shards:
                ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                if ending is not None:
                    self._endings[shard["ShardId"]] = ending
            for shard in shards:
                shard_id = shard["ShardId"]
                if shard_id in self._threads:
                    continue
                parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]
                # A parent no longer listed has been trimmed away: nothing left to wait for.
                if any(p in known and p not in self._finished for p in parents):
                    continue
                thread = threading.Thread(
                    target=self._shard_loop, args=(shard_id,), name=f"esm-{shard_id}", daemon=True
                )
                self._threads[shard_id] = thread
                self._busy[shard_id] = False
                thread.start()

    # ---- one shard ---------------------------------------------------------------------------
    def _shard_loop(self, shard_id: str) -> None:
        handlers = self._start_handlers(shard_id)
        if not handlers:
            return
        lanes = ThreadPoolExecutor(len(handlers), thread_name_prefix=f"esm-{shard_id}") if len(handlers) > 1 else None
        try:
            self._read_shard(shard_id, handlers, lanes)
        finally:
            if lanes is not None:
                lanes.shutdown(wait=True)

    def _start_handlers(self, shard_id: str) -> list[Handler]:
        """One function instance per lane; a failed start (a cold start gone wrong) is retried."""
        handlers: list[Handler] = []
        while len(handlers) < self._settings.parallelization_factor and not self._stop.is_set():
            try:
                handlers.append(self._handler_factory())
            except Exception:
                logger.exception("starting the function for %s failed; retrying", shard_id)
                self._stop.wait(self._settings.retry_max_delay_s)
        return handlers if len(handlers) == self._settings.parallelization_factor else []

    def _read_shard(self, shard_id: str, handlers: list[Handler], lanes: ThreadPoolExecutor | None) -> None:
        checkpoint: str | None = None
        iterator: str | None = None
        buffer: list[dict[str, Any]] = []
        while not self._stop.is_set():
            try:
                if iterator is None:
                    iterator = self._iterator(shard_id, checkpoint)
                response = self._kinesis.get_records(ShardIterator=iterator, Limit=_READ_LIMIT)
            except Exception as exc:  # noqa: BLE001 - every read failure is handled the same way
                # Expired iterators, throttling, a dropped connection: re-read from the checkpoint.
                self.stats.add(read_errors=1)
                logger.warning("reading %s failed (%s); retrying from the checkpoint", shard_id, exc)
                iterator, buffer = None, []
                self._stop.wait(self._settings.poll_interval_s)
                continue
            records = response.get("Records", [])
            iterator = response.get("NextShardIterator")
            if records:
                buffer.extend(self._lambda_record(shard_id, r) for r in records)
            with self._lock:
                self._busy[shard_id] = bool(buffer)
                closed = shard_id in self._endings
            # Kinesis drops NextShardIterator at the end of a closed shard; moto keeps handing one out.
            shard_ended = iterator is None or (closed and not records)
            # The window counts from the arrival of the oldest record waiting: a backlog goes out at once.
            window_over = bool(buffer) and (
                time.time() - buffer[0]["kinesis"]["approximateArrivalTimestamp"] >= self._settings.batching_window_s
            )
            while buffer and (len(buffer) >= self._settings.batch_size or window_over or shard_ended):
                taken = buffer[: self._settings.batch_size * len(handlers)]
                self._deliver_lanes(handlers, lanes, shard_id, taken)
                checkpoint = taken[-1]["kinesis"]["sequenceNumber"]
                buffer = buffer[len(taken) :]
            with self._lock:
                self._busy[shard_id] = bool(buffer)
            if shard_ended and not buffer:
                self._shard_finished(shard_id)
                return
            if not records:
                pause = self._settings.poll_interval_s
                if buffer:  # wake up when the window closes rather than up to a poll interval later
                    closes_in = buffer[0]["kinesis"]["approximateArrivalTimestamp"] + self._settings.batching_window_s
                    pause = max(0.0, min(pause, closes_in - time.time()))
                self._stop.wait(pause)

    def _shard_finished(self, shard_id: str) -> None:
        with self._lock:
            self._finished.add(shard_id)
            self._busy[shard_id] = False
        try:
            self._discover_shards()  # start the children now rather than on the next tick
        except Exception:
            logger.exception("listing the shards of %s failed", self._stream_name)

    def _iterator(self, shard_id: str, checkpoint: str | None) -> str:
        if checkpoint is None:
            kwargs: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
        else:
            kwargs = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": checkpoint}
        return self._kinesis.get_shard_iterator(StreamName=self._stream_name, ShardId=shard_id, **kwargs)[
            "ShardIterator"
        ]

    def _lambda_record(self, shard_id: str, record: dict[str, Any]) -> dict[str, Any]:
        arrival = record["ApproximateArrivalTimestamp"]
        arrival_s = arrival.timestamp() if isinstance(arrival, datetime) else float(arrival)
        sequence = record["SequenceNumber"]
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": sequence,
                "data": base64.b64encode(record["Data"]).decode("ascii"),
                "approximateArrivalTimestamp": arrival_s,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{sequence}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": self._role_arn,
            "awsRegion": self._region,
            "eventSourceARN": self.stream_arn,
        }

    # ---- delivery: lanes, retries, partial failures, bisection, record age ----------------------
    def _deliver_lanes(
        self, handlers: list[Handler], lanes: ThreadPoolExecutor | None, shard_id: str, records: list[dict[str, Any]]
    ) -> None:
        """Deliver records read from one shard: batch after batch in each lane, the lanes side by side."""
        size = self._settings.batch_size
        if lanes is None:
            for start in range(0, len(records), size):
                self._deliver(handlers[0], shard_id, records[start : start + size])
            return
        by_lane: dict[int, list[dict[str, Any]]] = {}
        for record in records:
            by_lane.setdefault(_lane(record["kinesis"]["partitionKey"], len(handlers)), []).append(record)

        def run_lane(lane: int) -> None:
            lane_records = by_lane[lane]
            for start in range(0, len(lane_records), size):
                self._deliver(handlers[lane], shard_id, lane_records[start : start + size])

        for future in [lanes.submit(run_lane, lane) for lane in by_lane]:
            future.result()

    def _deliver(self, handler: Handler, shard_id: str, batch: list[dict[str, Any]], attempts: int = 0) -> None:
        """Invoke until the batch is applied or parked; never returns with a record unaccounted for."""
        while batch and not self._stop.is_set():
            batch = self._drop_aged(shard_id, batch, attempts)
            if not batch:
                return
            self.stats.invoked(batch)
            try:
                failed_from = self._invoke(handler, batch)
            except _FunctionError as exc:
                self.stats.add(function_errors=1)
                if self._settings.bisect_on_error and len(batch) > 1:
                    self.stats.add(bisections=1)
                    middle = len(batch) // 2
                    logger.warning("batch of %d on %s failed (%s); bisecting", len(batch), shard_id, exc)
                    self._deliver(handler, shard_id, batch[:middle], attempts)
                    self._deliver(handler, shard_id, batch[middle:], attempts)
                    return
                failed_from = 0
                reason = str(exc)
            else:
                if failed_from is None:
                    self.stats.add(records_delivered=len(batch))
                    self._done(batch, APPLIED)
                    return
                self.stats.add(partial_failures=1, records_delivered=failed_from)
                self._done(batch[:failed_from], APPLIED)
                reason = f"batchItemFailures from {batch[failed_from]['kinesis']['sequenceNumber']}"
            batch = batch[failed_from:]
            attempts += 1
            if self._retry.exhausted(attempts):
                self._park(shard_id, batch, CONDITION_RETRIES_EXHAUSTED, attempts, reason)
                return
            self.stats.add(retries=1)
            self._stop.wait(self._retry.delay(attempts))  # interruptible: stop() ends the wait at once

    def _invoke(self, handler: Handler, batch: list[dict[str, Any]]) -> int | None:
        """Index of the first record to retry, or None when the whole batch succeeded."""
        try:
            response = handler({"Records": batch})
        except Exception as exc:
            raise _FunctionError(f"{type(exc).__name__}: {exc}") from exc
        # Lambda treats a null or empty response, or an empty or null list, as complete success.
        failures = response.get("batchItemFailures") if isinstance(response, dict) else None
        if not failures:
            return None
        positions = {r["kinesis"]["sequenceNumber"]: i for i, r in enumerate(batch)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in positions:
                # Lambda treats an empty, null or unknown identifier as a failure of the whole batch.
                raise _FunctionError(f"unusable batchItemFailures entry {failure!r}")
            indexes.append(positions[identifier])
        return min(indexes)

    def _drop_aged(self, shard_id: str, batch: list[dict[str, Any]], attempts: int) -> list[dict[str, Any]]:
        oldest_allowed = self._clock() - self._settings.max_record_age_s
        aged = [r for r in batch if r["kinesis"]["approximateArrivalTimestamp"] < oldest_allowed]
        if not aged:
            return batch
        self.stats.add(records_aged_out=len(aged))
        self._park(shard_id, aged, CONDITION_RECORD_AGE, attempts, "record older than max_record_age_s")
        return [r for r in batch if r["kinesis"]["approximateArrivalTimestamp"] >= oldest_allowed]

    def _park(self, shard_id: str, batch: list[dict[str, Any]], condition: str, attempts: int, reason: str) -> None:
        logger.error(
            "discarding %d record(s) of %s (%s after %d attempt(s): %s)",
            len(batch),
            shard_id,
            condition,
            attempts,
            reason,
        )
        document = self.invocation_record(shard_id, batch, condition, attempts)
        while self._on_failure is not None and not self._stop.is_set():
            try:
                self._on_failure.send(shard_id, document)
                break
            except Exception:  # the destination must not lose the batch: keep trying
                logger.exception("writing to the on-failure destination failed; retrying")
                self._stop.wait(self._settings.retry_max_delay_s)
        self.stats.add(records_parked=len(batch))
        self._done(batch, PARKED)

    def invocation_record(
        self, shard_id: str, batch: Sequence[dict[str, Any]], condition: str, attempts: int
    ) -> dict[str, Any]:
        """The on-failure document for a Kinesis source: invocation record, batch info and the payload."""

        def arrival(record: dict[str, Any]) -> str:
            moment = datetime.fromtimestamp(record["kinesis"]["approximateArrivalTimestamp"], UTC)
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._function_arn,
                "condition": condition,
                "approximateInvokeCount": max(attempts, 1),
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": now,
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": batch[0]["kinesis"]["sequenceNumber"],
                "endSequenceNumber": batch[-1]["kinesis"]["sequenceNumber"],
                "approximateArrivalOfFirstRecord": arrival(batch[0]),
                "approximateArrivalOfLastRecord": arrival(batch[-1]),
                "batchSize": len(batch),
                "streamArn": self.stream_arn,
            },
            "payload": json.dumps({"Records": list(batch)}),
        }

    def _done(self, records: Sequence[dict[str, Any]], outcome: str) -> None:
        if records and self._on_done is not None:
            self._on_done(records, outcome)


def _lane(partition_key: str, lanes: int) -> int:
    """The lane of a partition key: stable across runs, so one key's records always share a lane."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).digest()[:8]) % lanes
