"""One HTTP server on 127.0.0.1 in a background thread: the lifecycle local mode's servers share.

The control API (``control.ControlServer``), moto behind the S3 Vectors front (``vectors.server.LocalAwsServer``)
and the Bedrock batch stand-in (``bedrock_server.BedrockBatchServer``) bind the loopback address only, here, so
no other machine can reach them; the access key the AWS stand-ins check (``vectors.access``) and the token the
other two check defend against other users of this machine, not the network. Each keeps its own request checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

LOOPBACK_HOST = "127.0.0.1"


class LoopbackServer:
    """A server made by ``bind(host, port)`` on ``LOOPBACK_HOST`` (``port`` 0: any free one), served by one daemon
    thread between ``start()`` and ``stop()``.

    ``bind`` returns a bound ``socketserver.BaseServer`` (``http.server.ThreadingHTTPServer``, werkzeug's
    ``make_server``, ...); ``url`` is ``http://127.0.0.1:<port>`` as soon as it is bound.
    """

    def __init__(self, bind: Callable[[str, int], Any], port: int = 0, *, name: str, join_timeout_s: float = 5) -> None:
        self._server = bind(LOOPBACK_HOST, port)
        self._name = name
        self._join_timeout_s = join_timeout_s
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, poll_interval_s: float = 0.5) -> Self:
        """Serve on the thread; ``stop`` waits up to ``poll_interval_s`` for it to notice."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(poll_interval_s,), name=self._name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and wait (``join_timeout_s`` at most) for the thread."""
        if self._thread is not None:  # shutdown() waits for a serve_forever() that never began
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(self._join_timeout_s)
