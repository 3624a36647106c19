"""``freshvec preflight``: before a first deploy, check with the caller's credentials what the stack will need.

One line per check, ✓ or ✗ with the fix; exit 1 when one fails. The checks, in order (docs/deploy.md, "First
deploy", lists the same):

1. config            — the pipeline config passes the same validation as ``cdk synth`` (``load_config`` with the
                       ``-c`` overrides, then ``check_deployable``).
2. keyspaces-cdc     — the Region offers Amazon Keyspaces CDC streams (Keyspaces Streams ListStreams answers);
   postgres          — for a PostgreSQL source instead: it connects with TLS as configured (password from the
                       secret) and checks what the forwarder checks at start, changing nothing: wal_level, the
                       table, columns and primary key, the publication, the replica identity, the slot, the
                       role's REPLICATION and SELECT.
3. s3-vectors        — the Region offers Amazon S3 Vectors (ListVectorBuckets answers).
4. bedrock-model     — the Region offers each configured generation's Bedrock model (GetFoundationModel; an
                       inference profile is checked through its foundation model).
5. model-access      — this account may use each of them (GetFoundationModelAvailability: agreement,
                       authorization, entitlement, Region). Third-party models (Cohere) need a one-time AWS
                       Marketplace subscription; first-party ones (Titan, Nova) do not.
6. lambda-concurrency — the account's unreserved Lambda concurrency minus what the config reserves stays ≥ 100.
7. cdk-bootstrap     — the environment is bootstrapped (the CDKToolkit stack, or the bootstrap version parameter).

It runs before the stack exists, so it reads no stack outputs; the IAM actions it calls are listed in docs/cli.md.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from freshvec import constants as c
from freshvec.cli import console
from freshvec.cli.errors import EXIT_CHECK_FAILED, OperatorError
from freshvec.cli.settings import settings
from freshvec.cli.stack import ClientFactory, make_client_factory
from freshvec.config import CONTEXT_KEY, ConfigError, EmbeddingConfig, PipelineConfig, check_deployable, load_config

OK, FAIL, SKIP = "ok", "fail", "skip"
MARKS = {OK: "✓", FAIL: "✗", SKIP: "-"}
# Lambda keeps this much of the account's concurrency unreserved: "You can reserve up to the Unreserved account
# concurrency value minus 100" (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
LAMBDA_UNRESERVED_MINIMUM = 100
# CDK's default bootstrap qualifier and the parameter the bootstrap stack writes its version to
# (https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-env.html).
CDK_TOOLKIT_STACK = "CDKToolkit"
CDK_DEFAULT_QUALIFIER = "hnb659fds"
CDK_QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"
MODEL_ACCESS_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/model-access.html"
# Permissions preflight's own calls need; a denied call means "cannot tell", and the line names the permission.
PREFLIGHT_ACTIONS = (
    "cassandra:ListStreams",
    "s3vectors:ListVectorBuckets",
    "bedrock:GetFoundationModel",
    "bedrock:GetFoundationModelAvailability",
    "lambda:GetAccountSettings",
    "cloudformation:DescribeStacks",
    "ssm:GetParameter",
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | skip
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class ConfigSource:
    """Where the config comes from: a cdk.json (its ``context``) or a bare config file, plus ``-c`` overrides."""

    path: Path
    overrides: Mapping[str, str]

    def context(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(
                "(document)", f"{self.path} not found: run in the CDK app's folder or pass --config"
            ) from exc
        except json.JSONDecodeError as exc:
            raise ConfigError("(document)", f"{self.path} is not valid JSON: {exc}") from exc
        if isinstance(raw, dict) and isinstance(raw.get("context"), dict):
            context = dict(raw["context"])
        else:
            context = {CONTEXT_KEY: raw}
        context.update(self.overrides)
        return context


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _is_unreachable(exc: BaseException) -> bool:
    from botocore.exceptions import EndpointConnectionError, UnknownEndpointError

    return isinstance(exc, EndpointConnectionError | UnknownEndpointError) or _error_code(exc) == "UnknownEndpoint"


def _is_denied(exc: BaseException) -> bool:
    code = _error_code(exc)
    return code.startswith("AccessDenied") or code in ("UnauthorizedException", "AuthorizationError")


def _offered(name: str, what: str, region: str, permission: str, call: Callable[[], Any]) -> Check:
    """A Region offers a service when its endpoint answers: denied still means offered."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        call()
    except (ClientError, BotoCoreError) as exc:
        if _is_unreachable(exc):
            return Check(name, FAIL, f"{region} does not offer {what}", f"deploy in a Region that offers {what}")
        if _is_denied(exc):
            return Check(name, OK, f"{region} offers {what} ({permission} was denied to this identity)")
        if _error_code(exc) != "ResourceNotFoundException":
            raise
    return Check(name, OK, f"{region} offers {what}")


