"""Fault injection for local mode: wrap the REAL components and make them fail the way AWS does.

Every injector wraps a working component (a boto3 client pointed at moto, the local embedder) and, at the rates of a
``FaultPlan``, raises the error the real service raises: the modelled botocore exception class (a ``ClientError``)
with the real error code, message and HTTP status, built from the service's botocore model. Kinesis PutRecords
partial failures are real partial responses: the failed records are not written, the others are, and the response
carries ``FailedRecordCount`` and per-record ``ErrorCode``. Kills raise ``InjectedCrash`` at the point where a
process could die: in the forwarder between its steps (through its ``hooks`` callback), and in the sink after a
write reached S3 Vectors or the DLQ but before the batch finished.

Faults are injected where freshvec's code calls a client, so botocore's own retries never absorb them: every
one reaches freshvec's retry policies and error classes. The local embedder has no retry layer of its own (a
Bedrock provider retries throttles inside the sink), so Bedrock faults reach the sink's partial-failure path
directly. One seeded RNG drives all injectors (decisions are reproducible for a single thread; with several
threads the interleaving varies, the rates do not).
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from typing import Any

from botocore.errorfactory import ClientExceptionsFactory
from botocore.exceptions import ClientError
from botocore.session import get_session

from freshvec.errors import classify
from freshvec.ports import EmbedResult

_ACCOUNT = "123456789012"
# Operations that change state: kills happen after these succeed ("the write landed, the process died").
_SINK_WRITE_OPERATIONS = {
    "s3vectors": frozenset({"put_vectors", "delete_vectors"}),
    "sqs": frozenset({"send_message", "send_message_batch"}),
}
_S3VECTORS_DATA_OPERATIONS = frozenset(
    {"put_vectors", "delete_vectors", "get_vectors", "list_vectors", "query_vectors"}
)
_DYNAMODB_CONDITIONAL_OPERATIONS = frozenset({"put_item", "update_item", "delete_item"})


class InjectedCrash(RuntimeError):
    """A simulated process death at a named point; nothing after that point ran."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(f"injected crash {where}")


@dataclass(frozen=True)
class FaultPlan:
    """How often each boundary fails. Rates are probabilities per call; counts are events spread over a run."""

    seed: int = 7
    bedrock_throttle: float = 0.20  # embedder call -> ThrottlingException (429)
    bedrock_timeout: float = 0.02  # embedder call -> ModelTimeoutException (408)
    # What one Bedrock request covers: "call" = one embedder call (a batched request, as Cohere's up to 96
    # texts), "text" = each text on its own (Titan's one text per request; far more partial failures).
    bedrock_scope: str = "call"
    s3vectors_throttle: float = 0.05  # S3 Vectors data call -> TooManyRequestsException (429)
    s3vectors_server_error: float = 0.10  # S3 Vectors data call -> InternalServerException 500 / ServiceUnavailable 503
    kinesis_partial_failure: float = 0.10  # PutRecords call -> some records fail with ProvisionedThroughputExceeded
    dynamodb_race: float = 0.05  # conditional DynamoDB write -> ConditionalCheckFailedException (not written)
    forwarder_kill: float = 0.05  # forwarder step (after read / put / checkpoint) -> crash
    sink_kill: float = 0.05  # sink write (PutVectors, DeleteVectors, DLQ send) lands, then the sink crashes
    keyspaces_throttle: float = 0.02  # Keyspaces Streams read -> ThrottlingException (the stand-in's own switch)
    shard_splits: int = 2  # Keyspaces shard splits during a run
    shard_merges: int = 1  # Keyspaces shard merges during a run
    iterator_expiries: int = 4  # times every open Keyspaces shard iterator is expired during a run

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {f.name}={value} must be between 0 and 1")
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"fault count {f.name}={value} must not be negative")
        if self.bedrock_scope not in ("call", "text"):
            raise ValueError(f"bedrock_scope must be 'call' or 'text', got {self.bedrock_scope!r}")
        if self.bedrock_throttle + self.bedrock_timeout > 1.0:
            raise ValueError("bedrock_throttle + bedrock_timeout must not exceed 1")
        if self.s3vectors_throttle + self.s3vectors_server_error > 1.0:
            raise ValueError("s3vectors_throttle + s3vectors_server_error must not exceed 1")

    @classmethod
    def none(cls, seed: int = 7) -> FaultPlan:
        """No faults at all (a baseline run)."""
        zero = {f.name: (0.0 if f.type == "float" else 0) for f in fields(cls) if f.type in ("float", "int")}
        zero.pop("seed")
        return cls(seed=seed, **zero)

    def with_rates(self, **changes: Any) -> FaultPlan:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def _service_model(service_name: str) -> Any:
    return get_session().get_service_model(service_name)


