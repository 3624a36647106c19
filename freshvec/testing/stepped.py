"""A local stack whose every loop is stepped by hand: for model-based tests that choose each interleaving.

The real pieces, wired as in local mode but with no thread of their own: the Keyspaces stand-in (table and
stream on a ``ManualClock``), the forwarder (``freshvec.adapters.wiring.keyspaces_forwarder``: moto Kinesis
and DynamoDB leases and checkpoints), the Kinesis stream in moto, the sink (``freshvec.sink.Sink`` with the
S3 Vectors store in moto, the DynamoDB tombstones and the Titan embedder over the Bedrock fake), and the
control API (``freshvec.local.control.ControlServer``), so the operator CLI (``freshvec --local backfill``,
``redrive send``, ``reconcile --repair``) runs against it exactly as against ``freshvec local up``.

What a test steps: a forwarder pass; delivering the next records of a Kinesis shard to the sink the way the
event source mapping does (in order, retrying from a reported failure); losing a batch to the on-failure
destination (what the mapping does when retries run out); re-delivering records already delivered; holding a
forwarder's next PutRecords call in flight and landing it later, after its lease was lost (a stray re-send);
replacing a crashed forwarder; trimming the CDC stream before the forwarder read it.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from typer.testing import CliRunner

from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.dynamodb import DynamoDbTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.cli import app as cli_app
from freshvec.cli import parked
from freshvec.cli.redrive import record_key
from freshvec.config import PipelineConfig
from freshvec.forwarder import Forwarder
from freshvec.keys import vector_key
from freshvec.local.control import ControlServer
from freshvec.local.esm import S3OnFailureDestination
from freshvec.local.keyspaces import ManualClock
from freshvec.local.moto_server import MotoServer
from freshvec.local.resources import create_resources
from freshvec.retry import RetryPolicy
from freshvec.sink import Sink
from freshvec.state import LOCAL_STATE_ENV
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime
from freshvec.testing.local_cli import environment
from freshvec.testing.stepped_sources import KeyspacesSource, SteppedSource

NO_WAIT = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0, sleep=lambda _s: None)
LEASE_WAIT_S = 3_600  # moving the clock this far lets any lease run out


class HeldPut(Exception):
    """A PutRecords call held in flight: the forwarder that made it sees a timeout and is replaced."""


class _HoldingKinesis:
    """The forwarder's Kinesis client; ``hold_next`` keeps the next PutRecords call to land later."""

    def __init__(self, kinesis: Any) -> None:
        self._kinesis = kinesis
        self.hold_next = False
        self.held: list[list[dict[str, Any]]] = []

    def put_records(self, **params: Any) -> dict[str, Any]:
        if self.hold_next:
            self.hold_next = False
            self.held.append(params["Records"])
            raise HeldPut("PutRecords held in flight")
        return self._kinesis.put_records(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kinesis, name)


class _SharedClients:
    """One boto3 client per service for every stack on a moto server: building a client costs far more than
    the calls a stepped test makes with it, and a test builds a stack per example (clients are thread-safe)."""

    _by_endpoint: ClassVar[dict[str, _SharedClients]] = {}

    def __init__(self, server: MotoServer) -> None:
        self._server = server
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, server: MotoServer) -> _SharedClients:
        return cls._by_endpoint.setdefault(server.endpoint, cls(server))

    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._server.client(service)
            return self._clients[service]


