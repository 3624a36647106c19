"""What the operator CLI does, without the CLI: find the stack, query, backfill, redrive, status.

Every function receives its clients (a ``ClientFactory``: service name -> boto3 client) and, where a table
is read, a Cassandra session, so tests hand in moto clients and a session stand-in. Expected failures raise
``OperatorError`` with one line a person can act on.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from freshvec import constants as c
from freshvec.cli.load import Backoff, TableSchema, quote, to_json_value
from freshvec.config import ConfigError, PipelineConfig
from freshvec.events import ChangeEvent, format_timestamp
from freshvec.filters import validate_filter
from freshvec.keys import parse_vector_key, partition_key, vector_key
from freshvec.state import CONTROL_TOKEN_HEADER
from freshvec.state import local_state_path as _state_file_path

ClientFactory = Callable[[str], Any]
DEFAULT_LOCAL_STATE = Path(".freshvec") / "local.json"
LOCAL_STATE_ENV = "FRESHVEC_LOCAL_STATE"
DLQ_RECEIVE_WAIT_S = 1  # long polling: a short poll may miss messages on other SQS servers
REDRIVEN_PREFIX = "redriven/"  # where redriven on-failure objects are moved, so they are not sent twice
MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1


class OperatorError(Exception):
    """An expected failure, explained in one line (no traceback needed)."""


# ---- the stack's resources ---------------------------------------------------------------------


@dataclass(frozen=True)
class StackResources:
    """Everything the CLI needs to know about a deployed (or local) pipeline, from its outputs."""

    stack_name: str
    region: str
    outputs: dict[str, str]
    config: PipelineConfig
    endpoint_url: str | None = None  # local mode: the moto server
    control_url: str | None = None  # local mode: the control API
    control_token: str | None = None  # local mode: the control API's token (from the state file)

    @property
    def is_local(self) -> bool:
        return self.control_url is not None

    def output(self, name: str) -> str:
        value = self.outputs.get(name)
        if not value:
            where = "the local state file" if self.is_local else f"stack {self.stack_name!r}"
            raise OperatorError(f"{where} has no output {name!r}; was it deployed by this version of freshvec?")
        return value

    @property
    def stream_name(self) -> str:
        return self.output(c.OUT_STREAM_NAME)

    @property
    def dlq_url(self) -> str:
        return self.output(c.OUT_SINK_DLQ_URL)

    @property
    def on_failure_bucket(self) -> str:
        return self.output(c.OUT_ON_FAILURE_BUCKET)

    @property
    def vector_bucket(self) -> str:
        return self.output(c.OUT_VECTOR_BUCKET)

    @property
    def vector_index(self) -> str:
        return self.output(c.OUT_VECTOR_INDEX)

    @classmethod
    def from_outputs(
        cls,
        stack_name: str,
        region: str,
        outputs: dict[str, str],
        *,
        endpoint_url: str | None = None,
        control_url: str | None = None,
    ) -> StackResources:
        where = "the local state file" if control_url else f"stack {stack_name!r}"
        text = outputs.get(c.OUT_PIPELINE_CONFIG)
        if not text:
            raise OperatorError(f"{where} has no output {c.OUT_PIPELINE_CONFIG!r}; is it a freshvec stack?")
        try:
            config = PipelineConfig.from_json(text)
        except ConfigError as exc:
            raise OperatorError(f"{where}: its pipeline config is not valid: {exc}") from exc
        return cls(stack_name, outputs.get(c.OUT_REGION) or region, outputs, config, endpoint_url, control_url)


def resolve_stack(cloudformation: Any, stack_name: str, region: str) -> StackResources:
    """Read the stack's outputs once (DescribeStacks); a missing stack becomes a clear OperatorError."""
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if "does not exist" in message:
            raise OperatorError(
                f"stack {stack_name!r} not found in {region}; deploy it with `cdk deploy` or pass --stack/--region"
            ) from exc
        raise
    stack = stacks[0]
    if stack.get("StackStatus", "").endswith("_IN_PROGRESS") and not stack.get("Outputs"):
        raise OperatorError(f"stack {stack_name!r} is {stack['StackStatus']}; try again when it has finished")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return StackResources.from_outputs(stack_name, region, outputs)


