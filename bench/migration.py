"""A migration to a new index generation, measured: how fast it fills on demand and in batch, what limits it,
what it costs, whether readers ever notice, and how much it copies instead of embedding.

Latency model, as in ``bench.sink``: Bedrock 50 ms a call (the fake's latency) under an account quota
(``QUOTA_RPM`` requests a minute, burst ``QUOTA_BURST``: the fake answers ThrottlingException beyond it), S3
Vectors 100 ms a call, plus the index's write limit: 2,500 vectors a second per index (a token bucket every
write to that index draws from; a write waits for its tokens, as the sink's backoff on 429 would). The quota is
scaled down from a real account's thousands a minute so the run stays short; the binding limit is named from
the same quantities (``freshvec.migration.plan`` does that arithmetic for a real table).

Part A — throughput, cost, readers (``ROWS`` rows, Titan V2 256 -> 1024 dimensions: nothing can be copied):

- on demand: ``LANES`` sinks (``GenerationSink``: the active generation and the next one) take the migration's
  re-syncs for the next generation in Kinesis batches of 100, while a live writer updates rows and a reader
  queries through the cached index pointer;
- batch: the same re-syncs carry the vectors a batch job computed (the job's own turnaround — hours on the
  service — is not part of this rate; ``migrate plan`` adds it), so the sink makes no Bedrock call.
- ``migration_rows_per_s`` = the on-demand rate (``_ondemand``; ``_batch`` the apply rate);
  ``migration_binding_limit`` = which of the quota and the index write limit allows fewer rows a second (with
  ``migration_quota_utilization``, the measured rate over what the quota allows: below 1 the per-batch chain of
  S3 Vectors calls costs the rest); ``migration_binding_limit_batch``: the index write limit when writes had to
  wait for it, else the S3 Vectors call latency;
- ``migration_query_failures``: reader answers that failed, were empty or had fewer than k rows, during both
  fills and a cutover (must be 0); ``migration_cutover_s``: from the cutover's pointer write until the reader
  (pointer cache ``READER_TTL_S``, scaled from the CLI's 10 s) answers from the new index;
- ``migration_cost_usd_per_1000_rows_ondemand`` / ``_batch``: the tokens the model counted, at
  ``freshvec.pricing``'s dated on-demand and batch prices, plus the S3 Vectors PUT bytes (the same on both).

Part B — copying and quality, with WordLlama (local mode's model) over the sample movies and long documents: a
chunking-only migration (1,000 -> 400 characters, same model). ``migration_reembed_avoided_share``: rows whose
every chunk fingerprint already existed (copied, not embedded), as ``migrate plan`` counts it, checked against
the chunks the sink actually copied; ``migration_overlap_at_10``: mean overlap@10 of the two generations'
answers to queries sampled from the table's texts. Every fill must leave the next generation equal to what a
fresh sink computes (keys and fingerprints), else ``run`` raises.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from freshvec import constants as c
from freshvec import migration, pricing
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.chunking import expected_chunks, group_hits, query_top_k
from freshvec.config import PipelineConfig, default_config
from freshvec.datafiles import sample_movies
from freshvec.generation_sink import GenerationSink, encode_vector
from freshvec.generations import CachedPointer, initial_pointer, live_generations
from freshvec.keys import vector_key
from freshvec.retry import RetryPolicy
from freshvec.testing.builders import change, kinesis_record, movie
from freshvec.testing.fakes.bedrock import BedrockQuota, FakeBedrockRuntime, fake_vector
from freshvec.testing.fakes.memory import InMemoryDeadLetterQueue, InMemoryVectorStore

ROWS = 1200
LANES = 4
BATCH = 100
QUOTA_RPM = 6000  # 100 calls a second
QUOTA_BURST = 50
BEDROCK_LATENCY_S = 0.05
S3V_LATENCY_S = 0.10
INDEX_VECTORS_PER_S = c.S3V_INDEX_VECTORS_PER_S
READER_TTL_S = 1.0
K = 5


class _WriteLimit:
    """A token bucket of vectors a second for one index."""

    def __init__(self, per_s: float) -> None:
        self.per_s = per_s
        self.tokens = per_s
        self.at = time.monotonic()
        self.lock = threading.Lock()
        self.waited_s = 0.0

    def take(self, n: int) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.per_s, self.tokens + (now - self.at) * self.per_s)
                self.at = now
                if self.tokens >= n or self.tokens >= self.per_s:
                    self.tokens -= n
                    return
                wait = (n - self.tokens) / self.per_s
                self.waited_s += wait
            time.sleep(wait)


class _SlowStore:
    """An in-memory index with S3 Vectors' call latency and write limit."""

    def __init__(self, inner: InMemoryVectorStore, limit: _WriteLimit) -> None:
        self.inner = inner
        self.limit = limit
        self.put_bytes = 0

    def describe(self) -> Any:
        return self.inner.describe()

    def put(self, vectors: list[dict[str, Any]]) -> None:
        self.limit.take(len(vectors))
        time.sleep(S3V_LATENCY_S)
        # S3 Vectors bills PUT by logical bytes: the float32 data, the key and the metadata
        self.put_bytes += sum(
            4 * len(v["data"]["float32"]) + len(v["key"]) + len(json.dumps(v.get("metadata") or {})) for v in vectors
        )
        self.inner.put(vectors)

    def delete(self, keys: Sequence[str]) -> None:
        time.sleep(S3V_LATENCY_S)
        self.inner.delete(keys)

    def get(self, keys: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        time.sleep(S3V_LATENCY_S)
        return self.inner.get(keys, **kwargs)

    def query(self, vector: Sequence[float], k: int, filter: Any = None, return_metadata: bool = True) -> Any:
        time.sleep(S3V_LATENCY_S)
        return self.inner.query(vector, k, filter, return_metadata)


class _Pointer:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self) -> str:
        return self.text

    def write(self, document: str) -> None:
        self.text = document


