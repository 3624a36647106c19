"""A stand-in for a cassandra-driver ``Session`` where no Cassandra or Keyspaces server can run.

It offers the methods freshvec uses (``prepare``, ``execute_async`` returning a future with
``add_callbacks``/``result``, ``execute``), keeps rows in memory, understands exactly the statements
freshvec builds (INSERT, DELETE by key, SELECT over a token range or by key, with ``WRITETIME(col) AS alias``
columns answered from per-cell write times in microseconds, as CQL keeps them), and fails writes on request with the
driver's own exception classes. Futures complete on worker threads, like the driver's event loop, so the
number of writes in flight is real and recorded.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cassandra import ConsistencyLevel, InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout, WriteType

_INSERT = re.compile(r'^INSERT INTO "(\w+)"\."(\w+)" \((.+)\) VALUES \((.+)\)$')
_DELETE = re.compile(r'^DELETE FROM "(\w+)"\."(\w+)" WHERE (.+)$')
_SELECT = re.compile(r'^SELECT (.+) FROM "(\w+)"\."(\w+)" WHERE token\((.+)\) (>=?) \? AND token\(.+\) <= \?$')
_KEY_SELECT = re.compile(r'^SELECT (.+) FROM "(\w+)"\."(\w+)" WHERE ("\w+" = \?(?: AND "\w+" = \?)*)$')
_WRITETIME = re.compile(r'^WRITETIME\("(\w+)"\) AS (\w+)$')


def fake_token(partition_values: tuple[Any, ...]) -> int:
    """A deterministic signed 64-bit token (stands in for Murmur3; only consistency matters here)."""
    digest = hashlib.sha256(repr(partition_values).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class FakePrepared:
    query_string: str
    consistency_level: Any = None


class FakeFuture:
    """The parts of ``ResponseFuture`` freshvec uses."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._result: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[tuple[Callable[[Any], Any], Callable[[BaseException], Any]]] = []

    def _finish(self, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            self._result, self._error = result, error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback, errback in callbacks:
            errback(error) if error is not None else callback(result)

    def add_callbacks(self, callback: Callable[[Any], Any], errback: Callable[[BaseException], Any]) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append((callback, errback))
                return
        errback(self._error) if self._error is not None else callback(self._result)

    def result(self) -> Any:
        self._done.wait(10)
        if self._error is not None:
            raise self._error
        return self._result


@dataclass
class FakeSession:
    """Rows keyed by (keyspace, table) then primary key tuple; ``fail`` decides per write whether to raise."""

    primary_key: tuple[str, ...]
    partition_key: tuple[str, ...]
    latency_s: float = 0.002
    fail: Callable[[str, dict[str, Any], int], BaseException | None] | None = None
    rows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    prepared: list[str] = field(default_factory=list)
    executed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    attempts: dict[tuple[Any, ...], int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight_seen: int = 0
    page_size: int = 5000
    selects: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    # per row, per column: the write time in microseconds (strictly increasing over the session's writes)
    write_times: dict[tuple[Any, ...], dict[str, int]] = field(default_factory=dict)
    _last_write_us: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="fake-cassandra")

    # ---- the driver surface -------------------------------------------------------------------
    def prepare(self, query: str) -> FakePrepared:
        if not (_INSERT.match(query) or _DELETE.match(query) or _SELECT.match(query) or _KEY_SELECT.match(query)):
            raise ValueError(f"the fake session does not understand: {query}")
        self.prepared.append(query)
        return FakePrepared(query)

    def execute_async(self, statement: FakePrepared, params: list[Any]) -> FakeFuture:
        future = FakeFuture()
        with self._lock:
            self.in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        self._pool.submit(self._run_write, statement, list(params), future)
        return future

    def execute(self, statement: FakePrepared, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        by_key = _KEY_SELECT.match(statement.query_string)
        if by_key is not None:
            return self._select_key(by_key, tuple(params))
        match = _SELECT.match(statement.query_string)
        if match is None:
            future = self.execute_async(statement, list(params))
            return future.result()
        return self._select(match, tuple(params))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    # ---- behaviour ----------------------------------------------------------------------------
    def _run_write(self, statement: FakePrepared, params: list[Any], future: FakeFuture) -> None:
        time.sleep(self.latency_s)
        error: BaseException | None = None
        try:
            kind, values = self._bind(statement.query_string, params)
            key = tuple(values[c] for c in self.primary_key)
            with self._lock:
                self.attempts[key] = self.attempts.get(key, 0) + 1
                attempt = self.attempts[key]
            error = self.fail(kind, values, attempt) if self.fail else None
            if error is None:
                with self._lock:
                    self.executed.append((kind, values))
                    if kind == "insert":
                        self.rows.setdefault(key, {}).update(values)
                        self._record_write_times(key, values)
                    else:
                        self.rows.pop(key, None)
                        self.write_times.pop(key, None)
        except Exception as exc:  # anything unexpected reaches the caller through the future
            error = exc
        with self._lock:
            self.in_flight -= 1
        future._finish([], error)

    def _bind(self, query: str, params: list[Any]) -> tuple[str, dict[str, Any]]:
        insert = _INSERT.match(query)
        if insert:
            columns = [c.strip().strip('"') for c in insert.group(3).split(",")]
            return "insert", dict(zip(columns, params, strict=True))
        delete = _DELETE.match(query)
        assert delete is not None
        columns = [part.split("=")[0].strip().strip('"') for part in delete.group(3).split(" AND ")]
        return "delete", dict(zip(columns, params, strict=True))

    def _record_write_times(self, key: tuple[Any, ...], values: dict[str, Any]) -> None:
        """Called under the lock: each written non-key cell gets this write's time; a null clears the cell."""
        self._last_write_us = max(int(time.time() * 1_000_000), self._last_write_us + 1)
        times = self.write_times.setdefault(key, {})
        for column, value in values.items():
            if column in self.primary_key:
                continue
            if value is None:
                times.pop(column, None)
            else:
                times[column] = self._last_write_us

    def _project(self, key: tuple[Any, ...], selected: str) -> dict[str, Any]:
        row = self.rows[key]
        out: dict[str, Any] = {}
        for item in (part.strip() for part in selected.split(",")):
            writetime = _WRITETIME.match(item)
            if writetime is not None:
                if writetime.group(1) in self.primary_key:
                    raise ValueError(
                        f"cannot use selection function writeTime on PRIMARY KEY part {writetime.group(1)}"
                    )
                out[writetime.group(2)] = self.write_times.get(key, {}).get(writetime.group(1))
            else:
                out[item.strip('"')] = row.get(item.strip('"'))
        return out

    def _select_key(self, match: re.Match[str], params: tuple[Any, ...]) -> list[dict[str, Any]]:
        self.selects.append((match.group(0), params))
        columns = [part.split("=")[0].strip().strip('"') for part in match.group(4).split(" AND ")]
        if sorted(columns) != sorted(self.primary_key):
            raise ValueError("a select by key must restrict every primary key column")
        given = dict(zip(columns, params, strict=True))
        key = tuple(given[c] for c in self.primary_key)
        with self._lock:
            return [self._project(key, match.group(1))] if key in self.rows else []

    def _select(self, match: re.Match[str], params: tuple[Any, ...]) -> list[dict[str, Any]]:
        low, high = params
        inclusive = match.group(5) == ">="
        self.selects.append((match.group(0), params))
        selected = match.group(1)
        with_token = selected.startswith("token(")
        if with_token:
            selected = selected.split(" AS fv_token, ", 1)[1]
        result = []
        for key in sorted(self.rows, key=lambda k: self._token_of(self.rows[k])):
            row = self.rows[key]
            token = self._token_of(row)
            if (token >= low if inclusive else token > low) and token <= high:
                out = {"fv_token": token} if with_token else {}
                out.update(self._project(key, selected))
                result.append(out)
        return result

    def _token_of(self, row: dict[str, Any]) -> int:
        return fake_token(tuple(row[c] for c in self.partition_key))


def fail_times(times: int, error: BaseException) -> Callable[[str, dict[str, Any], int], BaseException | None]:
    """Fail every write's first ``times`` attempts with ``error``."""
    return lambda _kind, _values, attempt: error if attempt <= times else None


def write_timeout() -> WriteTimeout:
    return WriteTimeout(
        "Operation timed out - received only 0 responses.",
        consistency=ConsistencyLevel.LOCAL_QUORUM,
        required_responses=2,
        received_responses=0,
        write_type=WriteType.SIMPLE,
    )


def unavailable() -> Unavailable:
    return Unavailable(
        "Cannot achieve consistency level LOCAL_QUORUM", consistency=ConsistencyLevel.LOCAL_QUORUM, required_replicas=2
    )


def timed_out() -> OperationTimedOut:
    return OperationTimedOut(errors={"cassandra.us-east-1.amazonaws.com:9142": "timed out"}, last_host="host")


_SYSTEM_COLUMNS = re.compile(r"^SELECT (.+) FROM system_schema\.columns WHERE keyspace_name = %s AND table_name = %s$")
_SYSTEM_TABLES = re.compile(r"^SELECT (.+) FROM system_schema\.tables WHERE keyspace_name = %s$")
_MCS_TABLES = re.compile(r"^SELECT (.+) FROM system_schema_mcs\.tables WHERE keyspace_name = %s AND table_name = %s$")
_SAMPLE = re.compile(r'^SELECT (.+) FROM "(\w+)"\."(\w+)" LIMIT (\d+)$')


@dataclass
class FakeSchemaSession:
    """A cassandra-driver session (rows as dicts, ``dict_factory``) over table definitions kept as the system
    keyspaces hold them: ``system_schema.columns`` rows (``kind`` partition_key/clustering/regular, ``position``
    the key order, -1 for a regular column, ``type`` the CQL type text) and, when ``keyspaces`` (Amazon
    Keyspaces, not Apache Cassandra), ``system_schema_mcs.tables`` with ``custom_properties``; a plain
    ``SELECT ... LIMIT n`` reads rows. A keyspace that does not exist is an ``InvalidRequest``, as the server
    answers."""

    keyspaces: bool = True
    tables: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)

    def add_table(
        self,
        keyspace: str,
        table: str,
        *,
        partition_key: dict[str, str],
        clustering_key: dict[str, str] | None = None,
        regular: dict[str, str] | None = None,
        cdc_view_type: str | None = None,
        rows: list[dict[str, Any]] | None = None,
    ) -> None:
        columns = [
            {"column_name": n, "kind": "partition_key", "position": i, "type": t}
            for i, (n, t) in enumerate(partition_key.items())
        ]
        columns += [
            {"column_name": n, "kind": "clustering", "position": i, "type": t}
            for i, (n, t) in enumerate((clustering_key or {}).items())
        ]
        columns += [
            {"column_name": n, "kind": "regular", "position": -1, "type": t} for n, t in (regular or {}).items()
        ]
        properties: dict[str, Any] = {"capacity_mode": {"throughput_mode": "PAY_PER_REQUEST"}}
        if cdc_view_type is not None:
            properties["cdc_specification"] = {"status": "ENABLED", "view_type": cdc_view_type}
        self.tables[(keyspace, table)] = {
            "columns": sorted(columns, key=lambda c: c["column_name"]),  # the server lists them by name
            "custom_properties": properties,
            "rows": list(rows or []),
        }

    def execute(self, query: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        self.executed.append(query)
        params = tuple(params)
        if match := _SYSTEM_COLUMNS.match(query):
            found = self.tables.get((params[0], params[1]), {"columns": []})["columns"]
            return [self._pick(match.group(1), row) for row in found]
        if match := _SYSTEM_TABLES.match(query):
            names = sorted(t for (k, t) in self.tables if k == params[0])
            return [self._pick(match.group(1), {"keyspace_name": params[0], "table_name": n}) for n in names]
        if match := _MCS_TABLES.match(query):
            if not self.keyspaces:
                raise InvalidRequest("Error from server: code=2200 [Invalid query] message=\"Keyspace "
                                     "system_schema_mcs does not exist\"")  # fmt: skip
            table = self.tables.get((params[0], params[1]))
            return [] if table is None else [self._pick(match.group(1), table)]
        if match := _SAMPLE.match(query):
            table = self.tables.get((match.group(2), match.group(3)))
            if table is None:
                raise InvalidRequest(f"unconfigured table {match.group(3)}")
            return [self._pick(match.group(1), row) for row in table["rows"][: int(match.group(4))]]
        raise ValueError(f"the fake schema session does not understand: {query}")

    @staticmethod
    def _pick(selected: str, row: dict[str, Any]) -> dict[str, Any]:
        return {name.strip().strip('"'): row.get(name.strip().strip('"')) for name in selected.split(",")}
