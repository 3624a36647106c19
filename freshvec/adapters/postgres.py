"""PostgreSQL connections (pg8000, pure Python, so it runs in the arm64 Lambda): TLS verified, errors classified.

``sslmode`` follows libpq's names: ``verify-full`` (the default) checks the server certificate against the CA
bundle and the host name; ``verify-ca`` only the chain; ``require`` encrypts without checking (not for
production); ``disable`` is plain TCP (a local server). On Amazon RDS and Aurora the CA bundle is
https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem (docs/sources.md).
"""

from __future__ import annotations

import ssl
from typing import Any

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
        raise classify_pg(exc, where) from exc
    sock = getattr(conn, "_usock", None)
    if sock is not None:  # the connect timeout is short; queries (a slot peek) may take longer
        sock.settimeout(SOCKET_TIMEOUT_S)
    return conn