def local_state_path(path: str | Path | None = None) -> Path:
    return _state_file_path(path)  # the one per-user state file that `freshvec local up` writes


def load_local_state(path: str | Path | None = None) -> StackResources:
    """The resources of a running ``freshvec local up``, from the state file it writes."""
    state_path = local_state_path(path)
    if not state_path.is_file():
        raise OperatorError(f"no local pipeline running ({state_path} not found); start one with `freshvec local up`")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        endpoint, control, region = state["endpoint"], state["control"], state["region"]
        outputs = {str(k): str(v) for k, v in state["outputs"].items()}
        token = state.get("token")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OperatorError(f"{state_path} is not a freshvec local state file: {exc}") from exc
    resources = StackResources.from_outputs("local", region, outputs, endpoint_url=endpoint, control_url=control)
    return dataclasses.replace(resources, control_token=str(token) if token else None)


def make_client_factory(region: str, endpoint_url: str | None = None, session: Any = None) -> ClientFactory:
    """Cached boto3 clients for one region; with an endpoint (local mode) they use fixed local credentials."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 5, "mode": "adaptive"}, user_agent_extra="freshvec-cli")
    clients: dict[str, Any] = {}
    lock = threading.Lock()
    base = session or _default_session(boto3)

    def factory(service: str) -> Any:
        with lock:
            if service not in clients:
                kwargs: dict[str, Any] = {"region_name": region, "config": config}
                if endpoint_url:
                    # The local moto server accepts any credentials; fixed ones keep boto3 from looking for real ones.
                    kwargs.update(endpoint_url=endpoint_url, aws_access_key_id="testing")
                    kwargs["aws_secret_access_key"] = "testing"  # noqa: S105
                clients[service] = base.client(service, **kwargs)
            return clients[service]

    return factory


_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[int, Any] = {}


def _default_session(boto3: Any) -> Any:
    """One boto3 session per process: service models are loaded once, not for every client."""
    with _SESSION_LOCK:
        if os.getpid() not in _SESSIONS:
            _SESSIONS[os.getpid()] = boto3.Session()
        return _SESSIONS[os.getpid()]


# ---- sending to Kinesis ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutRecord:
    data: bytes
    partition_key: str


class KinesisSender:
    """PutRecords in calls of at most 500 records / 5 MiB; after a partial failure, re-send from the first
    failed record onward (not only the failed ones), so records of one key keep their order."""

    def __init__(self, kinesis: Any, stream_name: str, *, backoff: Backoff | None = None) -> None:
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.backoff = backoff or Backoff(base_s=0.1, cap_s=5.0, max_attempts=8)

    def send(self, records: Sequence[OutRecord]) -> None:
        for chunk in _chunks(records):
            self._send_chunk(chunk)

    def _send_chunk(self, chunk: list[OutRecord]) -> None:
        from botocore.exceptions import ClientError

        from freshvec.errors import is_transient

        pending = chunk
        attempt = 1
        while pending:
            entries = [{"Data": r.data, "PartitionKey": r.partition_key} for r in pending]
            try:
                response = self.kinesis.put_records(StreamName=self.stream_name, Records=entries)
                failed = [i for i, result in enumerate(response["Records"]) if result.get("ErrorCode")]
                detail = response["Records"][failed[0]].get("ErrorCode") if failed else ""
            except ClientError as exc:
                if not is_transient(exc):
                    raise
                failed, detail = [0], str(exc)
            if not failed:
                return
            if attempt >= self.backoff.max_attempts:
                raise OperatorError(
                    f"Kinesis stream {self.stream_name} kept refusing records after {attempt} attempts ({detail})"
                )
            time.sleep(self.backoff.delay(attempt))
            attempt += 1
            pending = pending[failed[0] :]


def _chunks(records: Sequence[OutRecord]) -> Iterator[list[OutRecord]]:
    chunk: list[OutRecord] = []
    size = 0
    for record in records:
        record_size = len(record.data) + len(record.partition_key.encode("utf-8"))
        if chunk and (len(chunk) >= c.KINESIS_PUT_BATCH or size + record_size > c.KINESIS_MAX_REQUEST_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += record_size
    if chunk:
        yield chunk


class RateLimiter:
    """A token bucket shared by threads: ``acquire(n)`` waits until n more records fit under the rate."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("the rate must be positive")
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = clock()

    def acquire(self, count: int) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next_free)
            self._next_free = start + count / self.per_second
            wait = start - now
        if wait > 0:
            self._sleep(wait)


