"""The control API of a running local stack (``freshvec local up``).

``freshvec local up`` writes the state file (``freshvec.state``: per-user, mode 0600) that tells
``freshvec --local ...`` where the moto endpoint is, the resource names (the same keys as the CloudFormation
outputs), the control URL and the control token. The control API is a small JSON-over-HTTP server on
127.0.0.1:

- ``POST /rows/upsert {"rows": [...], "ttl_s": n, "timestamp_us": t, "partial": false}`` and
  ``POST /rows/delete {"keys": [...], "timestamp_us": t}`` -> ``{"changes": n}``. Keyspaces source:
  ``partial`` makes it an UPDATE of only the given columns (rows may carry ``"$add"``/``"$remove"`` collection
  changes), ``ttl_s`` is ``USING TTL`` for exactly the cells written (a column TTL on a partial update),
  ``timestamp_us`` is ``USING TIMESTAMP`` (microseconds, the client's clock otherwise)
- ``POST /rows/read {"keys": [...]}`` -> ``{"rows": [{"key", "row", "version"}, ...]}``: each key's current
  row (None when there is none) and the read's version (``freshvec.versions``): a PostgreSQL read's snapshot,
  a Keyspaces read's conservative stamp (re-sync reads)
- ``POST /rows/scan {"segment": i, "segments": n, "after": cursor, "limit": m}`` -> ``{"rows": [{"row",
  "version"}, ...], "next": cursor}``: one page of the rows whose key hashes into segment i of n, in key
  order after ``after`` (``next`` None: the segment is done); backfill and reconcile read the table with it
- ``POST /stream/put {"records": [{"data_b64": "...", "partition_key": "..."}, ...]}`` -> the PutRecords
  answer (``FailedRecordCount``, ``Records``): the CLI's re-syncs reach the change stream through the pipeline's
  own producer, one put at a time with the forwarder's (moto numbers concurrent puts to a shard wrongly)
- ``POST /query {"text": "...", "k": 5, "filter": {...}, "mode": "hybrid"|"vector"|"text"}`` -> ``{"hits": [...]}``
- ``POST /query`` may name a ``"generation"`` (default: the active one, as the index pointer says)
- ``POST /generations/add {"generation": {...}}`` (a ``next_generation`` object) and ``POST /generations/retire
  {"name": ...}`` -> ``{"config": {...}}`` (without the PostgreSQL password): a migration's first and last steps
  (``freshvec.local.generations``)
- ``POST /sync {"timeout": 30}`` -> ``{"synced": true}`` or 504 with what is still pending
- ``GET /stats`` -> the pipeline's counters

Every request must carry the server's random token (``secrets.token_urlsafe(32)``, made at start and
written to the state file) in the ``X-Freshvec-Token`` header (``freshvec.state.CONTROL_TOKEN_HEADER``),
else 401: other users and processes on the machine cannot drive the pipeline. The Host header must name the
server as a loopback address (``127.0.0.1:<port>``, ``localhost:<port>`` or ``[::1]:<port>``), else 403, so a
web page in a browser cannot reach it through DNS rebinding.

Errors answer 400 (bad input, with the reason), 401, 403, 404 or 500, always as ``{"error": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from freshvec.config import parse_generation
from freshvec.local.loopback import LoopbackServer
from freshvec.local.resources import without_password
from freshvec.state import CONTROL_TOKEN_HEADER

logger = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_MAX_BODY_BYTES = 64 * 1024 * 1024
_MAX_SCAN_PAGE = 10_000  # rows per /rows/scan answer


class ControlledPipeline(Protocol):
    def upsert(  # a receipt with ``changes``
        self,
        rows: list[dict[str, Any]],
        ttl_s: int | None = None,
        *,
        timestamp_us: int | None = None,
        partial: bool = False,
    ) -> Any: ...
    def delete(self, keys: list[dict[str, Any]], *, timestamp_us: int | None = None) -> Any: ...
    def read_rows(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]: ...
    def scan_rows(self, segment: int, segments: int, after: str | None = None, limit: int = 1000) -> Any: ...
    def put_stream_records(self, records: list[dict[str, Any]]) -> dict[str, Any]: ...
    def query(
        self, text: str, k: int = 5, filter: Mapping[str, Any] | None = None, mode: str | None = None
    ) -> list[dict[str, Any]]: ...
    def wait_synced(self, timeout: float = 30) -> Any: ...
    def stats(self) -> dict[str, Any]: ...


class ControlServer(LoopbackServer):
    """Serves the control API for one pipeline on 127.0.0.1 in a background thread (``loopback``).

    ``token`` is the secret every request must send in ``CONTROL_TOKEN_HEADER``; a fresh random one is made
    unless given. Write it to the state file (``freshvec.local.cli.stack_state``) for the CLI to find.
    """

    def __init__(self, pipeline: ControlledPipeline, port: int = 0, *, token: str | None = None) -> None:
        self._pipeline = pipeline
        self.token = token or secrets.token_urlsafe(32)
        handler = _handler_class(self._routes(), self.token)
        super().__init__(lambda host, port: ThreadingHTTPServer((host, port), handler), port, name="control-api")

    def _routes(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]]:
        p = self._pipeline

        def upsert(body: dict[str, Any]) -> tuple[int, Any]:
            partial = body.get("partial", False)
            if not isinstance(partial, bool):
                raise ValueError("'partial' must be true or false")
            receipt = p.upsert(
                _list_of_objects(body, "rows"),
                _optional_whole(body, "ttl_s", minimum=1),
                timestamp_us=_optional_whole(body, "timestamp_us", minimum=0),
                partial=partial,
            )
            return HTTPStatus.OK, {"changes": receipt.changes}

        def delete(body: dict[str, Any]) -> tuple[int, Any]:
            timestamp_us = _optional_whole(body, "timestamp_us", minimum=0)
            return HTTPStatus.OK, {
                "changes": p.delete(_list_of_objects(body, "keys"), timestamp_us=timestamp_us).changes
            }

        def read(body: dict[str, Any]) -> tuple[int, Any]:
            return HTTPStatus.OK, {"rows": p.read_rows(_list_of_objects(body, "keys"))}

        def scan(body: dict[str, Any]) -> tuple[int, Any]:
            segments = _whole(body, "segments", 1, minimum=1)
            segment = _whole(body, "segment", 0, minimum=0)
            if segment >= segments:
                raise ValueError("'segment' must be below 'segments'")
            limit = _whole(body, "limit", 1000, minimum=1)
            after = body.get("after")
            if after is not None and not isinstance(after, str):
                raise ValueError("'after' must be a cursor string from an earlier page, or null")
            return HTTPStatus.OK, p.scan_rows(segment, segments, after, min(limit, _MAX_SCAN_PAGE))

        def put(body: dict[str, Any]) -> tuple[int, Any]:
            records = []
            for item in _list_of_objects(body, "records"):
                data, key = item.get("data_b64"), item.get("partition_key")
                if not isinstance(data, str) or not isinstance(key, str) or not key:
                    raise ValueError("each record needs 'data_b64' (base64 text) and a non-empty 'partition_key'")
                try:
                    records.append({"Data": base64.b64decode(data, validate=True), "PartitionKey": key})
                except (binascii.Error, ValueError) as exc:
                    raise ValueError(f"'data_b64' is not base64: {exc}") from exc
            return HTTPStatus.OK, p.put_stream_records(records)

        def query(body: dict[str, Any]) -> tuple[int, Any]:
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ValueError("'text' must be a non-empty string")
            k = body.get("k", 5)
            if isinstance(k, bool) or not isinstance(k, int):
                raise ValueError("'k' must be a whole number")
            mode = body.get("mode")
            if mode is not None and not isinstance(mode, str):
                raise ValueError("'mode' must be hybrid, vector or text")
            generation = body.get("generation")
            if generation is not None and not isinstance(generation, str):
                raise ValueError("'generation' must be a generation name, or absent for the active one")
            if generation is None:  # the call every reader makes: the active generation, as the pointer says
                return HTTPStatus.OK, {"hits": p.query(text, k=k, filter=body.get("filter"), mode=mode)}
            hits = p.query(text, k=k, filter=body.get("filter"), generation=generation, mode=mode)
            return HTTPStatus.OK, {"hits": hits}

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
            ("POST", "/rows/read"): read,
            ("POST", "/rows/scan"): scan,
            ("POST", "/stream/put"): put,
            ("POST", "/query"): query,
            **self._generation_routes(),
            ("POST", "/sync"): sync,
            ("GET", "/stats"): stats,
        }

    def _generation_routes(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]]:
        """A migration's first and last steps in local mode (``freshvec.local.generations``)."""
        p = self._pipeline

        def retire(body: dict[str, Any]) -> tuple[int, Any]:
            name = body.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError("'name' must be the generation to retire")
            return HTTPStatus.OK, {"config": without_password(p.generations.retire(name)).to_dict()}

        def add(body: dict[str, Any]) -> tuple[int, Any]:
            raw = body.get("generation")
            if not isinstance(raw, dict):
                raise ValueError("'generation' must be the next generation's settings (an object)")
            nxt = parse_generation(raw)
            return HTTPStatus.OK, {"config": without_password(p.generations.add(nxt)).to_dict()}

        return {("POST", "/generations/add"): add, ("POST", "/generations/retire"): retire}


