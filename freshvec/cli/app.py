"""``freshvec``: the operator CLI. This module is the app: global options, error explanation, the commands.

Each command family lives in its own module (``load_command``, ``query``, ``backfill``, ``redrive``,
``status``), with what it does and how it prints; the stack's resources and clients are ``stack``, local
mode's state file and control API ``local_client``.

Resources come from the stack's CloudFormation outputs (``--stack``/``FRESHVEC_STACK``,
``--region``/``AWS_REGION``), or with ``--local`` from the state file of a running ``freshvec local up``.
Expected failures (``freshvec.cli.errors.explain``) print one ``error: ...`` line on stderr and exit 3 (usage
errors exit 2; ``freshvec.cli.errors`` has the codes); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import functools
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.exceptions import TyperException

from freshvec import state
from freshvec.cli import (
    backfill,
    init,
    load_command,
    migrate,
    preflight,
    query,
    reconcile,
    redrive,
    settings,
    status,
    wait,
)
from freshvec.cli.errors import exit_code, explain

STACK_ENV = "FRESHVEC_STACK"
LOCAL_STATE_HELP = (
    "Local state file [default: $XDG_STATE_HOME/freshvec/local.json, else ~/.local/state/freshvec/local.json]"
)

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


# ---- global options ----------------------------------------------------------------------------


@app.callback()
def global_options(
    stack: Annotated[
        str | None, typer.Option("--stack", envvar=STACK_ENV, help="CloudFormation stack name [default: from cdk.json]")
    ] = None,
    region: Annotated[str | None, typer.Option("--region", envvar="AWS_REGION", help="AWS Region of the stack")] = None,
    local: Annotated[bool, typer.Option("--local", help="Use the running `freshvec local up` instead of AWS")] = False,
    local_state: Annotated[
        Path | None,
        typer.Option("--local-state", envvar=state.LOCAL_STATE_ENV, help=LOCAL_STATE_HELP),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors")] = False,
) -> None:
    settings.use(settings.Settings(stack or settings.default_stack(), region, local, local_state, debug))


# ---- error handling ----------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def expected_failures(command: F) -> F:
    """Turn expected failures into one ``error:`` line, and anything else into its traceback; either way the
    exit code says the command could not finish (``exit_code``), never the code of a failed check."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # click reports its own usage errors (exit 2)
        except Exception as exc:  # noqa: BLE001 - every failure gets its exit code; bugs keep their traceback
            message = explain(exc)
            if message is None or settings.settings().debug:
                traceback.print_exc(file=sys.stderr)
            if message is not None:
                typer.echo(f"error: {message}", err=True)
            raise typer.Exit(exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


# ---- where: --stack and --region after the command too ---------------------------------------------

# No environment variable here: FRESHVEC_STACK/AWS_REGION are read by the options before the command, and a value
# given after the command wins over both (as with the AWS CLI's --region).
_LOCATION_OPTIONS = (
    inspect.Parameter(
        "fv_stack",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None, typer.Option("--stack", help="CloudFormation stack name (as before the command)")
        ],
    ),
    inspect.Parameter(
        "fv_region",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None, typer.Option("--region", help="AWS Region of the stack (as before the command)")
        ],
    ),
)


def location_options(command: F) -> F:
    """Add ``--stack`` and ``--region`` to a command; given there, they override the global ones."""
    signature = inspect.signature(command, eval_str=True)

    @functools.wraps(command)
    def wrapper(*args: Any, fv_stack: str | None = None, fv_region: str | None = None, **kwargs: Any) -> Any:
        settings.override_location(fv_stack, fv_region)
        return command(*args, **kwargs)

    parameters = list(signature.parameters.values())
    wrapper.__signature__ = signature.replace(parameters=[*parameters, *_LOCATION_OPTIONS])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{p.name: p.annotation for p in parameters},
        **{p.name: p.annotation for p in _LOCATION_OPTIONS},
    }
    return wrapper  # type: ignore[return-value]


def operator_command(command: F) -> F:
    return location_options(expected_failures(command))


# ---- the commands ------------------------------------------------------------------------------

app.command("init")(expected_failures(init.init_command))
app.command("preflight")(operator_command(preflight.preflight_command))
app.command("load")(operator_command(load_command.load_command))
app.command("wait")(operator_command(wait.wait_command))
app.command("query")(operator_command(query.query_command))
app.command("backfill")(operator_command(backfill.backfill_command))
app.command("reconcile")(operator_command(reconcile.reconcile_command))
redrive_app.command("list")(operator_command(redrive.redrive_list))
redrive_app.command("show")(operator_command(redrive.redrive_show))
redrive_app.command("send")(operator_command(redrive.redrive_send))
app.command("status")(operator_command(status.status_command))
migrate.register(app, operator_command)
