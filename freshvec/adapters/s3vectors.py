"""The ``VectorStore`` port over a boto3 ``s3vectors`` client (AWS, or moto in local mode and tests).

``S3VectorsStore`` keeps to the service limits the SDK does not enforce (PutVectors and DeleteVectors
at most 500 keys a call, GetVectors 100, ListVectors pages of 1,000), retries throttling (429) and 5xx
with backoff and jitter, and turns a missing index or denied access into MisconfigurationError. Writes
are idempotent: putting a vector replaces the one with the same key, deleting a missing key is not an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from freshvec import constants as c
from freshvec.errors import MisconfigurationError, classify, error_code
from freshvec.ports import IndexInfo, RejectedVectorsError, Vector
from freshvec.retry import RetryPolicy

T = TypeVar("T")


class S3VectorsStore:
    """One S3 Vectors index, through a boto3 ``s3vectors`` client handed in by the caller."""

    def __init__(self, client: Any, bucket: str, index: str, retry: RetryPolicy | None = None) -> None:
        self._client = client
        self.bucket = bucket
        self.index = index
        self._retry = retry or RetryPolicy()

    def describe(self) -> IndexInfo:
        index = self._call("GetIndex", self._client.get_index)["index"]
        configuration = index.get("metadataConfiguration") or {}
        keys = configuration.get("nonFilterableMetadataKeys", [])
        text = tuple(
            (str(t["metadataKey"]), t.get("language"), str(t.get("status", "ACTIVE")))
            for t in configuration.get("textSearchConfigurations") or []
        )
        mode = index.get("indexMode")
        return IndexInfo(int(index["dimension"]), str(index["distanceMetric"]), tuple(keys), mode, text)

    def put(self, vectors: list[Vector]) -> None:
        rejected: dict[str, str] = {}
        for chunk in _chunks(vectors, c.S3V_PUT_BATCH):
            rejected.update(self._put_isolating_rejects(chunk))
        if rejected:
            raise RejectedVectorsError(rejected)

    def delete(self, keys: Sequence[str]) -> None:
        for chunk in _chunks(list(keys), c.S3V_PUT_BATCH):
            self._call("DeleteVectors", self._client.delete_vectors, keys=chunk)

    def get(self, keys: Sequence[str], *, return_data: bool = True, return_metadata: bool = True) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), c.S3V_GET_BATCH):
            response = self._call(
                "GetVectors",
                self._client.get_vectors,
                keys=chunk,
                returnData=return_data,
                returnMetadata=return_metadata,
            )
            for vector in response.get("vectors", []):
                found[vector["key"]] = {
                    "data": (vector.get("data") or {}).get("float32"),
                    "metadata": vector.get("metadata") or {},
                }
        return found

    def scan(self, *, return_metadata: bool = True) -> Iterator[list[dict[str, Any]]]:
        """ListVectors page by page (``maxResults`` 1,000, the service's most); a page is yielded as soon as read."""
        params: dict[str, Any] = {"maxResults": c.S3V_LIST_PAGE, "returnData": False, "returnMetadata": return_metadata}
        while True:
            response = self._call("ListVectors", self._client.list_vectors, **params)
            yield [{"key": v["key"], "metadata": v.get("metadata") or {}} for v in response.get("vectors", [])]
            token = response.get("nextToken")
            if not token:
                return
            params["nextToken"] = token

    def query(
        self,
        vector: Sequence[float] | None,
        k: int,
        filter: dict[str, Any] | None = None,
        return_metadata: bool = True,
        *,
        texts: Sequence[Mapping[str, str]] = (),
        return_scores: bool = False,
    ) -> list[dict[str, Any]]:
        """QueryVectors: vector, full-text (``texts``: ``{"text", "metadataKey"}``) or hybrid (both); every page.

        An answer larger than a page continues with ``nextToken`` (the same request plus the token) until the
        service gives none; ``k`` counts vectors (chunks), up to ``S3V_MAX_TOP_K_PAGED``.
        """
        if not 1 <= k <= c.S3V_MAX_TOP_K_PAGED:
            raise ValueError(f"k must be between 1 and {c.S3V_MAX_TOP_K_PAGED}, got {k}")
        if vector is None and not texts:
            raise ValueError("a query needs a vector, query texts, or both")
        params: dict[str, Any] = {"topK": k, "returnMetadata": return_metadata, "returnDistance": True}
        if vector is not None:
            params["queryVector"] = {"float32": [float(x) for x in vector]}
        if texts:
            params["queryTexts"] = [{"text": t["text"], "metadataKey": t["metadataKey"]} for t in texts]
            params["returnScores"] = return_scores
        if filter:
            params["filter"] = filter
        found: list[dict[str, Any]] = []
        while True:
            response = self._call("QueryVectors", self._client.query_vectors, **params)
            for v in response.get("vectors", []):
                hit = {"key": v["key"], "distance": v.get("distance"), "metadata": v.get("metadata") or {}}
                if "scores" in v:
                    hit["scores"] = v["scores"]
                found.append(hit)
            token = response.get("nextToken")
            if not token or len(found) >= k:
                return found[:k]
            params["nextToken"] = token

    def update_index_mode(self, mode: str) -> None:
        self._call("UpdateIndexMode", self._client.update_index_mode, indexMode=mode)

    def add_text_search(self, keys: Mapping[str, str | None]) -> None:
        """Make metadata keys full-text searchable (``UpdateMetadataConfiguration`` add; ENHANCED only)."""
        entries = [{"metadataKey": k, **({"language": lang} if lang else {})} for k, lang in keys.items()]
        self._call(
            "UpdateMetadataConfiguration",
            self._client.update_metadata_configuration,
            add={"textSearchConfigurations": entries},
        )

    def delete_text_search(self, keys: list[str]) -> None:
        """Stop full-text search on metadata keys (``UpdateMetadataConfiguration`` delete); the values stay."""
        self._call(
            "UpdateMetadataConfiguration",
            self._client.update_metadata_configuration,
            delete={"textSearchConfigurations": [{"metadataKey": key} for key in keys]},
        )

    def _put_isolating_rejects(self, vectors: list[Vector]) -> dict[str, str]:
        """Put ``vectors``; on a ValidationException split the call in halves to find the vectors refused."""
        try:
            self._call("PutVectors", self._client.put_vectors, vectors=vectors)
            return {}
        except MisconfigurationError as exc:
            cause = exc.__cause__
            if cause is None or error_code(cause) != "ValidationException":
                raise
            if len(vectors) == 1:
                return {vectors[0]["key"]: str(exc.__cause__)}
            middle = len(vectors) // 2
            return {**self._put_isolating_rejects(vectors[:middle]), **self._put_isolating_rejects(vectors[middle:])}

    def _call(self, operation: str, method: Any, **params: Any) -> Any:
        def attempt() -> Any:
            return method(vectorBucketName=self.bucket, indexName=self.index, **params)

        try:
            return self._retry.call(attempt, f"S3 Vectors {operation}")
        except Exception as exc:
            if classify(exc) is MisconfigurationError:
                raise MisconfigurationError(
                    f"S3 Vectors {operation} on {self.bucket}/{self.index} failed: {exc}"
                ) from exc
            raise


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
