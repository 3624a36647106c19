"""Stand-ins for the account-level calls ``freshvec preflight`` makes that moto does not answer.

moto 5.2.5 has no Bedrock ``GetFoundationModel``/``GetFoundationModelAvailability``/``ListFoundationModels``,
no Keyspaces Streams and no Lambda ``GetAccountSettings`` (it answers 404 "Not yet implemented"). Each fake
validates its parameters against the botocore service model and answers in the operation's output shape;
errors are ``ClientError`` with a code the operation declares and the HTTP status the model gives it. A Region
that does not offer a service is ``EndpointConnectionError``, what botocore raises when the endpoint has no host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import botocore.session
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.validate import ParamValidator

from freshvec import constants as c

ACCOUNT = "123456789012"
# The endpoint hosts botocore would call (service endpoint prefixes from the models).
_HOSTS = {"bedrock": "bedrock", "keyspacesstreams": "cassandra-streams", "lambda": "lambda"}


def _operation(service: str, operation: str) -> Any:
    return botocore.session.get_session().get_service_model(service).operation_model(operation)


def _validated(service: str, operation: str, params: dict[str, Any]) -> None:
    report = ParamValidator().validate(params, _operation(service, operation).input_shape)
    if report.has_errors():
        raise ValueError(f"invalid {operation} parameters: {report.generate_report()}")


def modeled_error(service: str, operation: str, code: str, message: str) -> ClientError:
    """A ClientError as boto3 raises it for one of the operation's modelled errors (its code and HTTP status)."""
    shapes = {shape.name: shape for shape in _operation(service, operation).error_shapes}
    if code not in shapes:
        raise ValueError(f"{operation} does not raise {code}; it raises {', '.join(sorted(shapes))}")
    status = shapes[code].metadata.get("error", {}).get("httpStatusCode")
    if status is None:  # the JSON protocols answer 500 for server faults and 400 for the rest
        status = 500 if getattr(shapes[code], "_shape_model", {}).get("fault", False) else 400
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {"x-amzn-errortype": code}},
        },
        operation,
    )


def not_offered(service: str, region: str) -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url=f"https://{_HOSTS.get(service, service)}.{region}.amazonaws.com/")


def _metadata() -> dict[str, Any]:
    return {"HTTPStatusCode": 200, "RequestId": "00000000-0000-4000-8000-000000000000", "RetryAttempts": 0}


@dataclass
class ModelAccess:
    """What GetFoundationModelAvailability reports for one model in this account."""

    agreement: str = "AVAILABLE"  # AVAILABLE | PENDING | NOT_AVAILABLE | ERROR
    authorization: str = "AUTHORIZED"  # AUTHORIZED | NOT_AUTHORIZED
    entitlement: str = "AVAILABLE"  # AVAILABLE | NOT_AVAILABLE
    region: str = "AVAILABLE"  # AVAILABLE | NOT_AVAILABLE
    agreement_error: str | None = None  # agreementAvailability.errorMessage


_PROVIDERS = {"amazon": "Amazon", "cohere": "Cohere"}
# Model names as the console shows them (the model's BrandedName is at most 20 characters).
_NAMES = {
    c.TITAN_V2: "Titan Embeddings V2",
    c.COHERE_EN_V3: "Embed English",
    c.COHERE_MULTI_V3: "Embed Multilingual",
    c.COHERE_V4: "Embed v4",
    c.NOVA_MME: "Nova 2 Multimodal Em",
}


