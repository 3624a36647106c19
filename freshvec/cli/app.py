"""``freshvec``: the operator CLI. Commands, options and output only; the work is in loader and operations.

Resources come from the stack's CloudFormation outputs (``--stack``/``FRESHVEC_STACK``,
``--region``/``AWS_REGION``), or with ``--local`` from the state file of a running ``freshvec local up``.
Expected failures print one ``error: ...`` line on stderr and exit 1 (usage errors exit 2); ``--debug``
adds the traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from freshvec import constants as c
from freshvec.cli import load as loader
from freshvec.cli import operations
from freshvec.config import ConfigError
from freshvec.errors import MisconfigurationError, error_code
from freshvec.filters import FilterError, parse_filter

SAMPLE_DATA = Path(__file__).resolve().parent.parent.parent / "data" / "movies.jsonl"
STACK_ENV = "FRESHVEC_STACK"

app = typer.Typer(
    name="freshvec",
    help="Operate a freshvec pipeline: load rows, query the index, backfill, redrive parked changes, status.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
redrive_app = typer.Typer(
    help="List, show and re-send parked changes (sink DLQ and the on-failure bucket).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(redrive_app, name="redrive")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _register_local_mode() -> None:
    """``freshvec local ...`` lives in freshvec/local/cli.py; the CLI works without it."""
    try:
        from freshvec.local.cli import local_app
    except ModuleNotFoundError as exc:
        if exc.name != "freshvec.local.cli":
            raise
        return
    app.add_typer(local_app, name="local")


# ---- global options ----------------------------------------------------------------------------


@dataclass
class Settings:
    stack: str
    region: str | None
    local: bool
    local_state: Path | None
    debug: bool
    _resources: operations.StackResources | None = field(default=None, repr=False)
    _clients: operations.ClientFactory | None = field(default=None, repr=False)

    def resolved_region(self) -> str:
        if self.region:
            return self.region
        import boto3

        region = boto3.Session().region_name
        if not region:
            raise operations.OperatorError("no AWS region: pass --region or set AWS_REGION")
        return region

    def resources(self) -> operations.StackResources:
        if self._resources is None:
            if self.local:
                self._resources = operations.load_local_state(self.local_state)
            else:
                region = self.resolved_region()
                cloudformation = operations.make_client_factory(region)("cloudformation")
                self._resources = operations.resolve_stack(cloudformation, self.stack, region)
        return self._resources

    def clients(self) -> operations.ClientFactory:
        if self._clients is None:
            res = self.resources()
            self._clients = operations.make_client_factory(res.region, res.endpoint_url)
        return self._clients


_settings: Settings | None = None


def settings() -> Settings:
    if _settings is None:  # only when a command runs without the app callback (never from the console)
        return Settings(_default_stack(), os.environ.get("AWS_REGION"), False, None, False)
    return _settings


def _default_stack() -> str:
    from freshvec.config import default_config

    try:
        return default_config().stack_name
    except (ConfigError, OSError):
        return "freshvec"


@app.callback()
def global_options(
    stack: Annotated[
        str | None, typer.Option("--stack", envvar=STACK_ENV, help="CloudFormation stack name [default: from cdk.json]")
    ] = None,
    region: Annotated[str | None, typer.Option("--region", envvar="AWS_REGION", help="AWS Region of the stack")] = None,
    local: Annotated[bool, typer.Option("--local", help="Use the running `freshvec local up` instead of AWS")] = False,
    local_state: Annotated[
        Path | None,
        typer.Option(
            "--local-state", envvar=operations.LOCAL_STATE_ENV, help="Local state file [.freshvec/local.json]"
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors")] = False,
) -> None:
    global _settings  # noqa: PLW0603 - one invocation, one set of global options
    _settings = Settings(stack or _default_stack(), region, local, local_state, debug)


# ---- error handling ----------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def explain(exc: BaseException) -> str | None:  # noqa: PLR0911 - one line per kind of expected failure
    """One line for an expected failure, or None for a bug (which keeps its traceback)."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(exc, operations.OperatorError | FilterError | loader.LoaderFileError | ConfigError):
        return str(exc)
    if isinstance(exc, MisconfigurationError):
        return str(exc)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "no AWS credentials found: set AWS_PROFILE (aws configure / aws sso login) or the AWS_* variables"
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}: check --region and the network"
    if isinstance(exc, ClientError):
        return _explain_client_error(exc)
    cassandra_message = _explain_cassandra(exc)
    if cassandra_message is not None:
        return cassandra_message
    if isinstance(exc, OSError):  # unreadable files, a full disk for the backfill state, ...
        return str(exc)
    return None


