"""The Bedrock batch stand-in over HTTP, so the CLI's ordinary boto3 clients reach it in local mode.

``freshvec local up`` serves, on 127.0.0.1 behind the control API's token (``state.CONTROL_TOKEN_HEADER``) and
its loopback Host check:

- the ``bedrock`` job calls in the service's REST-JSON protocol (botocore ``bedrock`` model):
  ``POST /model-invocation-job`` (CreateModelInvocationJob), ``GET /model-invocation-job/{id}``
  (GetModelInvocationJob), ``POST /model-invocation-job/{id}/stop`` (StopModelInvocationJob),
  ``GET /model-invocation-jobs`` (ListModelInvocationJobs); errors as the service sends them (HTTP status,
  ``x-amzn-ErrorType`` header, ``{"message"}``), so boto3 raises the same ClientError it would against AWS;
- Service Quotas ``ListServiceQuotas`` for ServiceCode ``bedrock`` (JSON 1.1, ``X-Amz-Target``), answering the
  stand-in's per-model record limits under the quota names AWS uses, so the batch adapter reads its limits
  the way it does in an account.

A boto3 client sends the token when built with ``freshvec.cli.local_client.local_batch_clients``.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.exceptions import ClientError, ParamValidationError

from freshvec import constants as c
from freshvec.local.bedrock_batch import BatchInferenceStandIn, RecordLimits
from freshvec.local.control import host_allowed, token_matches
from freshvec.local.loopback import LoopbackServer
from freshvec.state import CONTROL_TOKEN_HEADER

logger = logging.getLogger(__name__)

_JOB_PATH = re.compile(r"^/model-invocation-job/([^/]+)$")
_STOP_PATH = re.compile(r"^/model-invocation-job/([^/]+)/stop$")
_QUOTAS_TARGET = "ServiceQuotasV20190624.ListServiceQuotas"
_MAX_BODY_BYTES = 1024 * 1024
_LIST_INTEGERS = ("maxResults",)
_LIST_TIMES = ("submitTimeAfter", "submitTimeBefore")
LOCAL_BATCH_BUCKET = "freshvec-local-batch"
LOCAL_BATCH_ROLE = "arn:aws:iam::123456789012:role/freshvec-local-batch"
# Local mode's own record minimum: small enough that the sample tables can try the batch path (AWS's default is
# 100 and is what the adapter assumes when it cannot read the quota; locally it reads this one).
LOCAL_BATCH_LIMITS = RecordLimits(min_records=10, max_records=c.BATCH_DEFAULT_RECORDS[1])


class BedrockBatchServer(LoopbackServer):
    """Serves one stand-in on 127.0.0.1 in a background thread (``loopback``); ``url`` is the boto3
    ``endpoint_url``. ``stop()`` stops the stand-in's stepping too."""

    def __init__(self, stand_in: BatchInferenceStandIn, token: str, port: int = 0) -> None:
        self.stand_in = stand_in
        self.token = token
        handler = _handler(stand_in, token)
        super().__init__(
            lambda host, port: ThreadingHTTPServer((host, port), handler),
            port,
            name="bedrock-batch-http",
            join_timeout_s=10,
        )

    def stop(self) -> None:
        self.stand_in.stop()
        super().stop()


def quota_answer(stand_in: BatchInferenceStandIn) -> dict[str, Any]:
    """ListServiceQuotas for bedrock: each stand-in model's record limits under AWS's quota names."""
    quotas = []
    for model_id, limits in sorted(stand_in.models.items()):
        label = c.BATCH_QUOTA_MODEL_NAMES.get(c.foundation_model_id(model_id), model_id)
        for name, value in (
            (f"Minimum number of records per batch inference job for {label}", limits.min_records),
            (f"Records per batch inference job for {label}", limits.max_records),
        ):
            quotas.append({"ServiceCode": "bedrock", "QuotaName": name, "Value": value})
    unique = {q["QuotaName"]: q for q in quotas}  # inference profiles share their model's quotas
    return {"Quotas": list(unique.values())}


