"""Index generations in local mode: the live set the local sink writes, the pointer readers follow, and the
steps that change them (add a next generation, switch, retire one).

The pointer lives where the stack keeps it — an SSM parameter — in the local moto server, so the CLI's
``migrate cutover``/``rollback`` write it with the same code in both places. Readers here (``query``) re-read
it every ``LOCAL_POINTER_TTL_S``. Retiring a generation first takes it out of the live set, waits until no
batch that started with it is still running, then rewrites the pointer and deletes its index: nothing writes
to an index after it is gone.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from freshvec import constants as c
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.ssm import SsmPointerStore
from freshvec.config import GenerationConfig, PipelineConfig
from freshvec.events import ChangeEvent, format_timestamp, sendable_bytes
from freshvec.generations import (
    CachedPointer,
    GenerationReport,
    IndexPointer,
    PointerEntry,
    abandoned,
    generation_named,
    promoted,
)
from freshvec.keys import partition_key, vector_key
from freshvec.local.embedder import LocalEmbedder
from freshvec.local.resources import LocalResources, create_generation_index, local_config

LOCAL_POINTER_TTL_S = 0.25  # readers here see a switch within this
_RETIRE_WAIT_S = 60.0


class _Pipeline(Protocol):
    config: PipelineConfig
    resources: LocalResources
    server: Any

    def scan_rows(self, segment: int, segments: int, after: str | None = None, limit: int = 1000) -> Any: ...

    def put_stream_records(self, records: list[dict[str, Any]]) -> dict[str, Any]: ...


def _resync(
    config: PipelineConfig, row: dict[str, Any], version: int | None, generation: str, n: int
) -> dict[str, Any]:
    """A BACKFILL re-sync of ``row`` for one generation, as a PutRecords entry on the row's partition key."""
    key = {name: row[name] for name in config.primary_key}
    event = ChangeEvent(
        keyspace=config.keyspace, table=config.table, op="UPDATE", key=key, new=row, old=None,
        seq=f"demo-fill:{n}", shard="backfill", ts=format_timestamp(datetime.now(UTC)), origin="BACKFILL",
        source=config.source.kind, version=version, extra={c.EVENT_GENERATIONS: [generation]},
    )  # fmt: skip
    shard_key = partition_key(vector_key(key, config.key_columns))
    return {"Data": sendable_bytes(event, shard_key), "PartitionKey": shard_key}


