"""WordLlama as the local stand-in for Bedrock: offline, loaded from the installed wheel.

The wheel ships one 256-dimension model trained with matryoshka representation learning: its first 128 or 64
dimensions are embeddings too (WordLlama's own ``trunc_dim`` keeps exactly that prefix). Local mode offers all
three (``constants.PROVIDER_MODELS["local"]``), so an index generation with other dimensions can be tried with
no account: each vector is the prefix, normalized again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from freshvec import constants as c
from freshvec.adapters.bedrock import BaseEmbedder
from freshvec.ports import EmbedResult

LOCAL_MAX_INPUT_CHARS = c.PROVIDER_MAX_INPUT_CHARS["local"]  # WordLlama has no hard limit; cut like Titan


class LocalEmbedder(BaseEmbedder):
    """WordLlama ``l2_supercat`` at 256, 128 or 64 dimensions, loaded from the installed wheel without download."""

    def __init__(self, dimensions: int = 256) -> None:
        allowed = c.PROVIDER_MODELS["local"][c.LOCAL_WORDLLAMA]
        if dimensions not in allowed:
            raise ValueError(f"WordLlama dimensions {dimensions} not offered; allowed: {', '.join(map(str, allowed))}")
        self.model_id = c.LOCAL_WORDLLAMA
        self.dimensions = dimensions
        self.max_input_chars = LOCAL_MAX_INPUT_CHARS
        self._model = _wordllama()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def try_embed_documents(self, texts: Sequence[str]) -> list[EmbedResult]:
        if not texts:
            return []
        with _WORDLLAMA_LOCK:
            matrix = self._model.embed([t[: self.max_input_chars] for t in texts], norm=False)
        prefix = np.asarray(matrix, dtype=np.float32)[:, : self.dimensions]
        norms = np.linalg.norm(prefix, axis=1, keepdims=True)
        prefix = prefix / np.where(norms == 0, 1, norms)
        return [EmbedResult(self._checked(row.tolist())) for row in prefix]


_WORDLLAMA_LOCK = threading.Lock()  # one model (and tokenizer) per process, shared by every LocalEmbedder


@cache
def _wordllama() -> Any:
    """One model per process. The wheel ships the tokenizer under ``tokenizers/`` but the loader looks in
    ``tokenizer/`` first and then in ``<cache_dir>/tokenizers/``; pointing cache_dir at the package finds it."""
    import wordllama
    from wordllama import WordLlama

    package = Path(wordllama.__file__).resolve().parent
    return WordLlama.load("l2_supercat", cache_dir=package, dim=256, disable_download=True)


def invoke_local_model(model_id: str, body: str) -> dict[str, Any]:
    """WordLlama behind the batch stand-in: ``{"inputText", "dimensions"}`` -> ``{"embedding"}`` (freshvec's own
    shape, ``bedrock_models.LocalBody``), checked as strictly as a Bedrock model checks its body: anything else is
    the record's ValidationException."""
    from botocore.exceptions import ClientError

    def refused(message: str) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": "ValidationException", "Message": f"Malformed input request: {message}"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "InvokeModel",
        )

    if model_id != c.LOCAL_WORDLLAMA:
        raise refused(f"local mode embeds only with {c.LOCAL_WORDLLAMA}, not {model_id}")
    request = json.loads(body)
    if not isinstance(request, dict) or set(request) - {"inputText", "dimensions"}:
        raise refused("the body holds inputText and dimensions only")
    text, dimensions = request.get("inputText"), request.get("dimensions", 256)
    if not isinstance(text, str) or not text:
        raise refused("inputText is required")
    if dimensions not in c.PROVIDER_MODELS["local"][c.LOCAL_WORDLLAMA]:
        raise refused(f"dimensions {dimensions} not offered")
    return {"embedding": LocalEmbedder(dimensions).embed_documents([text])[0]}
