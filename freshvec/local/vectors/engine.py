"""One index of the local S3 Vectors stand-in: its settings, a copy of its vectors, and QueryVectors.

Semantics (AWS docs "Querying with full-text and vector search", "Hybrid search with Amazon S3 Vectors",
"Changing a vector index's mode", the QueryVectors API reference):

- ``queryVector`` alone: vector search, ranked by distance (cosine ``1 - cos``, euclidean ``|a - b|``; 0 is
  identical). ``queryTexts`` alone: full-text search, ranked by BM25. Both: hybrid, a full-text search per
  query text and a vector search, fused with Reciprocal Rank Fusion, ``sum 1 / (RRF_K + rank)``.
- Full-text and hybrid searches need an ENHANCED index and keys whose analyzer is ACTIVE.
- ENHANCED applies the filter before the search: the top K of exactly the vectors the filter keeps.
  CLASSIC applies it during the vector search: the stand-in filters the ``CLASSIC_POOL`` x topK nearest
  vectors, so a selective filter can return fewer than topK results, as CLASSIC can.
- ``returnScores``: ``bm25Scores`` of the keys a result matched; ``fused`` and ``vectorDistance`` (when the
  result was in the vector ranking) for hybrid requests. Vector-only requests get no scores.
- Results come in pages of ``PAGE_SIZE``; ``nextToken`` continues the same request.

The search is exact (every vector is compared); S3 Vectors searches approximately. Where results can
differ from the service: ties (broken here by the better single-list rank, then by key), the depth of each
ranking fused (here topK), the RRF constant (here 60, the usual one), BM25 parameters (k1 1.2, b 0.75, the
Lucene ones, statistics over every vector holding the key, filtered or not), the analyzers
(``freshvec.local.vectors.analyzers``), how several ``queryTexts`` combine without a vector (here: the sum of
their BM25 scores) and CLASSIC's shortfall under a filter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bm25s
import numpy as np

from freshvec.filters import FilterError, filter_keys, matches, validate_filter
from freshvec.local.vectors.analyzers import analyzer

ENHANCED, CLASSIC = "ENHANCED", "CLASSIC"
RRF_K = 60
PAGE_SIZE = 100
MAX_TOP_K = 10_000
CLASSIC_POOL = 4
BM25_K1, BM25_B = 1.2, 0.75


class ServiceError(Exception):
    """An error the service would answer with: its code (``ValidationException``...) and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def invalid(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


@dataclass
class TextKey:
    metadata_key: str
    language: str | None
    ready_at: float  # monotonic time the analyzer turns ACTIVE

    @property
    def status(self) -> str:
        return "ACTIVE" if time.monotonic() >= self.ready_at else "BUILDING"

    def describe(self) -> dict[str, Any]:
        found: dict[str, Any] = {"metadataKey": self.metadata_key, "status": self.status}
        if self.language:
            found["language"] = self.language
        return found


@dataclass
class _Bm25:
    keys: list[str]
    retriever: Any


@dataclass
class IndexState:
    """An index's settings and a copy of its vectors, kept in step with every write that reaches moto."""

    arn: str
    dimension: int
    metric: str
    mode: str
    non_filterable: tuple[str, ...] = ()
    text_keys: dict[str, TextKey] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _keys: list[str] = field(default_factory=list, repr=False)
    _position: dict[str, int] = field(default_factory=dict, repr=False)
    _metadata: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _data: np.ndarray | None = field(default=None, repr=False)
    _bm25: dict[str, _Bm25] = field(default_factory=dict, repr=False)

    # ---- writes -------------------------------------------------------------------------------
    def put(self, vectors: Sequence[Mapping[str, Any]]) -> None:
        with self.lock:
            if self._data is None:
                self._data = np.zeros((max(16, len(vectors)), self.dimension), dtype=np.float32)
            for vector in vectors:
                values = np.asarray(vector["data"]["float32"], dtype=np.float32)
                key = str(vector["key"])
                position = self._position.get(key)
                if position is None:
                    position = len(self._keys)
                    if position == len(self._data):
                        self._data = np.concatenate([self._data, np.zeros_like(self._data)])
                    self._keys.append(key)
                    self._metadata.append({})
                    self._position[key] = position
                self._data[position] = values
                self._metadata[position] = dict(vector.get("metadata") or {})
            self._bm25.clear()

    def delete(self, keys: Sequence[str]) -> None:
        with self.lock:
            for key in keys:
                position = self._position.pop(key, None)
                if position is None:
                    continue
                last = len(self._keys) - 1
                if position != last and self._data is not None:  # move the last vector into the gap
                    moved = self._keys[last]
                    self._keys[position] = moved
                    self._metadata[position] = self._metadata[last]
                    self._data[position] = self._data[last]
                    self._position[moved] = position
                self._keys.pop()
                self._metadata.pop()
            self._bm25.clear()

    def __len__(self) -> int:
        return len(self._keys)

    # ---- settings -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        configuration: dict[str, Any] = {"nonFilterableMetadataKeys": list(self.non_filterable)}
        if self.text_keys:
            configuration["textSearchConfigurations"] = [t.describe() for t in self.text_keys.values()]
        return {"metadataConfiguration": configuration, "indexMode": self.mode}

    def add_text_keys(self, configurations: Sequence[Mapping[str, Any]], build_seconds: float) -> None:
        with self.lock:
            if self.mode != ENHANCED:
                raise invalid("UpdateMetadataConfiguration needs an ENHANCED index; call UpdateIndexMode first")
            for config in configurations:
                key = config["metadataKey"]
                if key in self.text_keys:
                    message = f"metadata key {key!r} is already full-text searchable"
                    raise ServiceError("ConflictException", message, 409)
            added = {
                c["metadataKey"]: TextKey(c["metadataKey"], c.get("language"), time.monotonic() + build_seconds)
                for c in configurations
            }
            if len(self.text_keys) + len(added) > 10:
                raise invalid("an index has at most 10 textSearchConfigurations")
            self.text_keys.update(added)
            self._bm25.clear()

    def delete_text_keys(self, keys: Sequence[str]) -> None:
        with self.lock:
            if self.mode != ENHANCED:
                raise invalid("UpdateMetadataConfiguration needs an ENHANCED index")
            missing = [k for k in keys if k not in self.text_keys]
            if missing:
                raise ServiceError("NotFoundException", f"not full-text searchable: {', '.join(missing)}", 404)
            for key in keys:
                del self.text_keys[key]
                self._bm25.pop(key, None)

    # ---- QueryVectors -------------------------------------------------------------------------
    def query(self, request: Mapping[str, Any]) -> dict[str, Any]:
        top_k = request.get("topK")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise invalid(f"topK must be between 1 and {MAX_TOP_K}")
        vector = _query_vector(request, self.dimension)
        texts = request.get("queryTexts") or []
        if vector is None and not texts:
            raise invalid("a request must include queryVector, queryTexts, or both")
        mode = request.get("queryMode") or self.mode
        if mode not in (ENHANCED, CLASSIC):
            raise invalid("queryMode must be CLASSIC or ENHANCED")
        if mode == CLASSIC and self.mode == ENHANCED:
            raise invalid("queryMode CLASSIC cannot be used on an ENHANCED index")
        if texts and self.mode != ENHANCED:
            raise invalid("full-text and hybrid searches need an ENHANCED index")
        text_queries = self._text_queries(texts)
        filter_doc = request.get("filter")
        if filter_doc is not None:
            self._check_filter(filter_doc, mode)
        offset = _offset(request)
        with self.lock:
            ranked = self._rank(vector, text_queries, filter_doc, top_k, mode)
            page = ranked[offset : offset + PAGE_SIZE]
            answer: dict[str, Any] = {
                "vectors": [self._result(hit, request, vector is not None, bool(text_queries)) for hit in page],
                "distanceMetric": self.metric,
            }
        if offset + PAGE_SIZE < len(ranked):
            answer["nextToken"] = _token(request, offset + PAGE_SIZE)
        return answer

    def _text_queries(self, texts: Any) -> list[tuple[str, list[str]]]:
        if not isinstance(texts, list) or len(texts) > 10:
            raise invalid("queryTexts takes 1 to 10 entries")
        queries: list[tuple[str, list[str]]] = []
        for entry in texts:
            key, text = entry.get("metadataKey"), entry.get("text")
            if not isinstance(text, str) or not 1 <= len(text) <= 1024:
                raise invalid("each queryTexts text must be 1 to 1,024 characters")
            config = self.text_keys.get(key)
            if config is None:
                raise invalid(f"metadata key {key!r} is not full-text searchable on this index")
            if config.status != "ACTIVE":
                raise invalid(f"the analyzer of {key!r} is still BUILDING")
            if any(key == k for k, _ in queries):
                raise invalid("each queryTexts entry must target a distinct metadata key")
            queries.append((key, analyzer(config.language)(text)))
        return queries

    def _check_filter(self, filter_doc: Any, mode: str) -> None:
        try:
            validate_filter(filter_doc, enhanced=mode == ENHANCED)
        except FilterError as exc:
            raise invalid(str(exc)) from exc
        unfilterable = sorted(filter_keys(filter_doc) & set(self.non_filterable))
        if unfilterable:
            raise invalid(f"non-filterable metadata keys cannot be filtered on: {', '.join(unfilterable)}")

    def _rank(
        self,
        vector: np.ndarray | None,
        text_queries: list[tuple[str, list[str]]],
        filter_doc: Any,
        top_k: int,
        mode: str,
    ) -> list[_Hit]:
        allowed = None if filter_doc is None else np.array([matches(filter_doc, m) for m in self._metadata], bool)
        hits: dict[int, _Hit] = {}
        vector_order = self._vector_ranking(vector, allowed, top_k, mode) if vector is not None else []
        for rank, (i, distance) in enumerate(vector_order, start=1):
            hits[i] = _Hit(i, distance=distance, vector_rank=rank)
        text_rankings: list[dict[int, int]] = []
        for key, terms in text_queries:
            scores = self._bm25_scores(key, terms)
            positive = np.flatnonzero(scores > 0)
            if allowed is not None:
                positive = positive[allowed[positive]]
            order = sorted((int(i) for i in positive), key=lambda i: (-scores[i], self._keys[i]))
            ranking = order[:top_k] if vector is not None else order
            text_rankings.append({i: rank for rank, i in enumerate(ranking, start=1)})
            for rank, i in enumerate(ranking, start=1):
                hit = hits.setdefault(i, _Hit(i))
                hit.bm25[key] = float(scores[i])
                hit.best_rank = min(hit.best_rank, rank)
        if not text_queries:
            return [hits[i] for i, _ in vector_order]
        if vector is None:  # full-text only: by BM25 (summed over the query texts)
            ranked = sorted(hits.values(), key=lambda h: (-sum(h.bm25.values()), self._keys[h.position]))
            return ranked[:top_k]
        for hit in hits.values():
            fused = 0.0 if hit.vector_rank is None else 1.0 / (RRF_K + hit.vector_rank)
            for ranking in text_rankings:
                if hit.position in ranking:
                    fused += 1.0 / (RRF_K + ranking[hit.position])
            hit.fused = fused
            if hit.vector_rank is not None:
                hit.best_rank = min(hit.best_rank, hit.vector_rank)
        ranked = sorted(hits.values(), key=lambda h: (-h.fused, h.best_rank, self._keys[h.position]))
        return ranked[:top_k]

    def _vector_ranking(
        self, vector: np.ndarray, allowed: np.ndarray | None, top_k: int, mode: str
    ) -> list[tuple[int, float]]:
        """(position, distance) of the top K nearest vectors the filter keeps, nearest first."""
        if not self._keys:
            return []
        distances = self._distances(vector)
        if mode == CLASSIC and allowed is not None:  # filter within the nearest pool, not before
            pool = np.argsort(distances, kind="stable")[: top_k * CLASSIC_POOL]
            order = [int(i) for i in pool if allowed[i]][:top_k]
        else:
            candidates = np.flatnonzero(allowed) if allowed is not None else np.arange(len(self._keys))
            order = [int(i) for i in candidates[np.argsort(distances[candidates], kind="stable")][:top_k]]
        return [(i, float(distances[i])) for i in order]

    def _distances(self, vector: np.ndarray) -> np.ndarray:
        # einsum, not BLAS: a matrix-vector product this small is slower across BLAS threads than in one loop
        assert self._data is not None
        stored = self._data[: len(self._keys)]
        if self.metric == "euclidean":
            difference = stored - vector
            return np.sqrt(np.einsum("ij,ij->i", difference, difference))
        norms = np.sqrt(np.einsum("ij,ij->i", stored, stored)) * float(np.sqrt(vector @ vector))
        dots = np.einsum("ij,j->i", stored, vector)
        similarity = np.divide(dots, norms, out=np.zeros(len(stored), dtype=np.float32), where=norms > 0)
        return 1.0 - similarity

    def _bm25_scores(self, key: str, terms: list[str]) -> np.ndarray:
        """BM25 of every vector (by position) for one searchable key; 0 where the key is absent or unmatched."""
        index = self._bm25.get(key)
        if index is None or index.keys != self._keys:
            analyze = analyzer(self.text_keys[key].language)
            corpus = [analyze(_searchable_text(m.get(key))) for m in self._metadata]
            retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
            retriever.index(corpus, show_progress=False)
            index = self._bm25[key] = _Bm25(list(self._keys), retriever)
        known = [t for t in terms if t and t in index.retriever.vocab_dict]
        if not known:
            return np.zeros(len(self._keys), dtype=np.float32)
        return np.asarray(index.retriever.get_scores(known), dtype=np.float32)

    def _result(self, hit: _Hit, request: Mapping[str, Any], has_vector: bool, has_text: bool) -> dict[str, Any]:
        found: dict[str, Any] = {"key": self._keys[hit.position]}
        if request.get("returnDistance") and hit.distance is not None:
            found["distance"] = hit.distance
        if request.get("returnMetadata"):
            found["metadata"] = self._metadata[hit.position]
        if request.get("returnScores") and has_text:
            scores: dict[str, Any] = {"bm25Scores": [{"metadataKey": k, "score": s} for k, s in hit.bm25.items()]}
            if has_vector:
                scores["fused"] = hit.fused
                if hit.distance is not None:
                    scores["vectorDistance"] = hit.distance
            found["scores"] = scores
        return found


@dataclass
class _Hit:
    position: int
    distance: float | None = None
    vector_rank: int | None = None
    bm25: dict[str, float] = field(default_factory=dict)
    fused: float = 0.0
    best_rank: int = 1 << 30


def _searchable_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(v for v in value if isinstance(v, str))
    return ""


def _query_vector(request: Mapping[str, Any], dimension: int) -> np.ndarray | None:
    given = request.get("queryVector")
    if given is None:
        return None
    values = given.get("float32") if isinstance(given, Mapping) else None
    if not isinstance(values, list) or len(values) != dimension:
        got = len(values) if isinstance(values, list) else 0
        raise invalid(f"the query vector has {got} dimensions; the index takes {dimension}")
    return np.asarray(values, dtype=np.float32)


def _request_digest(request: Mapping[str, Any]) -> str:
    same = {k: v for k, v in request.items() if k != "nextToken"}
    return hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _token(request: Mapping[str, Any], offset: int) -> str:
    body = json.dumps({"d": _request_digest(request), "o": offset}).encode()
    return base64.urlsafe_b64encode(body).decode("ascii")


def _offset(request: Mapping[str, Any]) -> int:
    token = request.get("nextToken")
    if token is None:
        return 0
    try:
        body = json.loads(base64.urlsafe_b64decode(str(token).encode("ascii")))
        digest, offset = body["d"], int(body["o"])
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid("nextToken is not a token this index gave") from exc
    if digest != _request_digest(request):
        raise invalid("nextToken belongs to a different request; repeat the request's other parameters unchanged")
    return offset
