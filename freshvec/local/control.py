"""The control API of a running local stack (``freshvec local up``), and the state file that points at it.

The state file (``.freshvec/local.json``, or ``$FRESHVEC_LOCAL_STATE``) tells ``freshvec --local ...``
where the moto endpoint is, the resource names (the same keys as the CloudFormation outputs) and the
control URL. The control API is a small JSON-over-HTTP server on 127.0.0.1:

- ``POST /rows/upsert {"rows": [...]}`` and ``POST /rows/delete {"keys": [...]}`` -> ``{"changes": n}``
- ``POST /query {"text": "...", "k": 5, "filter": {...}}`` -> ``{"hits": [...]}``
- ``POST /sync {"timeout": 30}`` -> ``{"synced": true}`` or 504 with what is still pending
- ``GET /stats`` -> the pipeline's counters

Errors answer 400 (bad input, with the reason) or 500, always as ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

ENV_LOCAL_STATE = "FRESHVEC_LOCAL_STATE"
DEFAULT_STATE_PATH = Path(".freshvec") / "local.json"
_MAX_BODY_BYTES = 64 * 1024 * 1024


class ControlledPipeline(Protocol):
    def upsert(self, rows: list[dict[str, Any]]) -> Any: ...  # a receipt with ``changes``
    def delete(self, keys: list[dict[str, Any]]) -> Any: ...
    def query(self, text: str, k: int = 5, filter: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def wait_synced(self, timeout: float = 30) -> Any: ...
    def stats(self) -> dict[str, Any]: ...


def state_path() -> Path:
    return Path(os.environ.get(ENV_LOCAL_STATE) or DEFAULT_STATE_PATH)


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)  # readers never see a half-written file


def read_state(path: Path | None = None) -> dict[str, Any]:
    """The state of the running local stack; FileNotFoundError says how to start one."""
    path = path or state_path()
    if not path.exists():
        raise FileNotFoundError(f"no local stack is running ({path} not found); start one with `freshvec local up`")
    return json.loads(path.read_text(encoding="utf-8"))


class ControlServer:
    """Serves the control API for one pipeline on 127.0.0.1 in a background thread."""

    def __init__(self, pipeline: ControlledPipeline, host: str = "127.0.0.1", port: int = 0) -> None:
        self._pipeline = pipeline
        self._server = ThreadingHTTPServer((host, port), _handler_class(self._routes()))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ControlServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="control-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def _routes(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]]:
        p = self._pipeline

        def upsert(body: dict[str, Any]) -> tuple[int, Any]:
            return HTTPStatus.OK, {"changes": p.upsert(_list_of_objects(body, "rows")).changes}

        def delete(body: dict[str, Any]) -> tuple[int, Any]:
            return HTTPStatus.OK, {"changes": p.delete(_list_of_objects(body, "keys")).changes}

        def query(body: dict[str, Any]) -> tuple[int, Any]:
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ValueError("'text' must be a non-empty string")
            k = body.get("k", 5)
            if isinstance(k, bool) or not isinstance(k, int):
                raise ValueError("'k' must be a whole number")
            return HTTPStatus.OK, {"hits": p.query(text, k=k, filter=body.get("filter"))}

        def sync(body: dict[str, Any]) -> tuple[int, Any]:
            timeout = body.get("timeout", 30)
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
                raise ValueError("'timeout' must be a positive number of seconds")
            try:
                p.wait_synced(timeout=float(timeout))
            except TimeoutError as exc:
                return HTTPStatus.GATEWAY_TIMEOUT, {"synced": False, "error": str(exc)}
            return HTTPStatus.OK, {"synced": True}

        def stats(_: dict[str, Any]) -> tuple[int, Any]:
            return HTTPStatus.OK, p.stats()

        return {
            ("POST", "/rows/upsert"): upsert,
            ("POST", "/rows/delete"): delete,
            ("POST", "/query"): query,
            ("POST", "/sync"): sync,
            ("GET", "/stats"): stats,
        }


def _list_of_objects(body: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    items = body.get(name)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"'{name}' must be a list of JSON objects")
    return items


def _handler_class(routes: Mapping[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]]) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            route = routes.get((method, self.path.split("?")[0]))
            if route is None:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {method} {self.path}"})
                return
            try:
                body = self._body()
                status, answer = route(body)
            except ValueError as exc:  # bad input: config, filter, row and key errors are all ValueErrors
                self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            except Exception as exc:
                logger.exception("control request %s %s failed", method, self.path)
                self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
                return
            self._answer(status, answer)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY_BYTES:
                raise ValueError(f"request body over {_MAX_BODY_BYTES} bytes")
            if not length:
                return {}
            try:
                body = json.loads(self.rfile.read(length))
            except json.JSONDecodeError as exc:
                raise ValueError(f"request body is not valid JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
            return body

        def _answer(self, status: int, answer: Any) -> None:
            payload = json.dumps(answer, default=str).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("control: " + format, *args)

    return Handler
