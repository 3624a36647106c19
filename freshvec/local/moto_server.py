"""An in-process moto server on loopback: the AWS stand-in for local mode and the tests."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import boto3
import requests
from botocore.config import Config

LOCAL_REGION = "us-east-1"
# moto accepts any credentials; these fixed ones keep boto3 from looking for real ones.
_LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class MotoServer:
    """A running moto server; ``client(name)`` builds boto3 clients pointed at it."""

    endpoint: str
    region: str = LOCAL_REGION
    _server: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, region: str = LOCAL_REGION) -> MotoServer:
        from moto.server import ThreadedMotoServer  # moto is heavy; import only when a server is wanted

        # werkzeug logs every request at INFO; local mode and tests want quiet output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(endpoint=f"http://{host}:{port}", region=region, _server=server)

    def client(self, service: str, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
            **_LOCAL_CREDENTIALS,
        )

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
