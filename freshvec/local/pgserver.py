"""A throwaway PostgreSQL server on 127.0.0.1: local mode's second source and what the tests run against.

``LocalPostgres`` runs Debian's server binaries (``/usr/lib/postgresql/<n>/bin``): ``initdb`` in a temporary
folder, ``wal_level = logical`` (what logical replication needs), a free loopback port, password
authentication (SCRAM) for TCP and, when given a certificate, TLS. PostgreSQL refuses to run as root, so when
the caller is root the folder is handed to the ``postgres`` OS user and the binaries run as that user.
``stop`` shuts it down (fast mode) and removes the folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"
OS_USER = "postgres"
SUPERUSER = "postgres"


# Stops the server and removes its folder once its owner is gone: the owner holds the guard's stdin open until
# ``stop`` (which has stopped the server already) or its own exit, ``kill -9`` included, so no server outlives it.
_GUARD = """
import shutil, subprocess, sys
sys.stdin.read()
subprocess.run(sys.argv[2:], capture_output=True, check=False)
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class PostgresNotAvailable(RuntimeError):
    """The PostgreSQL server binaries are not installed on this machine."""


def find_bin_dir() -> Path:
    """The newest installed server's bin folder (``FRESHVEC_PG_BIN`` overrides)."""
    override = os.environ.get("FRESHVEC_PG_BIN")
    candidates = [override] if override else sorted(glob.glob(BIN_GLOB), key=_major, reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise PostgresNotAvailable(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install them with "
        "`apt-get install postgresql` (or set FRESHVEC_PG_BIN)"
    )


def _major(path: str) -> int:
    name = Path(path).parent.name
    return int(name) if name.isdigit() else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the server: its certificate (chain) and key."""

    cert: Path
    key: Path


class LocalPostgres:
    """One PostgreSQL server in a temporary folder, on 127.0.0.1; ``start`` then ``stop``."""

    def __init__(
        self,
        *,
        wal_level: str = "logical",
        tls: TlsFiles | None = None,
        settings: dict[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.bin_dir = find_bin_dir()
        self.wal_level = wal_level
        self.tls = tls
        self.settings = dict(settings or {})
        self.password = password or secrets.token_urlsafe(16)
        self.user = SUPERUSER
        self.host = "127.0.0.1"
        self.port = 0
        self.database = "postgres"
        self.folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._guard: subprocess.Popen[bytes] | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> LocalPostgres:
        self.folder = Path(tempfile.mkdtemp(prefix="freshvec-pg-"))
        data = self.folder / "data"
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        self._hand_over(self.folder)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        pwfile.unlink()
        self.port = free_port()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.folder}'",
            "wal_level": self.wal_level,
            "max_replication_slots": "10",
            "max_wal_senders": "10",
            "fsync": "off",  # a throwaway server: durability across OS crashes is not needed
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": "40",
            "log_min_messages": "warning",
        }
        if self.tls is not None:
            for name, source in (("server.crt", self.tls.cert), ("server.key", self.tls.key)):
                target = data / name
                shutil.copyfile(source, target)
                target.chmod(0o600)
                self._hand_over(target)
            conf.update({"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"})
        conf.update(self.settings)
        with (data / "postgresql.conf").open("a", encoding="utf-8") as handle:
            handle.writelines(f"{key} = {value}\n" for key, value in conf.items())
        log = self.folder / "server.log"
        log.touch()
        self._hand_over(log)
        with log.open("ab") as out:
            self._process = subprocess.Popen(  # noqa: S603 - fixed binary, arguments built here
                self._as_owner([str(self.bin_dir / "postgres"), "-D", str(data)]),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._guard = subprocess.Popen(  # noqa: S603 - this interpreter, the script above
            [sys.executable, "-c", _GUARD, str(self.folder), *self._as_owner(self._stop_command())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C is for the owner, which stops the server itself
        )
        self._wait_ready(timeout_s)
        return self

    def _stop_command(self) -> list[str]:
        assert self.folder is not None
        return [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.folder / "data"), "-m", "fast", "-w"]

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None and self.folder is not None:
                subprocess.run(self._as_owner(self._stop_command()), capture_output=True, check=False)  # noqa: S603
                try:
                    self._process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(self._process.pid, 9)  # its own session: only this server's processes
                    self._process.wait(timeout=5)
            self._process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        guard, self._guard = self._guard, None
        if guard is not None and guard.stdin is not None:
            guard.stdin.close()  # nothing left for it to do: it exits
            try:
                guard.wait(timeout=15)
            except subprocess.TimeoutExpired:
                guard.kill()

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def log_text(self) -> str:
        path = self.folder / "server.log" if self.folder else None
        return path.read_text(encoding="utf-8", errors="replace") if path and path.exists() else ""

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run SQL as the superuser over the local socket (setup in tests and demos)."""
        if self.folder is None:
            raise RuntimeError("the server is not running")
        cmd = [str(self.bin_dir / "psql"), "-h", str(self.folder), "-p", str(self.port), "-U", SUPERUSER]
        cmd += ["-d", database or self.database, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]
        return self._run(cmd)

    # ---- helpers ------------------------------------------------------------------------
    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start:\n{self.log_text[-2000:]}")
            probe = [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"]
            if subprocess.run(probe, check=False).returncode == 0:  # noqa: S603
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"PostgreSQL did not become ready within {timeout_s} s")

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        return ["runuser", "-u", OS_USER, "--", *cmd]

    def _hand_over(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OS_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, cmd: list[str]) -> str:
        done = subprocess.run(self._as_owner(cmd), capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout
