"""moto's AWS stand-ins and the S3 Vectors front (``api.S3VectorsFront``) served together on one loopback port,
behind ``access.AccessGuard`` (a loopback Host and the server's access key, or no answer)."""

from __future__ import annotations

from freshvec.local.loopback import LoopbackServer
from freshvec.local.vectors.access import AccessGuard, new_access_key
from freshvec.local.vectors.api import S3VectorsFront


class LocalAwsServer(LoopbackServer):
    """moto's WSGI application behind ``S3VectorsFront``, served by werkzeug on 127.0.0.1 in a thread.

    The port is bound when it is made; ``url`` is the endpoint every local client uses, signing with
    ``access_key`` as its access key id (a random one unless given: a test's fixed key is its own choice).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        access_key: str | None = None,
        legacy_buckets: bool = False,
        analyzer_build_seconds: float = 0.0,
    ) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.front = S3VectorsFront(
            DomainDispatcherApplication(create_backend_app),
            legacy_buckets=legacy_buckets,
            analyzer_build_seconds=analyzer_build_seconds,
        )

        self.access_key = access_key or new_access_key()
        guarded = AccessGuard(self.front, self.access_key)

        class Handler(MotoRequestHandler):
            # Headers and body go out in separate writes; with Nagle's algorithm and the client's delayed ACK each
            # answer would wait ~40 ms on loopback.
            disable_nagle_algorithm = True

        # threaded=True: a thread per request, as the other local servers answer.
        super().__init__(
            lambda host, port: make_server(host, port, guarded, True, request_handler=Handler),
            port,
            name="local-aws",
        )
