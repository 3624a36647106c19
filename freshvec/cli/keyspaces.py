"""Connecting to the stack's Amazon Keyspaces table: TLS verified, SigV4 auth, LOCAL_QUORUM, rows as dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freshvec.cli import stack

KEYSPACES_PORT = 9142


def keyspaces_host(region: str) -> str:
    return f"cassandra.{region}.amazonaws.com"


def tls_context(ca_bundle: str | Path | None = None) -> Any:
    """A TLS client context that verifies the server certificate and host name.

    Default trust store: the ``certifi`` bundle (Mozilla's roots), which holds Amazon Root CA 1-4 that
    Amazon Keyspaces certificates chain to. Pass ``ca_bundle`` (e.g. AWS's ``keyspaces-bundle.pem`` with
    the Starfield Class 2 root) where an endpoint still presents the older chain.
    """
    import ssl

    import certifi

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname on, CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=str(ca_bundle) if ca_bundle else certifi.where())
    return context


def connect_keyspaces(
    region: str, boto_session: Any, *, ca_bundle: str | Path | None = None, request_timeout_s: float = 20.0
) -> tuple[Any, Any]:
    """(cluster, session) for Amazon Keyspaces: TLS verified, SigV4 auth, LOCAL_QUORUM, rows as dicts."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy
    from cassandra.query import dict_factory
    from cassandra_sigv4.auth import SigV4AuthProvider

    host = keyspaces_host(region)
    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=region),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=request_timeout_s,
        row_factory=dict_factory,
    )
    cluster = Cluster(
        [host],
        port=KEYSPACES_PORT,
        ssl_context=tls_context(ca_bundle),
        ssl_options={"server_hostname": host},
        auth_provider=SigV4AuthProvider(boto_session),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=4,
    )
    return cluster, cluster.connect()


def connect_table(region: str, ca_bundle: Path | None) -> tuple[Any, Any]:
    """(cluster, session) for the stack's Keyspaces table, with the default credentials; tests replace this."""
    return connect_keyspaces(region, stack.boto_session(region), ca_bundle=ca_bundle)
