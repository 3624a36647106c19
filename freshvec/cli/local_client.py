"""The CLI's side of local mode: the resources of a running ``freshvec local up`` and its control API.

The state file (``freshvec.state``) names the moto endpoint and the access key it requires, the resource names,
the control API's URL and the token the control API requires; every control request sends that token in
``state.CONTROL_TOKEN_HEADER``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from freshvec import state
from freshvec.cli.errors import OperatorError, RefusedKeyError
from freshvec.cli.stack import StackResources


class UnreachableError(OperatorError):
    """Nothing answers at the control URL of the state file: the local pipeline is not running."""


def load_local_state(path: str | Path | None = None) -> StackResources:
    """The resources of a running ``freshvec local up``, from the state file it writes."""
    state_path = state.local_state_path(path)
    try:
        doc = state.read_local_state(state_path)
    except (FileNotFoundError, ValueError) as exc:  # both say what is wrong and what to do
        raise OperatorError(str(exc)) from exc
    try:
        endpoint, control, region = doc["endpoint"], doc["control"], doc["region"]
        outputs = {str(k): str(v) for k, v in doc["outputs"].items()}
        token, access_key = doc.get("token"), doc.get("aws_access_key")
        if token is not None and not isinstance(token, str):
            raise TypeError("the token is not a string")
        if access_key is not None and not isinstance(access_key, str):
            raise TypeError("the aws_access_key is not a string")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OperatorError(f"{state_path} is not a freshvec local state file: {exc}") from exc
    batch = doc.get("batch_endpoint")
    stack_id = doc.get("stack_id")
    return StackResources.from_outputs(
        "local",
        region,
        outputs,
        endpoint_url=endpoint,
        control_url=control,
        control_token=token or None,
        batch_endpoint_url=batch if isinstance(batch, str) else None,
        stack_id=stack_id if isinstance(stack_id, str) else None,
        aws_access_key=access_key or None,
    )


def control_headers(resources: StackResources) -> dict[str, str]:
    """The headers every control API request carries: the token from the state file, when it has one."""
    return {state.CONTROL_TOKEN_HEADER: resources.control_token} if resources.control_token else {}


def control_request(resources: StackResources, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One call to the local control API; a stopped local pipeline becomes a clear OperatorError."""
    import requests

    url = f"{(resources.control_url or '').rstrip('/')}/{path}"
    try:
        response = requests.request(method, url, json=body, headers=control_headers(resources), timeout=60)
    except requests.ConnectionError as exc:
        raise UnreachableError(
            f"local pipeline not reachable at {resources.control_url}; is `freshvec local up` running?"
        ) from exc
    if response.status_code >= 400:
        try:
            reason = response.json().get("error") or response.text
        except ValueError:
            reason = response.text
        refused = RefusedKeyError if (path, response.status_code) == ("rows/read", 400) else OperatorError
        raise refused(f"local pipeline refused {path} ({response.status_code}): {str(reason).strip()[:200]}")
    try:
        return response.json()
    except ValueError as exc:
        raise OperatorError(f"local pipeline answered {path} with something that is not JSON") from exc


def read_rows(resources: StackResources, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``POST /rows/read``: each key's current row (None when gone) and version, in the order of ``keys``."""
    answer = control_request(resources, "POST", "rows/read", {"keys": keys})
    rows = answer.get("rows")
    if not isinstance(rows, list) or len(rows) != len(keys):
        raise OperatorError("local pipeline answered rows/read with the wrong number of rows")
    return rows


def scan_rows(resources: StackResources, segment: int, segments: int, after: str | None, limit: int) -> dict[str, Any]:
    """``POST /rows/scan``: one page of a key-hash segment's rows with versions, and the cursor after it."""
    body = {"segment": segment, "segments": segments, "after": after, "limit": limit}
    answer = control_request(resources, "POST", "rows/scan", body)
    if not isinstance(answer.get("rows"), list):
        raise OperatorError("local pipeline answered rows/scan without rows")
    return answer


class LocalKinesis:
    """The ``put_records`` of a Kinesis client, through the control API (``POST /stream/put``).

    The CLI's re-syncs go through the one writer (``KinesisWriter``) as against AWS; locally its calls reach
    the stream through the pipeline's own producer, so they never race the forwarder's puts in moto.
    """

    def __init__(self, resources: StackResources) -> None:
        self.resources = resources

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        if StreamName != self.resources.stream_name:
            raise OperatorError(f"the local pipeline's change stream is {self.resources.stream_name}, not {StreamName}")
        body = {
            "records": [
                {"data_b64": base64.b64encode(r["Data"]).decode("ascii"), "partition_key": r["PartitionKey"]}
                for r in Records
            ]
        }
        return control_request(self.resources, "POST", "stream/put", body)


def local_batch_clients(resources: StackResources) -> tuple[Any, Any]:
    """boto3 ``bedrock`` and ``service-quotas`` clients for local mode's batch inference stand-in, sending the
    token it requires with every request."""
    import boto3
    from botocore.config import Config

    if not resources.batch_endpoint_url:
        raise OperatorError("the local pipeline offers no batch inference; restart it with `freshvec local up`")
    token = resources.control_token or ""

    def with_token(request: Any, **_: Any) -> None:
        request.headers[state.CONTROL_TOKEN_HEADER] = token

    clients = []
    for service in ("bedrock", "service-quotas"):
        client = boto3.client(
            service,
            endpoint_url=resources.batch_endpoint_url,
            region_name=resources.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the stand-in checks the token, not these
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )
        client.meta.events.register("before-sign.*.*", with_token)
        clients.append(client)
    return clients[0], clients[1]