@cache
def _exceptions(service_name: str) -> Any:
    """The modelled exception classes of a service, exactly as a boto3 client exposes them (``client.exceptions``)."""
    return ClientExceptionsFactory().create_client_exceptions(_service_model(service_name))


@cache
def _http_status(service_name: str, code: str) -> int:
    model = _service_model(service_name)
    if code not in model.shape_names:
        return 400
    return int(model.shape_for(code).metadata.get("error", {}).get("httpStatusCode", 400))


def service_error(
    service_name: str, code: str, message: str, operation_name: str, *, exceptions: Any = None, **extra: Any
) -> ClientError:
    """The exception botocore raises for this error response: the modelled class, code, message and HTTP status.

    ``exceptions`` is a client's ``client.exceptions``: each boto3 client has its own exception classes, so an
    error injected into a client must be an instance of that client's class for ``except client.exceptions.X``.
    """
    status = _http_status(service_name, code)
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "HTTPStatusCode": status,
            "HTTPHeaders": {"x-amzn-errortype": code},
            "RetryAttempts": 0,
        },
        "message": message,
        **extra,
    }
    return (exceptions or _exceptions(service_name)).from_code(code)(response, operation_name)


def _operation_name(method_name: str) -> str:
    return "".join(part.capitalize() for part in method_name.split("_"))


class Chaos:
    """One source of faults shared by every injector of a run, with counters of what it injected."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.plan = plan or FaultPlan()
        self._rng = random.Random(self.plan.seed)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.enabled = True

    # ---- decisions and counters ------------------------------------------------------------
    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (always False while disabled)."""
        if not self.enabled or rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def pick(self, options: Sequence[Any]) -> Any:
        with self._lock:
            return self._rng.choice(list(options))

    def subset(self, count: int, probability: float) -> set[int]:
        """A random non-empty subset of ``range(count)``, each index kept with ``probability``."""
        with self._lock:
            chosen = {i for i in range(count) if self._rng.random() < probability}
            if not chosen and count:
                chosen.add(self._rng.randrange(count))
        return chosen

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._counts[kind] += n

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    # ---- injectors -------------------------------------------------------------------------
    def wrap_client(self, service_name: str, client: Any) -> Any:
        """A fault-injecting proxy around a boto3 client; services without faults come back unchanged."""
        wrappers: dict[str, Callable[[Any], Any]] = {
            "s3vectors": lambda c: S3VectorsFaults(c, self),
            "kinesis": lambda c: KinesisFaults(c, self),
            "dynamodb": lambda c: DynamoDbFaults(c, self),
            "sqs": lambda c: SqsFaults(c, self),
        }
        wrapper = wrappers.get(service_name)
        return wrapper(client) if wrapper else client

    def wrap_embedder(self, embedder: Any) -> EmbedderFaults:
        return EmbedderFaults(embedder, self)

    def forwarder_hook(self, step: Any = None, *args: Any, **kwargs: Any) -> None:
        """The forwarder's ``hooks`` callback: dies at a random step (after read, after put, after checkpoint)."""
        name = step if isinstance(step, str) else kwargs.get("step", "step")
        if self.roll(self.plan.forwarder_kill):
            self.count(f"forwarder_kill_{name}")
            raise InjectedCrash(f"in the forwarder at {name}")


