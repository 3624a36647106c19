"""An in-process moto server on loopback: the AWS stand-in for local mode and the tests.

It serves moto behind the S3 Vectors front (``freshvec.local.vectors``), which answers the S3 Vectors
operations moto lacks (QueryVectors, index modes, full-text search settings) on the same endpoint.
"""

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
    def start(cls, region: str = LOCAL_REGION, *, legacy_buckets: bool = False) -> MotoServer:
        """``legacy_buckets``: vector buckets behave as if created before ENHANCED became the only mode."""
        # moto is heavy; import only when a server is wanted
        from freshvec.local.vectors.server import LocalAwsServer

        # werkzeug logs every request at INFO; local mode and tests want quiet output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
        server = LocalAwsServer(legacy_buckets=legacy_buckets).start()
        return cls(endpoint=server.url, region=region, _server=server)

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