_NOT_FOUND_CODES = {
    "NotFoundException",
    "ResourceNotFoundException",
    "NoSuchIndex",
    "NoSuchVectorBucket",
    "NoSuchBucket",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
}
_BAD_CREDENTIAL_CODES = {"UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException"}


def _explain_client_error(exc: Any) -> str:
    code = error_code(exc) or "Error"
    message = exc.response.get("Error", {}).get("Message", "") or str(exc)
    operation = getattr(exc, "operation_name", "the call")
    if code.startswith("AccessDenied") or code in ("UnauthorizedException", "AuthorizationError"):
        explanation = f"access denied for {operation}: {message}"
    elif code in ("ExpiredToken", "ExpiredTokenException"):
        explanation = "the AWS credentials have expired: refresh them (e.g. aws sso login)"
    elif code in _BAD_CREDENTIAL_CODES:
        explanation = f"the AWS credentials were not accepted ({code}): check the profile and region"
    elif code == "ValidationError" and "does not exist" in message:
        explanation = f"stack not found: {message}"
    elif code in _NOT_FOUND_CODES:
        explanation = f"not found ({operation}): {message}"
    else:
        explanation = f"{operation} failed ({code}): {message}"
    return explanation


def _explain_cassandra(exc: BaseException) -> str | None:
    try:
        from cassandra import AuthenticationFailed, DriverException, RequestExecutionException
        from cassandra.cluster import NoHostAvailable
    except ImportError:
        return None
    if isinstance(exc, NoHostAvailable):
        reasons = "; ".join(f"{host}: {error}" for host, error in exc.errors.items()) or str(exc)
        hint = " (TLS: try --ca-bundle with AWS's keyspaces-bundle.pem)" if "CERTIFICATE" in reasons.upper() else ""
        return f"cannot connect to Amazon Keyspaces: {reasons[:300]}{hint}"
    if isinstance(exc, AuthenticationFailed | RequestExecutionException | DriverException):
        return f"Amazon Keyspaces: {type(exc).__name__}: {str(exc)[:300]}"
    return None


def expected_failures(command: F) -> F:
    """Turn expected failures into one ``error:`` line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            message = explain(exc)
            if message is None:
                raise
            if settings().debug:
                traceback.print_exc(file=sys.stderr)
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# ---- progress ----------------------------------------------------------------------------------


class RateColumn(ProgressColumn):
    """Rows per second, averaged by rich over the recent past."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _connect_table(region: str, ca_bundle: Path | None) -> tuple[Any, Any]:
    """(cluster, session) for the stack's Keyspaces table; tests replace this."""
    import boto3

    return loader.connect_keyspaces(region, boto3.Session(region_name=region), ca_bundle=ca_bundle)


# ---- load --------------------------------------------------------------------------------------

UpdateMode = Annotated[
    str | None,
    typer.Option(
        "--update",
        help="ratings: change only numeric columns (no re-embedding expected); text: revise the embedded text",
        case_sensitive=False,
    ),
]


