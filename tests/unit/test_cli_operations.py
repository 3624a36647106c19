"""Pieces of the CLI's commands: sending to Kinesis, rate bound, token ranges, parked-record parsing, output."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from rich.console import Console

from freshvec.cli import app as cli
from freshvec.cli import backfill, parked, query, stack, status
from freshvec.cli.errors import OperatorError, explain
from freshvec.cli.send import ChangeStreamSender, RateLimiter
from freshvec.config import default_config
from freshvec.errors import MisconfigurationError
from freshvec.outgoing import OutgoingRecord
from freshvec.retry import RetryPolicy


def _kinesis() -> Any:
    """A real botocore Kinesis client for Stubber (which answers every call itself: nothing is sent)."""
    return stack.make_client_factory("us-east-1", "http://127.0.0.1:9", access_key="k")("kinesis")


def _records(n: int, rows: int = 3) -> list[OutgoingRecord]:
    return [OutgoingRecord(f"r{i}".encode(), f"k{i % rows}", str(i + 1)) for i in range(n)]


def _ok(n: int) -> dict[str, Any]:
    return {"Records": [{"SequenceNumber": str(i + 1), "ShardId": "shardId-0"} for i in range(n)]}


def _entries(records: list[OutgoingRecord]) -> list[dict[str, Any]]:
    return [{"Data": r.data, "PartitionKey": r.partition_key} for r in records]


def _sender(client: Any, attempts: int = 8) -> ChangeStreamSender:
    return ChangeStreamSender.for_kinesis(client, "s", retry=RetryPolicy(attempts=attempts, sleep=lambda _s: None))


def test_partial_failure_resends_only_the_rejected_records_before_the_next_call() -> None:
    client = _kinesis()
    records = _records(5)  # rows k0 k1 k2 k0 k1: one change per row per call, so two calls
    failed = {
        "FailedRecordCount": 1,
        "Records": [
            {"SequenceNumber": "1", "ShardId": "shardId-0"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
            {"SequenceNumber": "3", "ShardId": "shardId-0"},
        ],
    }
    with Stubber(client) as stub:
        stub.add_response("put_records", failed, {"StreamName": "s", "Records": _entries(records[:3])})
        # only the rejected record is re-sent, and before the next change of its row (k1) goes out
        stub.add_response("put_records", _ok(1), {"StreamName": "s", "Records": _entries(records[1:2])})
        stub.add_response("put_records", _ok(2), {"StreamName": "s", "Records": _entries(records[3:])})
        assert _sender(client).send(records) == 2
        stub.assert_no_pending_responses()


def test_throttled_calls_are_retried_then_reported() -> None:
    client = _kinesis()
    records = _records(2)
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error("put_records", "ProvisionedThroughputExceededException", "Rate exceeded", 400)
        with pytest.raises(OperatorError, match=r"Kinesis stream s kept refusing records: .* after 3 attempts"):
            _sender(client, attempts=3).send(records)
        stub.assert_no_pending_responses()


def test_access_denied_is_not_retried() -> None:
    client = _kinesis()
    with Stubber(client) as stub:
        stub.add_client_error("put_records", "AccessDeniedException", "not allowed", 400)
        with pytest.raises(MisconfigurationError, match="AccessDeniedException") as caught:
            _sender(client).send(_records(1))
        stub.assert_no_pending_responses()
    message = explain(caught.value)
    assert message is not None and "AccessDeniedException" in message and "\n" not in message


def test_records_are_sent_in_calls_of_at_most_500() -> None:
    client = _kinesis()
    records = _records(1200, rows=1200)
    with Stubber(client) as stub:
        for chunk in (records[:500], records[500:1000], records[1000:]):
            stub.add_response("put_records", _ok(len(chunk)), {"StreamName": "s", "Records": _entries(chunk)})
        assert _sender(client).send(records) == 3
        stub.assert_no_pending_responses()


class _RecordingWriter:
    """A ChangeStreamWriter that only notes each call's records."""

    def __init__(self) -> None:
        self.calls: list[list[OutgoingRecord]] = []

    def put(self, records: Sequence[OutgoingRecord]) -> int:
        self.calls.append(list(records))
        return 1