# ---- backfill ----------------------------------------------------------------------------------


def token_segments(count: int) -> list[tuple[int, int]]:
    """``count`` contiguous (low, high] token ranges covering the whole Murmur3 ring."""
    if count < 1:
        raise ValueError("at least one segment")
    span = (MAX_TOKEN - MIN_TOKEN) // count
    bounds = [MIN_TOKEN + i * span for i in range(count)] + [MAX_TOKEN]
    return list(itertools.pairwise(bounds))


def build_range_select(
    keyspace: str, table: str, partition_key: Sequence[str], columns: Sequence[str], *, inclusive: bool
) -> str:
    token = f"token({', '.join(quote(k) for k in partition_key)})"
    selected = ", ".join(quote(col) for col in columns)
    low = ">=" if inclusive else ">"
    # Identifiers come from the validated config and are quoted; token bounds are bound values.
    return (
        f"SELECT {token} AS fv_token, {selected} FROM {quote(keyspace)}.{quote(table)} "  # noqa: S608
        f"WHERE {token} {low} ? AND {token} <= ?"
    )


@dataclass
class BackfillState:
    """Progress that survives an interruption: per segment, the last token fully sent, or done."""

    path: Path
    segments: int
    started_ms: int
    positions: dict[int, int] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    sent: int = 0

    @classmethod
    def open(cls, path: Path, segments: int, *, restart: bool = False) -> BackfillState:
        if path.is_file() and not restart:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                if raw["segments"] != segments:
                    raise OperatorError(
                        f"{path} is a backfill over {raw['segments']} segments; pass --segments "
                        f"{raw['segments']} to resume it, or --restart to start over"
                    )
                return cls(
                    path,
                    segments,
                    int(raw["started_ms"]),
                    {int(k): int(v) for k, v in raw["positions"].items()},
                    {int(s) for s in raw["done"]},
                    int(raw["sent"]),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise OperatorError(f"{path} is not a backfill state file ({exc}); pass --restart") from exc
        return cls(path, segments, int(time.time() * 1000))

    @property
    def complete(self) -> bool:
        return len(self.done) == self.segments

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "segments": self.segments,
            "started_ms": self.started_ms,
            "positions": {str(k): v for k, v in sorted(self.positions.items())},
            "done": sorted(self.done),
            "sent": self.sent,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(self.path)


@dataclass
class BackfillReport:
    sent: int = 0
    segments_done: int = 0
    segments: int = 0
    resumed: bool = False


def backfill(
    session: Any,
    kinesis: Any,
    resources: StackResources,
    state: BackfillState,
    *,
    workers: int = 4,
    rate_per_s: float = 500.0,
    page_rows: int = 500,
    on_progress: Callable[[int], None] | None = None,
    sender: KinesisSender | None = None,
) -> BackfillReport:
    """Send every existing row as an INSERT change event (origin BACKFILL) to the change stream.

    Token-range segments are read in parallel; after each page of rows Kinesis accepted, the segment's
    last token is saved, so a rerun resumes there (re-sending at most the rows of that token: the sink
    is idempotent). When one segment fails, the others stop at their next page.
    """
    run = _BackfillRun(
        session,
        resources,
        state,
        sender=sender or KinesisSender(kinesis, resources.stream_name),
        limiter=RateLimiter(rate_per_s),
        page_rows=page_rows,
        on_progress=on_progress,
    )
    return run.run(workers)


class _BackfillRun:
    def __init__(
        self,
        session: Any,
        resources: StackResources,
        state: BackfillState,
        *,
        sender: KinesisSender,
        limiter: RateLimiter,
        page_rows: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self.session = session
        self.config = resources.config
        self.schema = TableSchema.from_config(self.config)
        self.state = state
        self.sender = sender
        self.limiter = limiter
        self.page_rows = page_rows
        self.on_progress = on_progress
        self.lock = threading.Lock()
        self.stop = threading.Event()
        # Digits only, so anything that orders sequence numbers numerically still can: run start, then a counter.
        self.seq_base = state.started_ms * 10**9 + state.sent
        self.counter = itertools.count(1)
        c_ = self.config
        self.statements = {
            inclusive: session.prepare(
                build_range_select(c_.keyspace, c_.table, c_.partition_key, list(c_.columns), inclusive=inclusive)
            )
            for inclusive in (False, True)
        }

    def run(self, workers: int) -> BackfillReport:
        state = self.state
        resumed = bool(state.positions or state.done)
        todo = [(i, lo, hi) for i, (lo, hi) in enumerate(token_segments(state.segments)) if i not in state.done]
        before = state.sent
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="backfill") as pool:
            futures = [pool.submit(self._segment, *segment) for segment in todo]
            try:
                for future in futures:
                    future.result()
            except BaseException:  # a failed segment or Ctrl-C: the others stop after their current page
                self.stop.set()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return BackfillReport(state.sent - before, len(state.done), state.segments, resumed)

    def _segment(self, index: int, low: int, high: int) -> None:
        try:
            if not self.stop.is_set() and self._read(index, low, high):
                with self.lock:
                    self.state.done.add(index)
                    self.state.save()
        except BaseException:
            self.stop.set()
            raise

    def _read(self, index: int, low: int, high: int) -> bool:
        """Send the segment page by page; False when stopped early because another segment failed."""
        resume_at = self.state.positions.get(index)
        statement = self.statements[resume_at is not None]
        page: list[OutRecord] = []
        last_token: int | None = None
        for row in self.session.execute(statement, (low if resume_at is None else resume_at, high)):
            last_token = row.pop("fv_token")
            with self.lock:
                seq = str(self.seq_base + next(self.counter))
            page.append(_backfill_record(row, self.schema, self.config, seq))
            if len(page) >= self.page_rows:
                if self.stop.is_set():
                    return False
                self._flush(index, page, last_token)
                page = []
        if self.stop.is_set():
            return False
        if page:
            self._flush(index, page, last_token)
        return True

    def _flush(self, index: int, page: list[OutRecord], last_token: int | None) -> None:
        self.limiter.acquire(len(page))
        self.sender.send(page)
        with self.lock:
            self.state.sent += len(page)
            if last_token is not None:
                self.state.positions[index] = last_token
            self.state.save()
        if self.on_progress is not None:
            self.on_progress(len(page))


def _backfill_record(row: dict[str, Any], schema: TableSchema, config: PipelineConfig, seq: str) -> OutRecord:
    new = {name: to_json_value(value, schema.column_types[name]) for name, value in row.items()}
    key = {name: new[name] for name in config.primary_key}
    event = ChangeEvent(
        keyspace=config.keyspace,
        table=config.table,
        op="INSERT",
        key=key,
        new=new,
        old=None,
        seq=seq,
        shard="backfill",
        ts=format_timestamp(datetime.now(UTC)),
        origin="BACKFILL",
    )
    return OutRecord(event.to_bytes(), partition_key(vector_key(key, config.key_columns)))


def default_backfill_state_path(stack_name: str) -> Path:
    return Path(".freshvec") / f"backfill-{stack_name}.json"


# ---- redrive -----------------------------------------------------------------------------------


@dataclass
class ParkedItem:
    """One parked change: where it waits, why, and what would be re-sent."""

    source: str  # "dlq" | "on-failure"
    ref: str  # SQS message id, or S3 object key
    records: list[OutRecord]
    reason: str
    failed_at: str | None
    position: str  # shard and sequence number(s) where it was read
    handle: str = ""  # SQS receipt handle, or the S3 key
    unreadable: str | None = None  # why it cannot be re-sent (left where it is)


@dataclass
class RedriveReport:
    found: int = 0
    sent_items: int = 0
    sent_records: int = 0
    unreadable: int = 0
    dry_run: bool = False


def _decode_dlq_body(body: str) -> tuple[list[OutRecord], str, str | None, str, str | None]:
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
    return [OutRecord(payload, key)], reason, doc.get("failed_at"), position, None


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
        for message in messages:
            records, reason, failed_at, position, unreadable = _decode_dlq_body(message.get("Body", ""))
            items.append(
                ParkedItem(
                    "dlq",
                    message["MessageId"],
                    records,
                    reason,
                    failed_at,
                    position,
                    message["ReceiptHandle"],
                    unreadable,
                )
            )
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
            return ParkedItem("on-failure", key, [], reason, doc.get("timestamp"), position, key, missing)
        if isinstance(payload, str):
            payload = json.loads(payload)
        kinesis_records = [r["kinesis"] for r in payload["Records"]]
        kinesis_records.sort(key=lambda r: int(r.get("sequenceNumber", 0)))
        records = [OutRecord(base64.b64decode(r["data"], validate=True), r["partitionKey"]) for r in kinesis_records]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        return ParkedItem("on-failure", key, [], "", None, "", key, f"not a Lambda invocation record: {exc}")
    return ParkedItem("on-failure", key, records, reason, doc.get("timestamp"), position, key)


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


def redrive(
    clients: ClientFactory,
    resources: StackResources,
    *,
    source: str = "all",
    limit: int = 1000,
    dry_run: bool = False,
    on_item: Callable[[ParkedItem, str], None] | None = None,
    sender: KinesisSender | None = None,
) -> RedriveReport:
    """Re-send parked records to the change stream; remove each from its parking place only after
    Kinesis accepted all of its records (a DLQ message is deleted, an on-failure object moved)."""
    report = RedriveReport(dry_run=dry_run)
    sender = sender or KinesisSender(clients("kinesis"), resources.stream_name)

    def handle(item: ParkedItem, remove: Callable[[], None]) -> bool:
        report.found += 1
        if item.unreadable:
            report.unreadable += 1
            _notify(on_item, item, "unreadable")
            return False
        if dry_run:
            _notify(on_item, item, "would send")
            return False
        sender.send(item.records)
        remove()
        report.sent_items += 1
        report.sent_records += len(item.records)
        _notify(on_item, item, "sent")
        return True

    if source in ("dlq", "all"):
        sqs = clients("sqs")
        received = receive_dlq(sqs, resources.dlq_url, limit=limit)
        deleted: set[str] = set()
        try:
            for item in received:

                def delete(item: ParkedItem = item) -> None:
                    sqs.delete_message(QueueUrl=resources.dlq_url, ReceiptHandle=item.handle)

                if handle(item, delete):
                    deleted.add(item.ref)
        finally:  # whatever was not re-sent becomes visible again at once, also after an error
            rest = [item for item in received if item.ref not in deleted]
            if rest:
                release_dlq(sqs, resources.dlq_url, rest)
    if source in ("on-failure", "all"):
        s3 = clients("s3")
        bucket = resources.on_failure_bucket
        for item in list_on_failure(s3, bucket, limit=limit):
            handle(item, lambda item=item: move_redriven(s3, bucket, item.handle))
    return report


def _notify(on_item: Callable[[ParkedItem, str], None] | None, item: ParkedItem, outcome: str) -> None:
    if on_item is not None:
        on_item(item, outcome)


# ---- status ------------------------------------------------------------------------------------


@dataclass
class StatusReport:
    forwarder_lag_ms: float | None = None
    sink_iterator_age_ms: float | None = None
    dlq_visible: int | None = None
    dlq_in_flight: int | None = None
    on_failure_objects: int | None = None
    vectors: int | None = None
    vectors_capped: bool = False
    rows: int | None = None
    rows_estimated: bool = False
    last_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def latest_metric(
    cloudwatch: Any, namespace: str, metric: str, dimensions: dict[str, str], *, minutes: int = 15
) -> float | None:
    """The newest one-minute Maximum of a metric in the last ``minutes``, or None when nothing was reported."""
    now = datetime.now(UTC)
    response = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - timedelta(minutes=minutes),
        EndTime=now + timedelta(minutes=1),  # the current, still open minute too
        Period=60,
        Statistics=["Maximum"],
    )
    points = sorted(response.get("Datapoints", []), key=lambda p: p["Timestamp"])
    return float(points[-1]["Maximum"]) if points else None


