"""The CLI's local mode client: the per-user state file, and the control API token on every request."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from freshvec import state
from freshvec.cli import local_client
from freshvec.cli.errors import OperatorError
from freshvec.cli.load import ControlApiRowWriter, TableSchema, WriteOp
from freshvec.config import default_config


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.path, self.headers.get(state.CONTROL_TOKEN_HEADER)))
        body = json.dumps({"changes": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def control() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    finally:
        server.shutdown()
        server.server_close()


def _write_state(path: Path, control: str, token: str | None) -> Path:
    doc: dict[str, Any] = {
        "endpoint": "http://127.0.0.1:9",
        "region": "us-east-1",
        "control": control,
        "outputs": {"PipelineConfig": default_config().to_json()},
    }
    if token is not None:
        doc["token"] = token
    state.write_local_state(path, doc)
    return path


def test_the_token_goes_with_every_control_request(tmp_path: Path, control: Any) -> None:
    url, seen = control
    resources = local_client.load_local_state(_write_state(tmp_path / "local.json", url, "s3cret"))
    assert "s3cret" not in repr(resources)  # never printed with the resources
    assert local_client.control_request(resources, "GET", "stats") == {"changes": 1}
    schema = TableSchema.from_config(resources.config)
    writer = ControlApiRowWriter(url, schema, headers=local_client.control_headers(resources))
    writer.write([WriteOp(1, "upsert", {"title": "Jaws"})], lambda _result: None)
    assert seen == [("/stats", "s3cret"), ("/rows/upsert", "s3cret")]


def test_no_token_no_header(tmp_path: Path, control: Any) -> None:
    url, seen = control
    resources = local_client.load_local_state(_write_state(tmp_path / "local.json", url, None))
    local_client.control_request(resources, "GET", "stats")
    assert seen == [("/stats", None)]


def test_the_state_file_is_per_user_not_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(state.LOCAL_STATE_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    _write_state(tmp_path / ".freshvec" / "local.json", "http://127.0.0.1:9", None)  # the old place is not read
    with pytest.raises(OperatorError, match="no local pipeline running") as missing:
        local_client.load_local_state()
    assert str(tmp_path / "xdg" / "freshvec" / "local.json") in str(missing.value)
    _write_state(tmp_path / "xdg" / "freshvec" / "local.json", "http://127.0.0.1:9", "t")
    assert local_client.load_local_state().control_token == "t"


def test_a_bad_state_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    path.write_text("{not json")
    with pytest.raises(OperatorError, match="is not a freshvec local state file"):
        local_client.load_local_state(path)
    path.write_text(json.dumps({"endpoint": "x"}))
    with pytest.raises(OperatorError, match="is not a freshvec local state file"):
        local_client.load_local_state(path)
