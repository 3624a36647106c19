"""A Bedrock Runtime stand-in (moto's ``invoke_model`` returns ``{}``): Titan V2 and Cohere Embed v3.

It behaves like a boto3 ``bedrock-runtime`` client for ``invoke_model``: parameters are validated against
the botocore service model, the response has the model's output shape (``body`` a ``StreamingBody``,
``contentType``), errors are ``ClientError`` with the real codes and HTTP statuses of the model. Vectors
are derived from the text (same text -> same vector). Every call is logged; errors and latency can be
injected. A ``BedrockQuota`` shared by several clients stands for one account's on-demand quota: beyond it
they answer ``ThrottlingException`` (HTTP 429), as the service does.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import numpy as np
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.validate import ParamValidator

from freshvec import constants as c

_MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")
INVOKE_MODEL = _MODEL.operation_model("InvokeModel")
INVOKE_MODEL_ERRORS = {shape.name: shape.metadata["error"]["httpStatusCode"] for shape in INVOKE_MODEL.error_shapes}
TITAN_MAX_TOKENS = 8_192
TITAN_DEFAULT_DIMENSIONS = 1024
COHERE_DIMENSIONS = 1024


def approximate_tokens(text: str) -> int:
    """A stand-in token count: about four ASCII characters per token, like English prose, and one token per
    other character (CJK scripts run close to that)."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return max(1, math.ceil(ascii_chars / 4) + (len(text) - ascii_chars))


def fake_vector(text: str, dimensions: int, normalize: bool = True) -> list[float]:
    """The deterministic vector the fake returns for ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    if normalize:
        vector /= np.linalg.norm(vector)
    return [float(x) for x in vector]


THROTTLED_MESSAGE = "Too many requests, please wait before trying again."


class BedrockQuota:
    """Requests per minute with a burst: a token bucket, shared by every fake client of one account."""

    def __init__(self, requests_per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = requests_per_minute / 60
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()
        self.granted = 0
        self.refused = 0

    def take(self) -> bool:
        """One request: True if the quota allows it now (a token is spent), else False (throttled)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                self.granted += 1
                return True
            self.refused += 1
            return False


@dataclass
class InjectedError:
    code: str
    message: str
    remaining: int  # calls left to fail; -1 = every matching call
    when: Callable[[dict[str, Any]], bool] | None = None  # on the decoded request body


@dataclass
class FakeBedrockRuntime:
    latency_s: float = 0.0
    sleep: Callable[[float], None] = time.sleep
    calls: list[dict[str, Any]] = field(default_factory=list)  # {"modelId", "body": decoded request, "error"}
    _errors: list[InjectedError] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: int = 0
    max_in_flight: int = 0  # the highest number of concurrent calls seen
    quota: BedrockQuota | None = None  # the account's quota, shared with other clients

    # ---- test controls ---------------------------------------------------------------------------
    def fail(
        self,
        code: str,
        times: int = 1,
        message: str | None = None,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Fail the next ``times`` matching calls (-1: all of them) with ``code`` (an InvokeModel error)."""
        if code not in INVOKE_MODEL_ERRORS:
            raise ValueError(f"{code} is not an InvokeModel error; known: {', '.join(sorted(INVOKE_MODEL_ERRORS))}")
        self._errors.append(InjectedError(code, message or f"injected {code}", times, when))

    def texts_embedded(self) -> list[str]:
        """Every text of every successful call, in call order."""
        texts: list[str] = []
        for call in self.calls:
            if call["error"] is None:
                body = call["body"]
                texts.extend(body["texts"] if "texts" in body else [body["inputText"]])
        return texts

    # ---- the client surface -----------------------------------------------------------------------
    def invoke_model(self, **params: Any) -> dict[str, Any]:
        report = ParamValidator().validate(params, INVOKE_MODEL.input_shape)
        if report.has_errors():
            raise ValueError(f"invalid InvokeModel parameters: {report.generate_report()}")
        body = json.loads(params["body"])
        if self.quota is not None and not self.quota.take():
            with self._lock:
                self.calls.append({"modelId": params["modelId"], "body": body, "error": "ThrottlingException"})
            raise _client_error("ThrottlingException", THROTTLED_MESSAGE)
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency_s:
                self.sleep(self.latency_s)
            error = self._injected(body) or self._refusal(params["modelId"], body)
            with self._lock:
                self.calls.append({"modelId": params["modelId"], "body": body, "error": error and error[0]})
            if error:
                raise _client_error(*error)
            payload = self._respond(params["modelId"], body)
        finally:
            with self._lock:
                self._in_flight -= 1
        raw = json.dumps(payload).encode("utf-8")
        return {
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {"content-type": "application/json"}},
            "contentType": "application/json",
            "body": StreamingBody(io.BytesIO(raw), len(raw)),
        }

    def _injected(self, body: dict[str, Any]) -> tuple[str, str] | None:
        with self._lock:
            for error in self._errors:
                if error.remaining != 0 and (error.when is None or error.when(body)):
                    if error.remaining > 0:
                        error.remaining -= 1
                    return error.code, error.message
        return None

    @staticmethod
    def _refusal(model_id: str, body: dict[str, Any]) -> tuple[str, str] | None:
        """The input checks the real models make, with their error code."""
        if model_id == c.TITAN_V2:
            text = body.get("inputText")
            if not isinstance(text, str) or not text:
                return "ValidationException", "Malformed input request: inputText is required"
            if len(text) > c.TITAN_MAX_INPUT_CHARS:
                return "ValidationException", f"Input text exceeds {c.TITAN_MAX_INPUT_CHARS} characters"
            if approximate_tokens(text) > TITAN_MAX_TOKENS:
                return "ValidationException", "Too many input tokens. Max input tokens: 8192"
            if body.get("dimensions", TITAN_DEFAULT_DIMENSIONS) not in (256, 512, 1024):
                return "ValidationException", "dimensions must be one of 256, 512, 1024"
            return None
        if model_id in (c.COHERE_EN_V3, c.COHERE_MULTI_V3):
            texts = body.get("texts")
            if not isinstance(texts, list) or not texts or len(texts) > c.COHERE_MAX_TEXTS_PER_CALL:
                return "ValidationException", f"texts must hold 1 to {c.COHERE_MAX_TEXTS_PER_CALL} strings"
            if any(len(t) > c.COHERE_MAX_INPUT_CHARS for t in texts):
                return "ValidationException", f"each text must be at most {c.COHERE_MAX_INPUT_CHARS} characters"
            if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering"):
                return "ValidationException", "input_type is required"
            return None
        return "ValidationException", "The provided model identifier is invalid."

    @staticmethod
    def _respond(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if model_id == c.TITAN_V2:
            dimensions = body.get("dimensions", TITAN_DEFAULT_DIMENSIONS)
            text = body["inputText"]
            return {
                "embedding": fake_vector(text, dimensions, body.get("normalize", True)),
                "inputTextTokenCount": approximate_tokens(text),
            }
        texts = body["texts"]
        return {
            "id": hashlib.md5(json.dumps(texts).encode(), usedforsecurity=False).hexdigest(),
            "texts": texts,
            "embeddings": [fake_vector(t, COHERE_DIMENSIONS) for t in texts],
            "response_type": "embeddings_floats",
        }


def _client_error(code: str, message: str) -> ClientError:
    status = INVOKE_MODEL_ERRORS[code]
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {"x-amzn-errortype": code}},
        },
        "InvokeModel",
    )
