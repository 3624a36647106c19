"""A Bedrock Runtime stand-in (moto's ``invoke_model`` returns ``{}``): Titan V2, Cohere Embed v3 and v4, Nova
Multimodal Embeddings (text).

It behaves like a boto3 ``bedrock-runtime`` client for ``invoke_model``: parameters are validated against
the botocore service model, the response has the model's output shape (``body`` a ``StreamingBody``,
``contentType``), errors are ``ClientError`` with the real codes and HTTP statuses of the model. Each model's
request body is checked as strictly as the model does (unknown keys, missing or out-of-range values are a
ValidationException, as Bedrock answers "Malformed input request"), per the model's documented schema.
Vectors are derived from the text (same text -> same vector); for the asymmetric v4 and Nova models, from the
text and what it is embedded for (a document and a query of the same text differ, as with the real models).
Every call is logged; errors and latency can be injected. A ``BedrockQuota`` shared by several clients
stands for one account's on-demand quota: beyond it they answer ``ThrottlingException`` (HTTP 429), as the
service does.
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
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
# Cohere Embed v4 (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed-v4.html).
COHERE_V4_MODELS = (c.COHERE_V4, *c.COHERE_V4_PROFILES)
COHERE_V4_KEYS = {
    "input_type",
    "texts",
    "images",
    "inputs",
    "embedding_types",
    "output_dimension",
    "max_tokens",
    "truncate",
}
COHERE_V4_DEFAULT_DIMENSIONS = 1536
COHERE_V4_MAX_TOKENS = 128_000
COHERE_V4_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
# Nova Multimodal Embeddings (https://docs.aws.amazon.com/nova/latest/userguide/embeddings-schema.html).
NOVA_PURPOSES = (
    "GENERIC_INDEX",
    "GENERIC_RETRIEVAL",
    "TEXT_RETRIEVAL",
    "IMAGE_RETRIEVAL",
    "VIDEO_RETRIEVAL",
    "DOCUMENT_RETRIEVAL",
    "AUDIO_RETRIEVAL",
    "CLASSIFICATION",
    "CLUSTERING",
)
NOVA_DIMENSIONS = (256, 384, 1024, 3072)
NOVA_DEFAULT_DIMENSIONS = 3072
NOVA_MAX_TOKENS = 8_192


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


def request_texts(body: dict[str, Any]) -> list[str]:
    """The texts one request body asks to embed, whatever the model."""
    if "texts" in body:
        return list(body["texts"])
    if "singleEmbeddingParams" in body:
        return [body["singleEmbeddingParams"]["text"]["value"]]
    return [body["inputText"]]


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
                texts.extend(request_texts(call["body"]))
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
            return _titan_refusal(body)
        if model_id in (c.COHERE_EN_V3, c.COHERE_MULTI_V3):
            return _cohere_v3_refusal(body)
        if model_id in COHERE_V4_MODELS:
            return _cohere_v4_refusal(body)
        if model_id == c.NOVA_MME:
            return _nova_refusal(body)
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
        if model_id in COHERE_V4_MODELS:
            return _cohere_v4_answer(body)
        if model_id == c.NOVA_MME:
            return _nova_answer(body)
        texts = body["texts"]
        return {
            "id": hashlib.md5(json.dumps(texts).encode(), usedforsecurity=False).hexdigest(),
            "texts": texts,
            "embeddings": [fake_vector(t, COHERE_DIMENSIONS) for t in texts],
            "response_type": "embeddings_floats",
        }


def purposed_vector(purpose: str, text: str, dimensions: int) -> list[float]:
    """The fake's vector for an asymmetric model (Cohere v4, Nova): the text and what it is embedded for."""
    return fake_vector(f"{purpose}\x00{text}", dimensions)


def _malformed(detail: str) -> tuple[str, str]:
    return "ValidationException", f"Malformed input request: {detail}, please reformat your input and try again."


def _extraneous(body: dict[str, Any], allowed: set[str], where: str = "#") -> tuple[str, str] | None:
    extra = sorted(set(body) - allowed)
    return _malformed(f"{where}: extraneous key [{extra[0]}] is not permitted") if extra else None


