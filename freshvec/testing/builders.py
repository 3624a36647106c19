"""Builders for change events and Lambda Kinesis records, shared by the sink tests and the sink benchmark."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

from freshvec.config import PipelineConfig, default_config
from freshvec.keys import partition_key, vector_key

SHARD_ID = "shardId-000000000000"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/freshvec-changes"
_SOURCE_SEQ = itertools.count(1)


def movie(title: str, overview: str | None = "A story.", **columns: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "title": title,
        "overview": overview,
        "original_lang": "en",
        "rel_date": "1993-06-11",
        "popularity": "12.50",
        "vote_count": 100,
        "vote_average": "7.10",
    }
    row.update(columns)
    return row


def change(
    op: str,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    *,
    key: dict[str, Any] | None = None,
    ts: str = "2026-11-22T00:15:03.120Z",
    config: PipelineConfig | None = None,
) -> dict[str, Any]:
    """A change-event document for the movies table."""
    config = config or default_config()
    image = new or old or {}
    return {
        "v": 1,
        "source": "keyspaces",
        "keyspace": config.keyspace,
        "table": config.table,
        "op": op,
        "key": key or {column: image.get(column) for column in config.primary_key},
        "new": new,
        "old": old,
        "seq": f"src-{next(_SOURCE_SEQ):08d}",
        "shard": "keyspaces-shard-1",
        "ts": ts,
        "origin": "TTL" if op == "EXPIRE" else "USER",
    }


def kinesis_record(payload: dict[str, Any] | bytes | str, sequence_number: int, arrival: float = 1.7e9) -> dict:
    """One record of a Lambda Kinesis event, built the way Lambda delivers it."""
    if isinstance(payload, dict):
        data = json.dumps(payload).encode("utf-8")
        pkey = partition_key(json.dumps([payload.get("key", {}).get("title")]))
    else:
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        pkey = "unknown"
    seq = f"{sequence_number:056d}"
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": pkey,
            "sequenceNumber": seq,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD_ID}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/freshvec-sink",
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM_ARN,
    }


def batch(*payloads: dict[str, Any] | bytes | str, start: int = 1) -> list[dict[str, Any]]:
    return [kinesis_record(p, start + i) for i, p in enumerate(payloads)]


def key_of(title: str) -> str:
    return vector_key({"title": title}, ("title",))
