"""Each Bedrock embedding model's request body and response body, in one place.

The on-demand embedders (``freshvec.adapters.bedrock``) send these bodies with InvokeModel; batch inference
(``freshvec.adapters.bedrock_batch``) writes the same bodies as each record's ``modelInput`` and reads each
``modelOutput`` back with the same parser (a batch output line holds the InvokeModel response body:
https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-results.html). So a vector from a batch
job and one from an on-demand call of the same text are the same vector.

A document is embedded for storage and a query for search; the asymmetric models are told which
(Cohere ``input_type``, Nova ``embeddingPurpose``). Every parser checks the vector count and dimensions:
a model answering with another shape is a MisconfigurationError (the index was made for these dimensions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

from freshvec import constants as c
from freshvec.errors import MisconfigurationError

Purpose = Literal["document", "query"]


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    truncated: bool = False  # the model cut a text it was given (Nova reports it)
    input_tokens: int | None = None  # when the model reports it


@dataclass(frozen=True)
class ModelBody(ABC):
    """One model at one output dimension: what to send, and how to read what comes back."""

    model_id: str
    dimensions: int

    texts_per_call: int = 1

    @abstractmethod
    def request(self, texts: list[str], purpose: Purpose) -> dict[str, Any]: ...

    @abstractmethod
    def parse(self, payload: Any, count: int) -> Embedded: ...

    def checked(self, vector: Any) -> list[float]:
        if not isinstance(vector, list) or len(vector) != self.dimensions:
            size = len(vector) if isinstance(vector, list) else type(vector).__name__
            raise MisconfigurationError(
                f"{self.model_id} returned a vector of {size} dimensions; the index expects {self.dimensions}"
            )
        return [float(x) for x in vector]

    def _object(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise MisconfigurationError(f"{self.model_id} returned {type(payload).__name__}, expected a JSON object")
        return payload


@dataclass(frozen=True)
class TitanV2Body(ModelBody):
    """``{"inputText", "dimensions", "normalize"}`` -> ``{"embedding", "inputTextTokenCount"}``, one text a call
    (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html)."""

    normalize: bool = True

    def request(self, texts: list[str], purpose: Purpose) -> dict[str, Any]:
        (text,) = texts
        return {"inputText": text, "dimensions": self.dimensions, "normalize": self.normalize}

    def parse(self, payload: Any, count: int) -> Embedded:
        body = self._object(payload)
        tokens = body.get("inputTextTokenCount")
        return Embedded([self.checked(body.get("embedding"))], input_tokens=tokens if isinstance(tokens, int) else None)


@dataclass(frozen=True)
class CohereV3Body(ModelBody):
    """``{"texts", "input_type", "truncate": "END"}`` -> ``{"embeddings": [[...]], "response_type", ...}``, up to
    96 texts a call (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed-v3.html)."""

    texts_per_call: int = c.COHERE_MAX_TEXTS_PER_CALL

    def request(self, texts: list[str], purpose: Purpose) -> dict[str, Any]:
        return {"texts": texts, "input_type": _cohere_input_type(purpose), "truncate": "END"}

    def parse(self, payload: Any, count: int) -> Embedded:
        return Embedded(self._cohere_vectors(payload, count))

    def _cohere_vectors(self, payload: Any, count: int) -> list[list[float]]:
        embeddings = self._object(payload).get("embeddings")
        if isinstance(embeddings, dict):  # response_type "embeddings_by_type"
            embeddings = embeddings.get("float")
        if not isinstance(embeddings, list) or len(embeddings) != count:
            raise MisconfigurationError(f"{self.model_id} returned no float embeddings for {count} texts")
        return [self.checked(vector) for vector in embeddings]


@dataclass(frozen=True)
class CohereV4Body(CohereV3Body):
    """v3's body plus ``output_dimension`` and ``embedding_types: ["float"]``; ``truncate`` is ``RIGHT`` here
    (v4 names the ends LEFT/RIGHT). The answer is ``embeddings_floats`` (a list) or ``embeddings_by_type``
    (``{"float": [...]}``) (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed-v4.html)."""

    def request(self, texts: list[str], purpose: Purpose) -> dict[str, Any]:
        return {
            "texts": texts,
            "input_type": _cohere_input_type(purpose),
            "embedding_types": ["float"],
            "output_dimension": self.dimensions,
            "truncate": "RIGHT",
        }


@dataclass(frozen=True)
class NovaBody(ModelBody):
    """``{"schemaVersion", "taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": {"embeddingPurpose",
    "embeddingDimension", "text": {"truncationMode", "value"}}}`` -> ``{"embeddings": [{"embeddingType": "TEXT",
    "embedding", "truncatedCharLength"?}]}``, one text a call
    (https://docs.aws.amazon.com/nova/latest/userguide/embeddings-schema.html). Documents are GENERIC_INDEX,
    queries TEXT_RETRIEVAL; text past the model's 8K tokens is cut at the end and reported."""

    def request(self, texts: list[str], purpose: Purpose) -> dict[str, Any]:
        (text,) = texts
        return {
            "schemaVersion": c.NOVA_SCHEMA_VERSION,
            "taskType": "SINGLE_EMBEDDING",
            "singleEmbeddingParams": {
                "embeddingPurpose": c.NOVA_DOCUMENT_PURPOSE if purpose == "document" else c.NOVA_QUERY_PURPOSE,
                "embeddingDimension": self.dimensions,
                "text": {"truncationMode": "END", "value": text},
            },
        }

    def parse(self, payload: Any, count: int) -> Embedded:
        items = self._object(payload).get("embeddings")
        items = items if isinstance(items, list) else []
        texts = [item for item in items if isinstance(item, dict) and item.get("embeddingType") == "TEXT"]
        if len(texts) != 1:
            raise MisconfigurationError(f"{self.model_id} returned no TEXT embedding")
        return Embedded([self.checked(texts[0].get("embedding"))], truncated="truncatedCharLength" in texts[0])


@dataclass(frozen=True)
class LocalBody(ModelBody):
    """Local mode's WordLlama behind the batch stand-in: ``{"inputText", "dimensions"}`` -> ``{"embedding"}``.
    freshvec's own shape (modelled on Titan's); no AWS model answers it."""

    def request(self, texts: list[str], purpose: Purpose) -> dict[str, Any]:
        (text,) = texts
        return {"inputText": text, "dimensions": self.dimensions}

    def parse(self, payload: Any, count: int) -> Embedded:
        return Embedded([self.checked(self._object(payload).get("embedding"))])


def model_body(provider: str, model_id: str, dimensions: int, *, normalize: bool = True) -> ModelBody:
    """The body a configured model speaks (MisconfigurationError for a model freshvec does not know)."""
    if model_id not in c.PROVIDER_MODELS.get(provider, {}):
        raise MisconfigurationError(f"{provider} model {model_id!r} is not one freshvec can call")
    if model_id == c.TITAN_V2:
        return TitanV2Body(model_id, dimensions, normalize=normalize)
    if model_id in (c.COHERE_EN_V3, c.COHERE_MULTI_V3):
        return CohereV3Body(model_id, dimensions)
    if model_id in (c.COHERE_V4, *c.COHERE_V4_PROFILES):
        return CohereV4Body(model_id, dimensions)
    if model_id == c.NOVA_MME:
        return NovaBody(model_id, dimensions)
    return LocalBody(model_id, dimensions)


def _cohere_input_type(purpose: Purpose) -> str:
    return "search_document" if purpose == "document" else "search_query"