@app.command()
@expected_failures
def load(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="CSV or JSON Lines file whose columns match the table")
    ] = SAMPLE_DATA,
    *,
    update: UpdateMode = None,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the file's rows (by primary key)")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N good rows")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=1024, help="Writes in flight")] = 64,
    ca_bundle: Annotated[
        Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS [default: certifi]")
    ] = None,
) -> None:
    """Write rows into the table (Amazon Keyspaces, LOCAL_QUORUM, TLS verified, SigV4), or change/delete them."""
    if update is not None and update.lower() not in loader.UPDATE_MODES:
        raise typer.BadParameter(f"choose one of: {', '.join(loader.UPDATE_MODES)}", param_hint="--update")
    if update is not None and delete:
        raise typer.BadParameter("use --update or --delete, not both", param_hint="--delete")
    res = settings().resources()
    schema = loader.TableSchema.from_config(res.config)
    records = loader.read_records(file, schema.column_types)
    verb = "deleting" if delete else f"updating ({update})" if update else "loading"
    cluster = None
    if res.is_local:
        writer: loader.RowWriter = loader.ControlApiRowWriter(
            res.control_url or "", schema, headers=operations.control_headers(res)
        )
        target = "the local pipeline"
    else:
        cluster, session = _connect_table(res.region, ca_bundle)
        writer = loader.CassandraRowWriter(session, schema, max_in_flight=concurrency)
        target = f"{res.config.keyspace}.{res.config.table} in {res.region}"
    try:
        with _progress() as progress:
            task = progress.add_task(f"{verb} {file.name}", total=limit)
            report = loader.load_rows(
                records,
                schema,
                writer,
                update=update.lower() if update else None,
                delete=delete,
                limit=limit,
                on_progress=lambda r: progress.update(task, completed=r.written + len(r.failed)),
            )
            progress.update(task, total=report.written + len(report.failed))
    finally:
        if cluster is not None:
            cluster.shutdown()
    for problem in report.skipped:
        err.print(Text(f"skipped {file.name}:{problem.line}: {problem.reason}"))
    for problem in report.failed:
        err.print(Text(f"failed {file.name}:{problem.line}: {problem.reason}"))
    done = "deleted from" if delete else "written to"
    out.print(
        f"{report.written} row(s) {done} {target}; {len(report.skipped)} skipped, {len(report.failed)} failed"
        + (f", {report.retried} retried" if report.retried else "")
    )
    if report.failed:
        raise typer.Exit(1)


# ---- query -------------------------------------------------------------------------------------


