"""``freshvec status``: one screen of pipeline health, each part that cannot be read noted, not fatal."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from freshvec import constants as c
from freshvec.cli import console, local_client, resync
from freshvec.cli.backfill import MAX_TOKEN, MIN_TOKEN, build_range_select
from freshvec.cli.errors import OperatorError, explain
from freshvec.cli.parked import REDRIVEN_PREFIX, decode_dlq_body
from freshvec.cli.settings import settings
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.config import PipelineConfig
from freshvec.events import format_timestamp

# The opt-in counts stop here: S3 Vectors has no count call (ListVectors returns 1,000 keys a call), and counting
# a Keyspaces table reads its rows.
VECTOR_COUNT_CAP = 100_000
ROW_COUNT_CAP = 20_000


@dataclass
class StatusReport:
    forwarder_lag_ms: float | None = None
    sink_iterator_age_ms: float | None = None
    dlq_visible: int | None = None
    dlq_in_flight: int | None = None
    on_failure_objects: int | None = None
    vectors: int | None = None
    vectors_capped: bool = False
    index_search: str | None = None  # the index mode and each full-text key's analyzer status
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


def count_vectors(s3vectors: Any, bucket: str, index: str, *, cap: int = VECTOR_COUNT_CAP) -> tuple[int, bool]:
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


def estimate_rows(session: Any, config: PipelineConfig, *, cap: int = ROW_COUNT_CAP) -> tuple[int, bool]:
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


def table_rows(session: Any, config: PipelineConfig) -> tuple[int, bool]:
    """(rows, estimated?): PostgreSQL counts exactly (``SELECT count(*)``), Keyspaces by ``estimate_rows``."""
    if config.source.kind == "postgres":
        from freshvec.cli import postgres  # deferred: only PostgreSQL sources load the driver

        return postgres.count_rows(session, config), False
    return estimate_rows(session, config)


def collect_status(
    clients: ClientFactory,
    resources: StackResources,
    *,
    session: Any = None,
    local_stats: dict[str, Any] | None = None,
    vector_count: bool = False,
) -> StatusReport:
    """One screen of pipeline health; each part that cannot be read is noted, not fatal.

    The index is counted (by listing its keys) only with ``vector_count``; the table's rows only with a ``session``.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    report = StatusReport()

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
            _records, reason, failed_at, _position, unreadable = decode_dlq_body(message.get("Body", ""))
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
        sink = resources.outputs.get(c.OUT_SINK_FUNCTION)
        if sink:
            report.sink_iterator_age_ms = latest_metric(cloudwatch, "AWS/Lambda", "IteratorAge", {"FunctionName": sink})

    attempt("DLQ depth", dlq)
    attempt("DLQ messages", last_errors)
    attempt("on-failure bucket", on_failure)
    attempt("index", lambda: _read_index_search(clients, resources, report))
    if vector_count:
        attempt("vector count", vectors)
    if not resources.is_local:
        attempt("metrics", metrics)
    if session is not None:
        try:
            report.rows, report.rows_estimated = table_rows(session, resources.config)
        except Exception as exc:  # noqa: BLE001 - any driver error only hides this one line of the status
            report.notes.append(f"table rows: unavailable ({_short(exc)})")
    if local_stats:
        _add_local_stats(report, local_stats)
    return report


def _read_index_search(clients: ClientFactory, resources: StackResources, report: StatusReport) -> None:
    s3vectors = clients("s3vectors")
    index = s3vectors.get_index(vectorBucketName=resources.vector_bucket, indexName=resources.vector_index)["index"]
    report.index_search = describe_index_search(index)


def describe_index_search(index: dict[str, Any]) -> str:
    """``ENHANCED; full-text: overview ACTIVE (en), title BUILDING (standard)`` from a GetIndex ``index``."""
    mode = index.get("indexMode") or "mode not reported"
    keys = (index.get("metadataConfiguration") or {}).get("textSearchConfigurations") or []
    if not keys:
        return f"{mode}; full-text search off"
    shown = ", ".join(f"{k['metadataKey']} {k.get('status', '?')} ({k.get('language') or 'standard'})" for k in keys)
    return f"{mode}; full-text: {shown}"


