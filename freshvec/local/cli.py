"""``freshvec local ...``: the demo, and a local stack kept running for ``freshvec --local load/query/status``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from freshvec.config import ConfigError
from freshvec.errors import MisconfigurationError, TransientError
from freshvec.local.bedrock_server import BedrockBatchServer, local_batch_outputs, start_local_batch
from freshvec.local.control import ControlServer
from freshvec.local.moto_server import LOCAL_SECRET_KEY
from freshvec.state import local_state_path, write_local_state

local_app = typer.Typer(
    name="local",
    help="Run the whole pipeline on this machine: moto server, a local table, WordLlama embeddings.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Pipeline config JSON (bare or a whole cdk.json); default: cdk.json."),
]
DataOption = Annotated[Path | None, typer.Option("--data", "-d", help="CSV or JSON Lines rows to load.")]
EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"


class Source(StrEnum):
    """Where the local rows live: the in-memory Keyspaces stand-in, or a throwaway PostgreSQL on 127.0.0.1."""

    KEYSPACES = "keyspaces"
    POSTGRES = "postgres"


SourceOption = Annotated[
    Source | None,
    typer.Option(
        "--source",
        help="keyspaces: the in-memory Keyspaces stand-in; postgres: a local PostgreSQL (without --config: "
        "the sample articles, data/examples/articles.*) [default: the config's source.kind]",
        case_sensitive=False,
    ),
]


def resolve_source(
    source: Source | None, config: Path | None, data: Path | None, *, attach: bool = False
) -> tuple[Any, Path | None]:
    """The config and data for ``--source``; typer.BadParameter when they disagree. Attaching to one's own
    PostgreSQL reads the config (cdk.json by default, as ``freshvec init`` writes it), never the samples."""
    from freshvec.local.pipeline import load_pipeline_config

    if attach:
        loaded = load_pipeline_config(config)
        if loaded.source.kind != "postgres":
            raise typer.BadParameter(
                f"--attach needs a postgres source; the config's source.kind is {loaded.source.kind} "
                "(write one with `freshvec init --pg-url ... --table ...`)",
                param_hint="--attach",
            )
        return loaded, data
    if source is Source.POSTGRES and config is None:
        config_path, rows = EXAMPLES / "articles.config.json", EXAMPLES / "articles.jsonl"
        if not config_path.is_file():
            raise typer.BadParameter(f"{config_path} is missing; pass --config and --data", param_hint="--source")
        return load_pipeline_config(config_path), data if data is not None else rows
    loaded = load_pipeline_config(config)
    if source is not None and loaded.source.kind != source.value:
        raise typer.BadParameter(
            f"the config's source.kind is {loaded.source.kind}, not {source.value}", param_hint="--source"
        )
    return loaded, data


def attachment_for(config: Any, pg_url: str | None) -> Any:
    """The server to attach to: ``--pg-url`` (over the config's connection), else the config's connection; the
    password from the URL, ``FRESHVEC_PG_PASSWORD``/``PGPASSWORD``, the config, else the password file (as psql)."""
    from freshvec.adapters.postgres import connection_from_url, password_from_environment, password_from_passfile
    from freshvec.local.pg_attach import Attachment

    connection, password = config.postgres.connection, None
    if pg_url is not None:
        connection, password = connection_from_url(pg_url, connection)
    password = (
        password
        or password_from_environment()
        or config.postgres.connection.password
        or password_from_passfile(connection)
    )
    return Attachment(connection, password)


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@local_app.command()
def demo(config: ConfigOption = None, data: DataOption = None, source: SourceOption = None) -> None:
    """Load the sample movies (or articles), query them, change the table and watch the index follow (a minute)."""
    from freshvec.local.demo import run_demo

    _quiet_logs()
    try:
        loaded, rows = resolve_source(source, config, data)
        run_demo(loaded, rows, echo=typer.echo)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    except TimeoutError as exc:
        typer.secho(f"the pipeline did not catch up: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@local_app.command()
def up(
    config: ConfigOption = None,
    data: DataOption = None,
    *,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the stack's state file (default: $FRESHVEC_LOCAL_STATE, else "
            "$XDG_STATE_HOME/freshvec/local.json or ~/.local/state/freshvec/local.json)."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Control API port on 127.0.0.1 (0: any free port).")] = 0,
    source: SourceOption = None,
    attach: Annotated[
        bool,
        typer.Option(
            "--attach",
            help="postgres: use the server and table in the config as they are (no throwaway server); the rows "
            "already there are indexed first",
        ),
    ] = False,
    pg_url: Annotated[
        str | None,
        typer.Option(
            "--pg-url",
            envvar="FRESHVEC_PG_URL",
            help="postgres: attach to this server instead of the config's (postgresql://user[:password]@host:port/db)",
        ),
    ] = None,
) -> None:
    """Keep a local stack running (Ctrl-C stops it); `freshvec --local load/query/status` talk to it."""
    from freshvec.local.demo import read_rows
    from freshvec.local.pipeline import LocalPipeline

    _quiet_logs()
    path = local_state_path(state)
    _claim_state_file(path, port)
    stopping = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # also when started where SIGINT was ignored
        signal.signal(stop_signal, lambda *_: stopping.set())
    attaching = attach or pg_url is not None
    started = time.monotonic()
    try:
        loaded, data = resolve_source(source, config, data, attach=attaching)
        attachment = attachment_for(loaded, pg_url) if attaching else None
        if attachment is not None:
            conn = attachment.connection
            typer.echo(f"attaching to PostgreSQL {conn.user}@{conn.host}:{conn.port}/{conn.database}, "
                       f"table {loaded.postgres.schema}.{loaded.postgres.table} (used as it is)")  # fmt: skip
        pipeline = LocalPipeline.start(loaded, attach=attachment, say=lambda line: typer.echo(f"  {line}"))
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    except (MisconfigurationError, TransientError) as exc:  # the attached server or table is not fit: one line
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    control = _start_control(pipeline, port)
    batch = start_local_batch(pipeline.server.client("s3"), control.token)
    # A migration step changes the live generations: the CLI reads them (and the index names) from the state file.
    pipeline.generations.on_change(lambda: write_local_state(path, stack_state(pipeline, control, batch)))
    try:
        write_local_state(path, stack_state(pipeline, control, batch))
        typer.echo(f"local stack up: moto {pipeline.server.endpoint}, control API {control.url}\n"
                   f"state file: {path} (removed on exit)\n{application_settings(pipeline)}")  # fmt: skip
        _announce_postgres(pipeline, attachment, loaded, samples=source is Source.POSTGRES and config is None)
        if pipeline.initial_fill is not None:
            fill = pipeline.initial_fill
            pipeline.wait_synced(timeout=300, receipt=fill)
            typer.echo(f"indexed the {fill.changes} row(s) already in the table, "
                       f"{time.monotonic() - started:,.1f} s after start")  # fmt: skip
        if data is not None:
            rows = read_rows(data, pipeline.config, typer.echo)
            receipt = pipeline.upsert(rows)
            pipeline.wait_synced(timeout=120, receipt=receipt)
            typer.echo(f"loaded {len(rows)} rows, searchable after {pipeline.freshness_ms(receipt):,.0f} ms")
        typer.echo("Ctrl-C to stop.")
        while not stopping.wait(0.5):
            pass
    finally:
        _release_state_file(path, control.token)
        batch.stop()
        control.stop()
        pipeline.stop()
        typer.echo("local stack stopped")


def _claim_state_file(path: Path, port: int) -> None:
    """Before anything starts: refuse (exit 2) when ``path`` names a stack that still runs (writing over it would
    leave that stack unreachable by the CLI) or ``port`` is taken. A state file whose stack is gone is replaced,
    saying so."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _check_port(port)
    except (OSError, ValueError):
        typer.echo(f"replacing {path}: not a state file this version can read")
        return _check_port(port)
    if not isinstance(doc, dict):
        doc = {}
    pid, control = doc.get("pid"), doc.get("control")
    if _alive(pid, control):
        owner = f"process {pid}" if isinstance(pid, int) else f"the stack at {control}"
        typer.secho(
            f"error: a local stack is already running with state file {path} ({owner}); stop it (Ctrl-C where it "
            "runs" + (f", or kill {pid}" if isinstance(pid, int) else "") + ") or give this one its own --state FILE",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(f"replacing {path}: the stack it names is no longer running")
    _check_port(port)


def _alive(pid: Any, control: Any) -> bool:
    """Whether the stack a state file names still runs: its process lives (when named) and its control API
    accepts a connection."""
    if isinstance(pid, int) and not isinstance(pid, bool):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it lives
    if not isinstance(control, str):
        return False
    address = urlsplit(control)
    try:
        with socket.create_connection((address.hostname or "127.0.0.1", address.port or 80), timeout=1):
            return True
    except (OSError, ValueError):
        return False


def _release_state_file(path: Path, token: str) -> None:
    """Remove the state file on the way out, only while it is still this stack's (its token)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(doc, dict) and doc.get("token") == token:
        path.unlink(missing_ok=True)


def _check_port(port: int) -> None:
    """A usage error (exit 2) when ``--port`` is taken on 127.0.0.1, before anything starts."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as exc:
        typer.secho(f"error: {_port_refusal(port, exc)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    finally:
        probe.close()


def _start_control(pipeline: Any, port: int) -> ControlServer:
    try:
        return ControlServer(pipeline, port=port).start()
    except OSError as exc:  # taken since the check
        pipeline.stop()
        typer.secho(f"error: {_port_refusal(port, exc)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _port_refusal(port: int, exc: OSError) -> str:
    return f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); pass another --port, or 0 for any free one"


def _announce_postgres(pipeline: Any, attachment: Any, loaded: Any, *, samples: bool) -> None:
    """How to reach the table's server with psql; with a throwaway server for a config of one's own, how to use
    the server the config names instead."""
    if pipeline.postgres is None:
        return
    where = "your server" if attachment is not None else "the throwaway server"
    typer.echo(f"psql on {where}: {pipeline.postgres.psql_command()}")
    if attachment is None and not samples:
        named = loaded.postgres.connection
        typer.echo(f"(a throwaway server with an empty {loaded.postgres.table} table; --attach uses "
                   f"{named.host}:{named.port}/{named.database} from the config, as it is)")  # fmt: skip


def application_settings(pipeline: Any) -> str:
    """What an application's own boto3 client (or the AWS CLI) needs to read the local index
    (docs/integrations.md): the endpoint answers only requests signed with the stack's access key, any secret."""
    resources, server = pipeline.resources, pipeline.server
    return (
        "for your application (boto3 or the AWS CLI; AWS_ENDPOINT_URL instead reaches every local service):\n"
        f"  export AWS_ENDPOINT_URL_S3VECTORS={server.endpoint} AWS_DEFAULT_REGION={server.region}\n"
        f"  export AWS_ACCESS_KEY_ID={server.access_key} AWS_SECRET_ACCESS_KEY={LOCAL_SECRET_KEY}\n"
        f"  export FRESHVEC_VECTOR_BUCKET={resources.vector_bucket} FRESHVEC_VECTOR_INDEX={resources.vector_index}"
    )


def stack_state(pipeline: Any, control: ControlServer, batch: BedrockBatchServer | None = None) -> dict[str, Any]:
    """The state file's content: where moto is and the access key it requires, the resource names (as stack
    outputs), the control URL, the Bedrock batch stand-in's URL and the token both require (credentials: write it
    with ``freshvec.state.write_local_state``, mode 0600)."""
    outputs = pipeline.resources.outputs(pipeline.config)
    if batch is not None:
        outputs = {**outputs, **local_batch_outputs()}
    return {
        # The stack's identity, for as long as it runs: progress files are named by it (a new stack starts clean).
        "stack_id": hashlib.sha256(control.token.encode()).hexdigest()[:16],
        "pid": os.getpid(),
        "endpoint": pipeline.server.endpoint,
        "region": pipeline.server.region,
        "aws_access_key": pipeline.server.access_key,
        "control": control.url,
        "token": control.token,
        **({"batch_endpoint": batch.url} if batch is not None else {}),
        "outputs": outputs,
        "started_at": time.time(),
    }