def _whole(body: Mapping[str, Any], name: str, default: int, *, minimum: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{name}' must be a whole number of at least {minimum}")
    return value


def _optional_whole(body: Mapping[str, Any], name: str, *, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    return _whole(body, name, 0, minimum=minimum)


def _list_of_objects(body: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    items = body.get(name)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"'{name}' must be a list of JSON objects")
    return items


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison, so the answer time tells nothing about how much of the token was right."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode("utf-8"))


def host_allowed(host: str | None, port: int) -> bool:
    """The Host header names this server by a loopback name and its port (DNS-rebinding protection)."""
    if not host:
        return False
    return host.strip().lower() in {f"{name}:{port}" for name in _LOOPBACK_NAMES}


def _handler_class(routes: Mapping[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]], token: str) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _refusal(self) -> tuple[int, str] | None:
            """Why this request may not be served, checked before its path or body are looked at."""
            if not host_allowed(self.headers.get("Host"), self.server.server_address[1]):
                return HTTPStatus.FORBIDDEN, "the Host header must name this server as 127.0.0.1 or localhost"
            if not token_matches(self.headers.get(CONTROL_TOKEN_HEADER), token):
                return HTTPStatus.UNAUTHORIZED, (
                    f"missing or wrong control token: send the state file's token in the {CONTROL_TOKEN_HEADER} header"
                )
            return None

        def _dispatch(self, method: str) -> None:
            refusal = self._refusal()
            if refusal is not None:
                self._answer(refusal[0], {"error": refusal[1]})
                return
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
