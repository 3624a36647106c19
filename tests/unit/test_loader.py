"""Reading, CQL conversion, statement building, bounded concurrency and retry of the row loader."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from cassandra import InvalidRequest
from hypothesis import given
from hypothesis import strategies as st

from freshvec.cli.keyspaces import tls_context
from freshvec.cli.load import (
    CONTROL_API_RETRY,
    DRIVER_RETRY,
    CassandraRowWriter,
    WriteOp,
    WriteOptions,
    build_delete,
    build_insert,
    build_update,
    load_rows,
    plan_writes,
)
from freshvec.config import PipelineConfig, default_config
from freshvec.datafiles import LoaderFileError, read_records, sample_movies
from freshvec.retry import RetryPolicy
from freshvec.sources.keyspaces.cqltypes import parse_cql_type
from freshvec.sources.keyspaces.driver import (
    CellError,
    TableSchema,
    convert_row,
    row_to_json,
    to_driver_value,
    to_json_value,
)
from freshvec.testing.fakes.cassandra import FakeSession, fail_times, timed_out, unavailable, write_timeout

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = sample_movies()


@pytest.fixture
def schema() -> TableSchema:
    return TableSchema.from_config(default_config())


def _session(schema: TableSchema, **kwargs) -> FakeSession:
    return FakeSession(primary_key=schema.primary_key, partition_key=schema.partition_key, **kwargs)


def _fast_retry(attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base_delay_s=0.001, max_delay_s=0.002)


# ---- conversion --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cql", "raw", "expected"),
    [
        ("text", "Jaws", "Jaws"),
        ("int", "16210", 16210),
        ("int", 16210, 16210),
        ("bigint", Decimal("12.0"), 12),
        ("varint", "123456789012345678901234567890", 123456789012345678901234567890),
        ("decimal", "7.9", Decimal("7.9")),
        ("decimal", Decimal("0.1000"), Decimal("0.1000")),
        ("decimal", 3, Decimal(3)),
        ("double", "1.5", 1.5),
        ("boolean", "TRUE", True),
        ("boolean", False, False),
        ("date", "1993-06-11", date(1993, 6, 11)),
        ("timestamp", "2026-11-22T10:15:03.120Z", datetime(2026, 11, 22, 10, 15, 3, 120000, tzinfo=UTC)),
        ("timestamp", "2026-11-22T10:15:03", datetime(2026, 11, 22, 10, 15, 3, tzinfo=UTC)),
        ("uuid", "1b4e28ba-2fa1-11d2-883f-0016d3cca427", uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")),
        ("inet", "10.0.0.1", "10.0.0.1"),
        ("blob", base64.b64encode(b"\x00\x01").decode(), b"\x00\x01"),
        ("list<int>", [1, "2"], [1, 2]),
        ("set<text>", '["a", "b", "a"]', {"a", "b"}),
        ("map<text, decimal>", {"x": "1.10"}, {"x": Decimal("1.10")}),
        ("map<int, text>", [[1, "a"]], {1: "a"}),
        ("tuple<int, text>", [1, "a"], (1, "a")),
        ("frozen<list<date>>", ["2020-01-02"], [date(2020, 1, 2)]),
        ("int", None, None),
    ],
)
def test_values_are_converted_by_cql_type(cql: str, raw: object, expected: object) -> None:
    assert to_driver_value(raw, parse_cql_type(cql)) == expected


def test_decimals_stay_exact_from_json_lines(tmp_path: Path, schema: TableSchema) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"title": "A", "popularity": 0.1, "vote_average": 7.90}\n')
    [record] = list(read_records(path, schema.column_types))
    row = convert_row(record.values, schema)
    assert row["popularity"] == Decimal("0.1") and str(row["vote_average"]) == "7.90"


@pytest.mark.parametrize(
    ("cql", "raw", "words"),
    [
        ("int", "12.5", "whole number"),
        ("int", 2**31, "out of range for int"),
        ("tinyint", 128, "out of range for tinyint"),
        ("int", True, "whole number"),
        ("decimal", "seven", "expected a decimal"),
        ("decimal", "NaN", "not a finite decimal"),
        ("date", "11/06/1993", "a date YYYY-MM-DD"),
        ("date", 19930611, "a date YYYY-MM-DD"),
        ("boolean", "maybe", "true or false"),
        ("text", 5, "expected text"),
        ("ascii", "café", "non-ASCII"),
        ("timeuuid", "1b4e28ba-2fa1-41d2-883f-0016d3cca427", "version 1"),
        ("inet", "300.1.1.1", "an IP address"),
        ("blob", "not base64!", "base64"),
        ("list<int>", {"a": 1}, "expected an array"),
        ("set<int>", "[1,", "expected JSON"),
        ("tuple<int, int>", [1], "array of 2 values"),
        ("counter", 1, "counter columns"),
    ],
)
def test_bad_values_name_the_problem(cql: str, raw: object, words: str) -> None:
    with pytest.raises(CellError, match=words):
        to_driver_value(raw, parse_cql_type(cql))


@pytest.mark.parametrize(
    ("cql", "driver", "expected"),
    [
        ("decimal", Decimal("7.90"), "7.90"),
        ("date", date(1993, 6, 11), "1993-06-11"),
        ("timestamp", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000Z"),
        ("blob", b"\x00\x01", "AAE="),
        ("set<int>", {3, 1, 2}, [1, 2, 3]),
        ("map<int, text>", {1: "a"}, [[1, "a"]]),
        ("map<text, int>", {"a": 1}, {"a": 1}),
        ("double", float("nan"), "NaN"),
        ("uuid", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_driver_values_become_change_event_json(cql: str, driver: object, expected: object) -> None:
    assert to_json_value(driver, parse_cql_type(cql)) == expected


def test_row_round_trip_to_json(schema: TableSchema) -> None:
    row = convert_row({"title": "A", "rel_date": "2001-02-03", "popularity": "1.50", "vote_count": "3"}, schema)
    assert row_to_json(row, schema) == {"title": "A", "rel_date": "2001-02-03", "popularity": "1.50", "vote_count": 3}


def test_missing_primary_key_is_a_row_error(schema: TableSchema) -> None:
    with pytest.raises(CellError, match="primary key column 'title'"):
        convert_row({"overview": "x"}, schema)
    with pytest.raises(CellError, match="column 'vote_count'"):
        convert_row({"title": "A", "vote_count": "many"}, schema)


# ---- reading files -----------------------------------------------------------------------------


def test_sample_dataset_loads_cleanly(schema: TableSchema) -> None:
    records = list(read_records(SAMPLE, schema.column_types))
    assert len(records) >= 100
    rows = [convert_row(r.values, schema) for r in records]
    assert all(isinstance(r["popularity"], Decimal) and isinstance(r["rel_date"], date) for r in rows)


def test_csv_rows_with_line_numbers_and_nulls(tmp_path: Path, schema: TableSchema) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('title,overview,vote_count\n"Jaws","A shark, a town",10\n"Alien",,\n"Big","multi\nline",x,extra\n')
    records = list(read_records(path, schema.column_types))
    assert records[0].line == 2 and records[0].values == {
        "title": "Jaws",
        "overview": "A shark, a town",
        "vote_count": "10",
    }
    assert records[1].values == {"title": "Alien", "overview": None, "vote_count": None}
    assert records[2].line == 5 and records[2].error is not None and "more than header" in records[2].error


def test_file_level_problems_are_clear(tmp_path: Path, schema: TableSchema) -> None:
    with pytest.raises(LoaderFileError, match="no such file"):
        read_records(tmp_path / "missing.csv", schema.column_types)
    bad = tmp_path / "rows.csv"
    bad.write_text("title,genre\nA,b\n")
    with pytest.raises(LoaderFileError, match="column 'genre' is not in the table"):
        read_records(bad, schema.column_types)
    other = tmp_path / "rows.parquet"
    other.write_text("")
    with pytest.raises(LoaderFileError, match="unknown file type"):
        read_records(other, schema.column_types)


def test_bad_rows_are_reported_by_line_and_the_rest_loads(tmp_path: Path, schema: TableSchema) -> None:
    path = tmp_path / "rows.jsonl"
    lines = [
        {"title": "One", "vote_count": 1},
        "{not json",
        {"title": "Two", "rel_date": "yesterday"},
        {"title": "Three", "genre": "x"},
        {"title": "Four", "popularity": "4.25"},
        [1, 2],
    ]
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n\n")
    session = _session(schema)
    report = load_rows(read_records(path, schema.column_types), schema, CassandraRowWriter(session, schema))
    assert report.written == 2 and report.read == 6
    assert [(e.line, e.reason.split(":")[0]) for e in report.skipped] == [
        (2, "not valid JSON"),
        (3, "column 'rel_date'"),
        (4, "column 'genre' is not in the table"),
        (6, "each line must be one JSON object"),
    ]
    assert set(session.rows) == {("One",), ("Four",)}
    assert session.rows[("Four",)]["popularity"] == Decimal("4.25")


# ---- statements and modes ----------------------------------------------------------------------


def test_statements_quote_identifiers_and_bind_values() -> None:
    assert build_insert("media", "movies", ["title", "vote_count"]) == (
        'INSERT INTO "media"."movies" ("title", "vote_count") VALUES (?, ?)'
    )
    assert build_delete("shop", "orders", ["shop", "order_id"]) == (
        'DELETE FROM "shop"."orders" WHERE "shop" = ? AND "order_id" = ?'
    )


def test_ttl_timestamp_and_partial_updates_become_using_clauses() -> None:
    options = WriteOptions(ttl_s=60, timestamp_us=1_795_000_000_000_000, partial=True)
    assert build_update("media", "movies", ["vote_count"], ["title"], options) == (
        'UPDATE "media"."movies" USING TTL 60 AND TIMESTAMP 1795000000000000 SET "vote_count" = ? WHERE "title" = ?'
    )
    assert build_insert("media", "movies", ["title"], WriteOptions(ttl_s=5)) == (
        'INSERT INTO "media"."movies" ("title") VALUES (?) USING TTL 5'
    )
    assert build_delete("media", "movies", ["title"], WriteOptions(timestamp_us=7)) == (
        'DELETE FROM "media"."movies" USING TIMESTAMP 7 WHERE "title" = ?'
    )
    assert WriteOptions().using == ""


def test_statements_are_prepared_once_per_column_set(schema: TableSchema) -> None:
    session = _session(schema)
    ops = [WriteOp(i, "upsert", {"title": f"t{i}", "vote_count": i}) for i in range(20)]
    ops.append(WriteOp(99, "delete", {"title": "t1"}))
    CassandraRowWriter(session, schema).write(ops, lambda _r: None)
    assert len(session.prepared) == 2
    assert ("t1",) not in session.rows and len(session.rows) == 19


def test_update_and_delete_modes(schema: TableSchema) -> None:
    row = convert_row(
        {"title": "A", "overview": "Text.", "popularity": "1.5", "vote_count": 10, "vote_average": "7.0"}, schema
    )
    [ratings] = plan_writes([(1, row)], schema, update="ratings")
    assert ratings.row["overview"] == "Text." and ratings.row["title"] == "A"
    assert ratings.row["vote_average"] == Decimal("7.1") and ratings.row["vote_count"] == 11
    [text] = plan_writes([(1, row)], schema, update="text", stamp="10:00:00")
    assert text.row["overview"] == "Text. (revised 10:00:00)" and text.row["vote_count"] == 10
    [delete] = plan_writes([(1, row)], schema, delete=True)
    assert delete.kind == "delete" and delete.row == {"title": "A"}
    with pytest.raises(ValueError, match="unknown update mode"):
        list(plan_writes([(1, row)], schema, update="everything"))


def test_limit_counts_good_rows(schema: TableSchema) -> None:
    session = _session(schema)
    report = load_rows(read_records(SAMPLE, schema.column_types), schema, CassandraRowWriter(session, schema), limit=7)
    assert report.written == 7 and len(session.rows) == 7


# ---- concurrency and retry ---------------------------------------------------------------------


def test_in_flight_writes_never_exceed_the_bound(schema: TableSchema) -> None:
    session = _session(schema, latency_s=0.003)
    writer = CassandraRowWriter(session, schema, max_in_flight=5)
    ops = [WriteOp(i, "upsert", {"title": f"t{i}"}) for i in range(120)]
    results = []
    writer.write(ops, results.append)
    assert len(results) == 120 and all(r.error is None for r in results)
    assert session.max_in_flight_seen == 5  # the bound is reached and never passed
    assert len(session.rows) == 120


@pytest.mark.parametrize("error", [write_timeout(), unavailable(), timed_out()])
def test_retryable_errors_are_retried_with_backoff(schema: TableSchema, error: Exception) -> None:
    session = _session(schema, fail=fail_times(2, error))
    writer = CassandraRowWriter(session, schema, max_in_flight=4, retry=_fast_retry())
    report = load_rows(read_records(SAMPLE, schema.column_types), schema, writer, limit=30)
    assert report.written == 30 and report.retried == 30 and not report.failed
    assert all(count == 3 for count in session.attempts.values())
    assert session.max_in_flight_seen <= 4


def test_writes_fail_after_the_last_attempt_and_are_reported(schema: TableSchema) -> None:
    session = _session(schema, fail=fail_times(10, write_timeout()))
    writer = CassandraRowWriter(session, schema, retry=_fast_retry(attempts=3))
    report = load_rows(read_records(SAMPLE, schema.column_types), schema, writer, limit=3)
    assert report.written == 0 and len(report.failed) == 3
    assert report.failed[0].line == 1 and "WriteTimeout" in report.failed[0].reason
    assert all(count == 3 for count in session.attempts.values())


def test_non_retryable_errors_fail_at_once(schema: TableSchema) -> None:
    session = _session(schema, fail=fail_times(1, InvalidRequest("unconfigured table movies")))
    writer = CassandraRowWriter(session, schema, retry=_fast_retry())
    report = load_rows(read_records(SAMPLE, schema.column_types), schema, writer, limit=2)
    assert len(report.failed) == 2 and "unconfigured table" in report.failed[0].reason
    assert all(count == 1 for count in session.attempts.values())


def test_backoff_grows_and_is_capped() -> None:
    backoff = RetryPolicy(base_delay_s=0.1, max_delay_s=0.5)
    assert all(0 <= backoff.delay(1) <= 0.1 for _ in range(50))
    assert all(0 <= backoff.delay(10) <= 0.5 for _ in range(50))
    assert max(backoff.delay(3) for _ in range(200)) > 0.1  # later attempts may wait longer


def test_writers_retry_with_the_one_retry_policy() -> None:
    assert DRIVER_RETRY.attempts == 6 and DRIVER_RETRY.base_delay_s == 0.05 and DRIVER_RETRY.max_delay_s == 5.0
    assert CONTROL_API_RETRY.attempts == 4 and CONTROL_API_RETRY.max_delay_s == 2.0


def test_tls_context_verifies_server_and_host() -> None:
    import ssl

    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = {str(cert.get("subject")) for cert in context.get_ca_certs()}
    assert any("Amazon Root CA 1" in s for s in subjects)


def test_local_config_schema_matches_pipeline(schema: TableSchema) -> None:
    config = PipelineConfig.from_dict({**json.loads(default_config().to_json()), "clustering_key": ["rel_date"]})
    composite = TableSchema.from_config(config)
    assert composite.primary_key == ("title", "rel_date") and composite.partition_key == ("title",)


# ---- the stand-in and the driver agree -----------------------------------------------------------


def test_session_stand_in_offers_the_driver_methods_the_loader_uses() -> None:
    import inspect

    from cassandra.cluster import ResponseFuture, Session

    assert list(inspect.signature(Session.prepare).parameters)[:2] == ["self", "query"]
    assert list(inspect.signature(Session.execute_async).parameters)[:3] == ["self", "query", "parameters"]
    assert list(inspect.signature(Session.execute).parameters)[:3] == ["self", "query", "parameters"]
    assert list(inspect.signature(ResponseFuture.add_callbacks).parameters)[:3] == ["self", "callback", "errback"]
    assert hasattr(ResponseFuture, "result")


# ---- conversion round trip -------------------------------------------------------------------------

_CQL_VALUES = {
    "decimal": st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    "date": st.dates().map(lambda d: d.isoformat()),
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "text": st.text(max_size=20),
    "boolean": st.booleans(),
    "list<int>": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
    "map<text, decimal>": st.dictionaries(
        st.text(max_size=5), st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str), max_size=3
    ),
}


@given(st.sampled_from(sorted(_CQL_VALUES)).flatmap(lambda t: st.tuples(st.just(t), _CQL_VALUES[t])))
def test_file_values_round_trip_through_change_event_json(case: tuple[str, object]) -> None:
    cql_text, raw = case
    cql = parse_cql_type(cql_text)
    driver = to_driver_value(raw, cql)
    as_json = to_json_value(driver, cql)
    assert to_driver_value(as_json, cql) == driver
    json.dumps(as_json)  # always JSON-safe