def _config(next_generation: dict[str, Any], chunking: dict[str, Any] | None = None) -> PipelineConfig:
    raw = json.loads(json.dumps(default_config().to_dict()))
    if chunking:
        raw["chunking"] = chunking
    raw["next_generation"] = next_generation
    return PipelineConfig.from_dict(raw)


def _text(i: int) -> str:
    return (
        f"Film number {i}: a story of {('sailors', 'thieves', 'robots', 'dinosaurs')[i % 4]} and their {i % 7} friends."
    )


def _resync(row: dict[str, Any], version: int, target: str, vectors: dict[str, str] | None = None) -> dict[str, Any]:
    doc = change("UPDATE", row)
    doc.update(origin="BACKFILL", version=version, generations=[target])
    if vectors:
        doc["vectors"] = vectors
    return doc


class _Run:
    """One Part A fill: lanes of sinks over shared indexes, a live writer and a reader."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.live = live_generations(config)
        self.limits = {g.name: _WriteLimit(INDEX_VECTORS_PER_S) for g in self.live}
        self.stores = {
            g.name: _SlowStore(InMemoryVectorStore(g.config.embedding.dimensions), self.limits[g.name])
            for g in self.live
        }
        self.quota = BedrockQuota(QUOTA_RPM, QUOTA_BURST)
        self.clients = [FakeBedrockRuntime(latency_s=BEDROCK_LATENCY_S, quota=self.quota) for _ in range(LANES)]
        self.sinks = [
            GenerationSink(
                self.live,
                {g.name: make_embedder(g.config.embedding, client, RetryPolicy()) for g in self.live},
                self.stores,
                InMemoryDeadLetterQueue(),
                tombstones=InProcessTombstones(),
            )
            for client in self.clients
        ]
        self.pointer = _Pointer(initial_pointer(config, "bench").to_json())
        self.sequence = itertools.count(1)
        self.failures: list[str] = []
        self.reader_stop = threading.Event()
        self.reader_index: list[tuple[float, str]] = []
        # Live changes wait for their lane's next batch, as a shard's records do: one batch at a time per lane.
        self.live_changes: list[list[dict[str, Any]]] = [[] for _ in range(LANES)]
        self.live_lock = threading.Lock()

    def add_live(self, lane: int, doc: dict[str, Any]) -> None:
        with self.live_lock:
            self.live_changes[lane].append(doc)

    def apply(self, lane: int, docs: list[dict[str, Any]]) -> None:
        with self.live_lock:
            docs, self.live_changes[lane] = docs + self.live_changes[lane], []
        records = [kinesis_record(doc, next(self.sequence)) for doc in docs]
        while records:
            result = self.sinks[lane].process(records)
            if not result.batch_item_failures:
                return
            failed = result.batch_item_failures[0]["itemIdentifier"]
            records = records[[r["kinesis"]["sequenceNumber"] for r in records].index(failed) :]

    def fill(self, docs_for: Any, rows: int) -> float:
        """Apply every row's re-sync in lanes (a row always on its lane); returns rows a second."""
        started = time.monotonic()

        def lane(number: int) -> None:
            mine = [i for i in range(rows) if i % LANES == number]
            for start in range(0, len(mine), BATCH):
                self.apply(number, [docs_for(i) for i in mine[start : start + BATCH]])

        threads = [threading.Thread(target=lane, args=(n,)) for n in range(LANES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return rows / (time.monotonic() - started)

    def reader(self) -> None:
        cached = CachedPointer(self.pointer, ttl_s=READER_TTL_S)
        embedders = {g.name: make_embedder(g.config.embedding, FakeBedrockRuntime(), RetryPolicy()) for g in self.live}
        for n in itertools.count():
            if self.reader_stop.is_set():
                return
            try:
                active = cached.current().active
                vector = embedders[active].embed_query(_text(n % ROWS))
                hits = self.stores[active].query(vector, query_top_k(K))
                rows = group_hits(hits, K, self.config.embedding_field)
                if len(rows) != K:
                    self.failures.append(f"{len(rows)} rows from {active}")
                self.reader_index.append((time.monotonic(), active))
            except Exception as exc:  # noqa: BLE001 - a failed answer is what this counts
                self.failures.append(f"{type(exc).__name__}: {exc}")


def _part_a() -> dict[str, Any]:
    config = _config({"name": "g2", "embedding": {"provider": "titan", "dimensions": 1024}})
    rows = [movie(f"m{i}", _text(i)) for i in range(ROWS)]
    figures: dict[str, Any] = {}
    results = {}
    for path in ("ondemand", "batch"):
        run = _Run(config)
        run.fill(lambda i, rows=rows: change("INSERT", rows[i]), ROWS)  # the table, live in g1 (and g2)
        run.stores["g2"].inner.delete(list(run.stores["g2"].inner.snapshot()))  # g2 starts empty, as a new index
        run.stores["g2"].put_bytes = 0
        calls_before = sum(len(cl.calls) for cl in run.clients)
        tokens_before = _tokens(run.clients, 1024)
        reader = threading.Thread(target=run.reader)
        reader.start()
        writer_stop = threading.Event()
        writer = threading.Thread(target=_live_writer, args=(run, rows, writer_stop))
        writer.start()
        if path == "batch":  # a batch job's vectors (computed by the same model), riding in the re-syncs
            limit = c.PROVIDER_MAX_INPUT_CHARS["titan"]
            g2 = run.live[1].config

            def docs_for(i: int, rows: list[Any] = rows, g2: PipelineConfig = g2, limit: int = limit) -> dict[str, Any]:
                key = vector_key({"title": rows[i]["title"]}, ("title",))
                chunks = expected_chunks(g2, key, rows[i]["overview"], max_input_chars=limit)
                vectors = {ch.fingerprint: encode_vector(fake_vector(ch.text, 1024)) for ch in chunks}
                return _resync(rows[i], 10**15 + i, "g2", vectors)

            rate = run.fill(docs_for, ROWS)
        else:
            rate = run.fill(lambda i, rows=rows: _resync(rows[i], 10**15 + i, "g2"), ROWS)
        writer_stop.set()
        writer.join()
        for lane in range(LANES):
            run.apply(lane, [])  # the live changes still queued
        switched = time.monotonic()
        pointer = initial_pointer(config, "bench").switched_to("g2")
        run.pointer.write(pointer.to_json())
        while not any(at >= switched and active == "g2" for at, active in run.reader_index[-20:]):
            time.sleep(0.01)
        cutover_s = time.monotonic() - switched
        time.sleep(0.3)
        run.reader_stop.set()
        reader.join()
        _check_filled(run, rows)
        calls = sum(len(cl.calls) for cl in run.clients) - calls_before
        tokens = _tokens(run.clients, 1024) - tokens_before
        price = (
            pricing.batch_usd_per_1k_tokens(c.TITAN_V2)
            if path == "batch"
            else pricing.ondemand_usd_per_1k_tokens(c.TITAN_V2)
        )
        if path == "batch":  # the batch job embedded what the re-syncs carry: its tokens, at the batch price
            tokens = sum(migration.math.ceil(len(_text(i)) / migration.CHARS_PER_TOKEN) for i in range(ROWS))
        s3v_put_usd = run.stores["g2"].put_bytes / 1024**3 * 0.20
        results[path] = {
            "rate": rate,
            "cutover_s": cutover_s,
            "failures": len(run.failures),
            "bedrock_calls": calls,
            "usd_per_1000": (tokens / 1000 * price + s3v_put_usd) * 1000 / ROWS,
            "write_wait_s": run.limits["g2"].waited_s,
            "throttled": run.quota.refused,
        }
    quota_rows_per_s = QUOTA_RPM / 60  # Titan: one text per call, one chunk per row here
    figures.update(
        migration_quota_rows_per_s=quota_rows_per_s,
        migration_quota_utilization=round(results["ondemand"]["rate"] / quota_rows_per_s, 3),
        migration_rows_per_s=round(results["ondemand"]["rate"], 1),
        migration_rows_per_s_ondemand=round(results["ondemand"]["rate"], 1),
        migration_rows_per_s_batch=round(results["batch"]["rate"], 1),
        # the quota binds when it throttled the fill (the pacing then holds each lane below its share); the index
        # write limit when writes waited for it; else the per-batch chain of calls
        migration_binding_limit="bedrock_quota"
        if results["ondemand"]["throttled"]
        else "index_write_limit"
        if results["ondemand"]["write_wait_s"]
        else "call_latency",
        migration_ondemand_throttles=results["ondemand"]["throttled"],
        migration_binding_limit_batch="index_write_limit"
        if results["batch"]["write_wait_s"] > 0
        else "s3vectors_latency",
        migration_quota_requests_per_minute=QUOTA_RPM,
        migration_index_vectors_per_s=INDEX_VECTORS_PER_S,
        migration_query_failures=results["ondemand"]["failures"] + results["batch"]["failures"],
        migration_cutover_s=round(max(r["cutover_s"] for r in results.values()), 3),
        migration_reader_pointer_ttl_s=READER_TTL_S,
        migration_cost_usd_per_1000_rows_ondemand=round(results["ondemand"]["usd_per_1000"], 8),
        migration_cost_usd_per_1000_rows_batch=round(results["batch"]["usd_per_1000"], 8),
        migration_prices_date=pricing.PRICES_DATE,
        migration_batch_bedrock_calls=results["batch"]["bedrock_calls"],
    )
    assert figures["migration_query_failures"] == 0, results
    return figures


def _tokens(clients: list[FakeBedrockRuntime], dimensions: int) -> int:
    from freshvec.testing.fakes.bedrock import approximate_tokens

    return sum(
        approximate_tokens(call["body"]["inputText"])
        for client in clients
        for call in client.calls
        if call["error"] is None and call["body"].get("dimensions") == dimensions
    )


def _live_writer(run: _Run, rows: list[dict[str, Any]], stop: threading.Event) -> None:
    """Live traffic during the fill: metadata updates of rows, on the rows' own lanes (one writer per key)."""
    for n in itertools.count():
        if stop.wait(0.05):
            return
        i = (n * 37) % ROWS
        run.add_live(i % LANES, change("UPDATE", {**rows[i], "vote_count": n}))


def _check_filled(run: _Run, rows: list[dict[str, Any]]) -> None:
    g2 = run.live[1].config
    stored = run.stores["g2"].inner.snapshot()
    limit = c.PROVIDER_MAX_INPUT_CHARS["titan"]
    for row in rows:
        key = vector_key({"title": row["title"]}, ("title",))
        expected = expected_chunks(g2, key, row["overview"], max_input_chars=limit)
        for chunk in expected:
            assert chunk.key in stored, f"{chunk.key} missing from g2"
            assert stored[chunk.key][1][c.META_FINGERPRINT] == chunk.fingerprint, f"{chunk.key} stale in g2"


def _part_b() -> dict[str, Any]:
    from freshvec.local.embedder import LocalEmbedder
    from freshvec.local.resources import local_config

    config = local_config(
        _config(
            {"name": "g2", "chunking": {"max_chars": 400}, "vector_store": {"index_name": "movies-small"}},
            chunking={"max_chars": 1000},
        )
    )
    from freshvec.local.demo import read_rows

    rows = read_rows(sample_movies(), config, lambda _line: None)
    rows += read_rows(sample_movies().parent / "longdocs" / "documents.jsonl", config, lambda _line: None)
    rows = [r for r in rows if isinstance(r.get(config.embedding_field), str)]
    live = live_generations(config)
    embedder = LocalEmbedder(256)
    stores = {g.name: InMemoryVectorStore(256) for g in live}
    sink = GenerationSink(live, {g.name: embedder for g in live}, stores, InMemoryDeadLetterQueue(),
                          tombstones=InProcessTombstones())  # fmt: skip
    g1_only = dataclasses.replace(config, next_generation=None)
    fill_g1 = GenerationSink(live[:1], {"g1": embedder}, {"g1": stores["g1"]}, InMemoryDeadLetterQueue(),
                             tombstones=InProcessTombstones())  # fmt: skip
    sequence = itertools.count(1)
    for start in range(0, len(rows), BATCH):
        fill_g1.process(
            [kinesis_record(change("INSERT", r, config=g1_only), next(sequence)) for r in rows[start : start + BATCH]]
        )
    # what migrate plan counts: rows whose every chunk already exists in g1
    existing = {meta[c.META_FINGERPRINT] for _data, meta in stores["g1"].snapshot().values()}
    census = migration.Census()
    seen: set[str] = set()
    limit = embedder.max_input_chars
    for row in rows:
        key = vector_key({k: row[k] for k in config.key_columns}, config.key_columns)
        chunks = expected_chunks(live[1].config, key, row[config.embedding_field], max_input_chars=limit)
        census.add_row([ch.fingerprint for ch in chunks], [ch.text for ch in chunks], existing, seen)
    copied = embedded = 0
    for start in range(0, len(rows), BATCH):
        docs = [_resync(r, 10**15 + i, "g2") for i, r in enumerate(rows[start : start + BATCH], start=start)]
        for doc in docs:
            doc["key"] = {k: doc["new"][k] for k in config.primary_key}
            doc["keyspace"], doc["table"] = config.keyspace, config.table
        result = sink.process([kinesis_record(d, next(sequence)) for d in docs])
        assert not result.batch_item_failures
        copied += result.generations["g2"].copy.copied
        embedded += result.generations["g2"].copy.embedded
    assert copied == census.copyable_chunks, (copied, census.copyable_chunks)
    overlaps = []
    for row in rows[:: max(1, len(rows) // 40)]:
        text = row[config.embedding_field].split(". ")[0][:200]
        vector = embedder.embed_query(text)
        ranked = {
            name: [h.key for h in group_hits(stores[name].query(vector, query_top_k(10)), 10, config.embedding_field)]
            for name in ("g1", "g2")
        }
        overlaps.append(migration.overlap_at_k(ranked["g1"], ranked["g2"], 10))
    return {
        "migration_reembed_avoided_share": round(census.reembed_avoided_share, 4),
        "migration_chunks_copied": copied,
        "migration_chunks_embedded": embedded,
        "migration_overlap_at_10": round(migration.mean(overlaps), 4),
    }


def run() -> dict[str, Any]:
    return {**_part_a(), **_part_b()}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, sort_keys=True))