def test_requests_stay_under_five_mib() -> None:
    big = [OutgoingRecord(b"x" * 1_000_000, f"k{i}", str(i)) for i in range(7)]
    writer = _RecordingWriter()
    ChangeStreamSender(writer, "s").send(big)
    assert [len(call) for call in writer.calls] == [5, 2]


def test_changes_of_one_row_go_in_successive_calls_in_order() -> None:
    records = [OutgoingRecord(f"{key}{n}".encode(), key, f"{key}{n}") for n in range(3) for key in ("a", "b")]
    records.insert(1, OutgoingRecord(b"a-again", "a", "a-again"))
    writer = _RecordingWriter()
    ChangeStreamSender(writer, "s").send(records)
    for call in writer.calls:
        keys = [r.partition_key for r in call]
        assert len(keys) == len(set(keys)), keys
    sent = [r for call in writer.calls for r in call]
    assert sorted(sent, key=records.index) == records and len(sent) == len(records)
    for key in ("a", "b"):
        assert [r for r in sent if r.partition_key == key] == [r for r in records if r.partition_key == key]


def test_rate_limiter_spaces_records_by_the_rate() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)

    limiter = RateLimiter(100, clock=lambda: now[0], sleep=sleep)
    limiter.acquire(50)  # the first page goes at once
    limiter.acquire(50)  # the next waits for the first to "drain" at 100/s
    limiter.acquire(100)
    assert waits == [pytest.approx(0.5), pytest.approx(1.0)]
    now[0] += 10  # idle time does not build up a burst beyond the next page
    limiter.acquire(10)
    assert len(waits) == 2


def test_token_segments_cover_the_ring_without_gaps() -> None:
    segments = backfill.token_segments(7)
    assert segments[0][0] == backfill.MIN_TOKEN and segments[-1][1] == backfill.MAX_TOKEN
    assert all(a[1] == b[0] for a, b in itertools.pairwise(segments))
    with pytest.raises(ValueError):
        backfill.token_segments(0)


def test_range_select_uses_the_whole_partition_key() -> None:
    text = backfill.build_range_select("shop", "orders", ["shop", "day"], ["shop", "day", "n"], inclusive=True)
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
    item = parked.read_on_failure_object(body, "key")
    assert item.unreadable is not None and words in item.unreadable and item.records == []


def test_dlq_body_decoding() -> None:
    body = json.dumps({"payload_b64": base64.b64encode(b"{}").decode(), "partition_key": '["a"]', "error_class": "X"})
    records, reason, _failed_at, position, unreadable = parked.decode_dlq_body(body)
    assert (
        [(r.data, r.partition_key) for r in records] == [(b"{}", '["a"]')]
        and reason == "X:"
        and position == "?/?"
        and unreadable is None
    )
    assert parked.decode_dlq_body(json.dumps({"payload_b64": "AA=="}))[4] is not None


def _render(renderable: Any) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_query_table_names_the_distance_and_columns() -> None:
    result = query.QueryResult(
        "euclidean",
        [
            query.QueryHit(
                1, '["Jaws"]', {"title": "Jaws"}, 0.25, {"original_lang": "en", "vote_count": 9, "rel_date": 19750620}
            )
        ],
    )
    text = _render(query.render_query_table(result, ["original_lang", "rel_date"], default_config().column_types))
    assert "by euclidean distance (0 = identical, lower = closer)" in text and "title=Jaws" in text
    assert "0.2500" in text and "original_lang" in text and "1975-06-20" in text
    assert query.query_columns(default_config(), None) == [
        "original_lang",
        "rel_date",
        "popularity",
        "vote_count",
        "vote_average",
    ]
    assert query.query_columns(default_config(), "overview, title") == ["overview", "title"]