# ---- the checks ---------------------------------------------------------------------------------


def check_config(source: ConfigSource) -> tuple[Check, PipelineConfig | None]:
    try:
        config = load_config(source.context())
        check_deployable(config)
    except ConfigError as exc:
        return Check("config", FAIL, str(exc), f"fix {exc.field} in {source.path}"), None
    detail = (
        f"{source.path}: {config.keyspace}.{config.table}, {config.embedding.model_id} ({config.embedding.dimensions})"
    )
    return Check("config", OK, detail), config


def check_keyspaces_cdc(clients: ClientFactory, region: str, config: PipelineConfig | None) -> Check:
    # With the configured table; before the first deploy it does not exist yet (ResourceNotFoundException): offered.
    params: dict[str, Any] = {"maxResults": 1}
    if config is not None:
        params.update(keyspaceName=config.keyspace, tableName=config.table)
    return _offered(
        "keyspaces-cdc",
        "Amazon Keyspaces CDC streams",
        region,
        "cassandra:ListStreams",
        lambda: clients("keyspacesstreams").list_streams(**params),
    )


def check_postgres(clients: ClientFactory, config: PipelineConfig | None) -> Check:
    """The PostgreSQL source, as the forwarder checks it at start (freshvec.cli.postgres.check_source)."""
    from freshvec.cli import postgres
    from freshvec.errors import MisconfigurationError

    assert config is not None
    where = f"{config.postgres.connection.host}:{config.postgres.connection.port}"
    try:
        detail = postgres.check_source(config, clients)
    except OperatorError as exc:  # not reachable from here (the database may be in a private subnet)
        return Check("postgres", SKIP, f"cannot reach {where} from here ({exc}); run preflight where it is reachable")
    except MisconfigurationError as exc:
        return Check("postgres", FAIL, str(exc), "see docs/deploy.md, PostgreSQL")
    return Check("postgres", OK, detail)


def check_s3_vectors(clients: ClientFactory, region: str) -> Check:
    return _offered(
        "s3-vectors",
        "Amazon S3 Vectors",
        region,
        "s3vectors:ListVectorBuckets",
        lambda: clients("s3vectors").list_vector_buckets(maxResults=1),
    )


