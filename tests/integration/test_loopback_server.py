"""The loopback server every local-mode server is: bound to 127.0.0.1 only, served by one thread between start()
and stop(), its port closed and its thread gone after stop()."""

from __future__ import annotations

import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from freshvec.local.bedrock_server import BedrockBatchServer
from freshvec.local.control import ControlServer
from freshvec.local.loopback import LOOPBACK_HOST, LoopbackServer


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serving_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def _refused(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_it_binds_loopback_only_and_serves_between_start_and_stop() -> None:
    asked: list[tuple[str, int]] = []

    def bind(host: str, port: int) -> ThreadingHTTPServer:
        asked.append((host, port))
        return ThreadingHTTPServer((host, port), _Hello)

    server = LoopbackServer(bind, name="test-loopback")
    assert asked == [(LOOPBACK_HOST, 0)]  # the caller cannot choose another interface
    port = urlsplit(server.url).port
    assert server.url == f"http://127.0.0.1:{port}" and port > 0
    assert not _serving_threads("test-loopback")
    assert server.start() is server
    try:
        [thread] = _serving_threads("test-loopback")
        assert thread.daemon  # a forgotten server never keeps the process alive
        with urllib.request.urlopen(server.url, timeout=5) as answer:
            assert answer.read() == b"hello"
    finally:
        server.stop()
    assert not thread.is_alive()
    assert _refused(server.url)


def test_a_server_never_started_stops_without_waiting_and_frees_its_port() -> None:
    server = LoopbackServer(lambda host, port: ThreadingHTTPServer((host, port), _Hello), name="never-started")
    finished = threading.Event()
    stopper = threading.Thread(target=lambda: (server.stop(), finished.set()), daemon=True)
    stopper.start()
    assert finished.wait(5), "stop() of a server that never served must not wait for its loop"
    assert _refused(server.url)


class _NoPipeline:
    pass


class _StandIn:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize("make", [lambda: ControlServer(_NoPipeline()), lambda: BedrockBatchServer(_StandIn(), "t")])
def test_the_token_servers_are_loopback_servers_and_keep_their_own_checks(make: Any) -> None:
    server = make().start()
    try:
        assert isinstance(server, LoopbackServer)
        assert urlsplit(server.url).hostname == "127.0.0.1"
        request = urllib.request.Request(server.url + "/stats")  # no token
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code in (401, 403)
    finally:
        server.stop()
    assert _refused(server.url)


def test_the_batch_server_stops_its_stand_in_with_it() -> None:
    stand_in = _StandIn()
    server = BedrockBatchServer(stand_in, "t").start()  # type: ignore[arg-type]
    server.stop()
    assert stand_in.stopped
    assert _refused(server.url)
