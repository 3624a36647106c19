"""The Bedrock batch inference fake for tests: the local stand-in (``freshvec.local.bedrock_batch``) over moto's
S3, each record answered by the strict per-model Bedrock Runtime fake, with errors injectable per operation.

The stand-in already answers with the botocore ``bedrock`` model's shapes, codes and statuses (the tests check
it with ``freshvec.testing.botocore_shapes``); this adds ``fail`` for the faults a test wants on purpose
(throttling, a quota reached, access denied), and builds the runtime call from ``FakeBedrockRuntime`` so a
record whose ``modelInput`` the model would refuse comes back with that record's ``error``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from freshvec import constants as c
from freshvec.local.bedrock_batch import BatchInferenceStandIn, Invoke, RecordLimits, service_error
from freshvec.testing.botocore_shapes import operation_model
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime

JOB_OPERATIONS = (
    "CreateModelInvocationJob",
    "GetModelInvocationJob",
    "StopModelInvocationJob",
    "ListModelInvocationJobs",
)


def runtime_invoke(runtime: FakeBedrockRuntime) -> Invoke:
    """A record's model call through the on-demand fake: its answer's JSON body, or its ClientError."""

    def invoke(model_id: str, body: str) -> dict[str, Any]:
        response = runtime.invoke_model(modelId=model_id, body=body, contentType="application/json")
        return json.loads(response["body"].read())

    return invoke


def bedrock_models(limits: RecordLimits | None = None) -> dict[str, RecordLimits]:
    """Every Bedrock model freshvec can configure, each with the documented record limits (or ``limits``)."""
    chosen = limits or RecordLimits()
    return {model: chosen for provider in ("titan", "cohere", "nova") for model in c.PROVIDER_MODELS[provider]}


@dataclass
class _Injected:
    operation: str
    code: str
    message: str
    remaining: int  # -1: every call


class FakeBedrockBatch(BatchInferenceStandIn):
    """A ``bedrock`` client for the job calls; ``step()``/``run_until_done()`` move the jobs."""

    def __init__(
        self,
        s3_client: Any,
        runtime: FakeBedrockRuntime | None = None,
        *,
        models: Mapping[str, RecordLimits] | None = None,
        clock: Callable[[], float] | None = None,
        **options: Any,
    ) -> None:
        self.runtime = runtime or FakeBedrockRuntime()
        extra = {"clock": clock} if clock is not None else {}
        super().__init__(s3_client, runtime_invoke(self.runtime), models=models or bedrock_models(), **extra, **options)
        self._injected: list[_Injected] = []

    def fail(self, operation: str, code: str, times: int = 1, message: str | None = None) -> None:
        """Fail the next ``times`` calls of ``operation`` (-1: all of them) with ``code`` (one it can raise)."""
        codes = {shape.name for shape in operation_model("bedrock", operation).error_shapes}
        if code not in codes:
            raise ValueError(f"{operation} does not raise {code}; it raises {', '.join(sorted(codes))}")
        self._injected.append(_Injected(operation, code, message or f"injected {code}", times))

    def _check_injected(self, operation: str) -> None:
        for injected in self._injected:
            if injected.operation == operation and injected.remaining != 0:
                if injected.remaining > 0:
                    injected.remaining -= 1
                raise service_error(operation, injected.code, injected.message)

    def create_model_invocation_job(self, **params: Any) -> dict[str, Any]:
        self._check_injected("CreateModelInvocationJob")
        return super().create_model_invocation_job(**params)

    def get_model_invocation_job(self, **params: Any) -> dict[str, Any]:
        self._check_injected("GetModelInvocationJob")
        return super().get_model_invocation_job(**params)

    def stop_model_invocation_job(self, **params: Any) -> dict[str, Any]:
        self._check_injected("StopModelInvocationJob")
        return super().stop_model_invocation_job(**params)

    def list_model_invocation_jobs(self, **params: Any) -> dict[str, Any]:
        self._check_injected("ListModelInvocationJobs")
        return super().list_model_invocation_jobs(**params)
