"""The Keyspaces Streams API stand-in: ``LocalKeyspacesStreams``, checked against the botocore model.

No emulator exists for Keyspaces Streams, so ``LocalKeyspacesStreams`` imitates the boto3
``keyspacesstreams`` client: the same four methods with the same keyword parameters (checked by botocore's
own parameter validator, as the real client does before sending), the same response shapes (datetimes for
timestamps, bytes for blobs, ``ResponseMetadata``) and the real errors as ``botocore.exceptions.ClientError``
subclasses (``.exceptions.ValidationException`` and friends, with ``errorCode`` at the top level of
``response`` as boto3 puts it). The forwarder cannot tell it from the service.

What it models: stream labels and ARNs per enable, shards covering a hash range of the partition key (so one
row's changes stay in one shard, in order), splits and merges with parent lineage, numeric sequence numbers
increasing per shard, 24 h retention and explicit trims (``TrimmedDataAccess``), iterators that expire after
15 minutes (``ExpiredIterator``), pagination tokens that expire (``ExpiredNextToken``), throttling and
latency injection, and call counters. Time comes from an injectable clock so tests can jump hours ahead.

Size: over 500 lines because it is one class, the service stand-in, whose API calls, control surface
(enable, split, merge, trim, fault injection) and internals share one lock and one state; the data model
(records, shards, streams) already lives in ``freshvec.local.keyspaces.model`` and the table in
``freshvec.local.keyspaces.table``. Cutting the class into mixins would scatter that state, not simplify it.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from types import SimpleNamespace
from typing import Any

import botocore.session
from botocore.errorfactory import ClientExceptionsFactory
from botocore.exceptions import ParamValidationError
from botocore.paginate import Paginator
from botocore.validate import ParamValidator

from freshvec.constants import KEYSPACES_ITERATOR_TTL_S, KEYSPACES_MAX_RECORDS_PER_GET, KEYSPACES_RETENTION_HOURS
from freshvec.local.keyspaces.model import (
    EVENT_VERSION,
    _copy,
    _datetime,
    _describe_shard,
    _Latency,
    _Record,
    _Shard,
    _Stream,
    _within_size,
    partition_hash,
)

SERVICE_NAME = "keyspacesstreams"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "111122223333"
RETENTION_S = KEYSPACES_RETENTION_HOURS * 3600
NEXT_TOKEN_TTL_S = 15 * 60
DEFAULT_GET_RECORDS_LIMIT = 100
DEFAULT_PAGE_SIZE = 100
MAX_RESPONSE_BYTES = 1024 * 1024  # GetRecords may return fewer than maxResults records past this size
HASH_SPACE = 2**128
_FIRST_SEQUENCE = 10**20  # sequence numbers have 21+ digits, as the model's minimum length asks
READ_OPERATIONS = ("ListStreams", "GetStream", "GetShardIterator", "GetRecords")
VIEW_TYPES = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY")
_STATUS_BY_CODE = {
    "ValidationException": 400,
    "ThrottlingException": 400,
    "AccessDeniedException": 400,
    "ResourceNotFoundException": 400,
    "InternalServerException": 500,
}
_METHOD_BY_OPERATION = {
    "ListStreams": "list_streams",
    "GetStream": "get_stream",
    "GetShardIterator": "get_shard_iterator",
    "GetRecords": "get_records",
}


class LocalKeyspacesStreams:
    """In-memory Keyspaces Streams with the boto3 ``keyspacesstreams`` client's methods and shapes.

    Thread-safe: readers may call the API from many threads while another thread appends records.
    """

    def __init__(
        self,
        *,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT,
        clock: Callable[[], float] = time.time,
        retention_s: float = RETENTION_S,
        iterator_ttl_s: float = KEYSPACES_ITERATOR_TTL_S,
        next_token_ttl_s: float = NEXT_TOKEN_TTL_S,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.region = region
        self.max_response_bytes = max_response_bytes
        self.account_id = account_id
        self.retention_s = retention_s
        self.iterator_ttl_s = iterator_ttl_s
        self.next_token_ttl_s = next_token_ttl_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()
        self._streams: dict[str, _Stream] = {}
        self._next_seq = _FIRST_SEQUENCE
        self._ids = random.Random(seed)  # noqa: S311 - ids in a simulation, reproducible with a seed
        self._secret = secrets.token_bytes(16) if seed is None else hashlib.sha256(f"{seed}".encode()).digest()
        self._iterator_epoch = 0
        self._throttle_probability = 0.0
        self._throttle_operations: frozenset[str] = frozenset()
        self._throttle_random = random.Random(seed)  # noqa: S311 - fault injection, not security
        self._latency = _Latency()
        self._injected: list[tuple[str, str, str | None]] = []  # (operation, code, errorCode), raised in order
        self._denied: frozenset[str] = frozenset()
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.records_returned = 0
        self._model = _service_model()
        self.exceptions = ClientExceptionsFactory().create_client_exceptions(self._model)
        self.meta = SimpleNamespace(region_name=region, service_model=self._model)
        self._validator = ParamValidator()
        self._max_readers: int | None = None
        self._reader_window_s = 1.0
        self._recent_readers: dict[tuple[str, str], dict[str, float]] = {}

    # ------------------------------------------------------------------------------------------
    # The boto3 client surface
    # ------------------------------------------------------------------------------------------
    def list_streams(self, **params: Any) -> dict[str, Any]:
        """``ListStreams(keyspaceName=, tableName=, maxResults=, nextToken=)``: streams, oldest first."""
        self._begin("ListStreams", params)
        keyspace, table = params.get("keyspaceName"), params.get("tableName")
        limit = self._page_size("ListStreams", params)
        if table is not None and keyspace is None:
            self._raise("ListStreams", "ValidationException", "tableName requires keyspaceName", "InvalidFormat")
        with self._lock:
            self._apply_retention()
            scope = {"k": keyspace, "t": table}
            start = self._read_page_token("ListStreams", params.get("nextToken"), scope)
            matching = [
                stream
                for stream in self._streams.values()
                if (keyspace is None or stream.keyspace == keyspace) and (table is None or stream.table == table)
            ]
            page = matching[start : start + limit]
            response: dict[str, Any] = {
                "streams": [
                    {
                        "streamArn": stream.arn,
                        "keyspaceName": stream.keyspace,
                        "tableName": stream.table,
                        "streamLabel": stream.label,
                    }
                    for stream in page
                ]
            }
            if start + limit < len(matching):
                response["nextToken"] = self._page_token("ListStreams", scope, start + limit)
        return self._finish(response)

    def get_stream(self, **params: Any) -> dict[str, Any]:
        """``GetStream(streamArn=, maxResults=, shardFilter=, nextToken=)``: the stream and a page of shards."""
        self._begin("GetStream", params)
        limit = self._page_size("GetStream", params)
        shard_filter = params.get("shardFilter")
        with self._lock:
            self._apply_retention()
            stream = self._stream("GetStream", params["streamArn"])
            shards = list(stream.shards.values())
            parent_id = None
            if shard_filter is not None:
                if shard_filter.get("type") != "CHILD_SHARDS" or not shard_filter.get("shardId"):
                    self._raise(
                        "GetStream",
                        "ValidationException",
                        "shardFilter needs type CHILD_SHARDS and a shardId",
                        "InvalidFormat",
                    )
                parent_id = shard_filter["shardId"]
                shards = [shard for shard in shards if parent_id in shard.parents]
            scope = {"a": stream.arn, "f": parent_id}
            start = self._read_page_token("GetStream", params.get("nextToken"), scope)
            response: dict[str, Any] = {
                "streamArn": stream.arn,
                "streamLabel": stream.label,
                "streamStatus": stream.status_at(self._clock()),
                "streamViewType": stream.view_type,
                "creationRequestDateTime": _datetime(stream.created_at),
                "keyspaceName": stream.keyspace,
                "tableName": stream.table,
                "shards": [_describe_shard(shard) for shard in shards[start : start + limit]],
            }
            if start + limit < len(shards):
                response["nextToken"] = self._page_token("GetStream", scope, start + limit)
        return self._finish(response)

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        """``GetShardIterator(streamArn=, shardId=, shardIteratorType=, sequenceNumber=)``."""
        operation = "GetShardIterator"
        self._begin(operation, params)
        iterator_type, sequence_text = params["shardIteratorType"], params.get("sequenceNumber")
        with self._lock:
            self._apply_retention()
            stream = self._stream(operation, params["streamArn"])
            shard = self._shard(operation, stream, params["shardId"])
            if iterator_type == "TRIM_HORIZON":
                position = max(shard.trimmed_through + 1, shard.starting_seq)
            elif iterator_type == "LATEST":
                position = shard.last_seq() + 1
            elif iterator_type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
                sequence = self._sequence_in_shard(operation, shard, sequence_text, iterator_type)
                position = sequence if iterator_type == "AT_SEQUENCE_NUMBER" else sequence + 1
                if position <= shard.trimmed_through:
                    self._raise(
                        operation,
                        "ValidationException",
                        f"sequence number {sequence_text} of shard {shard.shard_id} is beyond the trim horizon "
                        f"(records through {shard.trimmed_through} were trimmed)",
                        "TrimmedDataAccess",
                    )
            else:
                self._raise(
                    operation,
                    "ValidationException",
                    f"shardIteratorType {iterator_type!r} is not one of TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, "
                    "AFTER_SEQUENCE_NUMBER",
                    "InvalidFormat",
                )
            iterator = self._iterator(stream.arn, shard.shard_id, position, reader=secrets.token_hex(8))
        return self._finish({"shardIterator": iterator})

    def get_records(self, **params: Any) -> dict[str, Any]:
        """``GetRecords(shardIterator=, maxResults=)``: up to ``maxResults`` (≤1000, default 100) records.

        ``nextShardIterator`` is left out once this response reaches the end of a closed shard.
        """
        operation = "GetRecords"
        self._begin(operation, params)
        limit = params.get("maxResults", DEFAULT_GET_RECORDS_LIMIT)
        if limit > KEYSPACES_MAX_RECORDS_PER_GET:
            self._raise(
                operation,
                "ValidationException",
                f"maxResults {limit} is above the maximum {KEYSPACES_MAX_RECORDS_PER_GET}",
                "InvalidFormat",
            )
        with self._lock:
            self._apply_retention()
            arn, shard_id, position, issued_at, epoch, reader = self._read_iterator(params["shardIterator"])
            if epoch != self._iterator_epoch or self._clock() - issued_at > self.iterator_ttl_s:
                self._raise(operation, "ValidationException", "the shard iterator has expired", "ExpiredIterator")
            stream = self._stream(operation, arn)
            shard = self._shard(operation, stream, shard_id)
            self._check_readers(arn, shard_id, reader)
            if position <= shard.trimmed_through:
                self._raise(
                    operation,
                    "ValidationException",
                    f"the iterator points before the trim horizon of shard {shard_id} "
                    f"(records through {shard.trimmed_through} were trimmed)",
                    "TrimmedDataAccess",
                )
            first = bisect.bisect_left(shard.records, position, key=lambda record: record.seq)
            mark = bisect.bisect_left(shard.progress_marks, position)
            next_mark = shard.progress_marks[mark] if mark < len(shard.progress_marks) else None
            if next_mark is not None and (first == len(shard.records) or next_mark < shard.records[first].seq):
                # The stream moved on here without customer records: an empty page past this one position.
                batch, next_position = [], next_mark + 1
            else:
                candidates = shard.records[first : first + limit]
                if next_mark is not None:
                    candidates = [record for record in candidates if record.seq < next_mark]
                batch = _within_size(candidates, self.max_response_bytes)
                next_position = batch[-1].seq + 1 if batch else position
            caught_up = (shard.records[-1].seq if shard.records else 0) < next_position and (
                not shard.progress_marks or shard.progress_marks[-1] < next_position
            )
            response: dict[str, Any] = {
                "changeRecords": [self._present(stream, record) for record in batch],
                "iteratorDescription": {"iteratorPosition": "AT_TIP" if caught_up else "BEHIND_TIP"},
            }
            if not (caught_up and not shard.is_open):
                response["nextShardIterator"] = self._iterator(arn, shard_id, next_position, reader=reader)
            self.records_returned += len(batch)
        return self._finish(response)

    def can_paginate(self, operation_name: str) -> bool:
        return operation_name in ("list_streams", "get_stream")

    def get_paginator(self, operation_name: str) -> Paginator:
        """botocore's own paginator over this stand-in, as ``client.get_paginator`` gives for the service."""
        names = {"list_streams": "ListStreams", "get_stream": "GetStream"}
        if operation_name not in names:
            raise ValueError(f"operation {operation_name!r} cannot be paginated")
        loader = botocore.session.get_session().get_component("data_loader")
        config = loader.load_service_model(SERVICE_NAME, "paginators-1")["pagination"][names[operation_name]]
        return Paginator(getattr(self, operation_name), config, self._model.operation_model(names[operation_name]))

    # ------------------------------------------------------------------------------------------
    # Control surface: what Keyspaces does by itself or on the operator's request
    # ------------------------------------------------------------------------------------------
    def enable_stream(
        self,
        keyspace: str,
        table: str,
        shard_count: int = 1,
        *,
        view_type: str = "NEW_AND_OLD_IMAGES",
        enabling_s: float = 0.0,
    ) -> str:
        """Turn CDC on for a table; a table's earlier stream is disabled (its records stay readable).

        ``enabling_s``: how long GetStream reports ENABLING before ENABLED, as the service does after a
        CDC change.
        """
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        if view_type not in VIEW_TYPES:
            raise ValueError(f"view_type must be one of {', '.join(VIEW_TYPES)}")
        with self._lock:
            self.disable_stream(keyspace, table)
            now = self._clock()
            label = self._unique_label(keyspace, table, now)
            arn = f"arn:aws:cassandra:{self.region}:{self.account_id}:/keyspace/{keyspace}/table/{table}/stream/{label}"
            stream = _Stream(
                arn=arn,
                keyspace=keyspace,
                table=table,
                label=label,
                created_at=now,
                view_type=view_type,
                enabled_at=now + enabling_s,
            )
            width = HASH_SPACE // shard_count
            for index in range(shard_count):
                end = HASH_SPACE - 1 if index == shard_count - 1 else (index + 1) * width - 1
                self._new_shard(stream, index * width, end, parents=())
            self._streams[arn] = stream
            return arn

    def disable_stream(self, keyspace: str, table: str) -> str | None:
        """Turn CDC off: the table's enabled stream becomes DISABLED and its shards close. Returns its ARN."""
        with self._lock:
            stream = self._current_stream(keyspace, table)
            if stream is None:
                return None
            stream.status, stream.disabled_at = "DISABLED", self._clock()
            for shard in stream.open_shards():
                self._close(shard)
            return stream.arn

    def stream_arn(self, keyspace: str, table: str) -> str | None:
        """The ARN of the table's enabled stream, if CDC is on."""
        with self._lock:
            stream = self._current_stream(keyspace, table)
            return stream.arn if stream else None

    def _current_stream(self, keyspace: str, table: str) -> _Stream | None:
        with self._lock:
            for stream in reversed(self._streams.values()):
                if stream.keyspace == keyspace and stream.table == table and stream.status == "ENABLED":
                    return stream
            return None

    def append(self, keyspace: str, table: str, record: Mapping[str, Any]) -> str | None:
        """Add one change record (no ``sequenceNumber``) to the table's enabled stream; return its sequence number.

        The record goes to the open shard whose hash range covers the partition key, so a row's changes stay
        in one shard in order. Returns None when CDC is off for the table (nothing is captured, as in Keyspaces).
        """
        if "sequenceNumber" in record:
            raise ValueError("append() assigns the sequence number; leave sequenceNumber out")
        if not record.get("partitionKeys"):
            raise ValueError("a change record needs partitionKeys")
        body = _copy(record)
        with self._lock:
            stream = self._current_stream(keyspace, table)
            if stream is None:
                return None
            now = self._clock()
            body.setdefault("eventVersion", EVENT_VERSION)
            body.setdefault("createdAt", _datetime(now))
            body.setdefault("origin", "USER")
            hash_value = partition_hash(body["partitionKeys"])
            shard = next(shard for shard in stream.open_shards() if shard.covers(hash_value))
            seq = self._take_seq()
            size = len(json.dumps(body, default=str, separators=(",", ":")))
            shard.records.append(_Record(seq=seq, created_at=now, body=body, size=size))
            shard.last_assigned = seq
            return str(seq)

    def progress(self, keyspace: str, table: str, pages: int = 1) -> None:
        """The stream moves on without change records: each open shard gets ``pages`` positions that a reader
        walks as empty pages with ``BEHIND_TIP`` ("the stream is progressing but no customer records are
        available at this position; continue polling normally": iteratorDescription, keyspacesstreams model)."""
        with self._lock:
            stream = self._current_stream(keyspace, table)
            if stream is None:
                return
            for shard in stream.open_shards():
                for _ in range(pages):
                    seq = self._take_seq()
                    shard.progress_marks.append(seq)
                    shard.last_assigned = seq

    def split_shard(self, stream_arn: str, shard_id: str) -> tuple[str, str]:
        """Close an open shard and give its hash range to two new children (lower half, upper half)."""
        with self._lock:
            stream, shard = self._control_shard(stream_arn, shard_id)
            if shard.hash_start == shard.hash_end:
                raise ValueError(f"shard {shard_id} covers a single hash and cannot be split")
            self._close(shard)
            middle = (shard.hash_start + shard.hash_end) // 2
            low = self._new_shard(stream, shard.hash_start, middle, parents=(shard.shard_id,))
            high = self._new_shard(stream, middle + 1, shard.hash_end, parents=(shard.shard_id,))
            return low.shard_id, high.shard_id

    def merge_shards(self, stream_arn: str, shard_a: str, shard_b: str) -> str:
        """Close two open shards with adjacent hash ranges and give their union to one new child."""
        with self._lock:
            stream, first = self._control_shard(stream_arn, shard_a)
            _, second = self._control_shard(stream_arn, shard_b)
            low, high = sorted((first, second), key=lambda shard: shard.hash_start)
            if low.hash_end + 1 != high.hash_start:
                raise ValueError(f"shards {shard_a} and {shard_b} do not cover adjacent hash ranges")
            self._close(first)
            self._close(second)
            child = self._new_shard(stream, low.hash_start, high.hash_end, parents=(first.shard_id, second.shard_id))
            return child.shard_id

    def trim(self, stream_arn: str, shard_id: str, through_seq: str | int) -> None:
        """Drop a shard's records up to and including ``through_seq`` (readers behind it get TrimmedDataAccess)."""
        with self._lock:
            stream = self._streams.get(stream_arn)
            if stream is None or shard_id not in stream.shards:
                raise KeyError(f"no shard {shard_id} in stream {stream_arn}")
            self._trim_shard(stream.shards[shard_id], int(through_seq))

    def expire_iterators(self) -> None:
        """Make every shard iterator handed out so far expired, as if 15 minutes had passed."""
        with self._lock:
            self._iterator_epoch += 1

    def throttle(
        self, probability: float, seed: int | None = None, operations: Iterable[str] = READ_OPERATIONS
    ) -> None:
        """From now on, each call to ``operations`` fails with ThrottlingException with this probability."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        unknown = set(operations) - set(READ_OPERATIONS)
        if unknown:
            raise ValueError(f"unknown operation(s) {sorted(unknown)}; use {', '.join(READ_OPERATIONS)}")
        with self._lock:
            self._throttle_probability = probability
            self._throttle_operations = frozenset(operations)
            if seed is not None:
                self._throttle_random = random.Random(seed)  # noqa: S311 - fault injection, not security

    def latency(
        self,
        get_records_s: float = 0.0,
        get_shard_iterator_s: float = 0.0,
        get_stream_s: float = 0.0,
        list_streams_s: float = 0.0,
    ) -> None:
        """Sleep this long (real time) in each call, to make benchmarks feel the service's round trips."""
        with self._lock:
            self._latency = _Latency(list_streams_s, get_stream_s, get_shard_iterator_s, get_records_s)

    def inject_error(self, operation: str, code: str, error_code: str | None = None, count: int = 1) -> None:
        """Fail the next ``count`` calls of ``operation`` with ``code`` (and ``errorCode`` for validation errors)."""
        if operation not in READ_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; use {', '.join(READ_OPERATIONS)}")
        if code not in _STATUS_BY_CODE:
            raise ValueError(f"{code} is not an error Keyspaces Streams returns; use {', '.join(_STATUS_BY_CODE)}")
        with self._lock:
            self._injected.extend([(operation, code, error_code)] * count)

    def limit_readers(self, max_readers: int | None = 2, window_s: float = 1.0) -> None:
        """Throttle GetRecords on a shard read by more than ``max_readers`` iterator chains within ``window_s``.

        Keyspaces throttles a shard read by more than two processes at once. A reader is one chain of
        iterators (a GetShardIterator call and the next iterators that follow it). Off by default; None
        turns it off again.
        """
        if max_readers is not None and max_readers < 1:
            raise ValueError("max_readers must be at least 1")
        with self._lock:
            self._max_readers = max_readers
            self._reader_window_s = window_s
            self._recent_readers.clear()

    def deny_access(self, operations: Iterable[str] = READ_OPERATIONS) -> None:
        """Answer ``operations`` with AccessDeniedException (pass an empty list to allow everything again)."""
        with self._lock:
            self._denied = frozenset(operations)

    def counters(self) -> dict[str, Any]:
        """Calls per operation, throttled calls per operation and records returned so far."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "throttled": dict(self.throttled),
                "records_returned": self.records_returned,
            }

    def shard_ids(self, stream_arn: str, *, open_only: bool = False) -> list[str]:
        with self._lock:
            stream = self._streams[stream_arn]
            return [shard.shard_id for shard in stream.shards.values() if shard.is_open or not open_only]

    def record_count(self, stream_arn: str) -> int:
        """Records still held (not trimmed) across the stream's shards."""
        with self._lock:
            self._apply_retention()
            return sum(len(shard.records) for shard in self._streams[stream_arn].shards.values())

    # ------------------------------------------------------------------------------------------
    # Internals
    # ------------------------------------------------------------------------------------------
    def _begin(self, operation: str, params: Mapping[str, Any]) -> None:
        """What every call does first: validate parameters like boto3, count, then injected failures."""
        report = self._validator.validate(params, self._model.operation_model(operation).input_shape)
        if report.has_errors():
            raise ParamValidationError(report=report.generate_report())
        delay = self._latency.for_operation(operation)
        if delay > 0:
            self._sleep(delay)  # outside the lock: slow calls must not serialise other readers
        with self._lock:
            self.calls[operation] += 1
            if operation in self._denied:
                self._raise(operation, "AccessDeniedException", f"not authorized to perform cassandra:{operation}")
            for index, (injected_operation, code, error_code) in enumerate(self._injected):
                if injected_operation == operation:
                    del self._injected[index]
                    self._raise(operation, code, f"injected {code}", error_code)
            if operation in self._throttle_operations and self._throttle_random.random() < self._throttle_probability:
                self.throttled[operation] += 1
                self._raise(operation, "ThrottlingException", "Rate exceeded for shard reads; reduce the request rate")

    def _finish(self, response: dict[str, Any]) -> dict[str, Any]:
        response["ResponseMetadata"] = self._metadata(200)
        return response

    def _metadata(self, status: int) -> dict[str, Any]:
        request_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        return {
            "RequestId": request_id,
            "HTTPStatusCode": status,
            "HTTPHeaders": {
                "x-amzn-requestid": request_id,
                "content-type": "application/x-amz-json-1.0",
                "date": _datetime(self._clock()).strftime("%a, %d %b %Y %H:%M:%S GMT"),
            },
            "RetryAttempts": 0,
        }

    def _raise(self, operation: str, code: str, message: str, error_code: str | None = None) -> None:
        """Raise the modeled exception exactly as boto3 builds it from the service's error response."""
        status = _STATUS_BY_CODE[code]
        response: dict[str, Any] = {
            "Error": {"Message": message, "Code": code},
            "ResponseMetadata": self._metadata(status),
            "message": message,
        }
        if error_code is not None:
            response["errorCode"] = error_code
        raise self.exceptions.from_code(code)(response, operation)

    def _page_size(self, operation: str, params: Mapping[str, Any]) -> int:
        limit = params.get("maxResults", DEFAULT_PAGE_SIZE)
        if limit > DEFAULT_PAGE_SIZE:
            self._raise(
                operation, "ValidationException", f"maxResults {limit} is above the maximum 100", "InvalidFormat"
            )
        return limit

    def _stream(self, operation: str, arn: str) -> _Stream:
        stream = self._streams.get(arn)
        if stream is None:
            if not arn.startswith("arn:aws:cassandra:") or "/stream/" not in arn:
                self._raise(operation, "ValidationException", f"{arn!r} is not a stream ARN", "InvalidFormat")
            self._raise(operation, "ResourceNotFoundException", f"stream {arn} was not found")
        return stream

    def _shard(self, operation: str, stream: _Stream, shard_id: str) -> _Shard:
        shard = stream.shards.get(shard_id)
        if shard is None:
            self._raise(operation, "ResourceNotFoundException", f"shard {shard_id} was not found in {stream.arn}")
        return shard

    def _sequence_in_shard(self, operation: str, shard: _Shard, text: str | None, iterator_type: str) -> int:
        if text is None:
            self._raise(operation, "ValidationException", f"{iterator_type} needs a sequenceNumber", "InvalidFormat")
        if not text.isdigit():
            self._raise(operation, "ValidationException", f"{text!r} is not a sequence number", "InvalidFormat")
        sequence = int(text)
        upper = shard.ending_seq if shard.ending_seq is not None else shard.last_seq()
        if not shard.starting_seq <= sequence <= upper:
            self._raise(
                operation,
                "ValidationException",
                f"sequence number {text} does not belong to shard {shard.shard_id}",
                "InvalidFormat",
            )
        return sequence

    def _control_shard(self, stream_arn: str, shard_id: str) -> tuple[_Stream, _Shard]:
        stream = self._streams.get(stream_arn)
        if stream is None or shard_id not in stream.shards:
            raise KeyError(f"no shard {shard_id} in stream {stream_arn}")
        shard = stream.shards[shard_id]
        if not shard.is_open:
            raise ValueError(f"shard {shard_id} is already closed")
        return stream, shard

    def _take_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    def _new_shard(self, stream: _Stream, start: int, end: int, parents: tuple[str, ...]) -> _Shard:
        now_ms = int(self._clock() * 1000)
        shard_id = f"shardId-{now_ms:020d}-{self._ids.getrandbits(32):08x}"
        while shard_id in stream.shards:
            shard_id = f"shardId-{now_ms:020d}-{self._ids.getrandbits(32):08x}"
        shard = _Shard(
            shard_id=shard_id,
            ordinal=len(stream.shards),
            hash_start=start,
            hash_end=end,
            parents=parents,
            starting_seq=self._take_seq(),
        )
        stream.shards[shard_id] = shard
        return shard

    def _close(self, shard: _Shard) -> None:
        # The ending sequence number is the shard's last record, so a reader checkpointed there is done.
        shard.ending_seq = shard.last_assigned if shard.last_assigned is not None else self._take_seq()
        shard.closed_at = self._clock()

    def _trim_shard(self, shard: _Shard, through_seq: int) -> None:
        keep_from = bisect.bisect_right(shard.records, through_seq, key=lambda record: record.seq)
        shard.records = shard.records[keep_from:]
        shard.trimmed_through = max(shard.trimmed_through, through_seq)

    def _apply_retention(self) -> None:
        """Trim what is older than the retention period; forget closed shards and streams older than it."""
        horizon = self._clock() - self.retention_s
        for stream in list(self._streams.values()):
            for shard in list(stream.shards.values()):
                # Records are appended in time order, so the expired ones are a prefix.
                expired = 0
                while expired < len(shard.records) and shard.records[expired].created_at < horizon:
                    expired += 1
                if expired:
                    self._trim_shard(shard, shard.records[expired - 1].seq)
                if shard.closed_at is not None and shard.closed_at < horizon and not shard.records:
                    del stream.shards[shard.shard_id]
            if stream.disabled_at is not None and stream.disabled_at < horizon and not stream.shards:
                del self._streams[stream.arn]

    def _unique_label(self, keyspace: str, table: str, now: float) -> str:
        taken = {
            stream.label for stream in self._streams.values() if (stream.keyspace, stream.table) == (keyspace, table)
        }
        moment = now
        label = _datetime(moment).strftime("%Y-%m-%dT%H:%M:%S.") + f"{_datetime(moment).microsecond // 1000:03d}"
        while label in taken or (taken and label <= max(taken)):
            moment += 0.001  # labels are creation times in ms; a re-enable within the same ms gets the next one
            label = _datetime(moment).strftime("%Y-%m-%dT%H:%M:%S.") + f"{_datetime(moment).microsecond // 1000:03d}"
        return label

    # --- opaque, signed tokens: the state rides in the token, as the service's do ---
    def _sign(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(body + digest).decode("ascii")

    def _unsign(self, token: str) -> dict[str, Any] | None:
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        body, digest = raw[:-32], raw[-32:]
        if len(raw) <= 32 or not hmac.compare_digest(digest, hmac.new(self._secret, body, hashlib.sha256).digest()):
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def _iterator(self, arn: str, shard_id: str, position: int, *, reader: str) -> str:
        # ``r`` names the reader: set by GetShardIterator and carried along its chain of next iterators.
        return self._sign(
            {
                "a": arn,
                "s": shard_id,
                "p": position,
                "i": self._clock(),
                "e": self._iterator_epoch,
                "r": reader,
                "op": "iterator",
            }
        )

    def _read_iterator(self, token: str) -> tuple[str, str, int, float, int, str]:
        payload = self._unsign(token)
        if payload is None or payload.get("op") != "iterator":
            self._raise("GetRecords", "ValidationException", "the shard iterator is not valid", "InvalidFormat")
        return payload["a"], payload["s"], int(payload["p"]), float(payload["i"]), int(payload["e"]), payload["r"]

    def _check_readers(self, arn: str, shard_id: str, reader: str) -> None:
        """Throttle a shard read by more readers than allowed within the window (see ``limit_readers``)."""
        if self._max_readers is None:
            return
        now = self._clock()
        recent = self._recent_readers.setdefault((arn, shard_id), {})
        for other, last_read in list(recent.items()):
            if now - last_read > self._reader_window_s:
                del recent[other]
        if reader not in recent and len(recent) >= self._max_readers:
            self.throttled["GetRecords"] += 1
            self._raise(
                "GetRecords",
                "ThrottlingException",
                f"more than {self._max_readers} processes are reading shard {shard_id}; use one reader per shard",
            )
        recent[reader] = now

    def _page_token(self, operation: str, scope: Mapping[str, Any], offset: int) -> str:
        # Padded so tokens meet the model's 80-character minimum whatever the scope.
        return self._sign({"op": operation, "o": offset, "i": self._clock(), **scope, "n": "0" * 16})

    def _read_page_token(self, operation: str, token: str | None, scope: Mapping[str, Any]) -> int:
        if token is None:
            return 0
        payload = self._unsign(token)
        if payload is None or payload.get("op") != operation or any(payload.get(k) != v for k, v in scope.items()):
            self._raise(
                operation, "ValidationException", "the nextToken is not valid for this request", "InvalidFormat"
            )
        if self._clock() - float(payload["i"]) > self.next_token_ttl_s:
            self._raise(operation, "ValidationException", "the nextToken has expired", "ExpiredNextToken")
        return int(payload["o"])

    def _present(self, stream: _Stream, record: _Record) -> dict[str, Any]:
        """A stored record as GetRecords returns it, cut down to the stream's view type."""
        body = _copy(record.body)
        body["sequenceNumber"] = str(record.seq)
        if stream.view_type in ("NEW_IMAGE", "KEYS_ONLY"):
            body.pop("oldImage", None)
        if stream.view_type in ("OLD_IMAGE", "KEYS_ONLY"):
            body.pop("newImage", None)
        return body


@cache
def _service_model() -> Any:
    return botocore.session.get_session().get_service_model(SERVICE_NAME)