def count_vectors(s3vectors: Any, bucket: str, index: str, *, cap: int = 100_000) -> tuple[int, bool]:
    """Vectors in the index by listing keys (S3 Vectors has no count call); stops at ``cap``."""
    count = 0
    kwargs: dict[str, Any] = {"vectorBucketName": bucket, "indexName": index, "maxResults": 1000}
    while True:
        response = s3vectors.list_vectors(**kwargs)
        count += len(response.get("vectors", []))
        token = response.get("nextToken")
        if count >= cap:
            return count, True
        if not token:
            return count, False
        kwargs["nextToken"] = token


def estimate_rows(session: Any, config: PipelineConfig, *, cap: int = 20_000) -> tuple[int, bool]:
    """Rows in the table: counted in token order; past ``cap`` rows, extrapolated from the ring covered."""
    statement = session.prepare(
        build_range_select(
            config.keyspace, config.table, config.partition_key, config.partition_key[:1], inclusive=False
        )
    )
    count = 0
    last = MIN_TOKEN
    for row in session.execute(statement, (MIN_TOKEN, MAX_TOKEN)):
        count += 1
        last = row["fv_token"]
        if count >= cap:
            covered = (last - MIN_TOKEN) / (MAX_TOKEN - MIN_TOKEN)
            return (round(count / covered) if covered > 0 else count), True
    return count, False


