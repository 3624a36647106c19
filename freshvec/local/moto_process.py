"""A moto server (behind the S3 Vectors front, ``freshvec.local.vectors``) in its own process on 127.0.0.1.

moto answers from the process it runs in. Run inside the pipeline's process, every request it serves
competes with the forwarder, the event source mapping and the sink for one interpreter lock; in a child
process it uses a core of its own, which roughly halves local mode's write-to-searchable time on a
2-core machine. The child reads its stdin until it closes, so it also exits when the parent dies. It makes
the endpoint's random access key and tells the parent over its stdout pipe, never on a command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from freshvec.local.moto_server import LOCAL_REGION, MotoServer

_CHILD = """
import logging, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops the pipeline first
logging.getLogger("werkzeug").setLevel(logging.ERROR)
os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
from freshvec.local.vectors.server import LocalAwsServer
server = LocalAwsServer(legacy_buckets=sys.argv[1] == "legacy").start()
print(server.url, server.access_key, flush=True)
sys.stdin.read()  # until the parent closes it (stop() or the parent's exit)
os._exit(0)  # nothing to flush: the state lives only in this process
"""


class MotoProcess:
    """A started child process; ``wait_ready()`` gives a MotoServer whose ``stop()`` ends the child."""

    def __init__(self, *, legacy_buckets: bool = False) -> None:
        self._child = subprocess.Popen(  # noqa: S603 - our own interpreter with a fixed script
            [sys.executable, "-c", _CHILD, "legacy" if legacy_buckets else "current"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C goes to the parent only
            env=_child_environment(),
        )

    def wait_ready(self, region: str = LOCAL_REGION) -> MotoServer:
        assert self._child.stdout is not None
        started = time.monotonic()
        endpoint, _, access_key = self._child.stdout.readline().strip().partition(" ")
        if not endpoint.startswith("http://127.0.0.1:") or not access_key:
            self.stop()
            waited = time.monotonic() - started
            code = self._child.poll()
            raise RuntimeError(f"the moto server process did not start (after {waited:.1f} s, exit code {code})")
        return MotoServer(endpoint=endpoint, access_key=access_key, region=region, _server=self)

    def stop(self) -> None:
        """Close the child's stdin (it exits); kill it if it does not."""
        if self._child.poll() is not None:
            return
        try:
            if self._child.stdin is not None:
                self._child.stdin.close()
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait(timeout=5)
        if self._child.stdout is not None:
            self._child.stdout.close()


def _child_environment() -> dict[str, str]:
    """This environment, with the folder this freshvec was imported from first on the child's path."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