@dataclass
class FakeBedrock:
    """The ``bedrock`` control plane for foundation models offered in one Region."""

    region: str = "us-east-1"
    models: dict[str, ModelAccess] = field(
        default_factory=lambda: {
            c.foundation_model_id(m): ModelAccess() for p in ("titan", "cohere", "nova") for m in c.PROVIDER_MODELS[p]
        }
    )
    offered: bool = True  # False: the Region has no Bedrock endpoint
    denied: set[str] = field(default_factory=set)  # operation names answered with AccessDeniedException
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _call(self, operation: str, params: dict[str, Any]) -> None:
        _validated("bedrock", operation, params)
        self.calls.append((operation, params))
        if not self.offered:
            raise not_offered("bedrock", self.region)
        if operation in self.denied:
            raise modeled_error(
                "bedrock",
                operation,
                "AccessDeniedException",
                f"User: arn:aws:iam::{ACCOUNT}:user/operator is not authorized to perform: bedrock:{operation}",
            )

    def _arn(self, model_id: str) -> str:
        return f"arn:aws:bedrock:{self.region}::foundation-model/{model_id}"

    def _summary(self, model_id: str) -> dict[str, Any]:
        provider = model_id.split(".", 1)[0]
        return {
            "modelArn": self._arn(model_id),
            "modelId": model_id,
            "modelName": _NAMES.get(model_id, model_id.split(".", 1)[-1][:20]),
            "providerName": _PROVIDERS.get(provider, provider.title()),
            "inputModalities": ["TEXT"],
            "outputModalities": ["EMBEDDING"],
            "responseStreamingSupported": False,
            "customizationsSupported": [],
            "inferenceTypesSupported": ["ON_DEMAND"],
            "modelLifecycle": {"status": "ACTIVE"},
        }

    def _known(self, operation: str, model_id: str) -> None:
        if model_id not in self.models:
            raise modeled_error("bedrock", operation, "ResourceNotFoundException", "The model identifier is invalid.")

    def get_foundation_model(self, **params: Any) -> dict[str, Any]:
        self._call("GetFoundationModel", params)
        model_id = params["modelIdentifier"].rsplit("/", 1)[-1]
        self._known("GetFoundationModel", model_id)
        return {"ResponseMetadata": _metadata(), "modelDetails": self._summary(model_id)}

    def list_foundation_models(self, **params: Any) -> dict[str, Any]:
        self._call("ListFoundationModels", params)
        provider = params.get("byProvider")
        summaries = [
            self._summary(m)
            for m in sorted(self.models)
            if provider is None or self._summary(m)["providerName"].lower() == provider.lower()
        ]
        return {"ResponseMetadata": _metadata(), "modelSummaries": summaries}

    def get_foundation_model_availability(self, **params: Any) -> dict[str, Any]:
        self._call("GetFoundationModelAvailability", params)
        model_id = params["modelId"]
        self._known("GetFoundationModelAvailability", model_id)
        access = self.models[model_id]
        agreement: dict[str, Any] = {"status": access.agreement}
        if access.agreement_error:
            agreement["errorMessage"] = access.agreement_error
        return {
            "ResponseMetadata": _metadata(),
            "modelId": model_id,
            "agreementAvailability": agreement,
            "authorizationStatus": access.authorization,
            "entitlementAvailability": access.entitlement,
            "regionAvailability": access.region,
        }


@dataclass
class FakeKeyspacesStreamsListing:
    """``keyspacesstreams`` ListStreams: the CDC streams of one Region's tables (no table: none)."""

    region: str = "us-east-1"
    tables: list[tuple[str, str]] = field(default_factory=list)  # (keyspace, table) with CDC enabled
    offered: bool = True
    denied: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def list_streams(self, **params: Any) -> dict[str, Any]:
        _validated("keyspacesstreams", "ListStreams", params)
        self.calls.append(params)
        if not self.offered:
            raise not_offered("keyspacesstreams", self.region)
        if self.denied:
            raise modeled_error(
                "keyspacesstreams",
                "ListStreams",
                "AccessDeniedException",
                f"User: arn:aws:iam::{ACCOUNT}:user/operator is not authorized to perform: cassandra:ListStreams",
            )
        keyspace, table = params.get("keyspaceName"), params.get("tableName")
        if table is not None and (keyspace, table) not in self.tables:
            raise modeled_error(
                "keyspacesstreams", "ListStreams", "ResourceNotFoundException", f"Table {keyspace}.{table} not found"
            )
        streams = [
            {
                "streamArn": f"arn:aws:cassandra:{self.region}:{ACCOUNT}:/keyspace/{ks}/table/{t}/stream/"
                "2026-11-22T10:00:00.000",
                "keyspaceName": ks,
                "tableName": t,
                "streamLabel": "2026-11-22T10:00:00.000",
            }
            for ks, t in self.tables
            if (keyspace is None or ks == keyspace) and (table is None or t == table)
        ]
        return {"ResponseMetadata": _metadata(), "streams": streams[: params.get("maxResults", 100)]}


@dataclass
class FakeLambdaAccount:
    """Lambda ``GetAccountSettings``: the account's concurrency quota and what is not yet reserved."""

    concurrent_executions: int = 1000
    unreserved: int = 1000
    calls: int = 0

    def get_account_settings(self, **params: Any) -> dict[str, Any]:
        _validated("lambda", "GetAccountSettings", params)
        self.calls += 1
        return {
            "ResponseMetadata": _metadata(),
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800,
                "CodeSizeUnzipped": 262_144_000,
                "CodeSizeZipped": 52_428_800,
                "ConcurrentExecutions": self.concurrent_executions,
                "UnreservedConcurrentExecutions": self.unreserved,
            },
            "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
        }