class _ClientFaults:
    """Forward everything to the real client; subclasses intercept the operations they break."""

    service_name = ""

    def __init__(self, client: Any, chaos: Chaos) -> None:
        self._client = client
        self._chaos = chaos

    @property
    def wrapped(self) -> Any:
        return self._client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        # Paginators and waiters call the real client directly: faults hit the operations freshvec calls itself.
        if name.startswith("_") or not callable(attribute) or name in {"get_paginator", "get_waiter", "can_paginate"}:
            return attribute
        return self._intercept(name, attribute)

    def _intercept(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        return method

    def _error(self, code: str, message: str, method_name: str, **extra: Any) -> ClientError:
        exceptions = getattr(self._client, "exceptions", None)
        return service_error(
            self.service_name, code, message, _operation_name(method_name), exceptions=exceptions, **extra
        )


class S3VectorsFaults(_ClientFaults):
    """S3 Vectors: 429 TooManyRequestsException, 500/503 server errors, and sink kills after a write landed."""

    service_name = "s3vectors"

    def _intercept(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        if name not in _S3VECTORS_DATA_OPERATIONS:
            return method
        chaos, plan = self._chaos, self._chaos.plan

        def call(**kwargs: Any) -> Any:
            if chaos.roll(plan.s3vectors_throttle):
                chaos.count("s3vectors_429")
                raise self._error("TooManyRequestsException", "Rate exceeded; reduce your request rate.", name)
            if chaos.roll(plan.s3vectors_server_error):
                code = chaos.pick(("InternalServerException", "ServiceUnavailableException"))
                chaos.count("s3vectors_5xx")
                message = "We encountered an internal error. Please try again."
                if code == "ServiceUnavailableException":
                    message = "Service is unavailable. Please retry."
                raise self._error(code, message, name)
            result = method(**kwargs)
            if name in _SINK_WRITE_OPERATIONS["s3vectors"] and chaos.roll(plan.sink_kill):
                chaos.count("sink_kill")
                raise InjectedCrash(f"in the sink after {_operation_name(name)}")
            return result

        return call


class SqsFaults(_ClientFaults):
    """SQS (the sink's DLQ): the message is parked, then the sink dies before finishing its batch."""

    service_name = "sqs"

    def _intercept(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        if name not in _SINK_WRITE_OPERATIONS["sqs"]:
            return method
        chaos = self._chaos

        def call(**kwargs: Any) -> Any:
            result = method(**kwargs)
            if chaos.roll(chaos.plan.sink_kill):
                chaos.count("sink_kill")
                raise InjectedCrash(f"in the sink after {_operation_name(name)}")
            return result

        return call


class DynamoDbFaults(_ClientFaults):
    """DynamoDB: a conditional write loses a race (ConditionalCheckFailedException, nothing written)."""

    service_name = "dynamodb"

    def _intercept(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        if name not in _DYNAMODB_CONDITIONAL_OPERATIONS:
            return method
        chaos = self._chaos

        def call(**kwargs: Any) -> Any:
            if "ConditionExpression" in kwargs and chaos.roll(chaos.plan.dynamodb_race):
                chaos.count("dynamodb_race")
                extra: dict[str, Any] = {}
                if kwargs.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and "Key" in kwargs:
                    current = self._client.get_item(TableName=kwargs["TableName"], Key=kwargs["Key"]).get("Item")
                    if current is not None:
                        extra["Item"] = current
                raise self._error("ConditionalCheckFailedException", "The conditional request failed", name, **extra)
            return method(**kwargs)

        return call


class KinesisFaults(_ClientFaults):
    """Kinesis PutRecords partial failures: a real partial response, the failed records not written."""

    service_name = "kinesis"

    def _intercept(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        if name != "put_records":
            return method
        chaos = self._chaos

        def call(**kwargs: Any) -> Any:
            records = list(kwargs.get("Records", ()))
            if not records or not chaos.roll(chaos.plan.kinesis_partial_failure):
                return method(**kwargs)
            failed = chaos.subset(len(records), 0.5)
            chaos.count("kinesis_partial_failure")
            chaos.count("kinesis_records_failed", len(failed))
            return self._partial_put(method, kwargs, records, failed)

        return call

    def _partial_put(
        self, method: Callable[..., Any], kwargs: Mapping[str, Any], records: list[dict], failed: set[int]
    ) -> dict[str, Any]:
        kept = [record for i, record in enumerate(records) if i not in failed]
        written: list[dict[str, Any]] = []
        response: dict[str, Any] = {}
        if kept:
            response = method(**{**kwargs, "Records": kept})
            written = list(response["Records"])
        stream = kwargs.get("StreamName") or str(kwargs.get("StreamARN", "")).rsplit("/", 1)[-1]
        shards = self._open_shards(kwargs)
        entries: list[dict[str, Any]] = []
        for i, record in enumerate(records):
            if i in failed:
                shard = _shard_for(shards, record)
                entries.append(
                    {
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": f"Rate exceeded for shard {shard} in stream {stream} under account {_ACCOUNT}.",
                    }
                )
            else:
                entries.append(written.pop(0))
        return {
            "FailedRecordCount": len(failed),
            "Records": entries,
            "EncryptionType": response.get("EncryptionType", "NONE"),
            "ResponseMetadata": response.get("ResponseMetadata", {"HTTPStatusCode": 200, "RetryAttempts": 0}),
        }

    def _open_shards(self, kwargs: Mapping[str, Any]) -> list[tuple[int, int, str]]:
        """Hash key ranges of the stream's open shards, read now (the stream may have been resharded)."""
        selector = (
            {"StreamName": kwargs["StreamName"]} if "StreamName" in kwargs else {"StreamARN": kwargs["StreamARN"]}
        )
        return [
            (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]), s["ShardId"])
            for s in self._client.list_shards(**selector)["Shards"]
            if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
        ]


def _shard_for(shards: Sequence[tuple[int, int, str]], record: Mapping[str, Any]) -> str:
    """The shard whose hash key range holds the record (the real error message names it)."""
    explicit = record.get("ExplicitHashKey")
    digest = hashlib.md5(str(record["PartitionKey"]).encode("utf-8")).hexdigest()  # noqa: S324 - Kinesis' own hash
    hash_key = int(explicit) if explicit else int(digest, 16)
    for start, end, shard_id in shards:
        if start <= hash_key <= end:
            return shard_id
    return shards[0][2] if shards else "shardId-000000000000"


class EmbedderFaults:
    """The embedder at the Bedrock boundary: ThrottlingException (429) and ModelTimeoutException (408).

    With ``bedrock_scope="call"`` one embedder call is one Bedrock request: it fails or succeeds as a whole.
    With ``"text"`` each text is its own request (Titan embeds one text per call), so a call can come back
    partly embedded. ``embed_documents`` and ``embed_query`` raise the ClientError; ``try_embed_documents``
    (the sink's path) returns it per text, classified as the Bedrock providers classify it.
    """

    def __init__(self, embedder: Any, chaos: Chaos) -> None:
        self._embedder = embedder
        self._chaos = chaos

    @property
    def wrapped(self) -> Any:
        return self._embedder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def _fault(self) -> ClientError | None:
        chaos, plan = self._chaos, self._chaos.plan
        if chaos.roll(plan.bedrock_throttle):
            chaos.count("bedrock_throttle")
            message = "Too many requests, please wait before trying again."
            return service_error("bedrock-runtime", "ThrottlingException", message, "InvokeModel")
        if chaos.roll(plan.bedrock_timeout):
            chaos.count("bedrock_timeout")
            message = "Model has timed out in processing the request."
            return service_error("bedrock-runtime", "ModelTimeoutException", message, "InvokeModel")
        return None

    def _faults_for(self, count: int) -> list[ClientError | None]:
        if not count:
            return []
        if self._chaos.plan.bedrock_scope == "call":
            return [self._fault()] * count
        return [self._fault() for _ in range(count)]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        for fault in self._faults_for(len(texts)):
            if fault is not None:
                raise fault
        return self._embedder.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        fault = self._fault()
        if fault is not None:
            raise fault
        return self._embedder.embed_query(text)

    def try_embed_documents(self, texts: Sequence[str]) -> list[EmbedResult]:
        faults = self._faults_for(len(texts))
        healthy = [text for text, fault in zip(texts, faults, strict=True) if fault is None]
        embedded = iter(self._embedder.try_embed_documents(healthy) if healthy else [])
        results = []
        for fault in faults:
            if fault is None:
                results.append(next(embedded))
                continue
            error = classify(fault)(f"Bedrock InvokeModel: {fault}")
            error.__cause__ = fault
            results.append(EmbedResult(error=error))
        return results