def collect_status(
    clients: ClientFactory,
    resources: StackResources,
    *,
    session: Any = None,
    local_stats: dict[str, Any] | None = None,
) -> StatusReport:
    """One screen of pipeline health; each part that cannot be read is noted, not fatal."""
    from botocore.exceptions import BotoCoreError, ClientError

    report = StatusReport()
    outputs = resources.outputs

    def attempt(what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except (ClientError, BotoCoreError, OperatorError) as exc:
            report.notes.append(f"{what}: unavailable ({_short(exc)})")

    def dlq() -> None:
        attrs = clients("sqs").get_queue_attributes(
            QueueUrl=resources.dlq_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        report.dlq_visible = int(attrs.get("ApproximateNumberOfMessages", 0))
        report.dlq_in_flight = int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))

    def last_errors() -> None:
        response = clients("sqs").receive_message(
            QueueUrl=resources.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
        )
        found = []
        for message in response.get("Messages", []):
            _records, reason, failed_at, _position, unreadable = _decode_dlq_body(message.get("Body", ""))
            found.append((failed_at or "", f"{failed_at or '?'}  {unreadable or reason}"))
        report.last_errors.extend(text for _, text in sorted(found, reverse=True)[:5])

    def on_failure() -> None:
        s3 = clients("s3")
        objects = [
            o
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=resources.on_failure_bucket)
            for o in page.get("Contents", [])
            if not o["Key"].startswith(REDRIVEN_PREFIX)
        ]
        report.on_failure_objects = len(objects)
        for obj in sorted(objects, key=lambda o: o["LastModified"], reverse=True)[:3]:
            report.last_errors.append(
                f"{format_timestamp(obj['LastModified'])}  discarded batch s3://{resources.on_failure_bucket}/{obj['Key']}"
            )

    def vectors() -> None:
        report.vectors, report.vectors_capped = count_vectors(
            clients("s3vectors"), resources.vector_bucket, resources.vector_index
        )

    def metrics() -> None:
        cloudwatch = clients("cloudwatch")
        report.forwarder_lag_ms = latest_metric(
            cloudwatch, c.METRICS_NAMESPACE, c.M_FORWARDER_LAG_MS, {"service": c.SERVICE_FORWARDER}
        )
        sink = outputs.get(c.OUT_SINK_FUNCTION)
        if sink:
            report.sink_iterator_age_ms = latest_metric(cloudwatch, "AWS/Lambda", "IteratorAge", {"FunctionName": sink})

    attempt("DLQ depth", dlq)
    attempt("DLQ messages", last_errors)
    attempt("on-failure bucket", on_failure)
    attempt("vector count", vectors)
    if not resources.is_local:
        attempt("metrics", metrics)
    if session is not None:
        try:
            report.rows, report.rows_estimated = estimate_rows(session, resources.config)
        except Exception as exc:  # noqa: BLE001 - any driver error only hides this one line of the status
            report.notes.append(f"table rows: unavailable ({_short(exc)})")
    if local_stats:
        report.extra.update(local_stats)
        for key in ("rows", "table_rows"):
            if isinstance(local_stats.get(key), int) and report.rows is None:
                report.rows = local_stats[key]
        for key in ("forwarder_lag_ms",):
            if isinstance(local_stats.get(key), int | float):
                report.forwarder_lag_ms = float(local_stats[key])
    return report


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


