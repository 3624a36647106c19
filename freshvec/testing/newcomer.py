"""A new user's first ten minutes, as commands: their own PostgreSQL table, ``freshvec init``, ``freshvec local up
--attach``, and ``freshvec --local query``; for the end-to-end test and the ``init`` benchmark.

The user's server is a ``LocalPostgres`` (on 127.0.0.1, stopped at the end); everything else runs as the user
runs it: the table made with their own DDL and INSERTs through ``psql`` over TCP with ``PGPASSWORD``, and each
freshvec command a process of its own (``python -m freshvec.command``), its output read as the user reads it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from freshvec.local.pgserver import LocalPostgres

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "bookstore"
BOOKS_SQL = ROOT / "data" / "examples" / "books.sql"  # the CREATE TABLE and first INSERTs, as a user has them
# Typed at the psql prompt while the pipeline runs: no ids (SERIAL numbers the rows), quotes doubled.
MORE_BOOKS = (
    "INSERT INTO books (name, description, author, publication_year) VALUES "
    "('Old Man''s War', 'At seventy-five, John Perry enlists in the Colonial Defense Forces, gets a young green "
    "soldier body, and fights alien armies across the galaxy in interstellar war.', 'John Scalzi', 2005), "
    "('Neuromancer', 'A burned-out computer hacker is hired for one last job: to break into cyberspace and free an "
    "artificial intelligence, in a neon future of data and crime.', 'William Gibson', 1984);"
)


READY_LINE = "Ctrl-C to stop"


class Newcomer:
    """The walkthrough's state: the server, the working folder (config, state file), the running ``local up``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config_path = workdir / "cdk.json"
        self.state_path = workdir / "local.json"
        self.server = LocalPostgres(wal_level="logical")
        self.up: subprocess.Popen[str] | None = None
        self.up_output: list[str] = []
        self._up_lines = threading.Condition()
        self._reading = True  # the output of local up is still being read
        self.ready_at: float | None = None  # when local up said it is up (monotonic)

    # ---- the user's server -----------------------------------------------------------------------
    def start_server(self) -> None:
        self.server.start()
        self.server.psql(f"CREATE DATABASE {DATABASE}")

    @property
    def url(self) -> str:
        return f"postgresql://{self.server.user}@127.0.0.1:{self.server.port}/{DATABASE}"

    def env(self) -> dict[str, str]:
        """The user's shell: the password in PGPASSWORD (never in a file or on a command line), the checkout on
        the Python path, the local state file where the test can find it."""
        return {
            **os.environ,
            "PGPASSWORD": self.server.password,
            "PYTHONPATH": str(ROOT),
            "FRESHVEC_LOCAL_STATE": str(self.state_path),
        }

    def psql(self, sql: str | None = None, *, file: Path | None = None) -> str:
        """SQL (or a file of it) through ``psql`` over TCP, as typed at a terminal."""
        cmd = [str(self.server.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.server.port), "-U", "postgres"]
        what = ["-f", str(file)] if file is not None else ["-c", str(sql)]
        done = subprocess.run(  # noqa: S603 - the server's own psql, arguments built here
            [*cmd, "-d", DATABASE, "-v", "ON_ERROR_STOP=1", "-qAt", *what],
            capture_output=True,
            text=True,
            env=self.env(),
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    # ---- freshvec, as commands -------------------------------------------------------------------------
    def freshvec(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - this interpreter, freshvec's own entry point
            [sys.executable, "-m", "freshvec.command", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.workdir,
            timeout=timeout,
            check=False,
        )

    def init(self) -> subprocess.CompletedProcess[str]:
        return self.freshvec("init", "--pg-url", self.url, "--table", "books", "--output", str(self.config_path))

    def local_up(self, timeout: float = 180, *, wait: bool = True) -> None:
        """``freshvec local up --attach``, returning once it says it is up (its output kept in ``up_output``), or
        at once with ``wait=False``."""
        self.up = subprocess.Popen(  # noqa: S603 - this interpreter, freshvec's own entry point
            [sys.executable, "-m", "freshvec.command", "local", "up", "--attach", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env(),
            cwd=self.workdir,
        )
        threading.Thread(target=self._read_up, daemon=True).start()
        if wait:
            self.local_up_wait_ready(timeout)

    def local_up_wait_ready(self, timeout: float = 180) -> None:
        """Until ``local up`` says it is up; RuntimeError with its output when it exits instead."""
        assert self.up is not None
        deadline = time.monotonic() + timeout
        with self._up_lines:
            while self.ready_at is None:
                if self.up.poll() is not None and not self._reading:
                    raise RuntimeError("local up exited:\n" + "".join(self.up_output))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("local up did not come up:\n" + "".join(self.up_output))
                self._up_lines.wait(min(left, 0.5))

    def _read_up(self) -> None:
        assert self.up is not None and self.up.stdout is not None
        for line in self.up.stdout:
            with self._up_lines:
                if READY_LINE in line and self.ready_at is None:
                    self.ready_at = time.monotonic()
                self.up_output.append(line)
                self._up_lines.notify_all()
        with self._up_lines:
            self._reading = False
            self._up_lines.notify_all()

    def query(self, text: str, k: int = 3) -> list[dict[str, Any]]:
        done = self.freshvec("--local", "query", text, "--k", str(k), "--json")
        if done.returncode != 0:
            raise RuntimeError(f"query failed: {done.stderr.strip()}")
        return list(json.loads(done.stdout)["hits"])

    def first_hit(self, text: str) -> list[dict[str, Any]]:
        """The control API's answer to a query, without starting a command: for timing to the first searchable row
        (empty while ``local up`` is starting or the index is empty)."""
        from freshvec.cli.errors import OperatorError
        from freshvec.cli.local_client import control_request, load_local_state

        try:
            answer = control_request(load_local_state(self.state_path), "POST", "query", {"text": text, "k": 1})
        except OperatorError:  # no state file yet, or the control API not listening yet
            return []
        return list(answer.get("hits") or [])

    def status(self) -> dict[str, Any]:
        done = self.freshvec("--local", "status", "--json")
        if done.returncode != 0:
            raise RuntimeError(f"status failed: {done.stderr.strip()}")
        return dict(json.loads(done.stdout))

    def stop_local_up(self, timeout: float = 60) -> str:
        """Ctrl-C, as the user stops it; its whole output."""
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(timeout)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait(10)
        with self._up_lines:
            self._up_lines.wait_for(lambda: not self._reading, timeout=10)
            return "".join(self.up_output)

    def stop(self) -> None:
        self.stop_local_up()
        self.server.stop()


def wait_for(check: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something true; TimeoutError with its last answer otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"not within {timeout} s; last: {last!r}")


def names(hits: list[dict[str, Any]]) -> list[str]:
    return [str(hit["metadata"].get("name")) for hit in hits]