@app.command()
@expected_failures
def query(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="What to search for")],
    k: Annotated[int, typer.Option("--k", min=1, max=c.S3V_MAX_TOP_K, help="How many results (at most 100)")] = 10,
    filter_json: Annotated[
        str | None, typer.Option("--filter", help='S3 Vectors metadata filter, e.g. \'{"vote_count": {"$gte": 100}}\'')
    ] = None,
    columns: Annotated[
        str | None, typer.Option("--columns", help="Comma-separated metadata columns to show [default: configured]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Search the index with the same embedding model and dimensions as the pipeline."""
    filter_doc = parse_filter(filter_json) if filter_json is not None else None
    s = settings()
    res = s.resources()
    result = operations.query_index(
        s.clients() if not res.is_local else _no_clients, res, text, k=k, filter_doc=filter_doc
    )
    if as_json:
        out.print_json(json.dumps(_query_json(result), default=str))
        return
    shown = _query_columns(res.config, columns)
    out.print(render_query_table(result, shown, res.config.column_types))


def _no_clients(service: str) -> Any:
    raise operations.OperatorError(f"local mode answers queries through its control API, not {service}")


def _query_columns(config: Any, columns: str | None) -> list[str]:
    if columns is None:
        return [name for name in config.metadata_fields if name not in config.key_columns]
    return [name.strip() for name in columns.split(",") if name.strip()]


def _query_json(result: operations.QueryResult) -> dict[str, Any]:
    return {
        "distance_metric": result.metric,
        "score": "distance",  # S3 Vectors returns a distance: 0 = identical, lower is closer
        "hits": [asdict(hit) for hit in result.hits],
    }


def render_query_table(
    result: operations.QueryResult, columns: list[str], column_types: dict[str, Any] | None = None
) -> Table:
    """Nearest first. Dates and timestamps, stored as numbers so range filters work, are shown as dates."""
    types = column_types or {}
    title = f"{len(result.hits)} result(s), by {result.metric} distance (0 = identical, lower = closer)"
    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("key", overflow="fold", min_width=16)
    table.add_column("distance", justify="right")
    for name in columns:
        table.add_column(name, overflow="fold", max_width=60)
    for hit in result.hits:
        key = ", ".join(f"{k}={v}" for k, v in hit.key_values.items()) or hit.key
        distance = "-" if hit.distance is None else f"{hit.distance:.4f}"
        values = [_display(hit.metadata.get(n), types.get(n)) for n in columns]
        table.add_row(str(hit.rank), key, distance, *values)
    return table


def _display(value: Any, cql: Any) -> str:
    from freshvec.metadata import date_from_metadata, timestamp_from_metadata

    if value is None:
        return ""
    kind = cql.base.name if cql is not None else None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            if kind == "date":
                return date_from_metadata(value).isoformat()
            if kind == "timestamp":
                return timestamp_from_metadata(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        except (ValueError, OverflowError):
            return str(value)
    return str(value)


# ---- backfill ----------------------------------------------------------------------------------


@app.command()
@expected_failures
def backfill(
    *,
    segments: Annotated[
        int, typer.Option("--segments", min=1, max=4096, help="Token ranges to split the table into")
    ] = 16,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Token ranges read in parallel")] = 4,
    rate: Annotated[float, typer.Option("--rate", min=1, help="At most this many records per second to Kinesis")] = 500,
    state_file: Annotated[
        Path | None, typer.Option("--state", help="Progress file for resuming [.freshvec/backfill-<stack>.json]")
    ] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore saved progress and start over")] = False,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS")] = None,
) -> None:
    """Send every existing row to the change stream (CDC only captures changes made after it was enabled)."""
    s = settings()
    res = s.resources()
    if res.is_local:
        raise operations.OperatorError("backfill reads Amazon Keyspaces; local mode starts empty and needs none")
    path = state_file or operations.default_backfill_state_path(res.stack_name)
    state = operations.BackfillState.open(path, segments, restart=restart)
    if state.complete:
        out.print(f"backfill already complete ({state.sent} rows sent); pass --restart to run it again")
        return
    cluster, session = _connect_table(res.region, ca_bundle)
    try:
        with _progress() as progress:
            task = progress.add_task("backfill", total=None, completed=state.sent)
            report = operations.backfill(
                session,
                s.clients()("kinesis"),
                res,
                state,
                workers=workers,
                rate_per_s=rate,
                on_progress=lambda n: progress.advance(task, n),
            )
    finally:
        cluster.shutdown()
    resumed = " (resumed)" if report.resumed else ""
    out.print(
        f"backfill{resumed}: {report.sent} row(s) sent to {res.stream_name}; "
        f"{report.segments_done}/{report.segments} token ranges done; progress in {path}"
    )


# ---- redrive -----------------------------------------------------------------------------------

Source = Annotated[str, typer.Option("--source", help="dlq, on-failure or all")]
Limit = Annotated[int, typer.Option("--max", min=1, max=100_000, help="At most this many parked items")]


def _check_source(source: str) -> str:
    if source not in ("dlq", "on-failure", "all"):
        raise typer.BadParameter("choose one of: dlq, on-failure, all", param_hint="--source")
    return source


@redrive_app.command("list")
@expected_failures
def redrive_list(source: Source = "all", limit: Limit = 100) -> None:
    """List parked changes with their reason (DLQ messages stay in the queue)."""
    s = settings()
    items = operations.peek_parked(s.clients(), s.resources(), source=_check_source(source), limit=limit)
    table = Table(title=f"{len(items)} parked item(s)", title_justify="left")
    for name in ("source", "id", "records", "failed at", "position", "reason"):
        table.add_column(name, overflow="fold")
    for item in items:
        table.add_row(
            item.source,
            item.ref,
            str(len(item.records)),
            item.failed_at or "",
            item.position,
            item.unreadable or item.reason,
        )
    out.print(table)


@redrive_app.command("show")
@expected_failures
def redrive_show(
    ref: Annotated[
        str, typer.Argument(metavar="ID", help="DLQ message id or on-failure object key (from `redrive list`)")
    ],
    source: Source = "all",
    limit: Limit = 1000,
) -> None:
    """Show one parked item with its full payload."""
    s = settings()
    items = operations.peek_parked(s.clients(), s.resources(), source=_check_source(source), limit=limit)
    match = [item for item in items if item.ref == ref]
    if not match:
        raise operations.OperatorError(
            f"no parked item {ref!r} (looked at {len(items)}); list them with `freshvec redrive list`"
        )
    item = match[0]
    out.print_json(json.dumps(_item_json(item), default=str))


def _item_json(item: operations.ParkedItem) -> dict[str, Any]:
    def payload(data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            return data.decode("utf-8", errors="replace")

    return {
        "source": item.source,
        "id": item.ref,
        "failed_at": item.failed_at,
        "position": item.position,
        "reason": item.reason,
        "unreadable": item.unreadable,
        "records": [{"partition_key": r.partition_key, "payload": payload(r.data)} for r in item.records],
    }


@redrive_app.command("send")
@expected_failures
def redrive_send(
    source: Source = "all",
    limit: Limit = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; change nothing")] = False,
) -> None:
    """Re-send parked changes to the change stream; each leaves its parking place only after Kinesis took it."""
    s = settings()
    res = s.resources()

    def on_item(item: operations.ParkedItem, outcome: str) -> None:
        detail = f": {item.unreadable}" if item.unreadable else ""
        err.print(Text(f"{outcome:>10}  {item.source} {item.ref} ({len(item.records)} record(s)){detail}"))

    report = operations.redrive(
        s.clients(), res, source=_check_source(source), limit=limit, dry_run=dry_run, on_item=on_item
    )
    if dry_run:
        out.print(
            f"dry run: {report.found} parked, {report.found - report.unreadable} would be sent, "
            f"{report.unreadable} unreadable"
        )
    else:
        out.print(
            f"{report.found} parked, {report.sent_items} re-sent ({report.sent_records} record(s)) to "
            f"{res.stream_name}, {report.unreadable} unreadable (left in place)"
        )


# ---- status ------------------------------------------------------------------------------------


@app.command()
@expected_failures
def status(
    rows: Annotated[bool, typer.Option("--rows/--no-rows", help="Count the table's rows (reads Keyspaces)")] = True,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """One screen: forwarder lag, sink iterator age, DLQ depths, vectors vs rows, last errors."""
    s = settings()
    res = s.resources()
    session = cluster = None
    local_stats = None
    notes: list[str] = []
    if res.is_local:
        try:
            local_stats = operations.control_request(res, "GET", "stats")
        except operations.OperatorError as exc:
            notes.append(f"local stats: {exc}")
    elif rows:
        try:
            cluster, session = _connect_table(res.region, ca_bundle)
        except Exception as exc:  # noqa: BLE001 - status still shows everything else
            notes.append(f"table rows: {explain(exc) or exc}")
    try:
        report = operations.collect_status(s.clients(), res, session=session, local_stats=local_stats)
    finally:
        if cluster is not None:
            cluster.shutdown()
    report.notes[:0] = notes
    if as_json:
        out.print_json(json.dumps(asdict(report), default=str))
        return
    out.print(render_status(report, res))


def _ms(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value / 1000:,.1f} s" if value >= 1000 else f"{value:,.0f} ms"


def render_status(report: operations.StatusReport, res: operations.StackResources) -> Table:
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
    vectors = "unknown" if report.vectors is None else f"{'≥' if report.vectors_capped else ''}{report.vectors:,}"
    table.add_row("vectors in index", vectors)
    rows = "not counted" if report.rows is None else f"{'~' if report.rows_estimated else ''}{report.rows:,}"
    table.add_row("rows in table", rows)
    for name, value in sorted(report.extra.items()):
        shown = ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
        table.add_row(f"local: {name}", shown)
    table.add_row("last errors", "\n".join(report.last_errors) or "none")
    for note in report.notes:
        table.add_row("note", note)
    return table


# ---- entry point -------------------------------------------------------------------------------

_register_local_mode()


def main() -> None:
    """Console entry point (``freshvec``)."""
    app(prog_name="freshvec")


if __name__ == "__main__":
    main()
