"""PostgreSQL errors, classified once: what needs an operator's fix (PostgresError) and what a retry may cure."""

from __future__ import annotations

import ssl

from freshvec.errors import MisconfigurationError, TransientError

# SQLSTATE classes and codes that retrying cannot fix (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_MISCONFIGURED_CLASSES = ("28", "3D", "42")  # authorization, missing database, syntax/permission/missing object
_MISCONFIGURED_CODES = ("55000", "0A000")  # object not in prerequisite state (wal_level), feature not supported


class PostgresError(MisconfigurationError):
    """A PostgreSQL setting, permission or object the pipeline needs is wrong or missing; the message says which."""


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a pg8000 DatabaseError (its first argument is the server's error fields)."""
    fields = exc.args[0] if exc.args else None
    return fields.get("C") if isinstance(fields, dict) else None


def server_message(exc: BaseException) -> str:
    fields = exc.args[0] if exc.args else None
    if isinstance(fields, dict):
        text = fields.get("M", "")
        return f"{text} (SQLSTATE {fields.get('C')})" + (f"; hint: {fields['H']}" if fields.get("H") else "")
    return str(exc)


def classify_pg(exc: BaseException, doing: str) -> Exception:
    """The pipeline error for a driver error: PostgresError when it needs a fix, TransientError otherwise."""
    code = sqlstate(exc)
    if code is not None:
        if code[:2] in _MISCONFIGURED_CLASSES or code in _MISCONFIGURED_CODES:
            return PostgresError(f"{doing}: {server_message(exc)}")
        return TransientError(f"{doing}: {server_message(exc)}")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return PostgresError(f"{doing}: the server's TLS certificate was refused: {cause.verify_message}")
        if isinstance(cause, ssl.SSLError):
            return PostgresError(f"{doing}: TLS failed: {cause}")
        cause = cause.__cause__ or cause.__context__
    if "server refuses SSL" in str(exc) or "does not support SSL" in str(exc):
        return PostgresError(f"{doing}: the server does not offer TLS (sslmode needs it)")
    return TransientError(f"{doing}: {exc}")
