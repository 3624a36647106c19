"""`freshvec local up` as a user runs it: the state file, the control API, bad input, and a clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from freshvec import constants as c
from freshvec.cli import local_client
from freshvec.state import CONTROL_TOKEN_HEADER

# Every stack output but the operator policy: local mode has no IAM.
# Local mode has no IAM: the stack's managed policies (operator, reader) have no local counterpart.
_IAM_OUTPUTS = ("OUT_OPERATOR_POLICY_ARN", "OUT_READER_POLICY_ARN")
OUTPUT_NAMES = [getattr(c, name) for name in dir(c) if name.startswith("OUT_") and name not in _IAM_OUTPUTS]
FRESHVEC = Path(sys.executable).with_name("freshvec")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("local") / "state.json"
    process = subprocess.Popen(
        [str(FRESHVEC), "local", "up", "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "FRESHVEC_LOCAL_STATE": str(state)},
    )
    deadline = time.monotonic() + 90
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state.exists(), process.stdout.read() if process.poll() is not None else "no state file after 90 s"
    try:
        yield {"process": process, "path": state, "state": json.loads(state.read_text())}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def authorised(stack: dict[str, Any]) -> dict[str, str]:
    return {CONTROL_TOKEN_HEADER: stack["state"]["token"]}


def call(stack: dict[str, Any], method: str, path: str, body: Any = None) -> requests.Response:
    url = f"{stack['state']['control']}/{path}"
    return requests.request(method, url, json=body, headers=authorised(stack), timeout=60)


def test_state_file_holds_the_endpoint_the_control_url_and_every_output(stack: dict[str, Any]) -> None:
    state = stack["state"]
    assert state["endpoint"].startswith("http://127.0.0.1:")
    assert state["control"].startswith("http://127.0.0.1:")
    assert sorted(state["outputs"]) == sorted(OUTPUT_NAMES)
    config = json.loads(state["outputs"][c.OUT_PIPELINE_CONFIG])
    assert config["embedding"] == {
        "provider": "local",
        "model_id": c.LOCAL_WORDLLAMA,
        "dimensions": 256,
        "normalize": True,
        "max_concurrency": 8,
        "adaptive_rate": True,
    }
    # The operator CLI reads the same file.
    resources = local_client.load_local_state(stack["path"])
    assert resources.is_local
    # ... including the Bedrock batch stand-in, reached with the same token.
    assert state["batch_endpoint"].startswith("http://127.0.0.1:")
    assert resources.batch_endpoint_url == state["batch_endpoint"]
    bedrock, quotas = local_client.local_batch_clients(resources)
    assert bedrock.list_model_invocation_jobs()["invocationJobSummaries"] == []
    names = {q["QuotaName"] for q in quotas.list_service_quotas(ServiceCode="bedrock")["Quotas"]}
    assert "Minimum number of records per batch inference job for WordLlama L2 Supercat" in names
    assert (resources.batch_bucket, resources.batch_role_arn) == (
        state["outputs"][c.OUT_BATCH_BUCKET],
        state["outputs"][c.OUT_BATCH_ROLE_ARN],
    )


def test_rows_written_through_the_api_become_searchable(stack: dict[str, Any]) -> None:
    rows = [
        {"title": "Glacier Run", "overview": "Two climbers race a storm across a glacier.", "vote_count": 5},
        {"title": "Night Bakery", "overview": "A baker in Lyon feeds a sleepless city.", "rel_date": "2001-02-03"},
    ]
    assert call(stack, "POST", "rows/upsert", {"rows": rows}).json() == {"changes": 2}
    assert call(stack, "POST", "sync", {"timeout": 30}).json() == {"synced": True}
    hits = call(stack, "POST", "query", {"text": rows[1]["overview"], "k": 1}).json()["hits"]
    assert hits[0]["primary_key"] == {"title": "Night Bakery"}
    assert hits[0]["metadata"]["rel_date"] == 20010203
    filtered = call(stack, "POST", "query", {"text": "bread", "k": 5, "filter": {"vote_count": {"$gte": 5}}})
    assert [h["primary_key"]["title"] for h in filtered.json()["hits"]] == ["Glacier Run"]

    assert call(stack, "POST", "rows/delete", {"keys": [{"title": "Glacier Run"}]}).json() == {"changes": 1}
    assert call(stack, "POST", "sync", {}).json() == {"synced": True}
    stats = call(stack, "GET", "stats").json()
    assert stats["changes"] >= 3
    assert stats["pending"] == 0
    assert stats["vectors_deleted"] >= 1
    # What `freshvec --local status` shows comes from the same endpoint.
    assert local_client.control_request(local_client.load_local_state(stack["path"]), "GET", "stats")["changes"] >= 3


def test_rows_read_back_with_versions_and_scanned_by_segment(stack: dict[str, Any]) -> None:
    rows = [{"title": f"Scan {n}", "overview": f"text {n}"} for n in range(9)]
    call(stack, "POST", "rows/upsert", {"rows": rows})
    answer = call(stack, "POST", "rows/read", {"keys": [{"title": "Scan 3"}, {"title": "No Such Row"}]}).json()
    first, missing = answer["rows"]
    # A Keyspaces read is stamped with its start less the clock and visibility bounds, never a cell write time.
    started_us = int(time.time() * 1_000_000)
    assert first["row"]["overview"] == "text 3" and first["version"].startswith("ksread:")
    assert int(first["version"].split(":")[1]) < started_us
    assert missing == {"key": {"title": "No Such Row"}, "row": None, "version": first["version"]}  # absence, stamped
    seen: list[str] = []
    for segment in range(3):  # three segments, pages of two: every row once, in key order within a segment
        after = None
        while True:
            body = {"segment": segment, "segments": 3, "after": after, "limit": 2}
            page = call(stack, "POST", "rows/scan", body).json()
            titles = [item["row"]["title"] for item in page["rows"]]
            assert titles == sorted(titles) and all(item["version"] for item in page["rows"])
            seen.extend(titles)
            after = page["next"]
            if after is None:
                break
    scanned = [title for title in seen if title.startswith("Scan ")]
    assert sorted(scanned) == sorted(row["title"] for row in rows) and len(set(seen)) == len(seen)


def test_a_partial_update_with_a_column_ttl_and_a_client_timestamp(stack: dict[str, Any]) -> None:
    call(stack, "POST", "rows/upsert", {"rows": [{"title": "Column TTL", "overview": "kept", "vote_count": 1}]})
    stamp = int(time.time() * 1_000_000) + 1_000  # USING TIMESTAMP, a little ahead of the first write
    body = {"rows": [{"title": "Column TTL", "vote_count": 99}], "partial": True, "ttl_s": 1, "timestamp_us": stamp}
    assert call(stack, "POST", "rows/upsert", body).json() == {"changes": 1}
    (read,) = call(stack, "POST", "rows/read", {"keys": [{"title": "Column TTL"}]}).json()["rows"]
    assert read["row"]["vote_count"] == 99
    time.sleep(1.2)
    (read,) = call(stack, "POST", "rows/read", {"keys": [{"title": "Column TTL"}]}).json()["rows"]
    assert read["row"] == {"title": "Column TTL", "overview": "kept"}  # only the column written with a TTL went
    old = {"rows": [{"title": "Column TTL", "overview": "older"}], "partial": True, "timestamp_us": stamp - 10**7}
    call(stack, "POST", "rows/upsert", old)  # written with an older timestamp than the row's: last write wins
    (read,) = call(stack, "POST", "rows/read", {"keys": [{"title": "Column TTL"}]}).json()["rows"]
    assert read["row"]["overview"] == "kept"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("rows/upsert", {"rows": "not a list"}, "'rows' must be a list"),
        ("rows/upsert", {"rows": [{"overview": "no title"}]}, "title"),
        ("rows/upsert", {"rows": [{"title": "X", "vote_count": "many"}]}, "vote_count"),
        ("rows/delete", {"keys": [{}]}, "title"),
        ("rows/upsert", {"rows": [{"title": "X"}], "partial": "yes"}, "'partial' must be true or false"),
        ("rows/upsert", {"rows": [{"title": "X"}], "ttl_s": 0}, "'ttl_s'"),
        ("rows/upsert", {"rows": [{"title": "X"}], "timestamp_us": 1}, "2 days in the past"),
        ("rows/delete", {"keys": [{"title": "X"}], "timestamp_us": "now"}, "'timestamp_us'"),
        ("query", {"text": ""}, "'text'"),
        ("query", {"text": "x", "filter": {"year": {"$near": 1}}}, "$near"),
        ("query", {"text": "x", "k": 101}, "101"),
        ("rows/read", {"keys": [{"overview": "no title"}]}, "title"),
        ("rows/scan", {"segment": 3, "segments": 3}, "'segment' must be below 'segments'"),
        ("rows/scan", {"segments": 0}, "'segments' must be a whole number of at least 1"),
        ("rows/scan", {"limit": "all"}, "'limit'"),
        ("rows/scan", {"after": 7}, "'after'"),
        ("stream/put", {"records": [{"data_b64": "!!", "partition_key": "k"}]}, "not base64"),
        ("stream/put", {"records": [{"data_b64": "e30="}]}, "'partition_key'"),
    ],
)
def test_bad_requests_get_a_400_with_the_reason(stack: dict[str, Any], path: str, body: Any, message: str) -> None:
    response = call(stack, "POST", path, body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_endpoints_and_bad_json_are_refused(stack: dict[str, Any]) -> None:
    assert call(stack, "GET", "nothing").status_code == 404
    response = requests.post(
        f"{stack['state']['control']}/query", data=b"{not json", headers=authorised(stack), timeout=10
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_state_file_is_private_and_holds_a_random_token(stack: dict[str, Any]) -> None:
    assert stack["path"].stat().st_mode & 0o777 == 0o600
    assert len(stack["state"]["token"]) >= 32


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 43])
def test_requests_without_the_right_token_get_a_401(stack: dict[str, Any], token: str | None) -> None:
    headers = {} if token is None else {CONTROL_TOKEN_HEADER: token}
    changes_before = call(stack, "GET", "stats").json()["changes"]
    for method, path, body in [("GET", "stats", None), ("POST", "rows/upsert", {"rows": [{"title": "Intruder"}]})]:
        response = requests.request(
            method, f"{stack['state']['control']}/{path}", json=body, headers=headers, timeout=10
        )
        assert response.status_code == 401
        assert CONTROL_TOKEN_HEADER in response.json()["error"]
    assert call(stack, "GET", "stats").json()["changes"] == changes_before  # nothing was written


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1", "127.0.0.1:1", "0.0.0.0:{port}"])
def test_a_foreign_host_header_gets_a_403_even_with_the_token(stack: dict[str, Any], host: str) -> None:
    port = stack["state"]["control"].rsplit(":", 1)[1]
    headers = {**authorised(stack), "Host": host.format(port=port)}
    response = requests.get(f"{stack['state']['control']}/stats", headers=headers, timeout=10)
    assert response.status_code == 403
    assert "Host" in response.json()["error"]


def test_loopback_names_are_accepted_as_host(stack: dict[str, Any]) -> None:
    port = stack["state"]["control"].rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        headers = {**authorised(stack), "Host": host}
        assert requests.get(f"{stack['state']['control']}/stats", headers=headers, timeout=10).status_code == 200


def test_a_second_stack_on_the_same_state_file_is_refused_in_one_line(stack: dict[str, Any]) -> None:
    before = stack["path"].read_text()
    done = subprocess.run(
        [str(FRESHVEC), "local", "up", "--state", str(stack["path"])],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "a local stack is already running with state file" in done.stderr and "--state" in done.stderr
    assert "Traceback" not in done.stderr
    assert stack["path"].read_text() == before  # the running stack stays reachable


def test_a_busy_port_is_one_line_and_a_usage_error(stack: dict[str, Any], tmp_path: Path) -> None:
    busy = stack["state"]["control"].rsplit(":", 1)[1]
    done = subprocess.run(
        [str(FRESHVEC), "local", "up", "--state", str(tmp_path / "other.json"), "--port", busy],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{busy}" in done.stderr and "Traceback" not in done.stderr


def test_a_stale_state_file_is_replaced_saying_so(stack: dict[str, Any], tmp_path: Path) -> None:
    stale = tmp_path / "stale.json"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=False, capture_output=True, text=True
    )
    stale.write_text(json.dumps({**stack["state"], "pid": int(gone.stdout), "control": "http://127.0.0.1:9"}))
    busy = stack["state"]["control"].rsplit(":", 1)[1]  # stops it right after the state check
    done = subprocess.run(
        [str(FRESHVEC), "local", "up", "--state", str(stale), "--port", busy],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"replacing {stale}: the stack it names is no longer running" in done.stdout
    assert done.returncode == 2


def aws(stack: dict[str, Any], service: str, key: str | None = None, host: str | None = None) -> Any:
    """A plain boto3 client on the stack's endpoint (its access key unless ``key``; ``host``: a forged Host)."""
    state = stack["state"]
    client = boto3.client(
        service,
        endpoint_url=state["endpoint"],
        region_name=state["region"],
        aws_access_key_id=state["aws_access_key"] if key is None else key,
        aws_secret_access_key="anything",
        config=Config(retries={"max_attempts": 1}),
    )
    if host is not None:
        client.meta.events.register("before-send.*.*", lambda request, **_: request.headers.__setitem__("Host", host))
    return client


