"""The rules a valid config must also meet to be deployed: the CDK app runs them at synth, ``freshvec preflight``
before a first deploy."""

from __future__ import annotations

from freshvec import constants as c
from freshvec.config.errors import ConfigError
from freshvec.config.pipeline import PipelineConfig


def check_deployable(config: PipelineConfig) -> None:
    """The rules a valid config must also meet to be deployed (run at synth and by ``freshvec preflight``)."""
    if config.source.kind == "postgres":
        check_deployable_postgres(config)
    else:
        check_cloudformation_names(config)
    check_deployable_embedding(config)
    check_call_bounds(config)


def check_call_bounds(config: PipelineConfig) -> None:
    """The Lambda timing rules exactness rests on (docs/exactness.md): an S3 Vectors call never outlives the sink
    invocation that made it (a killed invocation's late write could land after its re-delivery's newer one), and
    a forwarder's lease outlives its invocation plus its last call (no stray re-sends after a lost lease)."""
    sink, forwarder = config.sink, config.forwarder
    if sink.timeout_s < 3 * c.S3V_CALL_BUDGET_S:
        raise ConfigError(
            "sink.timeout_s", f"must be at least {3 * c.S3V_CALL_BUDGET_S} s: 3 times an S3 Vectors call's bound"
        )
    if forwarder.lease_duration_s <= forwarder.timeout_s + c.FORWARDER_CALL_BUDGET_S:
        raise ConfigError(
            "forwarder.lease_duration_s",
            f"must exceed forwarder.timeout_s plus {c.FORWARDER_CALL_BUDGET_S} s (a call's retry budget): "
            f"at least {forwarder.timeout_s + c.FORWARDER_CALL_BUDGET_S + 1}",
        )


def check_deployable_postgres(config: PipelineConfig) -> None:
    """A deployed forwarder reads its password from Secrets Manager, never from the config (which travels in
    its environment); a DynamoDB gateway endpoint needs the route tables of the forwarder's subnets."""
    pg = config.postgres
    if pg.connection.password is not None or pg.connection.password_secret_arn is None:
        raise ConfigError(
            "source.postgres.connection.password_secret_arn",
            "a deployed pipeline reads the password from Secrets Manager: set password_secret_arn, leave password out",
        )
    net = pg.network
    if net.vpc_id is not None and net.create_endpoints and not net.route_table_ids:
        raise ConfigError(
            "source.postgres.network.route_table_ids",
            "create_endpoints adds a DynamoDB gateway endpoint, which needs the subnets' route tables (rtb-...)",
        )


def check_cloudformation_names(config: PipelineConfig) -> None:
    """CloudFormation rejects one-character keyspace, table and column names that CQL would accept."""
    least = c.CFN_KEYSPACES_NAME_MIN_CHARS
    for path, name in (("keyspace", config.keyspace), ("table", config.table)):
        if len(name) < least:
            raise ConfigError(path, f"{name!r}: AWS::Cassandra names need at least {least}")
    for name in config.columns:
        if len(name) < least:
            raise ConfigError(f"columns.{name}", f"{name!r}: AWS::Cassandra column names need at least {least}")


def check_deployable_embedding(config: PipelineConfig) -> None:
    """The local provider (WordLlama) exists for local mode only; a deployed sink embeds with Bedrock."""
    if config.embedding.provider in c.LOCAL_ONLY_PROVIDERS:
        deployable = ", ".join(p for p in c.PROVIDER_MODELS if p not in c.LOCAL_ONLY_PROVIDERS)
        raise ConfigError(
            "embedding.provider",
            f"{config.embedding.provider!r} runs in local mode only and cannot be deployed; allowed: {deployable}",
        )
