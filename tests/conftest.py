"""Shared fixtures: one moto server per test session, on 127.0.0.1 only, reset between tests that ask."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from freshvec.local.moto_server import MotoServer

# No test may reach real AWS: fixed fake credentials and a fixed region for every client. The session's moto
# server takes the same fixed access key (local mode's servers make a random one), so clients that read it
# from the environment, as the Lambda handlers do, reach it.
TEST_ACCESS_KEY = "testing"
os.environ.setdefault("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start(access_key=TEST_ACCESS_KEY)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """A moto server with no resources left over from earlier tests."""
    moto_server.reset()
    return moto_server
