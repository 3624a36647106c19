"""The sink over every live index generation: the domain ``Sink`` run once per generation on the same batch.

Each generation has its own ``Sink`` (its embedder, its index, its chunking), so each keeps its own
fingerprints and versions, and a row whose text did not change costs no embedding in either (each reuses
its own stored vector). This module only composes them:

- **Routing.** A change event may name the generations it is for (``"generations": [...]``, written by
  ``freshvec backfill/redrive/reconcile --generation`` and ``freshvec migrate start``); it then reaches only
  those. Everything else — every live change — reaches every live generation.
- **One failure point.** Generations run in config order. A generation that leaves records for re-delivery
  reports the first of them; the next generation is given only the records before that point (what the
  event source mapping re-delivers would be applied again anyway), and the batch reports the lowest point of
  all. So nothing at or after it is applied by a generation that had not applied it before, and everything
  before it was applied to every generation. On re-delivery a generation that had applied part of the tail
  applies it again: its stored vectors carry the same fingerprints and versions, so it writes the same state
  and embeds nothing (the version rule drops what is older, the fingerprint rule reuses the vector).
- **Parked once.** A record that can never succeed for any generation (bad JSON, another table) is parked in
  the dead-letter queue once, not once per generation; a record one generation refuses for its own reason (a
  text its model cannot take) is parked with that reason.
- **Copied, not embedded.** When two generations embed with the same model, dimensions and normalize flag
  (a migration that changes only index settings or chunk boundaries), a chunk the later one needs is first
  looked up among the earlier one's stored chunks of the same rows, by fingerprint, and copied; a re-sync
  may also carry vectors a Bedrock batch job computed (``"vectors": {fingerprint: base64 float32}``). Only
  what neither holds goes to the model.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from freshvec import constants as c
from freshvec.chunking import chunk_keys, stored_chunk_count
from freshvec.errors import PoisonRecordError, TransientError
from freshvec.generations import CopyStats, Generation, GenerationReport, same_fingerprint_space
from freshvec.keys import vector_key
from freshvec.plan import fingerprint
from freshvec.ports import DeadLetterQueue, DeadLetterSendError, Embedder, EmbedResult, TombstoneStore, VectorStore
from freshvec.sink import Sink, SinkResult, SinkStats


def encode_vector(vector: Sequence[float]) -> str:
    """A float32 vector as base64 of its little-endian bytes (how a re-sync carries a precomputed vector)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_vector(text: str, dimensions: int) -> list[float] | None:
    """The vector ``encode_vector`` wrote, or None when it is not one of ``dimensions`` floats."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    if len(raw) != 4 * dimensions:
        return None
    return list(struct.unpack(f"<{dimensions}f", raw))


# ---- the embedder that copies first ------------------------------------------------------------------------
class CopyingEmbedder:
    """An ``Embedder`` that answers a text from known vectors (by fingerprint) before asking the model."""

    def __init__(self, inner: Embedder, generation: Generation) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimensions = inner.dimensions
        self.max_input_chars = inner.max_input_chars
        self._embedding = generation.config.embedding
        self.known: dict[str, list[float]] = {}
        self.stats = CopyStats()

    def reset(self, known: Mapping[str, list[float]]) -> None:
        self.known = dict(known)
        self.stats = CopyStats()

    def fingerprint(self, text: str) -> str:
        e = self._embedding
        return fingerprint(
            model_id=e.model_id, dimensions=e.dimensions, normalize=e.normalize,
            max_input_chars=self.max_input_chars, text=text,
        )  # fmt: skip

    def try_embed_documents(self, texts: Sequence[str]) -> list[EmbedResult]:
        results: list[EmbedResult | None] = []
        missing: list[int] = []
        for position, text in enumerate(texts):
            vector = self.known.get(self.fingerprint(text)) if self.known else None
            results.append(EmbedResult(list(vector)) if vector is not None else None)
            if vector is None:
                missing.append(position)
        self.stats.copied += len(texts) - len(missing)
        if missing:
            self.stats.embedded += len(missing)
            for position, result in zip(
                missing, self.inner.try_embed_documents([texts[i] for i in missing]), strict=True
            ):
                results[position] = result
        return [r for r in results if r is not None]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


class _ParkOnce:
    """A dead-letter queue shared by the generations of one batch: an entry already parked is not sent again."""

    def __init__(self, inner: DeadLetterQueue) -> None:
        self.inner = inner
        self.sent: set[tuple[str, str]] = set()

    def send(self, entries: Sequence[Mapping[str, Any]]) -> None:
        positions = [i for i, e in enumerate(entries) if _parked_id(e) not in self.sent]
        if not positions:
            return
        try:
            self.inner.send([entries[i] for i in positions])
        except DeadLetterSendError as exc:  # its positions are within what was sent: name them in ``entries``
            self.sent.update(_parked_id(entries[i]) for n, i in enumerate(positions) if n not in exc.undelivered)
            raise DeadLetterSendError({positions[n]: reason for n, reason in exc.undelivered.items()}) from exc
        self.sent.update(_parked_id(entries[i]) for i in positions)


def _parked_id(entry: Mapping[str, Any]) -> tuple[str, str]:
    return (str(entry.get("kinesis_sequence_number", "")), str(entry.get("error_message", "")))


# ---- the composed sink -------------------------------------------------------------------------------------
@dataclass
class GenerationSinkResult(SinkResult):
    generations: dict[str, GenerationReport] = field(default_factory=dict)


@dataclass
class _Lane:
    generation: Generation
    sink: Sink
    embedder: CopyingEmbedder


class GenerationSink:
    """Applies each batch to every live generation (see the module docstring)."""

    def __init__(
        self,
        generations: Sequence[Generation],
        embedders: Mapping[str, Embedder],
        stores: Mapping[str, VectorStore],
        dlq: DeadLetterQueue,
        *,
        tombstones: TombstoneStore,
        **sink_options: Any,
    ) -> None:
        if not generations:
            raise ValueError("at least one generation")
        self.dlq = _ParkOnce(dlq)
        self.lanes: list[_Lane] = []
        for generation in generations:
            embedder = CopyingEmbedder(embedders[generation.name], generation)
            sink = Sink(
                generation.config, embedder, stores[generation.name], self.dlq, tombstones=tombstones, **sink_options
            )
            self.lanes.append(_Lane(generation, sink, embedder))

    @property
    def names(self) -> list[str]:
        return [lane.generation.name for lane in self.lanes]

    def process(self, records: list[dict[str, Any]]) -> GenerationSinkResult:
        ordered = _in_order(records)
        position = {id(r): i for i, r in enumerate(ordered)}
        routes = [_route(r) for r in ordered]
        limit = len(ordered)
        self.dlq.sent.clear()
        total = SinkStats(changes_received=len(ordered))
        reports: dict[str, GenerationReport] = {}
        dead_letters: list[dict[str, str]] = []
        for number, lane in enumerate(self.lanes):
            name = lane.generation.name
            mine = [r for i, r in enumerate(ordered[:limit]) if routes[i].targets is None or name in routes[i].targets]
            report = GenerationReport(name, records=len(mine))
            reports[name] = report
            if not mine:
                continue
            lane.embedder.reset(self._known(number, lane, [routes[position[id(r)]] for r in mine]))
            result = lane.sink.process(mine)
            report.copy = lane.embedder.stats
            _add(total, result.stats)
            dead_letters.extend(d for d in result.dead_letters if d not in dead_letters)
            if result.batch_item_failures:
                failed = result.batch_item_failures[0]["itemIdentifier"]
                at = next(i for i, r in enumerate(ordered) if _sequence(r) == failed)
                report.failed_from = at
                limit = min(limit, at)
        total.changes_received = len(ordered)
        total.transient_failures = len(ordered) - limit
        failures = [{"itemIdentifier": _sequence(ordered[limit])}] if limit < len(ordered) else []
        return GenerationSinkResult(failures, total, dead_letters, reports)

    def _known(self, number: int, lane: _Lane, routes: Sequence[_Route]) -> dict[str, list[float]]:
        """Vectors the lane may copy: precomputed ones its re-syncs carry, then the stored chunks of the same rows
        in an earlier generation with the same fingerprint space (already brought up to date by this batch)."""
        known: dict[str, list[float]] = {}
        dims = lane.generation.config.embedding.dimensions
        for route in routes:
            for fp, text in route.vectors.items():
                vector = decode_vector(text, dims)
                if vector is not None:
                    known[fp] = vector
        donors = [
            earlier
            for earlier in self.lanes[:number]
            if same_fingerprint_space(earlier.generation.config, lane.generation.config)
            and earlier.embedder.max_input_chars == lane.embedder.max_input_chars
        ]
        rows = sorted({k for k in (_row_key(r, lane.generation) for r in routes if r.has_text) if k is not None})
        for donor in donors:
            if rows:
                known.update(
                    {fp: v for fp, v in _stored_by_fingerprint(donor.sink.store, rows).items() if fp not in known}
                )
        return known


def _stored_by_fingerprint(store: VectorStore, rows: list[str]) -> dict[str, list[float]]:
    """Fingerprint -> vector of every stored chunk of ``rows`` (chunk 0 first, then the others it counts).

    A read that fails only loses the chance to copy: the chunk is embedded instead."""
    try:
        first = store.get(rows, return_data=True, return_metadata=True)
        others = [k for row in rows for k in chunk_keys(row, stored_chunk_count(first.get(row)), start=1)]
        found = {**first, **(store.get(others, return_data=True, return_metadata=True) if others else {})}
    except TransientError:
        return {}
    known: dict[str, list[float]] = {}
    for stored in found.values():
        fp = (stored.get("metadata") or {}).get(c.META_FINGERPRINT)
        if isinstance(fp, str) and stored.get("data"):
            known[fp] = [float(x) for x in stored["data"]]
    return known


@dataclass(frozen=True)
class _Route:
    targets: frozenset[str] | None  # None: every live generation
    key: Mapping[str, Any] | None = None  # the row's primary key, when the record has one
    has_text: bool = False
    vectors: Mapping[str, str] = field(default_factory=dict)


def _route(record: Mapping[str, Any]) -> _Route:
    """Which generations a Kinesis record is for, and what it carries for copying (never raises: a record the
    sink cannot parse goes to every generation, and the first one parks it)."""
    try:
        doc = json.loads(base64.b64decode(record.get("kinesis", {}).get("data", ""), validate=True))
    except (binascii.Error, ValueError, TypeError):
        return _Route(None)
    if not isinstance(doc, dict):
        return _Route(None)
    raw_targets = doc.get(c.EVENT_GENERATIONS)
    targets = None
    if isinstance(raw_targets, list) and raw_targets and all(isinstance(t, str) for t in raw_targets):
        targets = frozenset(raw_targets)
    vectors = doc.get(c.EVENT_VECTORS)
    vectors = {k: v for k, v in vectors.items() if isinstance(v, str)} if isinstance(vectors, dict) else {}
    key = doc.get("key")
    return _Route(targets, key if isinstance(key, dict) and key else None, isinstance(doc.get("new"), dict), vectors)


def _row_key(route: _Route, generation: Generation) -> str | None:
    if route.key is None:
        return None
    try:
        return vector_key(route.key, generation.config.key_columns)
    except (ValueError, TypeError, KeyError, PoisonRecordError):
        return None


def _add(total: SinkStats, stats: SinkStats) -> None:
    for f in fields(SinkStats):
        value = getattr(stats, f.name)
        if isinstance(value, int) and f.name not in ("changes_received", "transient_failures"):
            setattr(total, f.name, getattr(total, f.name) + value)
        elif isinstance(value, list):
            getattr(total, f.name).extend(value)
        elif isinstance(value, float):
            setattr(total, f.name, getattr(total, f.name) + value)


def _sequence(record: Mapping[str, Any]) -> str:
    return str(record.get("kinesis", {}).get("sequenceNumber", ""))


def _in_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    numbers = [_sequence(r) for r in records]
    if all(n.isdigit() for n in numbers):
        return [r for _, r in sorted(zip(map(int, numbers), records, strict=True), key=lambda pair: pair[0])]
    return list(records)
