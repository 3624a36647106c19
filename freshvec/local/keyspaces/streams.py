"""The Keyspaces Streams API stand-in: ``LocalKeyspacesStreams``, checked against the botocore model.

No emulator exists for Keyspaces Streams, so ``LocalKeyspacesStreams`` imitates the boto3
``keyspacesstreams`` client: the same four methods with the same keyword parameters (checked by botocore's
own parameter validator, as the real client does before sending), the same response shapes (datetimes for
timestamps, bytes for blobs, ``ResponseMetadata``) and the real errors as ``botocore.exceptions.ClientError``
subclasses (``.exceptions.ValidationException`` and friends, with ``errorCode`` at the top level of
``response`` as boto3 puts it). The forwarder cannot tell it from the service.

This module is the API over the stored streams (``freshvec.local.keyspaces.store.StreamStore``: labels,
shards, lineage, records, trims, retention): iterators that expire after 15 minutes (``ExpiredIterator``),
signed pagination tokens that expire (``ExpiredNextToken``), ``TrimmedDataAccess`` behind the trim horizon,
throttling, latency and error injection, and call counters. Time comes from an injectable clock so tests
can jump hours ahead.
"""

from __future__ import annotations

import bisect
import hashlib
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from functools import cache
from types import SimpleNamespace
from typing import Any

import botocore.session
from botocore.errorfactory import ClientExceptionsFactory
from botocore.exceptions import ParamValidationError
from botocore.paginate import Paginator
from botocore.validate import ParamValidator

from freshvec.constants import KEYSPACES_ITERATOR_TTL_S, KEYSPACES_MAX_RECORDS_PER_GET
from freshvec.local.keyspaces.faults import READ_OPERATIONS, STATUS_BY_CODE, FaultInjection
from freshvec.local.keyspaces.model import (
    _copy,
    _datetime,
    _describe_shard,
    _Record,
    _Shard,
    _Stream,
    _within_size,
)
from freshvec.local.keyspaces.store import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    HASH_SPACE,
    RETENTION_S,
    VIEW_TYPES,
    StreamStore,
)
from freshvec.local.keyspaces.tokens import sign, unsign

__all__ = ["HASH_SPACE", "READ_OPERATIONS", "VIEW_TYPES", "LocalKeyspacesStreams"]

SERVICE_NAME = "keyspacesstreams"
NEXT_TOKEN_TTL_S = 15 * 60
DEFAULT_GET_RECORDS_LIMIT = 100
DEFAULT_PAGE_SIZE = 100
MAX_RESPONSE_BYTES = 1024 * 1024  # GetRecords may return fewer than maxResults records past this size
_METHOD_BY_OPERATION = {
    "ListStreams": "list_streams",
    "GetStream": "get_stream",
    "GetShardIterator": "get_shard_iterator",
    "GetRecords": "get_records",
}


class LocalKeyspacesStreams(StreamStore, FaultInjection):
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
        super().__init__(region=region, account_id=account_id, clock=clock, retention_s=retention_s, seed=seed)
        self.max_response_bytes = max_response_bytes
        self.iterator_ttl_s = iterator_ttl_s
        self.next_token_ttl_s = next_token_ttl_s
        self._sleep = sleep
        self._secret = secrets.token_bytes(16) if seed is None else hashlib.sha256(f"{seed}".encode()).digest()
        self._iterator_epoch = 0
        FaultInjection.__init__(self, seed)
        self.calls: Counter[str] = Counter()
        self.records_returned = 0
        self._model = _service_model()
        self.exceptions = ClientExceptionsFactory().create_client_exceptions(self._model)
        self.meta = SimpleNamespace(region_name=region, service_model=self._model)
        self._validator = ParamValidator()

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
            refusal = self._reader_refusal(arn, shard_id, reader, self._clock())
            if refusal is not None:
                self._raise(operation, "ThrottlingException", refusal)
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
    def expire_iterators(self) -> None:
        """Make every shard iterator handed out so far expired, as if 15 minutes had passed."""
        with self._lock:
            self._iterator_epoch += 1

    def counters(self) -> dict[str, Any]:
        """Calls per operation, throttled calls per operation and records returned so far."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "throttled": dict(self.throttled),
                "records_returned": self.records_returned,
            }

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
            fault = self._fault_for(operation)
            if fault is not None:
                self._raise(operation, *fault)

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
        status = STATUS_BY_CODE[code]
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

    def _iterator(self, arn: str, shard_id: str, position: int, *, reader: str) -> str:
        # ``r`` names the reader: set by GetShardIterator and carried along its chain of next iterators.
        return sign(
            self._secret,
            {
                "a": arn,
                "s": shard_id,
                "p": position,
                "i": self._clock(),
                "e": self._iterator_epoch,
                "r": reader,
                "op": "iterator",
            },
        )

    def _read_iterator(self, token: str) -> tuple[str, str, int, float, int, str]:
        payload = unsign(self._secret, token)
        if payload is None or payload.get("op") != "iterator":
            self._raise("GetRecords", "ValidationException", "the shard iterator is not valid", "InvalidFormat")
        return payload["a"], payload["s"], int(payload["p"]), float(payload["i"]), int(payload["e"]), payload["r"]

    def _page_token(self, operation: str, scope: Mapping[str, Any], offset: int) -> str:
        # Padded so tokens meet the model's 80-character minimum whatever the scope.
        return sign(self._secret, {"op": operation, "o": offset, "i": self._clock(), **scope, "n": "0" * 16})

    def _read_page_token(self, operation: str, token: str | None, scope: Mapping[str, Any]) -> int:
        if token is None:
            return 0
        payload = unsign(self._secret, token)
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