class SteppedStack:
    """One pipeline (its own stream, checkpoint table, index and table) on a shared moto server."""

    def __init__(
        self,
        server: MotoServer,
        config: PipelineConfig,
        workdir: Path,
        *,
        shards: int = 1,
        source: SteppedSource | None = None,
    ) -> None:
        self.server = server
        self.config = config
        self.clock = ManualClock()
        self.client = _SharedClients.of(server)
        self.resources = create_resources(self.client, config)
        self.source: SteppedSource = source or KeyspacesSource(config, self.clock, shards)
        self.table = getattr(self.source, "table", None)  # the Keyspaces stand-in's table
        self.streams = getattr(self.source, "streams", None)
        self.kinesis = self.client("kinesis")
        self.s3vectors = self.client("s3vectors")
        self.bedrock = FakeBedrockRuntime()
        self.sink = Sink(
            config,
            make_embedder(config.embedding, self.bedrock, NO_WAIT),
            S3VectorsStore(self.s3vectors, self.resources.vector_bucket, self.resources.vector_index, NO_WAIT),
            SqsDeadLetterQueue(self.client("sqs"), self.resources.dlq_url, NO_WAIT),
            tombstones=DynamoDbTombstones(
                self.client("dynamodb"), self.resources.checkpoint_table, retry=NO_WAIT, clock=self.clock
            ),
            clock=self.clock,  # the sink's clock is the reader's and the service's: one timeline, moved by hand
        )
        self.on_failure = S3OnFailureDestination(self.client("s3"), self.resources.on_failure_bucket, "stepped")
        self._forwarder_kinesis = _HoldingKinesis(self.kinesis)
        self.forwarder = self._new_forwarder()
        self._shard_ids = [
            shard["ShardId"] for shard in self.kinesis.list_shards(StreamName=self.resources.stream_name)["Shards"]
        ]
        self._delivered: dict[str, str | None] = dict.fromkeys(self._shard_ids)  # last sequence number delivered
        self._history: dict[str, list[dict[str, Any]]] = {shard: [] for shard in self._shard_ids}
        self._iterators: dict[str, tuple[str | None, str]] = {}  # shard -> (the records it follows, iterator)
        self.control = ControlServer(self).start(poll_interval_s=0.02)  # a stack per example: stop it quickly
        self.state_path = workdir / f"{config.stack_name}.state.json"
        self.state_path.write_text(
            json.dumps(
                {
                    "endpoint": server.endpoint,
                    "aws_access_key": server.access_key,
                    "region": server.region,
                    "control": self.control.url,
                    "token": self.control.token,
                    "outputs": self.resources.outputs(config),
                }
            )
        )
        self.parked = 0
        self.cli_runs: list[tuple[list[str], int, str]] = []

    def close(self) -> None:
        self.control.stop()
        self.source.close()

    # ---- the forwarder -----------------------------------------------------------------------------
    def _new_forwarder(self) -> Forwarder:
        return self.source.forwarder(
            self.config,
            self._forwarder_kinesis,
            self.client("dynamodb"),
            stream_name=self.resources.stream_name,
            checkpoint_table=self.resources.checkpoint_table,
            owner_id=f"forwarder-{uuid.uuid4().hex[:8]}",
            clock=self.clock,
            sleep=lambda _s: None,
        )

    def forward(self) -> int:
        """One forwarder pass; a pass whose PutRecords was held crashes, and a new forwarder takes over after
        the old one's lease ran out. Returns the changes forwarded."""
        try:
            return self.forwarder.run_once().changes_forwarded
        except HeldPut:
            self.clock.advance(LEASE_WAIT_S)
            self.forwarder = self._new_forwarder()
            return 1  # records were read (and are in flight): not quiet, the successor forwards them again

    def hold_next_put(self) -> None:
        self._forwarder_kinesis.hold_next = True

    def land_held_puts(self) -> int:
        """The held PutRecords calls land now, late (their forwarder lost its lease long ago)."""
        landed = 0
        while self._forwarder_kinesis.held:
            records = self._forwarder_kinesis.held.pop(0)
            self.kinesis.put_records(StreamName=self.resources.stream_name, Records=records)
            landed += len(records)
        return landed

    def crash_forwarder(self) -> None:
        """The forwarder dies without releasing its leases; its successor waits them out."""
        self.clock.advance(LEASE_WAIT_S)
        self.forwarder = self._new_forwarder()

    def trim_unread(self) -> int:
        """Retention takes every CDC record still held (Keyspaces; a PostgreSQL slot keeps its WAL)."""
        return self.source.trim_unread()

    # ---- the event source mapping ------------------------------------------------------------------
    @property
    def shard_ids(self) -> list[str]:
        return list(self._shard_ids)

    def _next_records(self, shard_id: str, limit: int) -> list[dict[str, Any]]:
        """The shard's records after the last one delivered, as the mapping reads them: the previous read's next
        iterator when everything it returned was delivered since, else a new iterator after the last delivered."""
        after = self._delivered[shard_id]
        resume = self._iterators.get(shard_id)
        if resume is not None and resume[0] == after:
            iterator = resume[1]
        else:
            if after is None:
                kind: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
            else:
                kind = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
            stream = self.resources.stream_name
            iterator = self.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **kind)["ShardIterator"]
        page = self.kinesis.get_records(ShardIterator=iterator, Limit=limit)
        records = page["Records"]
        if page.get("NextShardIterator"):
            self._iterators[shard_id] = (records[-1]["SequenceNumber"] if records else after, page["NextShardIterator"])
        return [self._lambda_record(shard_id, record) for record in records]

    def _lambda_record(self, shard_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
        arrival = record["ApproximateArrivalTimestamp"]
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "data": base64.b64encode(record["Data"]).decode("ascii"),
                "approximateArrivalTimestamp": arrival.timestamp() if hasattr(arrival, "timestamp") else arrival,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": f"arn:aws:iam::{self.resources.account}:role/sink",
            "awsRegion": self.resources.region,
            "eventSourceARN": self.resources.stream_arn,
        }

    def deliver(self, shard_id: str, limit: int = 10) -> int:
        """One invocation of the sink with the shard's next records; a reported failure is retried from the
        lowest failed record, as the mapping does (bounded: a record failing every time is parked). Returns how
        many records left the shard (delivered or parked)."""
        batch = self._next_records(shard_id, limit)
        for _ in range(5):
            if not batch:
                return 0
            failures = self.sink.process(batch).response().get("batchItemFailures", [])
            if not failures:
                self._done(shard_id, batch)
                return len(batch)
            first = min(int(f["itemIdentifier"]) for f in failures)
            ok = [r for r in batch if int(r["kinesis"]["sequenceNumber"]) < first]
            self._done(shard_id, ok)
            batch = batch[len(ok) :]
        self.park(shard_id, batch)
        return len(batch)

    def lose(self, shard_id: str, limit: int = 1) -> int:
        """The shard's next records never reach the sink: parked at the on-failure destination."""
        batch = self._next_records(shard_id, limit)
        if batch:
            self.park(shard_id, batch)
        return len(batch)

    def park(self, shard_id: str, batch: Sequence[dict[str, Any]]) -> None:
        document = {
            "requestContext": {"requestId": str(uuid.uuid4()), "condition": "RetryAttemptsExhausted"},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2026-12-07T00:00:00.000Z",
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": batch[0]["kinesis"]["sequenceNumber"],
                "endSequenceNumber": batch[-1]["kinesis"]["sequenceNumber"],
                "approximateArrivalOfFirstRecord": "2026-12-07T00:00:00.000Z",
                "approximateArrivalOfLastRecord": "2026-12-07T00:00:00.000Z",
                "batchSize": len(batch),
                "streamArn": self.resources.stream_arn,
            },
            "payload": json.dumps({"Records": list(batch)}),
        }
        self.on_failure.send(shard_id, document)
        self.parked += len(batch)
        self._done(shard_id, batch)

    def redeliver(self, shard_id: str, count: int) -> int:
        """The last ``count`` records delivered on the shard reach the sink again (at-least-once)."""
        again = self._history[shard_id][-count:]
        if again:
            self.sink.process(list(again))
        return len(again)

    def _done(self, shard_id: str, batch: Sequence[dict[str, Any]]) -> None:
        if batch:
            self._delivered[shard_id] = batch[-1]["kinesis"]["sequenceNumber"]
            self._history[shard_id].extend(batch)

    def parked_count(self) -> int:
        """Changes waiting in the sink's DLQ and batches at the on-failure destination (what ``redrive`` takes)."""
        sqs, s3 = self.client("sqs"), self.client("s3")
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.resources.dlq_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        queued = int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )
        objects = s3.list_objects_v2(Bucket=self.resources.on_failure_bucket).get("Contents", [])
        # a redriven batch is moved under ``redriven/`` for audit: it is no longer parked
        return queued + sum(1 for o in objects if not o["Key"].startswith(parked.REDRIVEN_PREFIX))

    def parked_rows(self) -> set[str]:
        """The rows (their chunk 0 keys) that changes waiting in the DLQ or the on-failure bucket are about."""
        rows: set[str] = set()
        for item in parked.peek_parked(self.client, self.resources, source="all", limit=1000):
            for record in item.records:
                key = record_key(record.data, self.config)
                if key is not None:
                    rows.add(vector_key(key, self.config.key_columns))
        return rows

    def quiesce(self, rounds: int = 50) -> None:
        """Forward and deliver until nothing is left anywhere: a round that forwarded nothing and delivered
        nothing (every shard read to its end) leaves nothing behind."""
        for _ in range(rounds):
            moved = self.forward()
            for shard_id in self._shard_ids:
                while self.deliver(shard_id, 100):
                    moved += 1
            if not moved:
                return
        raise AssertionError("the pipeline did not go quiet")

    # ---- the index -----------------------------------------------------------------------------------
    def index(self) -> dict[str, tuple[list[float], dict[str, Any]]]:
        """Every stored vector: key -> (data, metadata)."""
        found: dict[str, tuple[list[float], dict[str, Any]]] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "vectorBucketName": self.resources.vector_bucket,
                "indexName": self.resources.vector_index,
                "returnData": True,
                "returnMetadata": True,
            }
            if token:
                params["nextToken"] = token
            page = self.s3vectors.list_vectors(**params)
            for vector in page.get("vectors", []):
                found[vector["key"]] = (vector["data"]["float32"], vector.get("metadata") or {})
            token = page.get("nextToken")
            if not token:
                return found

    def damage(self, kind: str) -> set[str]:
        """Damage the index behind the pipeline's back (a bug, a restore, a hand edit): ``swap`` two rows' chunk
        0 whole (vector, metadata, ``_fp``, ``_ver``); ``tamper`` a metadata value; ``drop`` a vector; ``orphan``
        a chunk beyond its row's count; ``future`` a ``_ver`` an hour ahead (a restore, a bug): a version newer than
        any read; ``stale_future`` that on a changed value: drift no repair ordered by versions mends. Returns the
        rows damaged (their chunk 0 keys; none when there was nothing to damage): only a repair mends them, every
        other row is still the pipeline's to keep right."""
        index = self.index()
        rows = sorted(k for k in index if "#" not in k)
        target = {"vectorBucketName": self.resources.vector_bucket, "indexName": self.resources.vector_index}

        def put(key: str, data: list[float], metadata: Mapping[str, Any]) -> None:
            vector = {"key": key, "data": {"float32": data}, "metadata": dict(metadata)}
            self.s3vectors.put_vectors(**target, vectors=[vector])

        if kind == "swap" and len(rows) >= 2:
            put(rows[0], *index[rows[1]])
            put(rows[1], *index[rows[0]])
            return {rows[0], rows[1]}
        if kind == "tamper" and rows:
            data, metadata = index[rows[0]]
            put(rows[0], data, {**metadata, "tampered": True})
            return {rows[0]}
        if kind == "drop" and rows:
            self.s3vectors.delete_vectors(**target, keys=[rows[-1]])
            return {rows[-1]}
        if kind in ("future", "stale_future") and rows:
            data, metadata = index[rows[-1]]
            write_id = str(metadata.get("_ver", "")).partition(";")[0] or "0"
            ahead = int((self.clock() + 3_600) * 1_000_000)
            version = f"ks:{ahead:016d}:0000:0:later" if self.table is not None else f"pg:{2**62:016x}:00000000:0"
            changed = {"tampered": True} if kind == "stale_future" else {}
            put(rows[-1], data, {**metadata, **changed, "_ver": f"{write_id};{version}"})
            return {rows[-1]}
        if kind == "orphan" and rows:
            data, metadata = index[rows[0]]
            put(f"{rows[0]}#9", data, {**metadata, "_chunk": 9})
            return {rows[0]}
        return set()

    # ---- the operator CLI ------------------------------------------------------------------------------
    def cli(self, *args: str) -> tuple[int, str]:
        """``freshvec --local <args>`` in this process, against this stack's control API and moto."""
        with environment(LOCAL_STATE_ENV, str(self.state_path)), _short_dlq_polls():
            result = CliRunner().invoke(cli_app.app, ["--local", *args], catch_exceptions=False)
        self.cli_runs.append((list(args), result.exit_code, result.output))
        return result.exit_code, result.output

    # ---- the control API (what ``freshvec.local.control`` serves) ---------------------------------------
    def upsert(self, rows: list[dict[str, Any]], ttl_s: int | None = None, **options: Any) -> Any:
        raise ValueError("write to the stepped stack's table directly")

    def delete(self, keys: list[dict[str, Any]], **options: Any) -> Any:
        raise ValueError("write to the stepped stack's table directly")

    def read_rows(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        version, rows = self.source.read(keys, self.clock())
        return [{"key": dict(key), "row": row, "version": version} for key, row in zip(keys, rows, strict=True)]

    def scan_rows(self, segment: int, segments: int, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
        version, rows, cursor = self.source.scan(segment, segments, after, limit, self.clock())
        return {"rows": [{"row": row, "version": version} for row in rows], "next": cursor}

    def put_stream_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        response = self.kinesis.put_records(StreamName=self.resources.stream_name, Records=records)
        keep = ("SequenceNumber", "ShardId", "ErrorCode", "ErrorMessage")
        return {
            "FailedRecordCount": response.get("FailedRecordCount", 0),
            "Records": [{k: v for k, v in r.items() if k in keep} for r in response.get("Records", [])],
        }

    def query(self, text: str, k: int = 5, filter: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        raise ValueError("the stepped stack does not answer queries")

    def wait_synced(self, timeout: float = 30) -> Any:
        return True

    def stats(self) -> dict[str, Any]:
        return {"parked": self.parked}


@contextmanager
def _short_dlq_polls() -> Iterator[None]:
    """moto answers a short SQS poll with every message (one server): no need to long-poll an empty DLQ."""
    before = parked.DLQ_RECEIVE_WAIT_S
    parked.DLQ_RECEIVE_WAIT_S = 0
    try:
        yield
    finally:
        parked.DLQ_RECEIVE_WAIT_S = before