def _handler(stand_in: BatchInferenceStandIn, token: str) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            if not host_allowed(self.headers.get("Host"), self.server.server_address[1]):
                self._error(HTTPStatus.FORBIDDEN, "AccessDeniedException", "the Host header must name 127.0.0.1")
                return
            if not token_matches(self.headers.get(CONTROL_TOKEN_HEADER), token):
                self._error(HTTPStatus.FORBIDDEN, "AccessDeniedException", f"missing or wrong {CONTROL_TOKEN_HEADER}")
                return
            try:
                status, answer = self._route(method)
            except ClientError as exc:
                error = exc.response["Error"]
                self._error(exc.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error["Message"])
                return
            except (ParamValidationError, ValueError, KeyError, TypeError) as exc:
                self._error(HTTPStatus.BAD_REQUEST, "ValidationException", str(exc))
                return
            except Exception:  # a stand-in bug answers 500, as a service fault would
                logger.exception("bedrock batch stand-in failed")
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "InternalServerException", "stand-in error")
                return
            self._send(status, answer)

        def _route(self, method: str) -> tuple[int, Any]:
            parts = urlsplit(self.path)
            if method == "POST" and self.headers.get("X-Amz-Target") == _QUOTAS_TARGET:
                body = self._body()
                if body.get("ServiceCode") != "bedrock":
                    return HTTPStatus.OK, {"Quotas": []}
                return HTTPStatus.OK, quota_answer(stand_in)
            if method == "POST" and parts.path == "/model-invocation-job":
                return HTTPStatus.OK, _plain(stand_in.create_model_invocation_job(**self._body()))
            if method == "POST" and (stop := _STOP_PATH.match(parts.path)):
                return HTTPStatus.OK, _plain(stand_in.stop_model_invocation_job(jobIdentifier=unquote(stop.group(1))))
            if method == "GET" and (job := _JOB_PATH.match(parts.path)):
                return HTTPStatus.OK, _plain(stand_in.get_model_invocation_job(jobIdentifier=unquote(job.group(1))))
            if method == "GET" and parts.path == "/model-invocation-jobs":
                return HTTPStatus.OK, _plain(stand_in.list_model_invocation_jobs(**_list_params(parts.query)))
            raise ValueError(f"no such operation: {method} {parts.path}")

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY_BYTES:
                raise ValueError("request body too large")
            raw = self.rfile.read(length) if length else b"{}"
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
            return body

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"message": message}, {"x-amzn-ErrorType": code})

        def _send(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(answer).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("bedrock batch stand-in: " + format, *args)

    return Handler


def _list_params(query: str) -> dict[str, Any]:
    params: dict[str, Any] = {name: values[-1] for name, values in parse_qs(query).items()}
    for name in _LIST_INTEGERS:
        if name in params:
            params[name] = int(params[name])
    for name in _LIST_TIMES:
        if name in params:
            params[name] = datetime.fromisoformat(params[name].replace("Z", "+00:00"))
    return params


def _plain(answer: dict[str, Any]) -> dict[str, Any]:
    """The wire form: no ResponseMetadata, timestamps as ISO 8601 (the REST-JSON default)."""

    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat().replace("+00:00", "Z")
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return {k: convert(v) for k, v in answer.items() if k != "ResponseMetadata"}


def start_local_batch(s3_client: Any, token: str, *, interval_s: float = 0.2) -> BedrockBatchServer:
    """Local mode's batch inference: the batch bucket in moto, the stand-in stepping with WordLlama, served on
    127.0.0.1 behind ``token``."""
    from freshvec.local.embedder import invoke_local_model

    s3_client.create_bucket(Bucket=LOCAL_BATCH_BUCKET)
    stand_in = BatchInferenceStandIn(s3_client, invoke_local_model, models={c.LOCAL_WORDLLAMA: LOCAL_BATCH_LIMITS})
    server = BedrockBatchServer(stand_in.start(interval_s), token).start()
    return server


def local_batch_outputs() -> dict[str, str]:
    """The batch resources as stack outputs (the same keys the deployed stack has)."""
    return {c.OUT_BATCH_BUCKET: LOCAL_BATCH_BUCKET, c.OUT_BATCH_ROLE_ARN: LOCAL_BATCH_ROLE}