def test_status_screen() -> None:
    report = status.StatusReport(
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
    res = stack.StackResources.from_outputs("freshvec", "eu-west-1", {"PipelineConfig": default_config().to_json()})
    text = _render(status.render_status(report, res))
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


def test_query_table_fits_an_80_column_terminal() -> None:
    config = default_config()
    hits = [
        query.QueryHit(
            rank,
            vector_key_text,
            {"title": title},
            0.123456 * rank,
            {
                "original_lang": "en",
                "rel_date": 19930611,
                "popularity": "48.312",
                "vote_count": 16210,
                "vote_average": "7.9",
            },
        )
        for rank, (vector_key_text, title) in enumerate(
            [('["Jurassic Park"]', "Jurassic Park"), ('["x"]', "The Lost World: Jurassic Park " * 3)], start=1
        )
    ]
    narrow = Console(width=80, record=True)
    narrow.print(
        query.render_query_table(
            query.QueryResult("cosine", hits), query.query_columns(config, None), config.column_types, width=80
        )
    )
    lines = narrow.export_text().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    header = next(line for line in lines if "rank" in line)
    assert "┃ distance ┃" in header and "┃ rank ┃" in header
    assert passage_width(header) >= query.PASSAGE_MIN_WIDTH
    assert any("0.1235" in line for line in lines) and any("0.2469" in line for line in lines)
    assert any("title=Jurassic" in line for line in lines)
    caption = " ".join(line.strip() for line in lines[-3:])
    assert "not shown at this width:" in caption and "vote_average" in caption


def passage_width(header: str) -> int:
    """The width of the passage column, from the header line's cell borders."""
    cells = header.split("┃")
    cell = next(c for c in cells if c.strip() == "passage")
    return len(cell) - 2  # one space of padding on each side


BOOK = (
    "On the desert planet Arrakis, a noble family is betrayed and their son Paul joins the Fremen of the deep "
    "desert, who ride giant sandworms and guard the spice melange."
)


def test_at_80_columns_the_passage_reads_as_phrases_not_one_word_a_line() -> None:
    hits = [query.QueryHit(1, "[1]", {"id": 1}, 0.4457, {"name": "Dune", "author": "Frank Herbert",
                                                         "publication_year": 1965}, passage=BOOK)]  # fmt: skip
    narrow = Console(width=80, record=True)
    narrow.print(query.render_query_table(query.QueryResult("cosine", hits), ["name", "author", "publication_year"],
                                          width=80))  # fmt: skip
    lines = narrow.export_text().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert all(line.endswith(("┃", "│", "┓", "┩", "┘")) for line in lines if line[:1] in "┏┃┡│└")  # not cut off
    header = next(line for line in lines if "rank" in line)
    assert passage_width(header) >= 30
    column = header.split("┃").index(next(c for c in header.split("┃") if c.strip() == "passage"))
    body = [line.split("│")[column].strip() for line in lines if line.startswith("│")]
    assert " ".join(body) == BOOK  # the whole passage, folded
    assert len(body) <= 6 and all(len(part.split()) >= 3 for part in body[:-1])  # phrases, not single words
    assert "name" in header  # a short key leaves room for some metadata beside the passage
    assert any("│ Dune " in line for line in lines)


def test_load_help_shows_no_path_of_a_checkout_and_the_choices() -> None:
    from typer.testing import CliRunner

    import freshvec
    from freshvec.cli.load import UPDATE_MODES
    from freshvec.cli.load_command import SAMPLE_DATA, Update

    text = " ".join(CliRunner().invoke(cli.app, ["load", "--help"]).output.split())
    assert "[default: the bundled sample movies]" in text and str(SAMPLE_DATA) not in text
    assert "--update <ratings|text>" in text
    assert tuple(mode.value for mode in Update) == UPDATE_MODES
    # The default is package data: found next to the installed package, wherever it is installed.
    assert SAMPLE_DATA.is_file() and SAMPLE_DATA.parent.parent == Path(freshvec.__file__).parent
