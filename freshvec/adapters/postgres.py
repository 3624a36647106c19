"""PostgreSQL connections (pg8000, pure Python, so it runs in the arm64 Lambda): TLS verified, errors classified.

``sslmode`` follows libpq's names: ``verify-full`` (the default) checks the server certificate against the CA
bundle and the host name; ``verify-ca`` only the chain; ``require`` encrypts without checking (not for
production); ``disable`` is plain TCP (a local server). On Amazon RDS and Aurora the CA bundle is
https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem (docs/sources.md).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import ssl
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from freshvec.config import PostgresConnectionConfig
from freshvec.sources.postgres.errors import PostgresError, classify_pg

SOCKET_TIMEOUT_S = 120.0  # one slot peek decodes the retained WAL; leave it time, but not forever
APPLICATION_NAME = "freshvec"


def ssl_context(sslmode: str, ca_bundle: str | None) -> ssl.SSLContext | None:
    if sslmode == "disable":
        return None
    if sslmode == "require":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # libpq's "require": encrypted, not verified
        return context
    try:
        context = ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise PostgresError(f"cannot read the CA bundle {ca_bundle}: {exc}") from exc
    context.check_hostname = sslmode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def connect(connection: Any, password: str | None, *, application_name: str = APPLICATION_NAME) -> Any:
    """A ``pg8000.native.Connection`` for a ``PostgresConnectionConfig``; PostgresError when the settings,
    credentials or certificate are wrong, TransientError when the server cannot be reached."""
    import pg8000.native  # deferred: only PostgreSQL deployments load the driver

    where = f"connecting to PostgreSQL {connection.user}@{connection.host}:{connection.port}/{connection.database}"
    context = ssl_context(connection.sslmode, connection.ca_bundle)
    try:
        conn = pg8000.native.Connection(
            connection.user,
            host=connection.host,
            port=connection.port,
            database=connection.database,
            password=password,
            ssl_context=context,
            timeout=connection.connect_timeout_s,
            application_name=application_name,
        )
    except Exception as exc:  # pg8000 raises Interface/Database errors and socket errors
        if password is None and _asked_for_password(exc):
            raise PostgresError(
                f"{where}: the server asks for a password and none was found (in the URL, FRESHVEC_PG_PASSWORD, "
                f"PGPASSWORD, or a line for {connection.host}:{connection.port} in PGPASSFILE or ~/.pgpass)"
            ) from exc
        raise classify_pg(exc, where) from exc
    sock = getattr(conn, "_usock", None)
    if sock is not None:  # the connect timeout is short; queries (a slot peek) may take longer
        sock.settimeout(SOCKET_TIMEOUT_S)
    return conn


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PASSWORD_ENVS = ("FRESHVEC_PG_PASSWORD", "PGPASSWORD")  # freshvec's own first, then libpq's (psql's)


def connection_from_url(url: str, base: Any = None) -> tuple[Any, str | None]:
    """A ``PostgresConnectionConfig`` and the password from ``postgresql://user:password@host:port/db?sslmode=..``.

    What the URL leaves out comes from ``base`` (a ``PostgresConnectionConfig``), else the defaults; a loopback
    host without ``sslmode`` gets ``disable`` (TLS to one's own machine protects nothing), any other host the
    config's default, ``verify-full``. ValueError names what is wrong with the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"{url.rsplit('@', maxsplit=1)[-1]!r} is not a postgresql:// URL (postgresql://user@host:5432/db)"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"the URL's port is not a number: {exc}") from exc
    current = base if base is not None else PostgresConnectionConfig()
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = parts.hostname or current.host
    changes: dict[str, Any] = {"host": host}
    if port is not None:
        changes["port"] = port
    if parts.path.strip("/"):
        changes["database"] = unquote(parts.path.strip("/"))
    if parts.username:
        changes["user"] = unquote(parts.username)
    elif base is None:  # libpq's default: PGUSER, else the operating-system user
        changes["user"] = os.environ.get("PGUSER") or getpass.getuser()
    if "sslmode" in query:
        changes["sslmode"] = query["sslmode"]
    elif host in LOOPBACK_HOSTS and base is None:
        changes["sslmode"] = "disable"
    if "sslrootcert" in query:
        changes["ca_bundle"] = query["sslrootcert"]
    changes["password"] = None  # never carried into a config: it is returned apart
    password = unquote(parts.password) if parts.password is not None else None
    return dataclasses.replace(current, **changes), password


def password_from_environment(connection: Any = None) -> str | None:
    """The password a local command uses when no URL gives one, in libpq's order: ``FRESHVEC_PG_PASSWORD``, else
    ``PGPASSWORD``, else (for ``connection``) the password file, as psql reads it (pg8000 reads none)."""
    found = next((os.environ[name] for name in PASSWORD_ENVS if os.environ.get(name)), None)
    if found is None and connection is not None:
        found = password_from_passfile(connection)
    return found


def password_from_passfile(connection: Any, path: str | None = None) -> str | None:
    """The password of the first line of the libpq password file (``PGPASSFILE``, else ``~/.pgpass``) that
    matches ``connection``: ``host:port:database:user:password``, ``*`` matching anything, ``\\`` escaping ``:``
    and itself, ``#`` starting a comment. As libpq does, a file that others may read is ignored.
    (PostgreSQL docs, "The Password File".)"""
    passfile = Path(path or os.environ.get("PGPASSFILE") or Path.home() / ".pgpass").expanduser()
    try:
        if passfile.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return None
        lines = passfile.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    wanted = (connection.host, str(connection.port), connection.database, connection.user)
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _passfile_fields(line)
        if len(fields) != 5:
            continue
        if all(field in ("*", value) for field, value in zip(fields[:4], wanted, strict=True)):
            return fields[4]
    return None


def _passfile_fields(line: str) -> list[str]:
    fields, current, escaped = [], [], False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def _asked_for_password(exc: BaseException) -> bool:
    """The server wanted a password that was not given (pg8000 says so, or fails on the missing one in SCRAM)."""
    text = str(exc)
    return "no password was provided" in text or "'NoneType' object has no attribute 'decode'" in text
