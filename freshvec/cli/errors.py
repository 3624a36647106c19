"""Expected failures and exit codes: the CLI's own ``OperatorError`` (and ``UsageError``), ``explain``, which turns
any expected failure into one line a person can act on (no traceback; a bug gets no explanation and keeps its
traceback), and the exit codes every command keeps, so scripts can gate on them:

- ``EXIT_OK`` (0): done; for a check (reconcile, wait, preflight, load), it passed.
- ``EXIT_CHECK_FAILED`` (1): the command finished and its check did not pass: reconcile found drift, wait saw
  changes that never became searchable, preflight found a problem, load had rows refused, redrive send left
  parked items it cannot redrive in place.
- ``EXIT_USAGE`` (2): the command line, the config or an input file is wrong (also click's own usage errors).
- ``EXIT_FAILED`` (3): the command could not finish: a service unreachable or refusing, an unexpected error.
  A script can tell "drift" from "could not look".
"""

from __future__ import annotations

from typing import Any

from freshvec.config import ConfigError
from freshvec.datafiles import LoaderFileError
from freshvec.errors import MisconfigurationError, PoisonRecordError, TransientError, error_code
from freshvec.filters import FilterError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


class OperatorError(Exception):
    """An expected failure, explained in one line (no traceback needed): the command could not finish."""


class RefusedKeyError(OperatorError):
    """The table refuses a key as a key of its rows (a value its key column cannot hold): no row has it."""


class UsageError(OperatorError):
    """The operator asked for something that cannot be done as asked (exit ``EXIT_USAGE``)."""


def exit_code(exc: BaseException) -> int:
    """``EXIT_USAGE`` for bad input (command line, config, files), else ``EXIT_FAILED``."""
    if isinstance(exc, UsageError | FilterError | LoaderFileError | ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


def explain(exc: BaseException) -> str | None:  # noqa: PLR0911 - one line per kind of expected failure
    """One line for an expected failure, or None for a bug (which keeps its traceback)."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(exc, OperatorError | FilterError | LoaderFileError | ConfigError):
        return str(exc)
    if isinstance(exc, MisconfigurationError | PoisonRecordError | TransientError):  # classified: say what it is
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
