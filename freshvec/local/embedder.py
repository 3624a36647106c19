"""WordLlama as the local stand-in for Bedrock: 256 dimensions, offline, loaded from the installed wheel."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from freshvec import constants as c
from freshvec.adapters.bedrock import BaseEmbedder
from freshvec.ports import EmbedResult

LOCAL_MAX_INPUT_CHARS = c.PROVIDER_MAX_INPUT_CHARS["local"]  # WordLlama has no hard limit; cut like Titan


class LocalEmbedder(BaseEmbedder):
    """WordLlama ``l2_supercat`` (256 dimensions), loaded from the installed wheel without any download."""

    def __init__(self, dimensions: int = 256) -> None:
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
            matrix = self._model.embed([t[: self.max_input_chars] for t in texts], norm=True)
        return [EmbedResult(self._checked(row.tolist())) for row in matrix]


_WORDLLAMA_LOCK = threading.Lock()  # one model (and tokenizer) per process, shared by every LocalEmbedder


@cache
def _wordllama() -> Any:
    """One model per process. The wheel ships the tokenizer under ``tokenizers/`` but the loader looks in
    ``tokenizer/`` first and then in ``<cache_dir>/tokenizers/``; pointing cache_dir at the package finds it."""
    import wordllama
    from wordllama import WordLlama

    package = Path(wordllama.__file__).resolve().parent
    return WordLlama.load("l2_supercat", cache_dir=package, dim=256, disable_download=True)
