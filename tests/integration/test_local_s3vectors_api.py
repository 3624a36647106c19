"""The local S3 Vectors endpoint through a plain boto3 client: QueryVectors in every mode, every filter operator,
paging, scores, index modes and full-text settings, as the botocore model and the AWS docs describe them."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from freshvec.local.vectors.server import LocalAwsServer

BUCKET, INDEX = "shop-vectors", "products"
OTHER, LEGACY = "shop-vectors-2", "legacy-vectors"  # servers in one process share moto's state: own buckets

# Three-dimensional "embeddings": direction says what a product is; the text holds the exact terms.
PRODUCTS = {
    "p1": ([1.0, 0.0, 0.0], "Trail running shoe XR-2250 with a rock plate", "shoe", 120, ["trail", "men"]),
    "p2": ([0.95, 0.05, 0.0], "Trail running shoe XR-2300, wider toe box", "shoe", 135, ["trail"]),
    "p3": ([0.9, 0.1, 0.1], "Road runner RX-100 for daily training runs", "shoe", 99, ["road"]),
    "p4": ([0.0, 1.0, 0.0], "Electric kettle KT-17 boils water fast", "kitchen", 45, ["home"]),
    "p5": ([0.1, 0.9, 0.0], "Gooseneck kettle GK-5 for pour-over coffee", "kitchen", 60, []),
    "p6": ([0.0, 0.0, 1.0], "Headlamp HL-300 lights the trail at night", "outdoor", 30, ["trail", "night"]),
}


def client(endpoint: str) -> Any:
    return boto3.client(
        "s3vectors",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAwsServer]:
    running = LocalAwsServer(access_key="testing").start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def s3v(server: LocalAwsServer) -> Any:
    s3v = client(server.url)
    s3v.create_vector_bucket(vectorBucketName=BUCKET)
    s3v.create_index(
        vectorBucketName=BUCKET,
        indexName=INDEX,
        dataType="float32",
        dimension=3,
        distanceMetric="cosine",
        metadataConfiguration={
            "nonFilterableMetadataKeys": ["text"],
            "textSearchConfigurations": [{"metadataKey": "text", "language": "en"}, {"metadataKey": "name"}],
        },
    )
    s3v.put_vectors(
        vectorBucketName=BUCKET,
        indexName=INDEX,
        vectors=[
            {
                "key": key,
                "data": {"float32": vector},
                "metadata": {
                    "text": text,
                    "name": text.split(",")[0],
                    "category": cat,
                    "price": price,
                    **({"tags": tags} if tags else {}),
                },
            }
            for key, (vector, text, cat, price, tags) in PRODUCTS.items()
        ],
    )
    return s3v


def query(s3v: Any, bucket: str = BUCKET, /, **params: Any) -> dict[str, Any]:
    return s3v.query_vectors(vectorBucketName=bucket, indexName=INDEX, **params)


def keys(answer: dict[str, Any]) -> list[str]:
    return [v["key"] for v in answer["vectors"]]


def cosine_order(vector: list[float], candidates: list[str]) -> list[str]:
    q = np.asarray(vector)

    def distance(key: str) -> float:
        v = np.asarray(PRODUCTS[key][0])
        return 1 - float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v)))

    return sorted(candidates, key=distance)


def test_get_index_reports_the_mode_and_each_analyzer(s3v: Any) -> None:
    index = s3v.get_index(vectorBucketName=BUCKET, indexName=INDEX)["index"]
    assert index["indexMode"] == "ENHANCED"
    configuration = index["metadataConfiguration"]
    assert configuration["nonFilterableMetadataKeys"] == ["text"]
    assert configuration["textSearchConfigurations"] == [
        {"metadataKey": "text", "language": "en", "status": "ACTIVE"},
        {"metadataKey": "name", "status": "ACTIVE"},
    ]


def test_vector_search_is_nearest_first_by_the_index_metric(s3v: Any) -> None:
    vector = [0.7, 0.3, 0.2]
    answer = query(s3v, topK=6, queryVector={"float32": vector}, returnDistance=True, returnScores=True)
    assert keys(answer) == cosine_order(vector, list(PRODUCTS))
    assert answer["distanceMetric"] == "cosine"
    distances = [v["distance"] for v in answer["vectors"]]
    assert distances == sorted(distances)
    assert all("scores" not in v for v in answer["vectors"])  # returnScores adds nothing to vector-only requests


def test_full_text_search_ranks_by_bm25_with_the_language_analyzer(s3v: Any) -> None:
    answer = query(s3v, topK=10, queryTexts=[{"text": "XR-2250", "metadataKey": "text"}], returnScores=True)
    assert keys(answer)[0] == "p1"  # both of its terms; p2 shares only "xr"
    assert set(keys(answer)) == {"p1", "p2"}
    scores = [v["scores"]["bm25Scores"][0] for v in answer["vectors"]]
    assert all(s["metadataKey"] == "text" for s in scores) and scores[0]["score"] > scores[1]["score"] > 0
    assert all("distance" not in v and "fused" not in v["scores"] for v in answer["vectors"])
    # "run", "runs" and "running" share the English stem; the standard analyzer of "name" does not stem
    stemmed = keys(query(s3v, topK=10, queryTexts=[{"text": "run", "metadataKey": "text"}]))
    assert set(stemmed) == {"p1", "p2", "p3"}
    unstemmed = keys(query(s3v, topK=10, queryTexts=[{"text": "run", "metadataKey": "name"}]))
    assert unstemmed == []


def test_hybrid_fuses_the_two_rankings_with_reciprocal_rank_fusion(s3v: Any) -> None:
    vector = {"float32": [0.0, 0.2, 1.0]}  # nearest the headlamp, then the kettles
    texts = [{"text": "trail shoe XR-2300", "metadataKey": "text"}]
    by_vector = keys(query(s3v, topK=6, queryVector=vector))
    by_text = keys(query(s3v, topK=6, queryTexts=texts))
    answer = query(s3v, topK=6, queryVector=vector, queryTexts=texts, returnScores=True, returnDistance=True)
    for hit in answer["vectors"]:
        expected = sum(
            1 / (60 + ranking.index(hit["key"]) + 1) for ranking in (by_vector, by_text) if hit["key"] in ranking
        )
        assert math.isclose(hit["scores"]["fused"], expected, rel_tol=1e-9)
        if hit["key"] in by_vector:
            assert hit["scores"]["vectorDistance"] == hit["distance"]
    fused = [hit["scores"]["fused"] for hit in answer["vectors"]]
    assert fused == sorted(fused, reverse=True)
    assert set(keys(answer)) == set(by_vector) | set(by_text)


@pytest.mark.parametrize(
    ("filter_doc", "expected"),
    [
        ({"category": "shoe"}, {"p1", "p2", "p3"}),
        ({"category": {"$eq": "kitchen"}}, {"p4", "p5"}),
        ({"category": {"$ne": "shoe"}}, {"p4", "p5", "p6"}),
        ({"price": {"$gt": 99}}, {"p1", "p2"}),
        ({"price": {"$gte": 99, "$lte": 120}}, {"p1", "p3"}),
        ({"price": {"$lt": 45}}, {"p6"}),
        ({"category": {"$in": ["outdoor", "kitchen"]}}, {"p4", "p5", "p6"}),
        ({"category": {"$nin": ["shoe", "kitchen"]}}, {"p6"}),
        ({"tags": "trail"}, {"p1", "p2", "p6"}),
        ({"tags": {"$exists": False}}, {"p5"}),
        ({"category": {"$startsWith": "kit"}}, {"p4", "p5"}),
        ({"$and": [{"tags": "trail"}, {"price": {"$lt": 130}}]}, {"p1", "p6"}),
        ({"$or": [{"category": "outdoor"}, {"price": {"$gte": 135}}]}, {"p2", "p6"}),
    ],
)
def test_every_filter_operator_applies_before_the_search_on_enhanced(
    s3v: Any, filter_doc: dict[str, Any], expected: set[str]
) -> None:
    vector = [0.0, 0.0, 1.0]
    found = keys(query(s3v, topK=10, queryVector={"float32": vector}, filter=filter_doc))
    assert found == cosine_order(vector, sorted(expected))
    texts = [{"text": "trail kettle shoe headlamp", "metadataKey": "text"}]
    assert set(keys(query(s3v, topK=10, queryTexts=texts, filter=filter_doc))) <= expected


def test_paging_continues_the_same_ranking_with_next_token(server: LocalAwsServer) -> None:
    s3v = client(server.url)
    s3v.create_index(
        vectorBucketName=BUCKET, indexName="many", dataType="float32", dimension=2, distanceMetric="euclidean"
    )
    rng = np.random.default_rng(7)
    points = rng.normal(size=(250, 2)).astype(np.float32)
    for start in range(0, 250, 100):
        s3v.put_vectors(
            vectorBucketName=BUCKET,
            indexName="many",
            vectors=[
                {"key": f"v{i:03d}", "data": {"float32": points[i].tolist()}}
                for i in range(start, min(250, start + 100))
            ],
        )
    params = {"vectorBucketName": BUCKET, "indexName": "many", "topK": 230, "queryVector": {"float32": [0.0, 0.0]}}
    pages = [s3v.query_vectors(**params)]
    while "nextToken" in pages[-1]:
        pages.append(s3v.query_vectors(**params, nextToken=pages[-1]["nextToken"]))
    assert [len(p["vectors"]) for p in pages] == [100, 100, 30]
    expected = [f"v{i:03d}" for i in np.argsort(np.linalg.norm(points, axis=1), kind="stable")[:230]]
    assert [v["key"] for p in pages for v in p["vectors"]] == expected
    with pytest.raises(ClientError, match="different request"):
        s3v.query_vectors(**{**params, "topK": 200}, nextToken=pages[0]["nextToken"])
    paginated = s3v.get_paginator("query_vectors").paginate(**params)
    assert [v["key"] for page in paginated for v in page["vectors"]] == expected


def test_writes_and_deletes_are_searchable_at_once(s3v: Any) -> None:
    s3v.put_vectors(
        vectorBucketName=BUCKET,
        indexName=INDEX,
        vectors=[
            {
                "key": "p7",
                "data": {"float32": [0.0, 0.0, 1.0]},
                "metadata": {"text": "Lantern LT-9 folding", "category": "outdoor"},
            }
        ],
    )
    assert keys(query(s3v, topK=5, queryTexts=[{"text": "LT-9", "metadataKey": "text"}])) == ["p7"]
    s3v.put_vectors(
        vectorBucketName=BUCKET,
        indexName=INDEX,
        vectors=[
            {
                "key": "p7",
                "data": {"float32": [0.0, 0.0, 1.0]},
                "metadata": {"text": "Lantern LT-9 compact", "category": "outdoor"},
            }
        ],
    )
    assert keys(query(s3v, topK=5, queryTexts=[{"text": "folding", "metadataKey": "text"}])) == []
    assert keys(query(s3v, topK=5, queryTexts=[{"text": "compact", "metadataKey": "text"}])) == ["p7"]
    s3v.delete_vectors(vectorBucketName=BUCKET, indexName=INDEX, keys=["p7"])
    assert keys(query(s3v, topK=5, queryTexts=[{"text": "lantern", "metadataKey": "text"}])) == []
    assert "p7" not in keys(query(s3v, topK=10, queryVector={"float32": [0.0, 0.0, 1.0]}))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "queryVector, queryTexts, or both"),
        ({"queryVector": {"float32": [1.0, 0.0]}}, "dimensions"),
        ({"queryTexts": [{"text": "x", "metadataKey": "category"}]}, "not full-text searchable"),
        ({"queryVector": {"float32": [1.0, 0.0, 0.0]}, "filter": {"text": "x"}}, "non-filterable"),
        ({"queryVector": {"float32": [1.0, 0.0, 0.0]}, "queryMode": "CLASSIC"}, "ENHANCED index"),
        ({"queryVector": {"float32": [1.0, 0.0, 0.0]}, "filter": {"price": {"$near": 1}}}, "unknown operator"),
        ({"queryVector": {"float32": [1.0, 0.0, 0.0]}, "nextToken": "bm90IGEgdG9rZW4="}, "nextToken"),
        (
            {"queryTexts": [{"text": "a", "metadataKey": "text"}, {"text": "b", "metadataKey": "text"}]},
            "distinct metadata key",
        ),
    ],
)
def test_requests_the_service_refuses_are_refused(s3v: Any, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientError) as caught:
        query(s3v, topK=3, **params)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert message in caught.value.response["Error"]["Message"]


def test_put_vectors_keeps_to_the_metadata_limits(s3v: Any) -> None:
    too_big = {"key": "big", "data": {"float32": [1.0, 0.0, 0.0]}, "metadata": {"category": "x" * 3000}}
    with pytest.raises(ClientError, match="filterable metadata"):
        s3v.put_vectors(vectorBucketName=BUCKET, indexName=INDEX, vectors=[too_big])
    assert s3v.get_vectors(vectorBucketName=BUCKET, indexName=INDEX, keys=["big"])["vectors"] == []


def test_text_search_keys_are_added_and_deleted_in_place_and_build_first() -> None:
    server = LocalAwsServer(access_key="testing", analyzer_build_seconds=0.6).start()
    try:
        s3v = client(server.url)
        s3v.create_vector_bucket(vectorBucketName=OTHER)
        s3v.create_index(
            vectorBucketName=OTHER, indexName=INDEX, dataType="float32", dimension=3, distanceMetric="cosine"
        )
        s3v.put_vectors(
            vectorBucketName=OTHER,
            indexName=INDEX,
            vectors=[{"key": "k", "data": {"float32": [1.0, 0.0, 0.0]}, "metadata": {"body": "Le vélo électrique"}}],
        )
        arn = s3v.update_metadata_configuration(
            vectorBucketName=OTHER,
            indexName=INDEX,
            add={"textSearchConfigurations": [{"metadataKey": "body", "language": "fr"}]},
        )["indexArn"]
        assert arn.endswith(f"/index/{INDEX}")
        status = s3v.get_index(vectorBucketName=OTHER, indexName=INDEX)["index"]["metadataConfiguration"]
        assert status["textSearchConfigurations"] == [{"metadataKey": "body", "language": "fr", "status": "BUILDING"}]
        with pytest.raises(ClientError, match="BUILDING"):
            query(s3v, OTHER, topK=1, queryTexts=[{"text": "électriques", "metadataKey": "body"}])
        import time

        time.sleep(0.7)
        assert keys(query(s3v, OTHER, topK=1, queryTexts=[{"text": "électriques", "metadataKey": "body"}])) == [
            "k"
        ]  # French stem
        with pytest.raises(ClientError) as conflict:
            s3v.update_metadata_configuration(
                vectorBucketName=OTHER, indexName=INDEX, add={"textSearchConfigurations": [{"metadataKey": "body"}]}
            )
        assert conflict.value.response["Error"]["Code"] == "ConflictException"
        s3v.update_metadata_configuration(
            vectorBucketName=OTHER, indexName=INDEX, delete={"textSearchConfigurations": [{"metadataKey": "body"}]}
        )
        index = s3v.get_index(vectorBucketName=OTHER, indexName=INDEX)["index"]
        assert "textSearchConfigurations" not in index["metadataConfiguration"]
        with pytest.raises(ClientError, match="CLASSIC is only"):
            s3v.update_index_mode(vectorBucketName=OTHER, indexName=INDEX, indexMode="CLASSIC")
        with pytest.raises(ClientError, match="CLASSIC is only"):
            s3v.put_vector_bucket_default_index_mode(vectorBucketName=OTHER, defaultIndexMode="CLASSIC")
    finally:
        server.stop()


def test_classic_indexes_filter_during_the_search_and_have_no_starts_with() -> None:
    server = LocalAwsServer(access_key="testing", legacy_buckets=True).start()
    try:
        s3v = client(server.url)
        s3v.create_vector_bucket(vectorBucketName=LEGACY)
        s3v.create_index(
            vectorBucketName=LEGACY, indexName=INDEX, dataType="float32", dimension=2, distanceMetric="euclidean"
        )
        assert s3v.get_index(vectorBucketName=LEGACY, indexName=INDEX)["index"]["indexMode"] == "CLASSIC"
        near = [{"key": f"n{i}", "data": {"float32": [0.01 * i, 0.0]}, "metadata": {"kind": "near"}} for i in range(40)]
        far = [{"key": "far", "data": {"float32": [50.0, 0.0]}, "metadata": {"kind": "far"}}]
        s3v.put_vectors(vectorBucketName=LEGACY, indexName=INDEX, vectors=near + far)
        vector = {"float32": [0.0, 0.0]}
        # the one vector the filter keeps lies beyond the nearest the search looks at: CLASSIC misses it
        assert keys(query(s3v, LEGACY, topK=2, queryVector=vector, filter={"kind": "far"})) == []
        assert keys(query(s3v, LEGACY, topK=2, queryVector=vector, filter={"kind": "far"}, queryMode="ENHANCED")) == [
            "far"
        ]
        with pytest.raises(ClientError, match=r"\$startsWith needs an ENHANCED index"):
            query(s3v, LEGACY, topK=2, queryVector=vector, filter={"kind": {"$startsWith": "f"}})
        with pytest.raises(ClientError, match="UpdateMetadataConfiguration needs an ENHANCED index"):
            s3v.update_metadata_configuration(
                vectorBucketName=LEGACY, indexName=INDEX, add={"textSearchConfigurations": [{"metadataKey": "kind"}]}
            )
        s3v.update_index_mode(vectorBucketName=LEGACY, indexName=INDEX, indexMode="ENHANCED")
        assert keys(query(s3v, LEGACY, topK=2, queryVector=vector, filter={"kind": "far"})) == ["far"]
        # the bucket's default applies to indexes created after it is set, not to existing ones
        s3v.put_vector_bucket_default_index_mode(vectorBucketName=LEGACY, defaultIndexMode="ENHANCED")
        s3v.create_index(
            vectorBucketName=LEGACY, indexName="later", dataType="float32", dimension=2, distanceMetric="cosine"
        )
        assert s3v.get_index(vectorBucketName=LEGACY, indexName="later")["index"]["indexMode"] == "ENHANCED"
        assert keys(query(s3v, LEGACY, topK=2, queryVector=vector, filter={"kind": {"$startsWith": "f"}})) == ["far"]
    finally:
        server.stop()


def test_everything_else_still_reaches_moto(s3v: Any, server: LocalAwsServer) -> None:
    listed = s3v.list_vectors(vectorBucketName=BUCKET, indexName=INDEX, returnMetadata=True)["vectors"]
    assert {v["key"] for v in listed} >= set(PRODUCTS)
    sqs = boto3.client(
        "sqs",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="t",
    )
    assert sqs.create_queue(QueueName="still-moto")["QueueUrl"].endswith("/still-moto")


def test_reads_of_an_index_are_safe_against_concurrent_writes(s3v: Any) -> None:
    """moto iterates an index's vectors unguarded; the front serialises reads of an index with its writes, so a
    GetVectors or ListVectors racing PutVectors/DeleteVectors never fails (the service has no such 500)."""
    index = "concurrent"
    s3v.create_index(vectorBucketName=BUCKET, indexName=index, dataType="float32", dimension=4, distanceMetric="cosine")
    s3v.put_vectors(
        vectorBucketName=BUCKET,
        indexName=index,
        vectors=[{"key": f"seed{i}", "data": {"float32": [1.0, 0.0, 0.0, float(i)]}} for i in range(500)],
    )
    reader = boto3.client(  # no retries: a 500 must show, not be retried away
        "s3vectors",
        endpoint_url=s3v.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )
    errors: list[Exception] = []
    stop = threading.Event()

    def write() -> None:
        writer = client(s3v.meta.endpoint_url)
        n = 0
        while not stop.is_set():
            vectors = [{"key": f"w{n}-{i}", "data": {"float32": [0.0, 1.0, 0.0, float(i)]}} for i in range(20)]
            writer.put_vectors(vectorBucketName=BUCKET, indexName=index, vectors=vectors)
            writer.delete_vectors(vectorBucketName=BUCKET, indexName=index, keys=[v["key"] for v in vectors[:10]])
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(40):
            try:
                got = reader.get_vectors(vectorBucketName=BUCKET, indexName=index, keys=["seed1", "seed499"])
                assert sorted(v["key"] for v in got["vectors"]) == ["seed1", "seed499"]
                reader.list_vectors(vectorBucketName=BUCKET, indexName=index, maxResults=1000)
            except ClientError as exc:
                errors.append(exc)
    finally:
        stop.set()
        writer.join(30)
    assert errors == []
