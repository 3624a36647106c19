"""Which adapter serves which port, for the forwarder: one place, used by the Lambda handler, local mode,
the benchmarks and the tests, so they all run the very same assembly. It takes clients; it never makes one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from freshvec.adapters.dynamodb import CheckpointStore
from freshvec.adapters.kinesis import KINESIS_RETRY, KinesisWriter
from freshvec.adapters.postgres import connect as connect_postgres
from freshvec.config import PipelineConfig
from freshvec.forwarder import Forwarder, Hooks
from freshvec.ports import ChangeSource
from freshvec.sources.keyspaces.streams import KeyspacesStreamsSource
from freshvec.sources.postgres.reader import PostgresSlotSource


def keyspaces_forwarder(
    config: PipelineConfig,
    streams: Any,
    kinesis: Any,
    dynamodb: Any,
    *,
    stream_name: str,
    checkpoint_table: str,
    owner_id: str,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    hooks: Hooks | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Forwarder:
    """A forwarder from a Keyspaces table's CDC stream (``keyspacesstreams`` client) to a Kinesis stream,
    with its checkpoints and leases in a DynamoDB table."""
    source = KeyspacesStreamsSource.for_config(streams, config)
    return _forwarder(
        config, source, kinesis, dynamodb, stream_name, checkpoint_table, owner_id, clock, sleep, hooks, monotonic
    )


def postgres_forwarder(
    config: PipelineConfig,
    connect: Callable[[], Any],
    kinesis: Any,
    dynamodb: Any,
    *,
    stream_name: str,
    checkpoint_table: str,
    owner_id: str,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    hooks: Hooks | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Forwarder:
    """A forwarder from a PostgreSQL table's logical replication slot (``connect()`` returns a pg8000 connection,
    see ``freshvec.adapters.postgres.connect``) to a Kinesis stream, checkpoints and the lease in DynamoDB."""
    source = PostgresSlotSource.for_config(connect, config)
    return _forwarder(
        config, source, kinesis, dynamodb, stream_name, checkpoint_table, owner_id, clock, sleep, hooks, monotonic
    )


def _forwarder(  # noqa: PLR0917 - the two public builders pass their arguments straight through
    config: PipelineConfig,
    source: ChangeSource,
    kinesis: Any,
    dynamodb: Any,
    stream_name: str,
    checkpoint_table: str,
    owner_id: str,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    hooks: Hooks | None,
    monotonic: Callable[[], float],
) -> Forwarder:
    """The assembly every source shares: DynamoDB leases and checkpoints, the one Kinesis writer."""
    leases = CheckpointStore(
        dynamodb, checkpoint_table, owner_id=owner_id, lease_duration_s=config.forwarder.lease_duration_s, clock=clock
    )
    writer = KinesisWriter(kinesis, stream_name, retry=KINESIS_RETRY.with_(sleep=sleep))
    return Forwarder(
        config.forwarder, source, writer, leases, clock=clock, sleep=sleep, hooks=hooks, monotonic=monotonic
    )


def postgres_connector(config: PipelineConfig, password: str | None) -> Callable[[], Any]:
    """``connect()`` for the config's PostgreSQL connection settings (TLS as configured)."""
    settings = config.postgres.connection
    return lambda: connect_postgres(settings, password)
