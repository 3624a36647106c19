"""Forwarder Lambda: every scheduled minute, pull the source's changes (the Keyspaces CDC stream, or a PostgreSQL
logical replication slot, by ``source.kind``) into Kinesis until shortly before the timeout, then release the
leases and report (for PostgreSQL also the WAL the slot holds back, ``SlotLagBytes``).

Thin on purpose: environment -> config and clients (once per container), Powertools logs and EMF metrics,
one call into ``freshvec.forwarder.Forwarder.run``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from freshvec import constants as c
from freshvec.adapters.postgres import connect as connect_postgres
from freshvec.adapters.wiring import keyspaces_forwarder, postgres_connector, postgres_forwarder
from freshvec.config import PipelineConfig
from freshvec.forwarder import Forwarder, ForwarderStats
from freshvec.sources.postgres.session import slot_lag_bytes

# Time kept back from the Lambda timeout for the last pass to finish its batch and the leases to be released.
SAFETY_MARGIN_S = 10.0

logger = Logger(service=c.SERVICE_FORWARDER)
metrics = Metrics(namespace=c.METRICS_NAMESPACE, service=c.SERVICE_FORWARDER)
copy_config_to_registered_loggers(source_logger=logger, include={"freshvec"})
# One lease owner per execution environment: a later invocation in the same container takes its leases back.
OWNER_ID = f"forwarder-{uuid.uuid4().hex[:12]}"
# botocore retries connection errors once; throttling gets the forwarder's own backoff with jitter.
# Each call is bounded (c.FORWARDER_CALL_BUDGET_S): a lease outlives the timeout plus one call (config validation).
_BOTO_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": c.SDK_ATTEMPTS},
    connect_timeout=c.FORWARDER_CONNECT_TIMEOUT_S,
    read_timeout=c.FORWARDER_READ_TIMEOUT_S,
)


@dataclass(frozen=True)
class Clients:
    streams: Any  # None for a PostgreSQL source
    kinesis: Any
    dynamodb: Any


@cache
def _config() -> PipelineConfig:
    return PipelineConfig.from_json(os.environ[c.ENV_CONFIG])


@cache
def _clients() -> Clients:
    keyspaces = _config().source.kind == "keyspaces"
    return Clients(
        streams=boto3.client("keyspacesstreams", config=_BOTO_CONFIG) if keyspaces else None,
        kinesis=boto3.client("kinesis", config=_BOTO_CONFIG),
        dynamodb=boto3.client("dynamodb", config=_BOTO_CONFIG),
    )


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    forwarder = _forwarder()
    budget_s = context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_S
    stats = forwarder.run(deadline_monotonic=time.monotonic() + max(budget_s, 0.0))
    summary = _report(stats)
    if _config().source.kind == "postgres":
        summary["slot_lag_bytes"] = _report_slot_lag()
    return summary


def _forwarder() -> Forwarder:
    clients, config = _clients(), _config()
    where = {
        "stream_name": os.environ[c.ENV_STREAM_NAME],
        "checkpoint_table": os.environ[c.ENV_CHECKPOINT_TABLE],
        "owner_id": OWNER_ID,
    }
    if config.source.kind == "postgres":
        connect = postgres_connector(config, _postgres_password())
        return postgres_forwarder(config, connect, clients.kinesis, clients.dynamodb, **where)
    return keyspaces_forwarder(config, clients.streams, clients.kinesis, clients.dynamodb, **where)


@cache
def _postgres_password() -> str | None:
    """From Secrets Manager when the config names a secret (a plain string, or JSON with "password", as RDS
    managed secrets hold it); read once per container."""
    connection = _config().postgres.connection
    if connection.password_secret_arn is None:
        return connection.password
    secret = boto3.client("secretsmanager", config=_BOTO_CONFIG).get_secret_value(
        SecretId=connection.password_secret_arn
    )["SecretString"]
    try:
        document = json.loads(secret)
    except json.JSONDecodeError:
        return str(secret)
    return str(document["password"]) if isinstance(document, dict) and "password" in document else str(secret)


def _report_slot_lag() -> int | None:
    """WAL bytes the slot retains (a stopped or slow reader makes this grow without bound: alarmed)."""
    config = _config()
    try:
        conn = connect_postgres(config.postgres.connection, _postgres_password())
        try:
            lag = slot_lag_bytes(conn, config.postgres.slot)["retained_bytes"]
        finally:
            conn.close()
    except Exception:  # the forwarding itself succeeded; a missing lag point is alarmed as missing data
        logger.exception("could not measure the replication slot's lag")
        return None
    if lag is not None:
        metrics.add_metric(name=c.M_SLOT_LAG_BYTES, unit=MetricUnit.Bytes, value=lag)
    return lag


def _report(stats: ForwarderStats) -> dict[str, Any]:
    lag_ms = stats.lag_ms(time.time())
    if lag_ms is None and stats.at_tip:
        lag_ms = 0.0  # nothing new and every shard at its tip: caught up
    counts = {
        c.M_CHANGES_FORWARDED: stats.changes_forwarded,
        c.M_SHARDS_OWNED: stats.shards_owned,
        c.M_THROTTLES: stats.throttles,
        c.M_TRIMMED_DATA_EVENTS: stats.trimmed_events,
        c.M_CREATED_AT_REGRESSIONS: stats.created_at_regressions,
    }
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if lag_ms is not None:
        metrics.add_metric(name=c.M_FORWARDER_LAG_MS, unit=MetricUnit.Milliseconds, value=lag_ms)
    summary = {
        "owner_id": OWNER_ID,
        "changes_forwarded": stats.changes_forwarded,
        "unconvertible_forwarded": stats.unconvertible_forwarded,
        "shards_owned": stats.shards_owned,
        "throttles": stats.throttles,
        "trimmed_events": stats.trimmed_events,
        "created_at_regressions": stats.created_at_regressions,
        "lost_ranges": [dataclasses.asdict(lost) for lost in stats.lost_ranges],
        "passes": stats.passes,
        "lag_ms": lag_ms,
    }
    logger.info("forwarder run finished", extra=summary)
    return summary
