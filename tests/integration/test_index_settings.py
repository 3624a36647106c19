"""The index settings custom resource against the local S3 Vectors endpoint: mode and full-text keys applied in
place, idempotently, waiting for the analyzers, answering CloudFormation's pre-signed URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.index_settings import ACTIVE, BUILDING, apply_index_settings, remove_text_search
from freshvec.local.vectors.server import LocalAwsServer


@pytest.fixture(scope="module")
def legacy() -> Iterator[LocalAwsServer]:
    """Buckets as they were before 2026-09-30: indexes start CLASSIC."""
    server = LocalAwsServer(access_key="testing", legacy_buckets=True, analyzer_build_seconds=0.3).start()
    yield server
    server.stop()


def _client(server: LocalAwsServer) -> Any:
    return boto3.client(
        "s3vectors",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _store(server: LocalAwsServer, bucket: str) -> S3VectorsStore:
    s3v = _client(server)
    s3v.create_vector_bucket(vectorBucketName=bucket)
    s3v.create_index(vectorBucketName=bucket, indexName="idx", dataType="float32", dimension=2, distanceMetric="cosine")
    s3v.put_vectors(
        vectorBucketName=bucket,
        indexName="idx",
        vectors=[{"key": "a", "data": {"float32": [1.0, 0.0]}, "metadata": {"body": "Running shoes", "title": "X"}}],
    )
    return S3VectorsStore(s3v, bucket, "idx")


class Recorder:
    def __init__(self, store: S3VectorsStore) -> None:
        self.store, self.calls = store, []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def call(*args: Any) -> Any:
            if name != "describe":
                self.calls.append((name, *args))
            return method(*args)

        return call


def test_a_classic_index_becomes_enhanced_and_searchable_then_changes_in_place(legacy: LocalAwsServer) -> None:
    store = _store(legacy, "settings-a")
    assert store.describe().index_mode == "CLASSIC"
    recorder = Recorder(store)
    waits: list[float] = []
    status = apply_index_settings(recorder, "ENHANCED", {"body": "en"}, poll_s=0.1, sleep=waits.append)
    assert status == BUILDING or waits  # it waited while the analyzer was BUILDING
    assert recorder.calls == [("update_index_mode", "ENHANCED"), ("add_text_search", {"body": "en"})]
    assert apply_index_settings(store, "ENHANCED", {"body": "en"}, poll_s=0.2) == ACTIVE
    info = store.describe()
    assert (info.index_mode, info.text_search) == ("ENHANCED", (("body", "en", "ACTIVE"),))
    recorder.calls.clear()  # the same settings again: nothing to change
    assert apply_index_settings(recorder, "ENHANCED", {"body": "en"}, poll_s=0.1) == ACTIVE
    assert recorder.calls == []
    # a new language and a new key: the changed key is deleted and added again, the index stays
    apply_index_settings(recorder, "ENHANCED", {"body": "de", "title": None}, poll_s=0.2)
    assert recorder.calls == [("delete_text_search", ["body"]), ("add_text_search", {"body": "de", "title": None})]
    assert sorted(store.describe().text_search) == [("body", "de", "ACTIVE"), ("title", None, "ACTIVE")]
    assert store.get(["a"])["a"]["metadata"]["body"] == "Running shoes"  # nothing re-ingested
    apply_index_settings(store, "CLASSIC", {}, poll_s=0.1)  # text search off, back to CLASSIC (an older bucket)
    assert (store.describe().index_mode, store.describe().text_search) == ("CLASSIC", ())


def test_a_slow_build_is_reported_as_building_at_the_deadline(legacy: LocalAwsServer) -> None:
    store = _store(legacy, "settings-b")
    ticks = iter(range(100))
    status = apply_index_settings(
        store,
        "ENHANCED",
        {"body": None},
        deadline_s=3,
        poll_s=1,
        clock=lambda: float(next(ticks)),
        sleep=lambda _s: None,
    )
    assert status == BUILDING
    remove_text_search(store)
    assert store.describe().text_search == ()


@pytest.fixture
def cloudformation() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for CloudFormation's pre-signed response URL: records each PUT body."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/response", received
    server.shutdown()
    server.server_close()


def test_the_handler_answers_cloudformation_for_create_update_and_delete(
    legacy: LocalAwsServer, cloudformation: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdas.index_settings import handler as module

    _store(legacy, "settings-c")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3VECTORS", legacy.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    url, received = cloudformation
    context = SimpleNamespace(
        get_remaining_time_in_millis=lambda: 120_000,
        function_name="f",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        aws_request_id="r",
    )
    base = {
        "ResponseURL": url,
        "StackId": "stack",
        "RequestId": "req",
        "LogicalResourceId": "IndexSettings",
        "ResourceProperties": {
            "VectorBucketName": "settings-c",
            "IndexName": "idx",
            "IndexMode": "ENHANCED",
            "TextSearch": json.dumps({"body": "en"}),
        },
    }
    module.handler({**base, "RequestType": "Create"}, context)
    module.handler({**base, "RequestType": "Update", "PhysicalResourceId": "settings-c/idx"}, context)
    bad = {**base["ResourceProperties"], "IndexName": "missing"}
    module.handler({**base, "RequestType": "Update", "ResourceProperties": bad, "PhysicalResourceId": "x"}, context)
    module.handler({**base, "RequestType": "Delete", "PhysicalResourceId": "settings-c/idx"}, context)
    assert [(r["Status"], r["PhysicalResourceId"], r["Data"]) for r in received] == [
        ("SUCCESS", "settings-c/idx", {"Status": "ACTIVE"}),
        ("SUCCESS", "settings-c/idx", {"Status": "ACTIVE"}),
        ("FAILED", "x", {}),
        ("SUCCESS", "settings-c/idx", {}),
    ]
    assert "missing" in received[2]["Reason"]
    assert S3VectorsStore(_client(legacy), "settings-c", "idx").describe().text_search == ()