# ---- query -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryHit:
    rank: int
    key: str
    key_values: dict[str, Any]
    distance: float | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class QueryResult:
    metric: str
    hits: list[QueryHit]


def _hits(raw: Iterable[dict[str, Any]], config: PipelineConfig) -> list[QueryHit]:
    hits = []
    for rank, item in enumerate(raw, start=1):
        key = item["key"]
        try:
            key_values = parse_vector_key(key, config.key_columns)
        except ValueError:
            key_values = {}
        distance = item.get("distance")
        hits.append(
            QueryHit(rank, key, key_values, None if distance is None else float(distance), item.get("metadata") or {})
        )
    return hits


def check_index(store: Any, resources: StackResources) -> Any:
    """The index's ``IndexInfo``; OperatorError when it is missing or its dimension differs from the config."""
    from freshvec.errors import MisconfigurationError, error_code

    try:
        info = store.describe()
    except MisconfigurationError as exc:
        if error_code(exc.__cause__) in ("NotFoundException", "NoSuchIndex", "NoSuchVectorBucket"):
            raise OperatorError(
                f"vector index {resources.vector_index!r} not found in bucket {resources.vector_bucket!r}"
            ) from exc
        raise
    expected = resources.config.embedding.dimensions
    if info.dimension != expected:
        raise OperatorError(
            f"dimension mismatch: index {resources.vector_index!r} has {info.dimension} dimensions but "
            f"{resources.config.embedding.model_id} is configured for {expected}"
        )
    return info


