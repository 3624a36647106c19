"""Index generations: one index per embedding setup, and the pointer readers follow to the active one.

A **generation** is one S3 Vectors index with its own embedding model, dimensions, chunking and index settings.
The config's top-level ``embedding``, ``chunking`` and ``vector_store`` describe the generation named
``generation``; during a migration ``next_generation`` describes a second one. Both are *live*: the sink keeps
each exact (``freshvec.generation_sink``). ``Generation.config`` is the pipeline seen through one generation
(its settings at the top level, no next one), so every domain function that takes a config serves a
generation unchanged.

Readers (the CLI, local mode, applications) do not read the config to find the index: they read the **index
pointer**, one small JSON document (an SSM parameter the stack creates; in local mode the same parameter in
the local stand-in), which names the active generation and, for every live one, its index and how to embed a
query for it. ``freshvec migrate cutover`` and ``rollback`` rewrite it: readers switch within their cache time,
with no deploy. ``CachedPointer`` is the reader applications copy (docs/migrations.md).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from freshvec import constants as c
from freshvec.config import ConfigError, PipelineConfig


@dataclass(frozen=True)
class Generation:
    name: str
    config: PipelineConfig  # the pipeline seen through this generation (its settings at the top level)

    @property
    def index_name(self) -> str:
        return self.config.vector_index_name


def live_generations(config: PipelineConfig) -> list[Generation]:
    """Every generation the sink keeps exact: the config's own, then the next one during a migration."""
    base = dataclasses.replace(config, next_generation=None)
    found = [Generation(config.generation, base)]
    nxt = config.next_generation
    if nxt is not None:
        view = dataclasses.replace(
            base,
            generation=nxt.name,
            embedding=nxt.embedding,
            chunking=nxt.chunking,
            vector_store=dataclasses.replace(
                nxt.vector_store, bucket_name=nxt.vector_store.bucket_name or config.vector_store.bucket_name
            ),
        )
        found.append(Generation(nxt.name, view))
    return found


