"""Pieces of the CLI's operations: Kinesis sending, rate bound, token ranges, parked-record parsing, output."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from rich.console import Console

from freshvec.cli import app as cli
from freshvec.cli import operations
from freshvec.cli.load import Backoff
from freshvec.config import default_config


def _kinesis() -> Any:
    return boto3.client("kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _records(n: int) -> list[operations.OutRecord]:
    return [operations.OutRecord(f"r{i}".encode(), f"k{i % 3}") for i in range(n)]


def _ok(n: int) -> dict[str, Any]:
    return {"Records": [{"SequenceNumber": str(i + 1), "ShardId": "shardId-0"} for i in range(n)]}


def _entries(records: list[operations.OutRecord]) -> list[dict[str, Any]]:
    return [{"Data": r.data, "PartitionKey": r.partition_key} for r in records]


def test_partial_failure_resends_from_the_first_failed_record() -> None:
    client = _kinesis()
    records = _records(5)
    failed = {
        "FailedRecordCount": 2,
        "Records": [
            {"SequenceNumber": "1", "ShardId": "shardId-0"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
            {"SequenceNumber": "3", "ShardId": "shardId-0"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"},
            {"SequenceNumber": "5", "ShardId": "shardId-0"},
        ],
    }
    with Stubber(client) as stub:
        stub.add_response("put_records", failed, {"StreamName": "s", "Records": _entries(records)})
        # record 2 succeeded but is re-sent too, so the records of key k2 stay in order
        stub.add_response("put_records", _ok(4), {"StreamName": "s", "Records": _entries(records[1:])})
        operations.KinesisSender(client, "s", backoff=Backoff(base_s=0, cap_s=0)).send(records)
        stub.assert_no_pending_responses()


def test_throttled_calls_are_retried_then_reported() -> None:
    client = _kinesis()
    records = _records(2)
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error("put_records", "ProvisionedThroughputExceededException", "Rate exceeded", 400)
        sender = operations.KinesisSender(client, "s", backoff=Backoff(base_s=0, cap_s=0, max_attempts=3))
        with pytest.raises(operations.OperatorError, match="kept refusing records after 3 attempts"):
            sender.send(records)


def test_access_denied_is_not_retried() -> None:
    client = _kinesis()
    with Stubber(client) as stub:
        stub.add_client_error("put_records", "AccessDeniedException", "not allowed", 400)
        with pytest.raises(Exception, match="AccessDeniedException"):
            operations.KinesisSender(client, "s").send(_records(1))
        stub.assert_no_pending_responses()


def test_records_are_sent_in_calls_of_at_most_500() -> None:
    client = _kinesis()
    records = _records(1200)
    with Stubber(client) as stub:
        for chunk in (records[:500], records[500:1000], records[1000:]):
            stub.add_response("put_records", _ok(len(chunk)), {"StreamName": "s", "Records": _entries(chunk)})
        operations.KinesisSender(client, "s").send(records)
        stub.assert_no_pending_responses()


def test_requests_stay_under_five_mib() -> None:
    big = [operations.OutRecord(b"x" * 1_000_000, "k") for _ in range(7)]
    assert [len(chunk) for chunk in operations._chunks(big)] == [5, 2]


def test_rate_limiter_spaces_records_by_the_rate() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)

    limiter = operations.RateLimiter(100, clock=lambda: now[0], sleep=sleep)
    limiter.acquire(50)  # the first page goes at once
    limiter.acquire(50)  # the next waits for the first to "drain" at 100/s
    limiter.acquire(100)
    assert waits == [pytest.approx(0.5), pytest.approx(1.0)]
    now[0] += 10  # idle time does not build up a burst beyond the next page
    limiter.acquire(10)
    assert len(waits) == 2


def test_token_segments_cover_the_ring_without_gaps() -> None:
    segments = operations.token_segments(7)
    assert segments[0][0] == operations.MIN_TOKEN and segments[-1][1] == operations.MAX_TOKEN
    assert all(a[1] == b[0] for a, b in itertools.pairwise(segments))
    with pytest.raises(ValueError):
        operations.token_segments(0)


def test_range_select_uses_the_whole_partition_key() -> None:
    text = operations.build_range_select("shop", "orders", ["shop", "day"], ["shop", "day", "n"], inclusive=True)
    assert text == (
        'SELECT token("shop", "day") AS fv_token, "shop", "day", "n" FROM "shop"."orders" '
        'WHERE token("shop", "day") >= ? AND token("shop", "day") <= ?'
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "not a Lambda invocation record"),
        (
            json.dumps(
                {"payload": json.dumps({"Records": [{"kinesis": {"data": "!!", "partitionKey": "k"}}]})}
            ).encode(),
            "not a Lambda invocation record",
        ),
        (json.dumps({"KinesisBatchInfo": {"shardId": "s"}}).encode(), "no payload"),
    ],
)
def test_unreadable_on_failure_objects_are_flagged(body: bytes, words: str) -> None:
    item = operations.read_on_failure_object(body, "key")
    assert item.unreadable is not None and words in item.unreadable and item.records == []


def test_dlq_body_decoding() -> None:
    body = json.dumps({"payload_b64": base64.b64encode(b"{}").decode(), "partition_key": '["a"]', "error_class": "X"})
    records, reason, _failed_at, position, unreadable = operations._decode_dlq_body(body)
    assert (
        records == [operations.OutRecord(b"{}", '["a"]')]
        and reason == "X:"
        and position == "?/?"
        and unreadable is None
    )
    assert operations._decode_dlq_body(json.dumps({"payload_b64": "AA=="}))[4] is not None


def _render(renderable: Any) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_query_table_names_the_distance_and_columns() -> None:
    result = operations.QueryResult(
        "euclidean",
        [
            operations.QueryHit(
                1, '["Jaws"]', {"title": "Jaws"}, 0.25, {"original_lang": "en", "vote_count": 9, "rel_date": 19750620}
            )
        ],
    )
    text = _render(cli.render_query_table(result, ["original_lang", "rel_date"], default_config().column_types))
    assert "by euclidean distance (0 = identical, lower = closer)" in text and "title=Jaws" in text
    assert "0.2500" in text and "original_lang" in text and "1975-06-20" in text
    assert cli._query_columns(default_config(), None) == [
        "original_lang",
        "rel_date",
        "popularity",
        "vote_count",
        "vote_average",
    ]
    assert cli._query_columns(default_config(), "overview, title") == ["overview", "title"]


def test_status_screen() -> None:
    report = operations.StatusReport(
        forwarder_lag_ms=850,
        sink_iterator_age_ms=None,
        dlq_visible=2,
        dlq_in_flight=1,
        on_failure_objects=0,
        vectors=100_000,
        vectors_capped=True,
        rows=123_456,
        rows_estimated=True,
        last_errors=["2026-11-22T10:00:00.000Z  PoisonRecordError: bad"],
        notes=["metrics: unavailable (denied)"],
    )
    res = operations.StackResources.from_outputs(
        "freshvec", "eu-west-1", {"PipelineConfig": default_config().to_json()}
    )
    text = _render(cli.render_status(report, res))
    for expected in (
        "stack freshvec (eu-west-1)",
        "850 ms",
        "no data",
        "2 waiting, 1 in flight",
        "≥100,000",
        "~123,456",
        "PoisonRecordError: bad",
        "metrics: unavailable (denied)",
    ):
        assert expected in text
