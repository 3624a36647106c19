"""One place that decides how a freshvec Lambda function looks: runtime, architecture, role, logs, environment."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from freshvec import constants as c
from freshvec.config import ConfigError
from stacks import constants as k

# An unresolved token (an ARN, a queue URL) becomes a string of unknown length at deploy time.
_TOKEN_BUDGET_CHARS = 256


def python_function(
    scope: Construct,
    *,
    service: str,
    description: str,
    handler: str,
    code: lambda_.Code,
    layer: lambda_.ILayerVersion,
    memory_mb: int,
    timeout_s: int,
    environment: Mapping[str, str],
    reserved_concurrency: int | None,
) -> lambda_.Function:
    """A Python 3.13 arm64 function with its own role (no managed policies) and a log group with retention."""
    role = iam.Role(
        scope,
        "Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"freshvec {service} function",
    )
    log_group = logs.LogGroup(
        scope,
        "Logs",
        retention=k.LOG_RETENTION,
        removal_policy=RemovalPolicy.DESTROY,
    )
    log_group.grant_write(role)
    full_environment = {
        **environment,
        "POWERTOOLS_SERVICE_NAME": service,
        "POWERTOOLS_METRICS_NAMESPACE": c.METRICS_NAMESPACE,
    }
    check_environment_size(service, full_environment)
    return lambda_.Function(
        scope,
        "Function",
        description=description,
        runtime=lambda_.Runtime.PYTHON_3_13,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=code,
        layers=[layer],
        memory_size=memory_mb,
        timeout=Duration.seconds(timeout_s),
        environment=full_environment,
        reserved_concurrent_executions=reserved_concurrency,
        role=role,
        log_group=log_group,
    )


def check_environment_size(service: str, environment: Mapping[str, str]) -> None:
    """Lambda refuses functions whose environment exceeds 4 KB; say so at synth, naming the cause."""
    size = sum(
        len(name) + (_TOKEN_BUDGET_CHARS if Token.is_unresolved(value) else len(value.encode()))
        for name, value in environment.items()
    )
    if size > k.LAMBDA_ENV_MAX_BYTES:
        raise ConfigError(
            "(document)",
            f"the {service} function's environment would be about {size} bytes (the whole config travels in "
            f"{c.ENV_CONFIG}); Lambda allows {k.LAMBDA_ENV_MAX_BYTES}: shorten column lists or names",
        )


def grant_key_use(role: iam.IRole, key: kms.IKey, *actions: str) -> None:
    """Named KMS actions only: CDK's grant helpers add ``kms:ReEncrypt*`` and ``kms:GenerateDataKey*``."""
    role.add_to_principal_policy(iam.PolicyStatement(actions=sorted(set(actions)), resources=[key.key_arn]))