def check_index_search(clients: ClientFactory, config: PipelineConfig | None) -> Check:
    """The index mode and full-text keys the config asks for; where the stack is deployed, each analyzer's status."""
    from freshvec import constants as c
    from freshvec.cli.status import describe_index_search

    if config is None:
        return Check("index-search", SKIP, "skipped: the config is not valid")
    wanted = ", ".join(f"{k} ({lang or 'standard'})" for k, lang in config.text_search_keys.items()) or "off"
    planned = f"{config.text_search.index_mode}; full-text: {wanted}"
    try:
        stacks = clients("cloudformation").describe_stacks(StackName=config.stack_name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        index = clients("s3vectors").get_index(
            vectorBucketName=outputs[c.OUT_VECTOR_BUCKET], indexName=outputs[c.OUT_VECTOR_INDEX]
        )["index"]
    except Exception:  # noqa: BLE001 - not deployed yet (or not readable): the deploy sets what the config says
        return Check("index-search", OK, f"the deploy sets {planned} (in place, no new index)")
    found = describe_index_search(index)
    statuses = [
        k.get("status") for k in (index.get("metadataConfiguration") or {}).get("textSearchConfigurations") or []
    ]
    if "BUILDING" in statuses:
        return Check("index-search", OK, f"{found}: full-text queries on a BUILDING key wait until it is ACTIVE")
    return Check("index-search", OK, f"{found} (config: {planned})")


def configured_embeddings(config: PipelineConfig) -> list[EmbeddingConfig]:
    """The embedding of every generation the config holds: the active one and, during a migration, the next."""
    embeddings = [config.embedding]
    following = getattr(config, "next_generation", None)  # present once the config holds index generations
    if following is not None and following.embedding not in embeddings:
        embeddings.append(following.embedding)
    return embeddings


def _each_model(name: str, config: PipelineConfig | None, check: Callable[[EmbeddingConfig], Check]) -> Check:
    """One line for every configured model: the first that fails, else all of them OK."""
    if config is None:
        return Check(name, SKIP, "skipped: the config is not valid")
    return each_model(name, configured_embeddings(config), check)


def each_model(name: str, embeddings: list[EmbeddingConfig], check: Callable[[EmbeddingConfig], Check]) -> Check:
    results = [check(embedding) for embedding in embeddings]
    failed = next((result for result in results if result.status != OK), None)
    return failed or Check(name, OK, "; ".join(result.detail for result in results))


def check_bedrock_model(clients: ClientFactory, region: str, config: PipelineConfig | None) -> Check:
    return _each_model("bedrock-model", config, lambda embedding: check_model_offered(clients, region, embedding))


def check_model_access(clients: ClientFactory, region: str, config: PipelineConfig | None) -> Check:
    return _each_model("model-access", config, lambda embedding: check_model_usable(clients, region, embedding))


def check_model_offered(clients: ClientFactory, region: str, embedding: EmbeddingConfig) -> Check:
    from botocore.exceptions import BotoCoreError, ClientError

    model = c.foundation_model_id(embedding.model_id)
    try:
        clients("bedrock").get_foundation_model(modelIdentifier=model)
    except (ClientError, BotoCoreError) as exc:
        if _is_unreachable(exc):
            return Check("bedrock-model", FAIL, f"{region} does not offer Amazon Bedrock", "deploy in another Region")
        if _is_denied(exc):
            return Check(
                "bedrock-model",
                FAIL,
                f"cannot tell whether {region} offers {model}: bedrock:GetFoundationModel was denied",
                "run preflight with an identity allowed bedrock:GetFoundationModel",
            )
        if _error_code(exc) in ("ResourceNotFoundException", "ValidationException"):
            return Check(
                "bedrock-model",
                FAIL,
                f"{region} does not offer {model}",
                "choose a Region that offers it or another embedding.model_id "
                "(https://docs.aws.amazon.com/bedrock/latest/userguide/models-regions.html)",
            )
        raise
    return Check("bedrock-model", OK, f"{region} offers {model}")


def check_model_usable(clients: ClientFactory, region: str, embedding: EmbeddingConfig) -> Check:
    """GetFoundationModelAvailability: each of its four answers that is not "yes" is one reason, with its fix."""
    from botocore.exceptions import BotoCoreError, ClientError

    model = c.foundation_model_id(embedding.model_id)
    try:
        answer = clients("bedrock").get_foundation_model_availability(modelId=model)
    except (ClientError, BotoCoreError) as exc:
        if _is_denied(exc):
            return Check(
                "model-access",
                FAIL,
                f"cannot tell whether this account may use {model}: bedrock:GetFoundationModelAvailability was denied",
                "run preflight with an identity allowed bedrock:GetFoundationModelAvailability",
            )
        if _is_unreachable(exc) or _error_code(exc) in ("ResourceNotFoundException", "ValidationException"):
            return Check("model-access", FAIL, f"{region} does not offer {model}", "see bedrock-model above")
        raise
    problems: list[str] = []
    fixes: list[str] = []
    if answer.get("regionAvailability") != "AVAILABLE":
        problems.append(f"not available in {region}")
        fixes.append("choose a Region that offers it")
    if answer.get("authorizationStatus") != "AUTHORIZED":
        problems.append("not authorized for this account")
        fixes.append("an IAM policy or SCP denies this model: ask an administrator to allow bedrock:InvokeModel on it")
    if answer.get("entitlementAvailability") != "AVAILABLE":
        problems.append("no entitlement")
        fixes.append(f"the account is not entitled to the model: ask an administrator ({MODEL_ACCESS_DOC})")
    agreement = answer.get("agreementAvailability") or {}
    status = agreement.get("status")
    third_party = model in c.MARKETPLACE_MODELS
    if status == "PENDING":
        problems.append("its AWS Marketplace agreement is pending")
        fixes.append("wait a few minutes, then run preflight again")
    elif status == "NOT_AVAILABLE" and third_party:
        problems.append("no AWS Marketplace subscription")
        fixes.append(
            "an administrator must subscribe once in AWS Marketplace (with aws-marketplace:Subscribe, "
            "aws-marketplace:ViewSubscriptions and aws-marketplace:Unsubscribe), e.g. by invoking the model once "
            f"in the Bedrock console ({MODEL_ACCESS_DOC})"
        )
    elif status in ("NOT_AVAILABLE", "ERROR"):
        problems.append(
            f"its agreement is {status}" + (f": {agreement['errorMessage']}" if "errorMessage" in agreement else "")
        )
        fixes.append(f"see {MODEL_ACCESS_DOC}")
    if problems:
        return Check("model-access", FAIL, f"{model}: {'; '.join(problems)}", "; ".join(fixes))
    return Check("model-access", OK, f"this account may invoke {model}")


def check_lambda_concurrency(clients: ClientFactory, config: PipelineConfig | None) -> Check:
    from botocore.exceptions import ClientError

    if config is None:
        return Check("lambda-concurrency", SKIP, "skipped: the config is not valid")
    reserved = (config.sink.reserved_concurrency or 0) + (config.forwarder.reserved_concurrency or 0)
    try:
        limit = clients("lambda").get_account_settings()["AccountLimit"]
    except ClientError as exc:
        if _is_denied(exc):
            return Check(
                "lambda-concurrency",
                FAIL,
                "cannot read the account's Lambda concurrency: lambda:GetAccountSettings was denied",
                "run preflight with an identity allowed lambda:GetAccountSettings",
            )
        raise
    unreserved = int(limit.get("UnreservedConcurrentExecutions", 0))
    if reserved == 0:
        return Check("lambda-concurrency", OK, f"the stack reserves no concurrency ({unreserved} unreserved)")
    left = unreserved - reserved
    detail = f"{unreserved} unreserved - {reserved} reserved by the stack = {left}"
    if left >= LAMBDA_UNRESERVED_MINIMUM:
        return Check("lambda-concurrency", OK, f"{detail} (≥ {LAMBDA_UNRESERVED_MINIMUM})")
    room = max(0, unreserved - LAMBDA_UNRESERVED_MINIMUM)
    return Check(
        "lambda-concurrency",
        FAIL,
        f"{detail}; Lambda keeps {LAMBDA_UNRESERVED_MINIMUM} unreserved",
        f"reserve at most {room} in total (sink.reserved_concurrency + forwarder.reserved_concurrency), leave them "
        "unset, or request a higher 'Concurrent executions' quota in Service Quotas",
    )


def check_cdk_bootstrap(
    clients: ClientFactory, region: str, qualifier: str = CDK_DEFAULT_QUALIFIER, account: str = "ACCOUNT"
) -> Check:
    from botocore.exceptions import ClientError

    fix = f"run `cdk bootstrap aws://{account}/{region}` (https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-env.html)"
    try:
        [toolkit] = clients("cloudformation").describe_stacks(StackName=CDK_TOOLKIT_STACK)["Stacks"]
    except ClientError as exc:
        if not (_error_code(exc) == "ValidationError" or _is_denied(exc)):
            raise
    else:
        status = toolkit.get("StackStatus", "")
        # A failed or deleted bootstrap stack, or one rolled back on creation, holds no usable bootstrap resources.
        if status.endswith("_FAILED") or status.startswith("DELETE_") or status == "ROLLBACK_COMPLETE":
            return Check(
                "cdk-bootstrap",
                FAIL,
                f"the bootstrap stack {CDK_TOOLKIT_STACK} is {status}",
                f"delete it, then {fix.removeprefix('run ')}",
            )
        return Check("cdk-bootstrap", OK, f"{CDK_TOOLKIT_STACK} is {status}")
    # Not found under the default name (or not readable): the version parameter names any bootstrap stack.
    name = f"/cdk-bootstrap/{qualifier}/version"
    try:
        version = clients("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if _error_code(exc) == "ParameterNotFound":
            return Check(
                "cdk-bootstrap", FAIL, f"{region} is not bootstrapped (no {CDK_TOOLKIT_STACK}, no {name})", fix
            )
        if _is_denied(exc):
            return Check(
                "cdk-bootstrap",
                FAIL,
                f"cannot tell whether {region} is bootstrapped: "
                "cloudformation:DescribeStacks and ssm:GetParameter were denied",
                "run preflight with an identity allowed one of them",
            )
        raise
    return Check("cdk-bootstrap", OK, f"bootstrapped (bootstrap version {version} in {name})")


def run_preflight(clients: ClientFactory, region: str, source: ConfigSource, account: str = "ACCOUNT") -> list[Check]:
    config_check, config = check_config(source)
    qualifier = CDK_DEFAULT_QUALIFIER
    with contextlib.suppress(ConfigError):  # an unreadable file: the config check has said why
        qualifier = str(source.context().get(CDK_QUALIFIER_CONTEXT) or CDK_DEFAULT_QUALIFIER)
    postgres = config is not None and config.source.kind == "postgres"
    return [
        config_check,
        check_postgres(clients, config) if postgres else check_keyspaces_cdc(clients, region, config),
        check_s3_vectors(clients, region),
        check_index_search(clients, config),
        check_bedrock_model(clients, region, config),
        check_model_access(clients, region, config),
        check_lambda_concurrency(clients, config),
        check_cdk_bootstrap(clients, region, qualifier, account),
    ]


# ---- the command --------------------------------------------------------------------------------


def _overrides(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith(CONTEXT_KEY):
            raise typer.BadParameter(
                f"expected {CONTEXT_KEY}.a.b=value or {CONTEXT_KEY}={{...}}, got {pair!r}", param_hint="-c"
            )
        parsed[key] = value
    return parsed


def render_check(check: Check) -> Text:
    line = Text(f"{MARKS[check.status]} {check.name}: {check.detail}")
    line.stylize("green" if check.status == OK else "red" if check.status == FAIL else "dim", 0, 1)
    if check.fix and check.status == FAIL:
        line.append(f"\n    fix: {check.fix}")
    return line


def preflight_command(
    config_path: Annotated[
        Path, typer.Option("--config", help="cdk.json (its context) or a bare pipeline config file")
    ] = Path("cdk.json"),
    context: Annotated[
        list[str] | None, typer.Option("-c", "--context", help="Override as for cdk: -c freshvec.sink.batch_size=50")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of one line per check")] = False,
) -> None:
    """Check, before a first deploy, that this account and Region can run the stack (exit 1 when a check fails)."""
    s = settings()
    if s.local:
        raise OperatorError("preflight checks an AWS account before a deploy; local mode needs none")
    region = s.resolved_region()
    clients = make_client_factory(region)
    account = clients("sts").get_caller_identity()["Account"]  # also: are there credentials at all
    checks = run_preflight(clients, region, ConfigSource(config_path, _overrides(context or [])), account)
    failed = [check for check in checks if check.status == FAIL]
    if as_json:
        doc = {"account": account, "region": region, "ok": not failed, "checks": [asdict(ch) for ch in checks]}
        console.out.print_json(json.dumps(doc))
    else:
        console.out.print(f"freshvec preflight: account {account}, {region}")
        for check in checks:
            console.out.print(render_check(check))
        summary = f"{len(failed)} of {len(checks)} checks failed" if failed else "ready to deploy: `cdk deploy`"
        console.out.print(summary)
    if failed:
        raise typer.Exit(EXIT_CHECK_FAILED)