def _titan_refusal(body: dict[str, Any]) -> tuple[str, str] | None:
    if problem := _extraneous(body, {"inputText", "dimensions", "normalize", "embeddingTypes"}):
        return problem
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


def _cohere_texts_refusal(texts: Any, max_chars: int | None) -> tuple[str, str] | None:
    if not isinstance(texts, list) or not texts or len(texts) > c.COHERE_MAX_TEXTS_PER_CALL:
        return "ValidationException", f"texts must hold 1 to {c.COHERE_MAX_TEXTS_PER_CALL} strings"
    if not all(isinstance(t, str) for t in texts):
        return _malformed("#/texts: expected type: String")
    if max_chars is not None and any(len(t) > max_chars for t in texts):
        return "ValidationException", f"each text must be at most {max_chars} characters"
    return None


def _cohere_v3_refusal(body: dict[str, Any]) -> tuple[str, str] | None:
    if problem := _extraneous(body, {"texts", "images", "input_type", "truncate", "embedding_types"}):
        return problem
    if problem := _cohere_texts_refusal(body.get("texts"), c.COHERE_MAX_INPUT_CHARS):
        return problem
    if body.get("input_type") not in (*COHERE_INPUT_TYPES, "image"):
        return "ValidationException", "input_type is required"
    if body.get("truncate", "NONE") not in ("NONE", "START", "END"):
        return _malformed("#/truncate: NONE, START or END")
    return None


def _cohere_v4_refusal(body: dict[str, Any]) -> tuple[str, str] | None:
    if problem := _extraneous(body, COHERE_V4_KEYS):
        return problem
    if body.get("input_type") not in COHERE_INPUT_TYPES:
        return _malformed(f"#/input_type: must be one of {', '.join(COHERE_INPUT_TYPES)}")
    if "images" in body or "inputs" in body:
        return _malformed("this stand-in embeds texts only")
    if problem := _cohere_texts_refusal(body.get("texts"), None):
        return problem
    if body.get("output_dimension", COHERE_V4_DEFAULT_DIMENSIONS) not in (256, 512, 1024, 1536):
        return _malformed("#/output_dimension: must be one of 256, 512, 1024, 1536")
    types = body.get("embedding_types", ["float"])
    if not isinstance(types, list) or not types or any(t not in COHERE_V4_EMBEDDING_TYPES for t in types):
        return _malformed(f"#/embedding_types: each must be one of {', '.join(COHERE_V4_EMBEDDING_TYPES)}")
    truncate = body.get("truncate", "NONE")
    if truncate not in ("NONE", "LEFT", "RIGHT"):
        return _malformed("#/truncate: must be one of NONE, LEFT, RIGHT")
    budget = body.get("max_tokens", COHERE_V4_MAX_TOKENS)
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= COHERE_V4_MAX_TOKENS:
        return _malformed(f"#/max_tokens: must be 1 to {COHERE_V4_MAX_TOKENS}")
    if truncate == "NONE" and any(approximate_tokens(t) > budget for t in body["texts"]):
        return "ValidationException", f"input exceeds the maximum of {budget} tokens and truncate is NONE"
    return None


def _cohere_v4_answer(body: dict[str, Any]) -> dict[str, Any]:
    texts = body["texts"]
    dimensions = body.get("output_dimension", COHERE_V4_DEFAULT_DIMENSIONS)
    floats = [purposed_vector(body["input_type"], t, dimensions) for t in texts]
    answer: dict[str, Any] = {
        "id": hashlib.md5(json.dumps(texts).encode(), usedforsecurity=False).hexdigest(),
        "texts": texts,
    }
    if "embedding_types" not in body:
        return {**answer, "embeddings": floats, "response_type": "embeddings_floats"}
    by_type = {kind: _quantized(floats, kind) for kind in body["embedding_types"]}
    return {**answer, "embeddings": by_type, "response_type": "embeddings_by_type"}


