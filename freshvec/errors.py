"""The three ways a change can fail, classified once so every caller handles each class in one place.

- ``TransientError``: try again later (throttling, 5xx, timeouts). The sink reports the record in
  ``batchItemFailures``; the forwarder backs off.
- ``PoisonRecordError``: this record can never succeed (bad JSON, missing key, a value that cannot be
  converted, metadata over the limits). It goes to the DLQ with its payload and reason; the batch goes on.
- ``MisconfigurationError``: nothing in the batch can succeed (index missing, access denied, dimension
  mismatch). The invocation fails loudly so alarms fire.
"""

from __future__ import annotations

from typing import Any

# AWS error codes by class. Anything unknown with a 5xx status is transient; unknown 4xx is misconfiguration.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ModelTimeoutException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalServerError",
        "InternalFailure",
        "KMSThrottlingException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "ModelNotReadyException",
    }
)
MISCONFIGURATION_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnauthorizedException",
        "NotFoundException",
        "ResourceNotFoundException",
        "NoSuchVectorBucket",
        "NoSuchIndex",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSNotFoundException",
    }
)


class FreshvecError(Exception):
    """Base of the classified errors."""


class TransientError(FreshvecError):
    """Retry later; nothing is wrong with the record."""


class PoisonRecordError(FreshvecError):
    """This record can never be applied; park it with its payload and this reason."""


class AmbiguousResyncError(PoisonRecordError):
    """A Keyspaces re-sync that cannot tell whether its read saw the state the index holds (that state's
    ``createdAt`` is after the re-sync's stamp), or whose stamp is outside what the sink accepts (older than the
    tombstone horizon, or ahead of the sink's clock by more than the clock bound). Nothing is wrong with the row:
    it is parked in the DLQ so ``freshvec redrive send`` reads it again, with a new stamp."""


class MisconfigurationError(FreshvecError):
    """The pipeline itself is wrong (missing index, permissions, dimensions); fail the invocation."""


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (or anything shaped like one), else None."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def http_status(exc: BaseException) -> int | None:
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status else None
    return None


def classify(exc: BaseException) -> type[FreshvecError]:
    """Map any exception raised while applying a change to one of the three classes."""
    if isinstance(exc, FreshvecError):
        return type(exc)
    code = error_code(exc)
    if code in TRANSIENT_CODES:
        return TransientError
    if code in MISCONFIGURATION_CODES:
        return MisconfigurationError
    status = http_status(exc)
    if status is not None:
        return TransientError if status >= 500 or status == 429 else MisconfigurationError
    # Connection resets, read timeouts and the like from botocore carry no response.
    name = type(exc).__name__
    if any(word in name for word in ("Timeout", "Connection", "Endpoint")):
        return TransientError
    return MisconfigurationError


def is_transient(exc: BaseException) -> bool:
    return classify(exc) is TransientError