def _add_local_stats(report: StatusReport, local_stats: dict[str, Any]) -> None:
    """Local mode's counters; its forwarder lag and iterator age are measured as the forwarder and the Lambda
    service report them (``freshvec.local.pipeline``), so they go in their own rows."""
    extra = dict(local_stats)
    lag, age = extra.pop("forwarder_lag_ms", None), extra.pop("sink_iterator_age_ms", None)
    report.extra.update(extra)
    for key in ("rows", "table_rows"):
        if isinstance(extra.get(key), int) and report.rows is None:
            report.rows = extra[key]
    if isinstance(lag, int | float) and not isinstance(lag, bool):
        report.forwarder_lag_ms = float(lag)
    if isinstance(age, int | float) and not isinstance(age, bool):
        report.sink_iterator_age_ms = float(age)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


# ---- the command ------------------------------------------------------------------------------


def status_command(
    count_rows: Annotated[
        bool,
        typer.Option(
            "--count-rows",
            help=f"Count the table's rows: reads up to {ROW_COUNT_CAP:,} rows from Keyspaces, then extrapolates "
            "(can take tens of seconds); PostgreSQL: SELECT count(*), exact",
        ),
    ] = False,
    count_vectors: Annotated[
        bool,
        typer.Option(
            "--count-vectors",
            help=f"Count the index's vectors by listing keys, up to {VECTOR_COUNT_CAP:,} (1,000 a call: up to "
            f"{VECTOR_COUNT_CAP // 1000} calls, can take tens of seconds; always counted in local mode)",
        ),
    ] = False,
    full: Annotated[bool, typer.Option("--full", help="Both counts (--count-rows --count-vectors)")] = False,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """One screen: forwarder lag, sink iterator age, DLQ depths, last errors; vectors and rows when asked to count."""
    count_rows = count_rows or full
    count_vectors = count_vectors or full
    s = settings()
    res = s.resources()
    session = close = None
    local_stats = None
    notes: list[str] = []
    if res.is_local:
        try:
            local_stats = local_client.control_request(res, "GET", "stats")
        except local_client.UnreachableError:
            raise  # nothing of it can be read: could not finish (exit 3), not a screen of "unavailable"
        except OperatorError as exc:
            notes.append(f"local stats: {exc}")
    elif count_rows:
        try:
            close, session = resync.connect_table(res, s.clients(), ca_bundle)
        except Exception as exc:  # noqa: BLE001 - status still shows everything else
            notes.append(f"table rows: {explain(exc) or exc}")
    try:
        report = collect_status(
            s.clients(), res, session=session, local_stats=local_stats, vector_count=count_vectors or res.is_local
        )
    finally:
        if close is not None:
            close()
    report.notes[:0] = notes
    if as_json:
        console.out.print_json(json.dumps(asdict(report), default=str))
        return
    console.out.print(render_status(report, res))


def _ms(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value / 1000:,.1f} s" if value >= 1000 else f"{value:,.0f} ms"


def render_status(report: StatusReport, res: StackResources) -> Table:
    where = "local pipeline" if res.is_local else f"stack {res.stack_name} ({res.region})"
    table = Table(title=f"freshvec status: {where}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("forwarder lag", _ms(report.forwarder_lag_ms))
    table.add_row("sink iterator age", _ms(report.sink_iterator_age_ms))
    dlq = "unknown" if report.dlq_visible is None else f"{report.dlq_visible} waiting, {report.dlq_in_flight} in flight"
    table.add_row("sink DLQ", dlq)
    parked = "unknown" if report.on_failure_objects is None else f"{report.on_failure_objects} discarded batch(es)"
    table.add_row("on-failure bucket", parked)
    vectors = (
        "not counted (--count-vectors)"
        if report.vectors is None
        else f"{'≥' if report.vectors_capped else ''}{report.vectors:,}"
    )
    table.add_row("vectors in index", vectors)
    table.add_row("index search", report.index_search or "unavailable")
    rows = (
        "not counted (--count-rows)"
        if report.rows is None
        else f"{'~' if report.rows_estimated else ''}{report.rows:,}"
    )
    table.add_row("rows in table", rows)
    for name, value in sorted(report.extra.items()):
        shown = ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
        table.add_row(f"local: {name}", shown)
    table.add_row("last errors", "\n".join(report.last_errors) or "none")
    for note in report.notes:
        table.add_row("note", note)
    return table
