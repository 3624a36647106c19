"""The stack's resources (from its CloudFormation outputs) and the boto3 clients to reach them.

This module and the app wiring are the only places in the CLI that create boto3 sessions and clients:
every operation receives a ``ClientFactory`` (service name -> client), so tests hand in moto clients.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from freshvec import constants as c
from freshvec.cli.errors import OperatorError
from freshvec.config import ConfigError, PipelineConfig

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True)
class StackResources:
    """Everything the CLI needs to know about a deployed (or local) pipeline, from its outputs."""

    stack_name: str
    region: str
    outputs: dict[str, str]
    config: PipelineConfig
    endpoint_url: str | None = None  # local mode: the moto server
    control_url: str | None = None  # local mode: the control API
    control_token: str | None = field(default=None, repr=False)  # local mode: the control API's token
    batch_endpoint_url: str | None = None  # local mode: the Bedrock batch inference stand-in
    aws_access_key: str | None = field(default=None, repr=False)  # local mode: the key the endpoint requires
    stack_id: str | None = None  # this stack's identity: CloudFormation's StackId, local mode's from its state file

    @property
    def progress_name(self) -> str:
        """The name of progress files kept between runs (``.freshvec/backfill-<this>.json``, migrations): the
        stack's name and its identity, so a new stack under an old name starts clean (a stack's own progress
        still resumes)."""
        identity = (self.stack_id or "").rsplit("/", 1)[-1]  # a StackId ARN ends in the stack's unique id
        return f"{self.stack_name}-{identity[:12]}" if identity else self.stack_name

    @property
    def is_local(self) -> bool:
        return self.control_url is not None

    def output(self, name: str) -> str:
        value = self.outputs.get(name)
        if not value:
            where = "the local state file" if self.is_local else f"stack {self.stack_name!r}"
            raise OperatorError(f"{where} has no output {name!r}; was it deployed by this version of freshvec?")
        return value

    @property
    def stream_name(self) -> str:
        return self.output(c.OUT_STREAM_NAME)

    @property
    def dlq_url(self) -> str:
        return self.output(c.OUT_SINK_DLQ_URL)

    @property
    def on_failure_bucket(self) -> str:
        return self.output(c.OUT_ON_FAILURE_BUCKET)

    @property
    def vector_bucket(self) -> str:
        return self.output(c.OUT_VECTOR_BUCKET)

    @property
    def vector_index(self) -> str:
        return self.output(c.OUT_VECTOR_INDEX)

    @property
    def batch_bucket(self) -> str:
        return self.output(c.OUT_BATCH_BUCKET)

    @property
    def batch_role_arn(self) -> str:
        return self.output(c.OUT_BATCH_ROLE_ARN)

    @classmethod
    def from_outputs(
        cls,
        stack_name: str,
        region: str,
        outputs: dict[str, str],
        *,
        endpoint_url: str | None = None,
        control_url: str | None = None,
        control_token: str | None = None,
        batch_endpoint_url: str | None = None,
        aws_access_key: str | None = None,
        stack_id: str | None = None,
    ) -> StackResources:
        where = "the local state file" if control_url else f"stack {stack_name!r}"
        text = outputs.get(c.OUT_PIPELINE_CONFIG)
        if not text:
            raise OperatorError(f"{where} has no output {c.OUT_PIPELINE_CONFIG!r}; is it a freshvec stack?")
        try:
            config = PipelineConfig.from_json(text)
        except ConfigError as exc:
            raise OperatorError(f"{where}: its pipeline config is not valid: {exc}") from exc
        region = outputs.get(c.OUT_REGION) or region
        return cls(
            stack_name, region, outputs, config, endpoint_url, control_url, control_token, batch_endpoint_url,
            aws_access_key, stack_id,
        )  # fmt: skip


def resolve_stack(cloudformation: Any, stack_name: str, region: str) -> StackResources:
    """Read the stack's outputs once (DescribeStacks); a missing stack becomes a clear OperatorError."""
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if "does not exist" in message:
            raise OperatorError(
                f"stack {stack_name!r} not found in {region}; deploy it with `cdk deploy` or pass --stack/--region"
            ) from exc
        raise
    stack = stacks[0]
    if stack.get("StackStatus", "").endswith("_IN_PROGRESS") and not stack.get("Outputs"):
        raise OperatorError(f"stack {stack_name!r} is {stack['StackStatus']}; try again when it has finished")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return StackResources.from_outputs(stack_name, region, outputs, stack_id=stack.get("StackId"))


def make_client_factory(
    region: str, endpoint_url: str | None = None, session: Any = None, *, access_key: str | None = None
) -> ClientFactory:
    """Cached boto3 clients for one region; with an endpoint (local mode) they sign with its ``access_key``, the
    only credential the local endpoint takes (``freshvec.local.vectors.access``)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 5, "mode": "adaptive"}, user_agent_extra="freshvec-cli")
    clients: dict[str, Any] = {}
    lock = threading.Lock()
    base = session or _default_session(boto3)

    def factory(service: str) -> Any:
        with lock:
            if service not in clients:
                kwargs: dict[str, Any] = {"region_name": region, "config": config}
                if endpoint_url:
                    if not access_key:
                        raise OperatorError(
                            f"no access key for the local endpoint {endpoint_url}: restart `freshvec local up`"
                        )
                    # Only the key id is checked; any secret signs.
                    kwargs.update(endpoint_url=endpoint_url, aws_access_key_id=access_key)
                    kwargs["aws_secret_access_key"] = "local"  # noqa: S105
                clients[service] = base.client(service, **kwargs)
            return clients[service]

    return factory


_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[int, Any] = {}


def _default_session(boto3: Any) -> Any:
    """One boto3 session per process: service models are loaded once, not for every client."""
    with _SESSION_LOCK:
        if os.getpid() not in _SESSIONS:
            _SESSIONS[os.getpid()] = boto3.Session()
        return _SESSIONS[os.getpid()]


def boto_session(region: str | None = None) -> Any:
    """A new boto3 session (credentials from the usual chain), e.g. for SigV4 to Amazon Keyspaces."""
    import boto3

    return boto3.Session(region_name=region) if region else boto3.Session()


def default_region() -> str:
    """The region boto3 would use (AWS_REGION, AWS_DEFAULT_REGION, the profile); OperatorError if none."""
    region = boto_session().region_name
    if not region:
        raise OperatorError("no AWS region: pass --region or set AWS_REGION")
    return region