def select_generations(config: PipelineConfig, names: Sequence[str] | None) -> list[Generation]:
    """The live generations named (all of them when ``names`` is empty); ConfigError names an unknown one."""
    live = live_generations(config)
    if not names:
        return live
    by_name = {g.name: g for g in live}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError("generation", f"{unknown[0]!r} is not a live generation; live: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def generation_named(config: PipelineConfig, name: str) -> Generation:
    return select_generations(config, [name])[0]


def same_fingerprint_space(a: PipelineConfig, b: PipelineConfig) -> bool:
    """Whether a fingerprint means the same vector in both: same model, dimensions and normalize flag.

    Fingerprints hash exactly what was embedded and how, so a chunk of one generation whose fingerprint exists in
    the other can be copied instead of embedded; across models or dimensions no fingerprint ever matches.
    """
    ea, eb = a.embedding, b.embedding
    return (ea.provider, ea.model_id, ea.dimensions, ea.normalize) == (
        eb.provider,
        eb.model_id,
        eb.dimensions,
        eb.normalize,
    )


# ---- the index pointer ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointerEntry:
    """What a reader needs to query one generation: its index and how to embed a query for it."""

    index: str
    provider: str
    model_id: str
    dimensions: int
    normalize: bool
    distance_metric: str

    @classmethod
    def of(cls, generation: Generation) -> PointerEntry:
        e = generation.config.embedding
        return cls(
            generation.index_name, e.provider, e.model_id, e.dimensions, e.normalize,
            generation.config.vector_store.distance_metric,
        )  # fmt: skip


@dataclass(frozen=True)
class IndexPointer:
    active: str
    generations: dict[str, PointerEntry]
    bucket: str | None = None  # None: the stack's bucket (CloudFormation names it)
    previous: str | None = None  # the generation active before the last switch (rollback target)
    changed_at: str = ""
    version: int = 1

    @property
    def active_entry(self) -> PointerEntry:
        return self.generations[self.active]

    def entry(self, name: str | None = None) -> PointerEntry:
        wanted = name or self.active
        if wanted not in self.generations:
            raise ValueError(f"the index pointer knows no generation {wanted!r}; known: {', '.join(self.generations)}")
        return self.generations[wanted]

    def switched_to(self, name: str, now: float | None = None) -> IndexPointer:
        """The pointer with ``name`` active (the previous active kept as the rollback target)."""
        self.entry(name)
        if name == self.active:
            return self
        moment = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
        return dataclasses.replace(self, active=name, previous=self.active, changed_at=moment.isoformat())

    def without(self, name: str) -> IndexPointer:
        """The pointer after ``name`` was retired (never the active one)."""
        if name == self.active:
            raise ValueError(f"generation {name!r} is active; switch away from it first")
        rest = {k: v for k, v in self.generations.items() if k != name}
        return dataclasses.replace(self, generations=rest, previous=None if self.previous == name else self.previous)

    def with_generations(self, config: PipelineConfig) -> IndexPointer:
        """The pointer knowing every live generation of ``config`` (the active one kept when it is still live)."""
        live = {g.name: PointerEntry.of(g) for g in live_generations(config)}
        active = self.active if self.active in live else config.generation
        return dataclasses.replace(self, generations=live, active=active)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> IndexPointer:
        """Parse a pointer document; ValueError says what is wrong with it."""
        try:
            raw = json.loads(text)
            entries = {name: PointerEntry(**entry) for name, entry in raw["generations"].items()}
            pointer = cls(
                active=str(raw["active"]),
                generations=entries,
                bucket=raw.get("bucket"),
                previous=raw.get("previous"),
                changed_at=str(raw.get("changed_at", "")),
                version=int(raw.get("version", 1)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an index pointer document: {exc}") from exc
        if pointer.active not in entries:
            raise ValueError(f"the index pointer's active generation {pointer.active!r} has no entry")
        return pointer


def initial_pointer(config: PipelineConfig, bucket: str | None = None) -> IndexPointer:
    """The pointer a new stack starts with: the config's own generation active, every live one listed."""
    live = {g.name: PointerEntry.of(g) for g in live_generations(config)}
    return IndexPointer(active=config.generation, generations=live, bucket=bucket or config.vector_store.bucket_name)


class PointerStore(Protocol):
    """Where the pointer document lives (an SSM parameter; ``freshvec.adapters.ssm``)."""

    def read(self) -> str | None:
        """The document, or None when there is none yet."""
        ...

    def write(self, document: str) -> None: ...


def pointer_parameter_name(config: PipelineConfig) -> str:
    """The SSM parameter holding the index pointer (the stack creates it; local mode uses the same name)."""
    return f"/freshvec/{config.stack_name}/index-pointer"


class CachedPointer:
    """The active generation as a reader sees it: read once, then again after ``ttl_s`` (one GetParameter per
    ``ttl_s`` per process, so a switch reaches every reader within ``ttl_s``). A failed refresh keeps the last
    good pointer for up to ``stale_ok_s`` more, so a brief SSM outage does not stop queries."""

    def __init__(
        self,
        store: PointerStore,
        ttl_s: float = c.POINTER_CACHE_TTL_S,
        *,
        stale_ok_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl_s
        self._stale_ok = stale_ok_s
        self._clock = clock
        self._lock = threading.Lock()
        self._value: IndexPointer | None = None
        self._read_at = -float("inf")

    def current(self) -> IndexPointer:
        now = self._clock()
        with self._lock:
            if self._value is not None and now - self._read_at < self._ttl:
                return self._value
            try:
                text = self._store.read()
            except Exception:
                if self._value is not None and now - self._read_at < self._ttl + self._stale_ok:
                    return self._value
                raise
            if text is None:
                raise LookupError("the index pointer has not been written yet")
            self._value, self._read_at = IndexPointer.from_json(text), now
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._read_at = -float("inf")


@dataclass
class CopyStats:
    """Chunks of one generation's batch that came from another generation or a batch job, not the model."""

    copied: int = 0
    embedded: int = 0  # texts that went to the model


@dataclass
class GenerationReport:
    """One generation's share of a fanned-out batch."""

    name: str
    records: int = 0
    failed_from: int | None = None  # batch position of the first record left for re-delivery
    copy: CopyStats = field(default_factory=CopyStats)

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "copied": self.copy.copied, "embedded": self.copy.embedded}


def promoted(config: PipelineConfig) -> PipelineConfig:
    """The config after a finished migration: the next generation is the only one (what ``migrate finish``
    tells the user to deploy, and what local mode runs on)."""
    nxt = config.next_generation
    if nxt is None:
        raise ConfigError("next_generation", "there is no next generation to promote")
    store = dataclasses.replace(nxt.vector_store, bucket_name=config.vector_store.bucket_name)
    return dataclasses.replace(
        config, generation=nxt.name, embedding=nxt.embedding, chunking=nxt.chunking, vector_store=store,
        next_generation=None,
    )  # fmt: skip


def abandoned(config: PipelineConfig) -> PipelineConfig:
    """The config after a migration was abandoned (rolled back and the next generation retired)."""
    return dataclasses.replace(config, next_generation=None)
