"""moto's AWS stand-ins and the S3 Vectors front (``api.S3VectorsFront``) served together on one loopback port."""

from __future__ import annotations

import threading
from typing import Any

from freshvec.local.vectors.api import S3VectorsFront


class LocalAwsServer:
    """moto's WSGI application behind ``S3VectorsFront``, served by werkzeug on 127.0.0.1 in a thread.

    ``start()`` returns once the port is bound; ``endpoint`` is then the URL every local client uses.
    """

    def __init__(self, port: int = 0, *, legacy_buckets: bool = False, analyzer_build_seconds: float = 0.0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.front = S3VectorsFront(
            DomainDispatcherApplication(create_backend_app),
            legacy_buckets=legacy_buckets,
            analyzer_build_seconds=analyzer_build_seconds,
        )

        class Handler(MotoRequestHandler):
            # Headers and body go out in separate writes; with Nagle's algorithm and the client's delayed ACK each
            # answer would wait ~40 ms on loopback.
            disable_nagle_algorithm = True

        # Loopback only: the stand-ins accept any credentials.
        self._server: Any = make_server("127.0.0.1", port, self.front, True, request_handler=Handler)
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalAwsServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-aws", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
