"""An in-process moto server on loopback: the AWS stand-in for local mode and the tests.

It serves moto behind the S3 Vectors front (``freshvec.local.vectors``), which answers the S3 Vectors
operations moto lacks (QueryVectors, index modes, full-text search settings) on the same endpoint. The endpoint
answers only requests signed with its access key (``vectors.access``): a random one per server unless a test
names its own; ``client`` signs with it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import boto3
import requests
from botocore.config import Config

from freshvec.state import CONTROL_TOKEN_HEADER

LOCAL_REGION = "us-east-1"
# Only the access key id is checked (``vectors.access``); any secret signs.
LOCAL_SECRET_KEY = "local"  # noqa: S105 - not a secret: the endpoint ignores it


@dataclass
class MotoServer:
    """A running moto server; ``client(name)`` builds boto3 clients pointed at it."""

    endpoint: str
    access_key: str = field(repr=False)
    region: str = LOCAL_REGION
    _server: Any = field(default=None, repr=False)

    @classmethod
    def start(
        cls, region: str = LOCAL_REGION, *, legacy_buckets: bool = False, access_key: str | None = None
    ) -> MotoServer:
        """``legacy_buckets``: vector buckets behave as if created before ENHANCED became the only mode;
        ``access_key``: the key requests must be signed with (default: a new random one)."""
        # moto is heavy; import only when a server is wanted
        from freshvec.local.vectors.server import LocalAwsServer

        # werkzeug logs every request at INFO; local mode and tests want quiet output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
        server = LocalAwsServer(legacy_buckets=legacy_buckets, access_key=access_key).start()
        return cls(endpoint=server.url, access_key=server.access_key, region=region, _server=server)

    def client(self, service: str, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
            aws_access_key_id=self.access_key,
            aws_secret_access_key=LOCAL_SECRET_KEY,
        )

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        headers = {CONTROL_TOKEN_HEADER: self.access_key}
        requests.post(f"{self.endpoint}/moto-api/reset", headers=headers, timeout=10).raise_for_status()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
