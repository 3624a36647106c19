"""Hybrid search benchmark: recall where exact terms matter, and query time on the local S3 Vectors endpoint.

Retrieval (freshvec/data/products: 108 products written for this project, in look-alike families that differ in
model numbers, part codes and one feature each; 84 queries with judgments, 36 of them exact terms — a model
number, a part code, a brand and model — and 48 descriptive, worded unlike the product text). Every product is
embedded with WordLlama (``LocalEmbedder``, as local mode embeds) and put, with its text full-text searchable
(English analyzer), into an ENHANCED index on the local endpoint; each query runs through a plain boto3 client
in the three modes, top 5, same index, same run. Recall@5 is computed with ir-measures (``R@5``):

- ``hybrid_recall_at_5``, ``vector_recall_at_5``, ``text_recall_at_5``: over every query (hybrid must beat both)
- ``hybrid_recall_at_5_exact_terms``, ``vector_recall_at_5_exact_terms``, ``text_recall_at_5_exact_terms``: over
  the exact-term queries (hybrid must lead vector by at least 0.15)
- ``hybrid_recall_at_5_descriptive``, ``vector_recall_at_5_descriptive``: over the descriptive ones

Speed: ``local_hybrid_query_p50_ms`` — the median QueryVectors round trip (boto3 -> loopback HTTP -> the front's
exact search and BM25 -> answer) for a hybrid query, top 10, over an index of 10,000 vectors (256 dimensions,
texts made from the product set); ``local_vector_query_p50_ms`` is the vector-only query on the same index, the
baseline. Both after one warm-up query (the first full-text query after writes builds the BM25 index).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import ir_measures
import numpy as np
from ir_measures import R

from freshvec.datafiles import product_set
from freshvec.local.embedder import LocalEmbedder
from freshvec.local.moto_server import MotoServer

BUCKET = "bench-hybrid"
K = 5
MODES = ("hybrid", "vector", "text")
SPEED_VECTORS = 10_000
SPEED_QUERIES = 200
PUT_BATCH = 500


def _read(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (product_set() / name).read_text().splitlines() if line.strip()]


def _create_index(s3v: Any, name: str) -> None:
    s3v.create_index(
        vectorBucketName=BUCKET,
        indexName=name,
        dataType="float32",
        dimension=256,
        distanceMetric="cosine",
        metadataConfiguration={
            "nonFilterableMetadataKeys": ["description"],
            "textSearchConfigurations": [{"metadataKey": "description", "language": "en"}],
        },
    )


def _put(s3v: Any, name: str, keys: list[str], vectors: np.ndarray, texts: list[str], categories: list[str]) -> None:
    for start in range(0, len(keys), PUT_BATCH):
        s3v.put_vectors(
            vectorBucketName=BUCKET,
            indexName=name,
            vectors=[
                {
                    "key": keys[i],
                    "data": {"float32": vectors[i].tolist()},
                    "metadata": {"description": texts[i], "category": categories[i]},
                }
                for i in range(start, min(len(keys), start + PUT_BATCH))
            ],
        )


def _request(name: str, mode: str, text: str, vector: list[float], k: int) -> dict[str, Any]:
    request: dict[str, Any] = {"vectorBucketName": BUCKET, "indexName": name, "topK": k}
    if mode != "text":
        request["queryVector"] = {"float32": vector}
    if mode != "vector":
        request["queryTexts"] = [{"text": text, "metadataKey": "description"}]
    return request


def _recall(s3v: Any, embedder: LocalEmbedder) -> dict[str, float]:
    products, queries = _read("products.jsonl"), _read("queries.jsonl")
    _create_index(s3v, "products")
    vectors = np.asarray([embedder.embed_query(p["description"]) for p in products], dtype=np.float32)
    _put(
        s3v,
        "products",
        [p["sku"] for p in products],
        vectors,
        [p["description"] for p in products],
        [p["category"] for p in products],
    )
    qrels = [ir_measures.Qrel(q["id"], sku, 1) for q in queries for sku in q["relevant"]]
    figures: dict[str, float] = {}
    for mode in MODES:
        run = []
        for query in queries:
            found = s3v.query_vectors(
                **_request("products", mode, query["text"], embedder.embed_query(query["text"]), K)
            )
            run += [
                ir_measures.ScoredDoc(query["id"], v["key"], float(K - rank)) for rank, v in enumerate(found["vectors"])
            ]
        for kind, suffix in ((None, ""), ("exact", "_exact_terms"), ("descriptive", "_descriptive")):
            chosen = {q["id"] for q in queries if kind is None or q["kind"] == kind}
            value = ir_measures.calc_aggregate(
                [R @ K], [q for q in qrels if q.query_id in chosen], [d for d in run if d.query_id in chosen]
            )[R @ K]
            figures[f"{mode}_recall_at_{K}{suffix}"] = round(float(value), 4)
    figures.pop("text_recall_at_5_descriptive")
    figures["retrieval_set"] = {
        "products": len(products),
        "queries": len(queries),
        "exact_term_queries": sum(q["kind"] == "exact" for q in queries),
    }
    return figures


def _speed(s3v: Any, embedder: LocalEmbedder) -> dict[str, float]:
    products, queries = _read("products.jsonl"), _read("queries.jsonl")
    rng = np.random.default_rng(21)
    texts = []
    for i in range(SPEED_VECTORS):  # product texts with a serial each, so every vector is its own document
        product = products[i % len(products)]
        texts.append(f"{product['description']} Serial {i:05d}, batch {rng.integers(1, 99)}.")
    vectors = np.asarray([embedder.embed_query(text) for text in texts], dtype=np.float32)
    categories = [products[i % len(products)]["category"] for i in range(SPEED_VECTORS)]
    _create_index(s3v, "speed")
    _put(s3v, "speed", [f"doc-{i:05d}" for i in range(SPEED_VECTORS)], vectors, texts, categories)
    asked = [queries[i % len(queries)]["text"] for i in range(SPEED_QUERIES)]
    query_vectors = [embedder.embed_query(text) for text in asked]
    figures: dict[str, float] = {}
    for mode in ("hybrid", "vector"):
        s3v.query_vectors(**_request("speed", mode, asked[0], query_vectors[0], 10))  # warm-up (builds BM25)
        timings = []
        for text, vector in zip(asked, query_vectors, strict=True):
            started = time.perf_counter()
            answer = s3v.query_vectors(**_request("speed", mode, text, vector, 10))
            timings.append((time.perf_counter() - started) * 1000)
            assert len(answer["vectors"]) == 10
        figures[f"local_{mode}_query_p50_ms"] = round(statistics.median(timings), 2)
    figures["local_query_index_vectors"] = SPEED_VECTORS
    return figures


def run() -> dict[str, Any]:
    embedder = LocalEmbedder(256)
    with MotoServer.start() as server:  # moto behind the local S3 Vectors front, as local mode runs it
        s3v = server.client("s3vectors")  # a plain boto3 client on the local endpoint
        s3v.create_vector_bucket(vectorBucketName=BUCKET)
        figures = _recall(s3v, embedder)
        figures.update(_speed(s3v, embedder))
    hybrid = figures["hybrid_recall_at_5"]
    assert hybrid > figures["vector_recall_at_5"] and hybrid > figures["text_recall_at_5"], figures
    lead = figures["hybrid_recall_at_5_exact_terms"] - figures["vector_recall_at_5_exact_terms"]
    assert lead >= 0.15, f"hybrid leads vector by {lead:.3f} on exact terms; the target is 0.15"
    return figures