def query_index(
    clients: ClientFactory,
    resources: StackResources,
    text: str,
    *,
    k: int = 10,
    filter_doc: dict[str, Any] | None = None,
    embedder: Any = None,
) -> QueryResult:
    """Embed ``text`` like the sink does (queries as ``search_query`` for Cohere) and search the index."""
    if not 1 <= k <= c.S3V_MAX_TOP_K:
        raise OperatorError(f"--k must be between 1 and {c.S3V_MAX_TOP_K}, got {k}")
    if not text.strip():
        raise OperatorError("the query text is empty")
    if filter_doc is not None:
        validate_filter(filter_doc)
    if resources.is_local:
        return _query_local(resources, text, k, filter_doc)
    from freshvec.adapters.s3vectors import S3VectorsStore

    store = S3VectorsStore(clients("s3vectors"), resources.vector_bucket, resources.vector_index)
    info = check_index(store, resources)
    if embedder is None:
        from freshvec.adapters.bedrock import make_embedder

        embedder = make_embedder(resources.config.embedding, clients("bedrock-runtime"))
    vector = embedder.embed_query(text)
    if len(vector) != info.dimension:
        raise OperatorError(
            f"dimension mismatch: the model returned {len(vector)} values, the index takes {info.dimension}"
        )
    hits = store.query(vector, k, filter_doc)
    return QueryResult(info.distance_metric, _hits(hits, resources.config))


def _query_local(resources: StackResources, text: str, k: int, filter_doc: dict[str, Any] | None) -> QueryResult:
    body = control_request(resources, "POST", "query", {"text": text, "k": k, "filter": filter_doc})
    return QueryResult(resources.config.vector_store.distance_metric, _hits(body.get("hits", []), resources.config))


def control_headers(resources: StackResources) -> dict[str, str]:
    """The header that authorises a call to the local control API (its token, from the state file)."""
    return {CONTROL_TOKEN_HEADER: resources.control_token} if resources.control_token else {}


def control_request(resources: StackResources, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One call to the local control API; a stopped local pipeline becomes a clear OperatorError."""
    import requests

    url = f"{(resources.control_url or '').rstrip('/')}/{path}"
    try:
        response = requests.request(method, url, json=body, headers=control_headers(resources), timeout=60)
    except requests.ConnectionError as exc:
        raise OperatorError(
            f"local pipeline not reachable at {resources.control_url}; is `freshvec local up` running?"
        ) from exc
    if response.status_code >= 400:
        try:
            reason = response.json().get("error") or response.text
        except ValueError:
            reason = response.text
        raise OperatorError(f"local pipeline refused {path} ({response.status_code}): {str(reason).strip()[:200]}")
    try:
        return response.json()
    except ValueError as exc:
        raise OperatorError(f"local pipeline answered {path} with something that is not JSON") from exc