def test_the_aws_endpoint_answers_only_the_stacks_key_on_a_loopback_host(stack: dict[str, Any]) -> None:
    outputs = stack["state"]["outputs"]
    where = {"vectorBucketName": outputs[c.OUT_VECTOR_BUCKET], "indexName": outputs[c.OUT_VECTOR_INDEX]}
    assert len(stack["state"]["aws_access_key"]) == 40
    assert "vectors" in aws(stack, "s3vectors").list_vectors(**where)
    assert outputs[c.OUT_STREAM_NAME] in aws(stack, "kinesis").list_streams()["StreamNames"]
    port = stack["state"]["endpoint"].rsplit(":", 1)[1]
    for key, host, code in [
        ("testing", None, "UnrecognizedClientException"),
        ("AKIA" + "0" * 16, None, "UnrecognizedClientException"),
        (None, f"attacker.example:{port}", "AccessDeniedException"),  # the right key, a foreign Host
    ]:
        s3vectors, kinesis = aws(stack, "s3vectors", key, host), aws(stack, "kinesis", key, host)
        for call_it in (lambda: s3vectors.list_vectors(**where), kinesis.list_streams):  # noqa: B023 - called here
            with pytest.raises(ClientError) as refused:
                call_it()
            answer = refused.value.response
            assert (answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"]) == (403, code)


def test_ctrl_c_stops_the_stack_and_removes_the_state_file(stack: dict[str, Any]) -> None:
    process: subprocess.Popen[str] = stack["process"]
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "local stack stopped" in output
    # What it printed for an application's own clients: the endpoint and the key it takes.
    state = stack["state"]
    assert f"export AWS_ENDPOINT_URL_S3VECTORS={state['endpoint']} AWS_DEFAULT_REGION={state['region']}" in output
    assert f"export AWS_ACCESS_KEY_ID={state['aws_access_key']} AWS_SECRET_ACCESS_KEY=" in output
    assert not stack["path"].exists()


def test_a_stack_leaves_a_state_file_that_is_no_longer_its_own(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    process = subprocess.Popen(
        [str(FRESHVEC), "local", "up", "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not state.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state.exists()
        another = {**json.loads(state.read_text()), "token": "another stack's", "pid": os.getpid()}
        state.write_text(json.dumps(another))  # as another stack's `local up` would after this one's was stale
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        assert "local stack stopped" in output
        assert json.loads(state.read_text()) == another
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
