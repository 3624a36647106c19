"""Exact search over a moto S3 Vectors index: distance metrics, ordering, filters, limits."""

from __future__ import annotations

import math

import pytest

from freshvec.filters import FilterError
from freshvec.local.moto_server import MotoServer
from freshvec.local.search import ExactVectorSearch

BUCKET = "search-test"


def make_index(moto: MotoServer, metric: str) -> ExactVectorSearch:
    client = moto.client("s3vectors")
    client.create_vector_bucket(vectorBucketName=BUCKET)
    client.create_index(
        vectorBucketName=BUCKET, indexName="idx", dataType="float32", dimension=3, distanceMetric=metric
    )
    client.put_vectors(
        vectorBucketName=BUCKET,
        indexName="idx",
        vectors=[
            {"key": "x", "data": {"float32": [1.0, 0.0, 0.0]}, "metadata": {"year": 1993, "genre": "sci-fi"}},
            {"key": "x-long", "data": {"float32": [10.0, 0.0, 0.0]}, "metadata": {"year": 2001, "genre": "drama"}},
            {"key": "xy", "data": {"float32": [1.0, 1.0, 0.0]}, "metadata": {"year": 1997, "genre": "sci-fi"}},
            {"key": "z", "data": {"float32": [0.0, 0.0, 1.0]}, "metadata": {"year": 2010}},
        ],
    )
    return ExactVectorSearch(client, BUCKET, "idx")


def test_cosine_distance_ranks_by_angle_not_length(moto: MotoServer) -> None:
    search = make_index(moto, "cosine")
    hits = search.query([2.0, 0.0, 0.0], top_k=4)
    assert [h["key"] for h in hits[:2]] == ["x", "x-long"]  # same direction, any length: distance 0
    assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-6)
    assert hits[2]["key"] == "xy"
    assert hits[2]["distance"] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
    assert hits[3] == {"key": "z", "distance": pytest.approx(1.0, abs=1e-6), "metadata": {"year": 2010}}


def test_euclidean_distance_ranks_by_length_too(moto: MotoServer) -> None:
    search = make_index(moto, "euclidean")
    hits = search.query([2.0, 0.0, 0.0], top_k=2, return_metadata=False)
    assert hits == [
        {"key": "x", "distance": pytest.approx(1.0)},
        {"key": "xy", "distance": pytest.approx(math.sqrt(2))},
    ]


def test_filters_use_s3_vectors_semantics(moto: MotoServer) -> None:
    search = make_index(moto, "cosine")
    hits = search.query([1.0, 0.0, 0.0], top_k=10, filter_doc={"genre": "sci-fi", "year": {"$gte": 1995}})
    assert [h["key"] for h in hits] == ["xy"]
    hits = search.query([1.0, 0.0, 0.0], top_k=10, filter_doc={"genre": {"$exists": False}})
    assert [h["key"] for h in hits] == ["z"]
    assert search.query([1.0, 0.0, 0.0], top_k=10, filter_doc={"year": {"$gt": 3000}}) == []


def test_bad_requests_are_refused_like_the_service_would(moto: MotoServer) -> None:
    search = make_index(moto, "cosine")
    with pytest.raises(ValueError, match="top_k"):
        search.query([1.0, 0.0, 0.0], top_k=101)
    with pytest.raises(FilterError):
        search.query([1.0, 0.0, 0.0], top_k=1, filter_doc={"year": {"$near": 3}})
    with pytest.raises(ValueError, match="dimensions"):
        search.query([1.0, 0.0], top_k=1)
