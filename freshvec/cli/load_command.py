"""``freshvec load``: write the rows of a CSV or JSON Lines file into the table, or change or delete them.

The loading itself is ``freshvec.cli.load``; this is the command: where the rows go (Amazon Keyspaces, or
the local pipeline's control API), progress, and the summary.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from freshvec.cli import console, keyspaces, local_client, resync, wait
from freshvec.cli import load as loader
from freshvec.cli.errors import EXIT_CHECK_FAILED
from freshvec.cli.settings import settings
from freshvec.datafiles import read_records, sample_movies

SAMPLE_DATA = sample_movies()


class Update(StrEnum):
    """What ``--update`` changes (the values of ``freshvec.cli.load.UPDATE_MODES``)."""

    RATINGS = "ratings"
    TEXT = "text"


UpdateMode = Annotated[
    Update | None,
    typer.Option(
        "--update",
        help="ratings: change only numeric columns (no re-embedding expected); text: revise the embedded text",
        case_sensitive=False,
    ),
]


def load_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE",
            help="CSV or JSON Lines file whose columns match the table [default: the bundled sample movies]",
            show_default=False,
        ),
    ] = None,
    *,
    update: UpdateMode = None,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the file's rows (by primary key)")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N good rows")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=1024, help="Writes in flight")] = 64,
    ttl: Annotated[
        int | None, typer.Option("--ttl", min=1, max=630_720_000, help="USING TTL: the written cells expire after N s")
    ] = None,
    timestamp: Annotated[
        int | None, typer.Option("--timestamp", min=0, help="USING TIMESTAMP: the writes' client timestamp in µs")
    ] = None,
    partial: Annotated[
        bool,
        typer.Option("--partial", help="UPDATE only the file's columns (with --ttl: a column TTL) instead of INSERT"),
    ] = False,
    ca_bundle: Annotated[
        Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS [default: certifi]")
    ] = None,
    wait_visible: Annotated[
        bool, typer.Option("--wait", help="Then wait until every change is searchable; print the latency")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="With --wait: give up after this many seconds")
    ] = wait.DEFAULT_TIMEOUT_S,
) -> None:
    """Write rows into the table (Amazon Keyspaces, LOCAL_QUORUM, TLS verified, SigV4), or change/delete them."""
    file = file if file is not None else SAMPLE_DATA
    if update is not None and delete:
        raise typer.BadParameter("use --update or --delete, not both", param_hint="--delete")
    options = loader.WriteOptions(ttl_s=ttl, timestamp_us=timestamp, partial=partial)
    res = settings().resources()
    if options != loader.WriteOptions() and res.config.source.kind == "postgres":
        raise typer.BadParameter("--ttl, --timestamp and --partial are Keyspaces writes", param_hint="--ttl")
    schema = loader.TableSchema.from_config(res.config)
    records = read_records(file, schema.column_types)
    verb = "deleting" if delete else f"updating ({update.value})" if update else "loading"
    cluster = None
    source_session = None  # what reads rows back: the Keyspaces session or the PostgreSQL connection
    if res.is_local:
        writer: loader.RowWriter = loader.ControlApiRowWriter(
            res.control_url or "", schema, headers=local_client.control_headers(res), options=options
        )
        target = "the local pipeline"
    elif res.config.source.kind == "postgres":
        from freshvec.cli import postgres

        source_session = postgres.connect_source(res.config, settings().clients())
        writer = cluster = postgres.PostgresRowWriter(source_session, res.config, schema)
        target = f"{res.config.keyspace}.{res.config.table} on {res.config.postgres.connection.host}"
    else:
        cluster, source_session = keyspaces.connect_table(res.region, ca_bundle)
        writer = loader.CassandraRowWriter(source_session, schema, max_in_flight=concurrency, options=options)
        target = f"{res.config.keyspace}.{res.config.table} in {res.region}"
    recorder = wait.RecordingWriter(writer, wait.Expectations(res.config, schema)) if wait_visible else None
    writer = recorder or writer
    try:
        with console.progress() as progress:
            task = progress.add_task(f"{verb} {file.name}", total=limit)
            report = loader.load_rows(
                records,
                schema,
                writer,
                update=update.value if update else None,
                delete=delete,
                limit=limit,
                on_progress=lambda r: progress.update(task, completed=r.written + len(r.failed)),
            )
            progress.update(task, total=report.written + len(report.failed))
        if recorder is not None:  # rows written without their text: wait for the text the table holds now
            recorder.settle(resync.row_reader(res, source_session))
    finally:
        if cluster is not None:
            cluster.shutdown()
    for problem in report.skipped:
        console.err.print(Text(f"skipped {file.name}:{problem.line}: {problem.reason}"))
    for problem in report.failed:
        console.err.print(Text(f"failed {file.name}:{problem.line}: {problem.reason}"))
    done = "deleted from" if delete else "written to"
    console.out.print(
        f"{report.written} row(s) {done} {target}; {len(report.skipped)} skipped, {len(report.failed)} failed"
        + (f", {report.retried} retried" if report.retried else "")
    )
    if report.failed:
        raise typer.Exit(EXIT_CHECK_FAILED)
    wait.after_load(report, recorder, timeout, file=str(file), delete=delete)
