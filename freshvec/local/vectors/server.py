"""moto's AWS stand-ins and the S3 Vectors front (``api.S3VectorsFront``) served together on one loopback port."""

from __future__ import annotations

from freshvec.local.loopback import LoopbackServer
from freshvec.local.vectors.api import S3VectorsFront


class LocalAwsServer(LoopbackServer):
    """moto's WSGI application behind ``S3VectorsFront``, served by werkzeug on 127.0.0.1 in a thread.

    The port is bound when it is made; ``url`` is the endpoint every local client uses.
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

        # threaded=True: a thread per request, as the other local servers answer.
        super().__init__(
            lambda host, port: make_server(host, port, self.front, True, request_handler=Handler),
            port,
            name="local-aws",
        )
