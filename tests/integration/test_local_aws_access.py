"""Local mode's AWS endpoint answers only requests that name it by a loopback Host and are signed with its access
key: S3 Vectors (the front) and the services moto serves alike; a refusal is the service's own error, with no data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from freshvec.local.moto_process import MotoProcess
from freshvec.local.vectors.server import LocalAwsServer
from freshvec.state import CONTROL_TOKEN_HEADER

BUCKET, INDEX, STREAM = "guarded", "secrets", "guarded-changes"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAwsServer]:
    running = LocalAwsServer().start()  # a random key, as local mode runs it
    try:
        owner = client(running, "s3vectors")
        owner.create_vector_bucket(vectorBucketName=BUCKET)
        owner.create_index(
            vectorBucketName=BUCKET, indexName=INDEX, dataType="float32", dimension=2, distanceMetric="cosine"
        )
        owner.put_vectors(
            vectorBucketName=BUCKET, indexName=INDEX, vectors=[{"key": "private-row", "data": {"float32": [1, 0]}}]
        )
        client(running, "kinesis").create_stream(StreamName=STREAM, ShardCount=1)
        yield running
    finally:
        running.stop()


def client(server: LocalAwsServer, service: str, key: str | None = None, host: str | None = None, **config: Any):
    made = boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=server.access_key if key is None else key,
        aws_secret_access_key="whatever",
        config=Config(retries={"max_attempts": 1}, **config),
    )
    if host is not None:

        def foreign_host(request: Any, **_: Any) -> None:
            request.headers["Host"] = host

        made.meta.events.register(f"before-send.{made.meta.service_model.endpoint_prefix}.*", foreign_host)
    return made


def refusal(call: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"], str(error)


def port(server: LocalAwsServer) -> int:
    return int(urlsplit(server.url).port or 0)


def test_each_server_makes_its_own_random_key(server: LocalAwsServer) -> None:
    assert re.fullmatch(r"[0-9a-f]{40}", server.access_key)
    other = LocalAwsServer()
    try:
        assert other.access_key != server.access_key
    finally:
        other.stop()


def test_the_right_key_reaches_s3_vectors_and_the_moto_services(server: LocalAwsServer) -> None:
    listed = client(server, "s3vectors").list_vectors(vectorBucketName=BUCKET, indexName=INDEX)["vectors"]
    assert [v["key"] for v in listed] == ["private-row"]
    assert STREAM in client(server, "kinesis").list_streams()["StreamNames"]
    # localhost names the endpoint as well as 127.0.0.1 does
    named = client(server, "kinesis", host=f"localhost:{port(server)}")
    assert STREAM in named.list_streams()["StreamNames"]


@pytest.mark.parametrize("key", ["testing", "", "x" * 40])
def test_a_wrong_key_is_refused_like_an_unknown_key_and_sees_nothing(server: LocalAwsServer, key: str) -> None:
    s3v = client(server, "s3vectors", key=key or "AKIA")
    status, code, text = refusal(lambda: s3v.list_vectors(vectorBucketName=BUCKET, indexName=INDEX))
    assert (status, code) == (403, "UnrecognizedClientException") and "private-row" not in text
    status, code, text = refusal(lambda: s3v.delete_vectors(vectorBucketName=BUCKET, indexName=INDEX, keys=["x"]))
    assert (status, code) == (403, "UnrecognizedClientException")
    kinesis = client(server, "kinesis", key=key or "AKIA")
    status, code, text = refusal(kinesis.list_streams)
    assert (status, code) == (403, "UnrecognizedClientException") and STREAM not in text
    status, code, _ = refusal(lambda: client(server, "s3", key=key or "AKIA").list_buckets())
    assert (status, code) == (403, "InvalidAccessKeyId")
    status, code, _ = refusal(lambda: client(server, "sqs", key=key or "AKIA").list_queues())
    assert (status, code) == (403, "UnrecognizedClientException")
    # nothing changed: the owner still sees the vector
    owner = client(server, "s3vectors")
    assert [v["key"] for v in owner.list_vectors(vectorBucketName=BUCKET, indexName=INDEX)["vectors"]] == [
        "private-row"
    ]


def test_a_request_without_a_key_is_refused(server: LocalAwsServer) -> None:
    unsigned = client(server, "kinesis", signature_version=UNSIGNED)
    assert refusal(unsigned.list_streams)[:2] == (403, "UnrecognizedClientException")
    raw = requests.post(f"{server.url}/ListVectors", json={"vectorBucketName": BUCKET, "indexName": INDEX}, timeout=5)
    assert raw.status_code == 403 and "private-row" not in raw.text
    assert requests.post(f"{server.url}/moto-api/reset", timeout=5).status_code == 403  # nor may it forget all
    assert requests.get(f"{server.url}/moto-api/data.json", timeout=5).status_code == 403


def test_a_foreign_host_is_refused_even_with_the_right_key(server: LocalAwsServer) -> None:
    for host in ("attacker.example", f"attacker.example:{port(server)}", f"127.0.0.1:{port(server) + 1}"):
        s3v = client(server, "s3vectors", host=host)
        status, code, text = refusal(lambda s3v=s3v: s3v.list_vectors(vectorBucketName=BUCKET, indexName=INDEX))
        assert (status, code) == (403, "AccessDeniedException") and "private-row" not in text
        kinesis = client(server, "kinesis", host=host)
        assert refusal(kinesis.list_streams)[:2] == (403, "AccessDeniedException")


def test_a_presigned_url_carries_the_key_and_the_moto_api_takes_it_in_the_token_header(
    server: LocalAwsServer,
) -> None:
    s3 = client(server, "s3")
    s3.create_bucket(Bucket="presigned")
    s3.put_object(Bucket="presigned", Key="k", Body=b"body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "presigned", "Key": "k"})
    assert requests.get(url, timeout=5).content == b"body"
    forged = client(server, "s3", key="x" * 40).generate_presigned_url(
        "get_object", Params={"Bucket": "presigned", "Key": "k"}
    )
    assert requests.get(forged, timeout=5).status_code == 403
    wrong = requests.get(f"{server.url}/moto-api/data.json", headers={CONTROL_TOKEN_HEADER: "x"}, timeout=5)
    assert wrong.status_code == 403
    headers = {CONTROL_TOKEN_HEADER: server.access_key}
    right = requests.get(f"{server.url}/moto-api/data.json", headers=headers, timeout=5)
    assert right.status_code == 200


def test_the_child_process_server_tells_its_key_to_the_parent_only() -> None:
    child = MotoProcess()
    server = child.wait_ready()
    try:
        assert re.fullmatch(r"[0-9a-f]{40}", server.access_key)
        assert server.client("kinesis").list_streams()["StreamNames"] == []
        stranger = boto3.client(
            "kinesis", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        assert refusal(stranger.list_streams)[:2] == (403, "UnrecognizedClientException")
        with open(f"/proc/{child._child.pid}/cmdline", "rb") as cmdline:
            assert server.access_key.encode() not in cmdline.read()  # other users can read a command line
    finally:
        server.stop()
