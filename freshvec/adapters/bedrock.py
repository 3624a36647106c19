"""Embedding providers behind one interface, chosen by ``config.embedding.provider``.

- ``titan``: Amazon Titan Text Embeddings V2 on Bedrock. One text per InvokeModel call, so calls run
  concurrently, at most ``embedding.max_concurrency`` at a time, paced to the account's quota by an
  ``AdaptiveRateLimiter`` (``embedding.adaptive_rate``; several sink instances share one quota).
- ``cohere``: Cohere Embed v3 and v4 (in-Region or through an inference profile) on Bedrock. Up to 96 texts
  per call; rows are embedded as ``search_document``, queries as ``search_query`` (the model is trained for
  that asymmetry); v4 at its configured ``output_dimension``.
- ``nova``: Amazon Nova Multimodal Embeddings (text) on Bedrock, one text per call like Titan; rows as
  ``GENERIC_INDEX``, queries as ``TEXT_RETRIEVAL``.
- ``local``: WordLlama, offline: ``freshvec.local.embedder`` (local mode only, not in the Lambda asset).

Every Bedrock provider goes through the limiter when one is given: each ThrottlingException slows this
instance down, successes speed it up again (``freshvec.adapters.adaptive``).

Every provider checks that what the model returns has the configured dimension (else
MisconfigurationError: the index was created for that dimension). Bedrock throttling and 5xx are retried
with backoff and jitter; a text the model rejects (ValidationException) is a PoisonRecordError for the row
that carries it, while access or model errors fail the whole batch.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from freshvec import constants as c
from freshvec.adapters.adaptive import AdaptiveRateLimiter
from freshvec.adapters.bedrock_models import Embedded, ModelBody, Purpose, TitanV2Body, model_body
from freshvec.config import EmbeddingConfig
from freshvec.errors import (
    FreshvecError,
    MisconfigurationError,
    PoisonRecordError,
    classify,
    error_code,
)
from freshvec.ports import Embedder, EmbedResult
from freshvec.retry import RetryPolicy

# Titan also stops at 8,192 tokens, and characters per token vary by script (about 4 for English prose, about
# 1 for CJK). Start from a prefix that fits English, and on the model's "too many tokens" refusal halve it, a
# bounded number of times: 32,768 -> 16,384 -> 8,192 -> 4,096 characters, which fits any script at about
# 2 tokens per character or fewer. The prefix depends only on the text, so its fingerprint stays true.
TITAN_START_CHARS = 8_192 * 4
TITAN_SHORTENINGS = 3
_JSON = "application/json"


class BaseEmbedder(ABC):
    model_id: str
    dimensions: int
    max_input_chars: int

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for result in self.try_embed_documents(texts):
            if result.error is not None:
                raise result.error
            assert result.vector is not None
            vectors.append(result.vector)
        return vectors

    @abstractmethod
    def try_embed_documents(self, texts: Sequence[str]) -> list[EmbedResult]: ...

    def _checked(self, vector: Any) -> list[float]:
        if not isinstance(vector, list) or len(vector) != self.dimensions:
            size = len(vector) if isinstance(vector, list) else type(vector).__name__
            raise MisconfigurationError(
                f"{self.model_id} returned a vector of {size} dimensions; the index expects {self.dimensions}"
            )
        return [float(x) for x in vector]


class BedrockEmbedder(BaseEmbedder):
    """One Bedrock embedding model through InvokeModel, speaking the request and response body of
    ``bedrock_models`` (``body``): texts go ``body.texts_per_call`` to a call, the calls run concurrently,
    at most ``max_concurrency`` at a time; a text is cut to ``max_input_chars`` first. A call the model refuses
    (ValidationException) with several texts is made again text by text, so only the refused text fails."""

    def __init__(
        self,
        bedrock_client: Any,
        body: ModelBody,
        *,
        max_input_chars: int,
        max_concurrency: int = 8,
        retry: RetryPolicy | None = None,
        limiter: AdaptiveRateLimiter | None = None,
    ) -> None:
        self._client = bedrock_client
        self._body = body
        self.model_id = body.model_id
        self.dimensions = body.dimensions
        self.max_input_chars = max_input_chars
        self.max_concurrency = max_concurrency
        self._retry = retry or RetryPolicy()
        self.limiter = limiter

    def embed_query(self, text: str) -> list[float]:
        [result] = self._embed_call([text], "query")
        if result.error is not None:
            raise result.error
        assert result.vector is not None
        return result.vector

    def try_embed_documents(self, texts: Sequence[str]) -> list[EmbedResult]:
        size = self._body.texts_per_call
        calls = [list(texts[i : i + size]) for i in range(0, len(texts), size)]
        if len(calls) <= 1:
            return [result for call in calls for result in self._embed_call(call, "document")]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(calls))) as pool:
            return [
                result for call in pool.map(lambda texts: self._embed_call(texts, "document"), calls) for result in call
            ]

    def _embed_call(self, texts: list[str], purpose: Purpose) -> list[EmbedResult]:
        """One call's results, a text each; never raises but MisconfigurationError."""
        try:
            embedded = self._invoke(texts, purpose)
        except Exception as exc:  # noqa: BLE001 - every failure is classified in one place
            error = _classified(exc)
            if isinstance(error, PoisonRecordError) and len(texts) > 1:
                # One bad text fails the whole call: embed one by one to find it and keep the others.
                return [result for text in texts for result in self._embed_call([text], purpose)]
            return [EmbedResult(error=error) for _ in texts]
        return [EmbedResult(vector, truncated=embedded.truncated) for vector in embedded.vectors]

    def _invoke(self, texts: list[str], purpose: Purpose) -> Embedded:
        body = json.dumps(self._body.request([t[: self.max_input_chars] for t in texts], purpose))
        payload = _invoke_model(self._client, self._retry, self.model_id, body, self.limiter)
        return self._body.parse(payload, len(texts))