class LocalGenerations:
    def __init__(self, pipeline: _Pipeline, ssm_client: Any, parameter: str) -> None:
        self._pipeline = pipeline
        self.store = SsmPointerStore(ssm_client, parameter)
        self._pointer = CachedPointer(self.store, ttl_s=LOCAL_POINTER_TTL_S)
        self._cond = threading.Condition()
        self._in_flight: dict[int, int] = {}  # id(config) -> batches running with it
        self._embedders: dict[int, LocalEmbedder] = {}
        self._searches: dict[str, S3VectorsStore] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # ---- what the sink and the readers use --------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[PipelineConfig]:
        """The live config for one sink batch; a retirement waits for every batch that started before it."""
        with self._cond:
            config = self._pipeline.config
            self._in_flight[id(config)] = self._in_flight.get(id(config), 0) + 1
        try:
            yield config
        finally:
            with self._cond:
                self._in_flight[id(config)] -= 1
                self._cond.notify_all()

    def embedder(self, dimensions: int) -> LocalEmbedder:
        with self._lock:
            if dimensions not in self._embedders:
                self._embedders[dimensions] = LocalEmbedder(dimensions)
            return self._embedders[dimensions]

    def search(self, index: str) -> S3VectorsStore:
        """One generation's index, queried through the local S3 Vectors endpoint (QueryVectors)."""
        with self._lock:
            if index not in self._searches:
                bucket = self._pipeline.resources.vector_bucket
                self._searches[index] = S3VectorsStore(self._pipeline.server.client("s3vectors"), bucket, index)
            return self._searches[index]

    def resolve(self, name: str | None = None) -> PointerEntry:
        """The index (and query embedding) of ``name``, or of the active generation, as the pointer says."""
        return self._pointer.current().entry(name)

    def pointer(self) -> IndexPointer:
        text = self.store.read()
        if text is None:
            raise LookupError("the index pointer has not been written")
        return IndexPointer.from_json(text)

    def count(self, reports: Mapping[str, GenerationReport]) -> None:
        with self._lock:
            for name, report in reports.items():
                totals = self._counts.setdefault(name, {"records": 0, "copied": 0, "embedded": 0})
                for key, value in report.as_dict().items():
                    totals[key] += value

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = {k: dict(v) for k, v in self._counts.items()}
        try:
            pointer = self.pointer()
        except LookupError:
            return {"active": None, "live": counts}
        return {"active": pointer.active, "previous": pointer.previous, "live": counts}

    def on_change(self, listener: Callable[[], None]) -> None:
        """Called after the live generations changed (``freshvec local up`` rewrites its state file)."""
        self._listeners.append(listener)

    # ---- the steps --------------------------------------------------------------------------------------
    def add(self, next_generation: GenerationConfig) -> PipelineConfig:
        """Start keeping a next generation exact: create its index, list it in the pointer, write it live."""
        current = self._pipeline.config
        if current.next_generation is not None:
            if current.next_generation.name == next_generation.name:
                return current  # added before (an idempotent retry)
            raise ValueError(f"generation {current.next_generation.name!r} is already the next one; retire it first")
        config = local_config(dataclasses.replace(current, next_generation=next_generation))
        generation = generation_named(config, next_generation.name)
        if not self._index_exists(generation.index_name):
            create_generation_index(self._pipeline.server.client, generation.config)
        self.store.write(self.pointer().with_generations(config).to_json())
        self._swap(config)
        return config

    def fill(self, name: str) -> int:
        """Re-sync every row of the table for generation ``name`` only (what ``freshvec migrate start`` does
        through the control API, for the demo); returns the rows sent."""
        pipeline = self._pipeline
        config = pipeline.config
        sent = 0
        run = uuid.uuid4().hex[:12]  # the re-syncs' source positions are unique to this fill
        after: str | None = None
        while True:
            page = pipeline.scan_rows(0, 1, after, 500)
            records = [
                _resync(config, row["row"], row["version"], name, f"{run}:{sent + i}")
                for i, row in enumerate(page["rows"])
            ]
            if records:
                answer = pipeline.put_stream_records(records)
                if answer.get("FailedRecordCount"):
                    raise RuntimeError(f"{answer['FailedRecordCount']} re-sync(s) refused by the change stream")
            sent += len(records)
            after = page["next"]
            if after is None:
                return sent

    def switch(self, name: str) -> IndexPointer:
        """Make ``name`` the generation readers use (cutover, rollback): one pointer write."""
        pointer = self.pointer().switched_to(name)
        self.store.write(pointer.to_json())
        self._pointer.invalidate()
        return pointer

    def retire(self, name: str) -> PipelineConfig:
        """Stop keeping ``name`` exact and delete its index; never the generation readers use."""
        pointer = self.pointer()
        if name == pointer.active:
            raise ValueError(f"generation {name!r} is the one readers use; switch away from it first")
        current = self._pipeline.config
        if name == current.generation and current.next_generation is not None:
            config = promoted(current)
        elif current.next_generation is not None and name == current.next_generation.name:
            config = abandoned(current)
        else:
            raise ValueError(f"{name!r} is not a live generation")
        index = generation_named(current, name).index_name
        old = self._swap(config)
        with self._cond:
            if not self._cond.wait_for(lambda: self._in_flight.get(id(old), 0) == 0, timeout=_RETIRE_WAIT_S):
                raise TimeoutError(f"batches writing generation {name!r} did not finish within {_RETIRE_WAIT_S} s")
        self.store.write(pointer.without(name).to_json())
        self._pointer.invalidate()
        if self._index_exists(index):
            self._pipeline.server.client("s3vectors").delete_index(
                vectorBucketName=self._pipeline.resources.vector_bucket, indexName=index
            )
        return config

    def _swap(self, config: PipelineConfig) -> PipelineConfig:
        with self._cond:
            old = self._pipeline.config
            self._pipeline.config = config
            self._pipeline.resources = dataclasses.replace(
                self._pipeline.resources, vector_index=config.vector_index_name
            )
        for listener in self._listeners:
            listener()
        return old

    def _index_exists(self, index: str) -> bool:
        s3vectors = self._pipeline.server.client("s3vectors")
        names = s3vectors.list_indexes(vectorBucketName=self._pipeline.resources.vector_bucket).get("indexes", [])
        return any(found.get("indexName") == index for found in names)
