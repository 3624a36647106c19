"""In-memory ports with no I/O, for measuring the sink's own CPU and for quota benchmarks.

- ``InMemoryVectorStore``: a ``VectorStore`` in a dict (exact search by cosine distance), counting calls;
- ``InMemoryDeadLetterQueue``: a ``DeadLetterQueue`` in a list;
- ``TableEmbedder``: an ``Embedder`` whose vectors come from a precomputed table (indexed by a hash of the
  text), so that measuring the sink does not measure a model.

They keep the ports' contracts (GetVectors omits missing keys, deleting a missing key is fine, a put
replaces) but not the service limits: the sink's own batching is what keeps to those.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from freshvec.ports import EmbedResult, IndexInfo, Vector
from freshvec.testing.fakes.bedrock import fake_vector


class InMemoryVectorStore:
    def __init__(self, dimension: int, distance_metric: str = "cosine") -> None:
        self._info = IndexInfo(dimension, distance_metric)
        self._vectors: dict[str, tuple[list[float], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def describe(self) -> IndexInfo:
        self.calls["GetIndex"] += 1
        return self._info

    def put(self, vectors: list[Vector]) -> None:
        with self._lock:
            self.calls["PutVectors"] += 1
            for vector in vectors:
                self._vectors[vector["key"]] = (vector["data"]["float32"], dict(vector.get("metadata") or {}))

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            self.calls["DeleteVectors"] += 1
            for key in keys:
                self._vectors.pop(key, None)

    def get(self, keys: Sequence[str], *, return_data: bool = True, return_metadata: bool = True) -> dict[str, Any]:
        with self._lock:
            self.calls["GetVectors"] += 1
            found: dict[str, Any] = {}
            for key in keys:
                stored = self._vectors.get(key)
                if stored is not None:
                    found[key] = {
                        "data": stored[0] if return_data else None,
                        "metadata": dict(stored[1]) if return_metadata else {},
                    }
            return found

    def query(
        self, vector: Sequence[float], k: int, filter: dict[str, Any] | None = None, return_metadata: bool = True
    ) -> list[dict[str, Any]]:
        if filter:
            raise NotImplementedError("the in-memory store does not filter")
        with self._lock:
            self.calls["QueryVectors"] += 1
            scored = [(_cosine_distance(vector, data), key, meta) for key, (data, meta) in self._vectors.items()]
        scored.sort(key=lambda item: (item[0], item[1]))
        return [
            {"key": key, "distance": distance, "metadata": meta if return_metadata else {}}
            for distance, key, meta in scored[:k]
        ]

    def snapshot(self) -> dict[str, tuple[list[float], dict[str, Any]]]:
        """Every stored vector: key -> (data, metadata)."""
        with self._lock:
            return {key: (list(data), dict(meta)) for key, (data, meta) in self._vectors.items()}


class InMemoryDeadLetterQueue:
    def __init__(self) -> None:
        self.entries: list[Mapping[str, Any]] = []

    def send(self, entries: Sequence[Mapping[str, Any]]) -> None:
        self.entries.extend(entries)


class TableEmbedder:
    """Vectors from a table of ``table_size`` precomputed ones, chosen by the text's CRC-32."""

    def __init__(
        self, dimensions: int, *, model_id: str = "table", max_input_chars: int = 50_000, table_size: int = 1024
    ) -> None:
        self.model_id = model_id
        self.dimensions = dimensions
        self.max_input_chars = max_input_chars
        self._table = [fake_vector(f"table-{i}", dimensions) for i in range(table_size)]
        self.texts_embedded = 0

    def vector(self, text: str) -> list[float]:
        return list(self._table[zlib.crc32(text.encode("utf-8")) % len(self._table)])

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts_embedded += len(texts)
        return [self.vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text)

    def try_embed_documents(self, texts: Sequence[str]) -> list[EmbedResult]:
        return [EmbedResult(vector) for vector in self.embed_documents(texts)]


def _cosine_distance(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return 1 - dot / norm if norm else 1.0