class TitanEmbedder(BedrockEmbedder):
    """Titan Text Embeddings V2 (``bedrock_models.TitanV2Body``), one text a call. Titan refuses a text over its
    token limit instead of cutting it: the text is shortened (``TITAN_START_CHARS``, ``TITAN_SHORTENINGS``)."""

    def __init__(
        self,
        bedrock_client: Any,
        *,
        model_id: str = c.TITAN_V2,
        dimensions: int = 256,
        normalize: bool = True,
        max_concurrency: int = 8,
        retry: RetryPolicy | None = None,
        limiter: AdaptiveRateLimiter | None = None,
    ) -> None:
        super().__init__(
            bedrock_client,
            TitanV2Body(model_id, dimensions, normalize=normalize),
            max_input_chars=c.input_char_limit("titan", model_id),
            max_concurrency=max_concurrency,
            retry=retry,
            limiter=limiter,
        )
        self.normalize = normalize

    def _embed_call(self, texts: list[str], purpose: Purpose) -> list[EmbedResult]:
        (text,) = texts
        text = text[: self.max_input_chars]
        limit = min(len(text), TITAN_START_CHARS)
        for _ in range(TITAN_SHORTENINGS + 1):
            [result] = super()._embed_call([text[:limit]], purpose)
            too_long = isinstance(result.error, PoisonRecordError) and _is_token_limit(result.error)
            if not too_long or limit <= 1:
                break
            limit //= 2
        return [EmbedResult(result.vector, result.error, truncated=result.vector is not None and limit < len(text))]


def make_embedder(
    embedding_config: EmbeddingConfig, bedrock_client: Any = None, retry: RetryPolicy | None = None
) -> Embedder:
    """The embedder the config names; Bedrock providers need a ``bedrock-runtime`` client."""
    provider = embedding_config.provider
    if provider == "local":
        raise MisconfigurationError("embedding provider 'local' (WordLlama) runs only in local mode")
    if bedrock_client is None:
        raise MisconfigurationError(f"embedding provider {provider!r} needs a bedrock-runtime client")
    limiter = AdaptiveRateLimiter(embedding_config.max_concurrency) if embedding_config.adaptive_rate else None
    model_id, dimensions = embedding_config.model_id, embedding_config.dimensions
    calls: dict[str, Any] = {"max_concurrency": embedding_config.max_concurrency, "retry": retry, "limiter": limiter}
    if provider == "titan":
        normalize = embedding_config.normalize
        return TitanEmbedder(bedrock_client, model_id=model_id, dimensions=dimensions, normalize=normalize, **calls)
    if provider in ("cohere", "nova"):
        body = model_body(provider, model_id, dimensions)
        return BedrockEmbedder(bedrock_client, body, max_input_chars=c.input_char_limit(provider, model_id), **calls)
    raise MisconfigurationError(f"unknown embedding provider {provider!r}; allowed: {', '.join(c.PROVIDER_MODELS)}")


def _invoke_model(
    client: Any, retry: RetryPolicy, model_id: str, body: str, limiter: AdaptiveRateLimiter | None = None
) -> dict[str, Any]:
    def invoke() -> Any:
        return client.invoke_model(modelId=model_id, body=body, contentType=_JSON, accept=_JSON)

    response = retry.call(
        (lambda: limiter.call(invoke)) if limiter is not None else invoke, f"Bedrock InvokeModel {model_id}"
    )
    payload = json.loads(response["body"].read())
    if not isinstance(payload, dict):
        raise MisconfigurationError(f"{model_id} returned {type(payload).__name__}, expected a JSON object")
    return payload


def _classified(exc: Exception) -> FreshvecError:
    """Bedrock errors as the pipeline's classes; a refused input is the row's problem, not the pipeline's."""
    if error_code(exc) == "ValidationException":
        return PoisonRecordError(f"Bedrock refused the text: {exc}")
    kind = classify(exc)
    if kind is MisconfigurationError:
        if isinstance(exc, MisconfigurationError):
            raise exc
        raise MisconfigurationError(f"Bedrock: {exc}") from exc
    return exc if isinstance(exc, FreshvecError) else kind(str(exc))


def _is_token_limit(error: BaseException) -> bool:
    """Titan's refusal of an input over its token limit ("Too many input tokens ...")."""
    return "token" in str(error).lower()