def _quantized(floats: list[list[float]], kind: str) -> list[list[Any]]:
    matrix = np.asarray(floats, dtype=np.float32)
    if kind == "float":
        return floats
    if kind in ("int8", "uint8"):
        scaled = np.clip(np.round(matrix * 127), -128, 127).astype(int)
        return (scaled + (128 if kind == "uint8" else 0)).tolist()
    packed = np.packbits(matrix > 0, axis=1).astype(int)  # binary: 1 bit per dimension, 8 to a byte
    return (packed - 128 if kind == "binary" else packed).tolist()


def _nova_refusal(body: dict[str, Any]) -> tuple[str, str] | None:
    if problem := _extraneous(body, {"schemaVersion", "taskType", "singleEmbeddingParams"}):
        return problem
    if body.get("schemaVersion", c.NOVA_SCHEMA_VERSION) != c.NOVA_SCHEMA_VERSION:
        return _malformed(f"#/schemaVersion: must be {c.NOVA_SCHEMA_VERSION}")
    if body.get("taskType") != "SINGLE_EMBEDDING":
        return _malformed("#/taskType: InvokeModel takes SINGLE_EMBEDDING")
    params = body.get("singleEmbeddingParams")
    if not isinstance(params, dict):
        return _malformed("#: required key [singleEmbeddingParams] not found")
    allowed = {"embeddingPurpose", "embeddingDimension", "text", "image", "audio", "video"}
    if problem := _extraneous(params, allowed, "#/singleEmbeddingParams"):
        return problem
    if params.get("embeddingPurpose") not in NOVA_PURPOSES:
        return _malformed(f"#/singleEmbeddingParams/embeddingPurpose: must be one of {', '.join(NOVA_PURPOSES)}")
    if params.get("embeddingDimension", NOVA_DEFAULT_DIMENSIONS) not in NOVA_DIMENSIONS:
        return _malformed("#/singleEmbeddingParams/embeddingDimension: must be one of 256, 384, 1024, 3072")
    media = [kind for kind in ("text", "image", "audio", "video") if kind in params]
    if media != ["text"]:
        return _malformed("#/singleEmbeddingParams: exactly one of text, image, audio, video (this stand-in: text)")
    text = params["text"]
    if not isinstance(text, dict):
        return _malformed("#/singleEmbeddingParams/text: expected type: JSONObject")
    if problem := _extraneous(text, {"truncationMode", "value"}, "#/singleEmbeddingParams/text"):
        return problem
    if text.get("truncationMode") not in ("START", "END", "NONE"):
        return _malformed("#/singleEmbeddingParams/text/truncationMode: must be one of START, END, NONE")
    value = text.get("value")
    if not isinstance(value, str) or not value:
        return _malformed("#/singleEmbeddingParams/text/value: required")
    if len(value) > c.NOVA_MAX_INPUT_CHARS:
        return _malformed(f"#/singleEmbeddingParams/text/value: expected maxLength: {c.NOVA_MAX_INPUT_CHARS}")
    if text["truncationMode"] == "NONE" and approximate_tokens(value) > NOVA_MAX_TOKENS:
        return "ValidationException", f"Input exceeds {NOVA_MAX_TOKENS} tokens and truncationMode is NONE"
    return None


def _nova_answer(body: dict[str, Any]) -> dict[str, Any]:
    params = body["singleEmbeddingParams"]
    value = params["text"]["value"]
    item: dict[str, Any] = {"embeddingType": "TEXT"}
    if approximate_tokens(value) > NOVA_MAX_TOKENS:  # cut to the token limit: report how much was kept
        kept = value
        while approximate_tokens(kept) > NOVA_MAX_TOKENS:
            kept = kept[: len(kept) * 9 // 10]
        value = kept if params["text"]["truncationMode"] == "END" else params["text"]["value"][-len(kept) :]
        item["truncatedCharLength"] = len(value)
    dimensions = params.get("embeddingDimension", NOVA_DEFAULT_DIMENSIONS)
    item["embedding"] = purposed_vector(params["embeddingPurpose"], value, dimensions)
    return {"embeddings": [item]}


def _client_error(code: str, message: str) -> ClientError:
    status = INVOKE_MODEL_ERRORS[code]
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {"x-amzn-errortype": code}},
        },
        "InvokeModel",
    )
