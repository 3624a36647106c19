"""Exact nearest-neighbour search over an S3 Vectors index, for where QueryVectors is missing (moto).

It reads every vector with ListVectors (data and metadata), keeps those the filter matches (the same
operators and semantics as S3 Vectors, ``freshvec.filters``), and ranks them by the index's own distance
metric: cosine distance ``1 - cos(a, b)`` or euclidean distance ``|a - b|``, 0 meaning identical. The answer
has the QueryVectors shape, best first. S3 Vectors itself searches approximately; on small local indexes
an exact search is both affordable and the reference the approximate one tries to match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from freshvec.constants import S3V_MAX_TOP_K
from freshvec.filters import matches, validate_filter


class ExactVectorSearch:
    """QueryVectors semantics over ListVectors, for one index."""

    def __init__(self, s3vectors_client: Any, bucket: str, index: str) -> None:
        self._client = s3vectors_client
        self._bucket = bucket
        self._index = index
        self._metric: str | None = None

    @property
    def metric(self) -> str:
        if self._metric is None:
            found = self._client.get_index(vectorBucketName=self._bucket, indexName=self._index)["index"]
            self._metric = str(found["distanceMetric"])
        return self._metric

    def query(
        self,
        vector: Sequence[float],
        top_k: int,
        filter_doc: Mapping[str, Any] | None = None,
        *,
        return_metadata: bool = True,
    ) -> list[dict[str, Any]]:
        """``[{"key", "distance", "metadata"?}]`` for the ``top_k`` nearest vectors that match the filter."""
        if not 1 <= top_k <= S3V_MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {S3V_MAX_TOP_K}, got {top_k}")
        if filter_doc is not None:
            validate_filter(filter_doc)
        candidates = [v for v in self._all_vectors() if matches(filter_doc, v.get("metadata") or {})]
        if not candidates:
            return []
        query = np.asarray(vector, dtype=np.float32)
        stored = np.asarray([v["data"]["float32"] for v in candidates], dtype=np.float32)
        if stored.shape[1] != query.shape[0]:
            raise ValueError(f"query has {query.shape[0]} dimensions; the index holds {stored.shape[1]}")
        distances = self._distances(stored, query)
        order = np.argsort(distances, kind="stable")[:top_k]
        hits = []
        for i in order:
            hit: dict[str, Any] = {"key": candidates[i]["key"], "distance": float(distances[i])}
            if return_metadata:
                hit["metadata"] = candidates[i].get("metadata") or {}
            hits.append(hit)
        return hits

    def _distances(self, stored: np.ndarray, query: np.ndarray) -> np.ndarray:
        if self.metric == "euclidean":
            return np.linalg.norm(stored - query, axis=1)
        norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(query)
        similarity = np.divide(stored @ query, norms, out=np.zeros(len(stored), dtype=np.float32), where=norms > 0)
        return 1.0 - similarity

    def _all_vectors(self) -> list[dict[str, Any]]:
        vectors: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "vectorBucketName": self._bucket,
            "indexName": self._index,
            "returnData": True,
            "returnMetadata": True,
        }
        while True:
            page = self._client.list_vectors(**kwargs)
            vectors.extend(page.get("vectors", []))
            token = page.get("nextToken")
            if not token:
                return vectors
            kwargs["nextToken"] = token
