"""Sink benchmark with a latency model: the sink vs the reference connector and a concurrent per-record loop.

Latency model, for every figure that is a rate: Bedrock 50 ms a call (the fake's latency), S3 Vectors 100 ms
a call (GetVectors included), SQS 20 ms, added around a moto server by wrapping the clients (as
``bench.forwarder.SlowKinesis`` does). Two workloads in Kinesis batches of 100 (per-row order kept):

- **mixed**: a table's life: inserts (some rows sharing a text), text updates, metadata-only updates, rows
  changed twice in a batch, deletes;
- **churn** over an existing table: 70 % metadata-only updates, 20 % inserts, 10 % deletes.

Three runs of each in the same process, each into its own index (the stand-ins answer from a child process,
as in local mode):

- the sink as deployed: ``PARALLEL`` lanes per shard (the event source mapping's parallelization factor,
  records spread by partition key), each its own ``Sink`` with ``embedding.max_concurrency`` Bedrock calls;
- ``naive``: the reference connector: one embedding and one write per record, one after the other;
- ``naive_concurrent``: the same per-record work with the sink's concurrency (lanes x max_concurrency
  workers, a row's records always on one worker, in order), no coalescing, reuse or batching.

The churn rates are steady-state figures: the sink and ``naive_concurrent`` run all ``CHURN_CHANGES`` (several
batches per lane, so the rate is not one batch's latency chain); the sequential ``naive`` runs only the first
``NAIVE_PREFIX`` changes (at one change per ~150 ms, more would only lengthen the benchmark; its rate does not
depend on the count). Every rate is changes over seconds of its own run.

Every final index must equal the others on the same changes (keys, vectors within 1e-6, metadata without the
pipeline's own keys: ``_seq``, ``_changed_at``, ``_fp``, ``_ver``, ``_chunk(s)``): ``naive_concurrent`` against
the sink's full run, and ``naive`` against a second, untimed sink run on the same prefix into its own index. A
difference makes ``run`` raise, and ``python -m bench`` exit 1.

CPU per change is measured twice with ``time.process_time``: with in-memory ports and no latency
(``sink_cpu_us_per_change``: the sink's own work), and with real boto3 clients against a moto server in
another process (``sink_sdk_cpu_us_per_change``: what a Lambda pays for serialising requests), the latter
also with the SDK's parameter validation off for the s3vectors client (``..._novalidation``).
"""

from __future__ import annotations

import base64
import json
import queue
import random
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from bench.pricing import Usage, kinesis_billed_bytes
from freshvec import constants as c
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.config import PipelineConfig, default_config
from freshvec.keys import vector_key
from freshvec.local.moto_process import MotoProcess
from freshvec.local.moto_server import MotoServer
from freshvec.metadata import MetadataBuilder
from freshvec.retry import RetryPolicy
from freshvec.sink import Sink
from freshvec.testing.builders import change, kinesis_record, movie
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime, approximate_tokens
from freshvec.testing.fakes.memory import InMemoryDeadLetterQueue, InMemoryVectorStore, TableEmbedder

BEDROCK_LATENCY_S = 0.05
S3V_LATENCY_S = 0.10
SQS_LATENCY_S = 0.02
BATCH_SIZE = 100
PARALLEL = 4  # lanes per shard: the event source mapping's parallelization factor
ROWS = 150  # mixed workload: 2 x ROWS changes
CHURN_TABLE = 2_000
CHURN_CHANGES = 2_000  # 5 batches of 100 per lane
NAIVE_PREFIX = 200  # the sequential baseline's share of the churn workload (~30 s at the latency model)
CPU_TABLE, CPU_CHANGES = 2_000, 6_000
SDK_TABLE, SDK_CHANGES = 500, 1_500
DIMENSION = 256
_WRITES = ("PutVectors", "DeleteVectors")
_PIPELINE_KEYS = {*c.PIPELINE_NON_FILTERABLE_KEYS, *c.PIPELINE_FILTERABLE_KEYS}  # provenance and chunk numbers
TOLERANCE = 1e-6


def workload(seed: int = 7) -> list[dict[str, Any]]:
    """The mixed workload: a table's life (inserts, text and metadata updates, repeats, deletes)."""
    rng = random.Random(seed)
    texts = {
        i: f"Overview number {i}: a story about {rng.choice(['ships', 'cities', 'dogs', 'storms'])}."
        for i in range(ROWS)
    }
    for i in rng.sample(range(ROWS), ROWS // 6):  # rows that share their text with another row
        texts[i] = texts[(i + 1) % ROWS]
    docs = [change("INSERT", movie(f"m{i}", texts[i])) for i in range(ROWS)]
    ids = list(range(ROWS))
    rng.shuffle(ids)
    q = ROWS // 15  # the same shares as 300 rows: 80 text, 100 metadata, 20 repeated, 80 deletes
    text_updates, meta_updates, repeated, deletes = (
        ids[: 4 * q],
        ids[4 * q : 9 * q],
        ids[9 * q : 10 * q],
        ids[10 * q : 14 * q],
    )
    later: list[dict[str, Any]] = []
    for i in text_updates:
        new_text = texts[i] + " Revised."
        later.append(change("UPDATE", movie(f"m{i}", new_text), movie(f"m{i}", texts[i])))
        texts[i] = new_text
    for i in meta_updates:
        later.append(
            change("UPDATE", movie(f"m{i}", texts[i], vote_count=rng.randint(1, 999)), movie(f"m{i}", texts[i]))
        )
    for i in repeated:  # the same row changed twice in a row: text, then metadata
        new_text = texts[i] + " Extended cut."
        later.append(change("UPDATE", movie(f"m{i}", new_text), movie(f"m{i}", texts[i])))
        later.append(change("UPDATE", movie(f"m{i}", new_text, vote_count=1), movie(f"m{i}", new_text)))
        texts[i] = new_text
    for i in deletes:
        later.append(change("DELETE", None, movie(f"m{i}", texts[i])))
    return docs + _interleave(later, rng)


def _interleave(docs: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Shuffle across rows but keep each row's changes in order, as Kinesis does per partition key."""
    slots = list(range(len(docs)))
    rng.shuffle(slots)
    by_row: dict[str, list[int]] = {}
    for position, slot in enumerate(slots):
        by_row.setdefault(docs[slot]["key"]["title"], []).append(position)
    ordered: list[dict[str, Any]] = [{}] * len(docs)
    for title, positions in by_row.items():
        for position, doc in zip(sorted(positions), [d for d in docs if d["key"]["title"] == title], strict=True):
            ordered[position] = doc
    return ordered


def churn(table_rows: int, changes: int, seed: int = 11) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inserts that make the existing table, then changes: 70 % metadata-only, 20 % inserts, 10 % deletes."""
    rng = random.Random(seed)
    topics = ["ships", "cities", "dogs", "storms", "trains", "rivers"]
    texts = {
        i: f"Overview {i}: a story about {rng.choice(topics)} and {rng.choice(topics)}." for i in range(table_rows)
    }
    table = [change("INSERT", movie(f"m{i}", texts[i])) for i in range(table_rows)]
    live = list(range(table_rows))
    votes = dict.fromkeys(live, 100)
    next_id = table_rows
    docs: list[dict[str, Any]] = []
    for _ in range(changes):
        kind = rng.random()
        if kind < 0.7 and live:
            i = rng.choice(live)
            old = movie(f"m{i}", texts[i], vote_count=votes[i])
            votes[i] += rng.randint(1, 50)
            docs.append(change("UPDATE", movie(f"m{i}", texts[i], vote_count=votes[i]), old))
        elif kind < 0.9 or not live:
            i, next_id = next_id, next_id + 1
            texts[i], votes[i] = f"Overview {i}: a new story about {rng.choice(topics)}.", 100
            docs.append(change("INSERT", movie(f"m{i}", texts[i])))
            live.append(i)
        else:
            i = live.pop(rng.randrange(len(live)))
            docs.append(change("DELETE", None, movie(f"m{i}", texts[i], vote_count=votes[i])))
    return table, docs


class Slow:
    """A boto3 client with a fixed latency per call; one call into moto at a time (the latency overlaps)."""

    def __init__(self, client: Any, latency_s: float, lock: threading.Lock) -> None:
        self._client = client
        self._latency_s = latency_s
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or name in ("meta", "exceptions", "get_paginator") or not callable(attribute):
            return attribute

        def call(**params: Any) -> Any:
            time.sleep(self._latency_s)
            with self._lock:
                return attribute(**params)

        return call


class _Counter:
    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.put_bytes = 0

    def __call__(self, model: Any, params: dict[str, Any], **_kw: Any) -> None:
        self.calls[model.name] += 1
        if model.name == "PutVectors":
            for v in params.get("vectors", []):
                meta = json.dumps(v.get("metadata") or {}, separators=(",", ":"))
                self.put_bytes += 4 * len(v["data"]["float32"]) + len(v["key"].encode()) + len(meta.encode())


def _index(server: MotoServer, name: str, counter: _Counter | None = None, **client_config: Any) -> tuple[Any, str]:
    s3vectors = server.client("s3vectors", **client_config)
    if counter is not None:
        s3vectors.meta.events.register("before-call.s3vectors", counter)
    bucket = f"bench-{name}"
    s3vectors.create_vector_bucket(vectorBucketName=bucket)
    s3vectors.create_index(
        vectorBucketName=bucket,
        indexName="movies",
        dataType="float32",
        dimension=DIMENSION,
        distanceMetric="cosine",
        metadataConfiguration={"nonFilterableMetadataKeys": ["overview", *c.PIPELINE_NON_FILTERABLE_KEYS]},
    )
    return s3vectors, bucket


def _stored(s3vectors: Any, bucket: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
    found: dict[str, tuple[list[float], dict[str, Any]]] = {}
    params: dict[str, Any] = {"vectorBucketName": bucket, "indexName": "movies", "returnData": True}
    while True:
        page = s3vectors.list_vectors(**params, returnMetadata=True)
        for v in page["vectors"]:
            meta = {k: val for k, val in (v.get("metadata") or {}).items() if k not in _PIPELINE_KEYS}
            found[v["key"]] = (v["data"]["float32"], meta)
        if not page.get("nextToken"):
            return found
        params["nextToken"] = page["nextToken"]


def _records(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [kinesis_record(doc, i + 1) for i, doc in enumerate(docs)]


def _lane(record: dict[str, Any], lanes: int) -> int:
    return zlib.crc32(record["kinesis"]["partitionKey"].encode()) % lanes


def _sink(config: PipelineConfig, s3vectors: Any, bucket: str, bedrock: Any, sqs: Any, queue_url: str) -> Sink:
    retry = RetryPolicy()
    return Sink(
        config,
        make_embedder(config.embedding, bedrock, retry),
        S3VectorsStore(s3vectors, bucket, "movies", retry),
        SqsDeadLetterQueue(sqs, queue_url, retry),
        tombstones=InProcessTombstones(),
    )


def _prefill(server: MotoServer, config: PipelineConfig, s3vectors: Any, bucket: str, table: list[dict]) -> None:
    """The existing table's vectors, written by the sink without latency (not timed)."""
    if not table:
        return
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=f"{bucket}-prefill")["QueueUrl"]
    sink = _sink(config, s3vectors, bucket, FakeBedrockRuntime(), sqs, url)
    records = _records(table)
    for start in range(0, len(records), BATCH_SIZE):
        assert not sink.process(records[start : start + BATCH_SIZE]).batch_item_failures


def run_sink(server: MotoServer, name: str, table: list[dict], docs: list[dict]) -> dict[str, Any]:
    config = default_config()
    counter = _Counter()
    raw, bucket = _index(server, name, counter)
    _prefill(server, config, raw, bucket, table)
    lock = threading.Lock()
    s3vectors = Slow(raw, S3V_LATENCY_S, lock)
    raw_sqs = server.client("sqs")
    url = raw_sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    sqs = Slow(raw_sqs, SQS_LATENCY_S, lock)
    bedrock = FakeBedrockRuntime(latency_s=BEDROCK_LATENCY_S)
    sinks = [_sink(config, s3vectors, bucket, bedrock, sqs, url) for _ in range(PARALLEL)]
    records = _records(docs)
    lanes: list[list[dict[str, Any]]] = [[] for _ in range(PARALLEL)]
    for record in records:
        lanes[_lane(record, PARALLEL)].append(record)
    counter.calls.clear()
    counter.put_bytes = 0
    durations: list[float] = []

    def lane(number: int) -> None:
        mine = lanes[number]
        for start in range(0, len(mine), BATCH_SIZE):
            began = time.perf_counter()
            result = sinks[number].process(mine[start : start + BATCH_SIZE])
            durations.append(time.perf_counter() - began)
            assert not result.batch_item_failures and not result.dead_letters

    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lane, range(PARALLEL)))
    seconds = time.perf_counter() - started
    return _outcome(seconds, durations, bedrock, counter, raw, bucket, records, config)


def _outcome(
    seconds: float,
    durations: list[float],
    bedrock: FakeBedrockRuntime,
    counter: _Counter,
    s3vectors: Any,
    bucket: str,
    records: list[dict[str, Any]],
    config: PipelineConfig,
) -> dict[str, Any]:
    texts = bedrock.texts_embedded()
    kinesis = sum(kinesis_billed_bytes(len(base64.b64decode(r["kinesis"]["data"]))) for r in records)
    usage = Usage(
        bedrock_input_tokens=sum(approximate_tokens(t) for t in texts),
        lambda_gb_s=sum(durations) * config.sink.memory_mb / 1024,
        lambda_requests=len(durations),
        kinesis_billed_bytes_in=kinesis,
        kinesis_billed_bytes_out=kinesis,
        s3v_logical_bytes_put=counter.put_bytes,
        s3v_other_requests=sum(counter.calls.values()),
    )
    return {
        "seconds": seconds,
        "bedrock_calls": len(bedrock.calls),
        "write_calls": sum(counter.calls[op] for op in _WRITES),
        "get_calls": counter.calls["GetVectors"],
        "usage": usage,
        "index": _stored(s3vectors, bucket),
    }


def _naive_apply(config: PipelineConfig, builder: MetadataBuilder, s3vectors: Any, bucket: str, bedrock: Any) -> Any:
    def apply(record: dict[str, Any]) -> None:
        event = json.loads(base64.b64decode(record["kinesis"]["data"]))
        key = vector_key(event["key"], config.key_columns)
        if event["op"] in ("DELETE", "EXPIRE"):
            s3vectors.delete_vectors(vectorBucketName=bucket, indexName="movies", keys=[key])
            return
        text = event["new"][config.embedding_field]
        body = json.dumps({"inputText": text, "dimensions": DIMENSION, "normalize": True})
        response = bedrock.invoke_model(modelId=config.embedding.model_id, body=body)
        vector = json.loads(response["body"].read())["embedding"]
        metadata = builder.build(event["new"], seq=event["seq"], changed_at=datetime.fromisoformat(event["ts"]))
        s3vectors.put_vectors(
            vectorBucketName=bucket,
            indexName="movies",
            vectors=[{"key": key, "data": {"float32": vector}, "metadata": metadata}],
        )

    return apply


def run_naive(server: MotoServer, name: str, table: list[dict], docs: list[dict], workers: int = 1) -> dict[str, Any]:
    """One embedding call and one write per record; ``workers`` > 1: that many at once, a row on one worker."""
    config = default_config()
    counter = _Counter()
    raw, bucket = _index(server, name, counter)
    _prefill(server, config, raw, bucket, table)
    s3vectors = Slow(raw, S3V_LATENCY_S, threading.Lock())
    bedrock = FakeBedrockRuntime(latency_s=BEDROCK_LATENCY_S)
    apply = _naive_apply(config, MetadataBuilder(config), s3vectors, bucket, bedrock)
    records = _records(docs)
    counter.calls.clear()
    counter.put_bytes = 0
    started = time.perf_counter()
    if workers == 1:
        for record in records:
            apply(record)
    else:
        queues: list[queue.Queue] = [queue.Queue() for _ in range(workers)]
        for record in records:
            queues[_lane(record, workers)].put(record)

        def worker(q: queue.Queue) -> None:
            while not q.empty():
                apply(q.get())

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(worker, queues))
    seconds = time.perf_counter() - started
    return _outcome(seconds, [seconds], bedrock, counter, raw, bucket, records, config)


def compare(name: str, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Differences between two final indexes (empty: the same)."""
    problems = []
    if expected.keys() != actual.keys():
        problems.append(f"{name}: keys differ: {sorted(expected.keys() ^ actual.keys())[:5]}")
    for key in expected.keys() & actual.keys():
        (a, meta_a), (b, meta_b) = expected[key], actual[key]
        if len(a) != len(b) or max(abs(x - y) for x, y in zip(a, b, strict=True)) > TOLERANCE:
            problems.append(f"{name}: vector of {key} differs")
        if meta_a != meta_b:
            problems.append(f"{name}: metadata of {key} differs: {meta_a} != {meta_b}")
    return problems


# ---- CPU per change ------------------------------------------------------------------------------------
def cpu_in_memory(table: list[dict], docs: list[dict]) -> float:
    """The sink's own CPU per change (µs): in-memory ports, no I/O, no latency."""
    config = default_config()
    store = InMemoryVectorStore(DIMENSION)
    embedder = TableEmbedder(DIMENSION, model_id=config.embedding.model_id, max_input_chars=c.TITAN_MAX_INPUT_CHARS)
    sink = Sink(config, embedder, store, InMemoryDeadLetterQueue(), tombstones=InProcessTombstones())
    return _cpu_per_change(sink, table, docs)


def cpu_with_sdk(table: list[dict], docs: list[dict], *, validation: bool) -> float:
    """CPU per change (µs) in this process with real boto3 clients; moto runs in another process."""
    server = MotoProcess().wait_ready()
    try:
        config = default_config()
        raw, bucket = _index(server, "sdk", parameter_validation=validation)
        sqs = server.client("sqs")
        url = sqs.create_queue(QueueName="sdk-dlq")["QueueUrl"]
        sink = _sink(config, raw, bucket, FakeBedrockRuntime(), sqs, url)
        sink.embedder = TableEmbedder(DIMENSION, model_id=config.embedding.model_id)
        sink.embedder.max_input_chars = c.TITAN_MAX_INPUT_CHARS
        return _cpu_per_change(sink, table, docs)
    finally:
        server.stop()


def _cpu_per_change(sink: Sink, table: list[dict], docs: list[dict]) -> float:
    """CPU (µs) per change of ``docs`` through ``sink``, after ``table`` is in the index (not timed)."""
    for batch in _batches(_records(table)):
        sink.process(batch)
    batches = _batches(_records(docs))
    started = time.process_time()
    for batch in batches:
        assert not sink.process(batch).batch_item_failures
    return (time.process_time() - started) / len(docs) * 1e6


def _batches(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [records[i : i + BATCH_SIZE] for i in range(0, len(records), BATCH_SIZE)]


def run() -> dict[str, Any]:
    mixed_docs = workload()
    table, churn_docs = churn(CHURN_TABLE, CHURN_CHANGES)
    prefix = churn_docs[:NAIVE_PREFIX]
    problems: list[str] = []
    # The S3 Vectors and SQS stand-ins run in a process of their own, as in local mode: their work is not the
    # sink's and must not compete with the lanes being measured for this interpreter's lock.
    with MotoProcess().wait_ready() as server:
        mixed_sink = run_sink(server, "sink-mixed", [], mixed_docs)
        mixed_naive = run_naive(server, "naive-mixed", [], mixed_docs)
        mixed_concurrent = run_naive(server, "conc-mixed", [], mixed_docs, workers=PARALLEL * 8)
        problems += compare("mixed naive vs sink", mixed_naive["index"], mixed_sink["index"])
        problems += compare("mixed concurrent vs sink", mixed_concurrent["index"], mixed_sink["index"])
        sink = run_sink(server, "sink-churn", table, churn_docs)
        concurrent = run_naive(server, "conc-churn", table, churn_docs, workers=PARALLEL * 8)
        problems += compare("churn concurrent vs sink", concurrent["index"], sink["index"])
        sink_prefix = run_sink(server, "sink-prefix", table, prefix)  # untimed: the index naive must match
        naive = run_naive(server, "naive-churn", table, prefix)
        problems += compare("churn prefix naive vs sink", naive["index"], sink_prefix["index"])
    if problems:
        raise AssertionError("the sink's index differs from a baseline's:\n" + "\n".join(problems[:20]))
    n, naive_n, mixed_n = len(churn_docs), len(prefix), len(mixed_docs)
    sink_rate, naive_rate, concurrent_rate = n / sink["seconds"], naive_n / naive["seconds"], n / concurrent["seconds"]
    cpu_table, cpu_docs = churn(CPU_TABLE, CPU_CHANGES, seed=5)
    sdk_table, sdk_docs = churn(SDK_TABLE, SDK_CHANGES, seed=6)
    sdk = cpu_with_sdk(sdk_table, sdk_docs, validation=True)
    sdk_novalidation = cpu_with_sdk(sdk_table, sdk_docs, validation=False)
    sink_cost = sink["usage"].per_1000_changes(n)
    naive_cost = naive["usage"].per_1000_changes(naive_n)
    return {
        "sink_latency_model_ms": {
            "bedrock": BEDROCK_LATENCY_S * 1000,
            "s3vectors": S3V_LATENCY_S * 1000,
            "sqs": SQS_LATENCY_S * 1000,
        },
        "sink_parallel_lanes": PARALLEL,
        "sink_churn_changes": n,
        "naive_churn_changes": naive_n,
        "sink_changes_per_s": round(sink_rate, 1),
        "naive_changes_per_s": round(naive_rate, 1),
        "naive_concurrent_changes_per_s": round(concurrent_rate, 1),
        "sink_speedup_vs_naive": round(sink_rate / naive_rate, 2),
        "sink_speedup_vs_naive_concurrent": round(sink_rate / concurrent_rate, 2),
        "bedrock_calls_per_change_churn": round(sink["bedrock_calls"] / n, 3),
        "naive_bedrock_calls_per_change_churn": round(naive["bedrock_calls"] / naive_n, 3),
        "s3v_write_requests_per_1000_changes": round(sink["write_calls"] * 1000 / n, 1),
        "naive_s3v_write_requests_per_1000_changes": round(naive["write_calls"] * 1000 / naive_n, 1),
        "sink_getvectors_per_1000_changes": round(sink["get_calls"] * 1000 / n, 1),
        "sink_mixed_changes": mixed_n,
        "sink_changes_per_s_mixed": round(mixed_n / mixed_sink["seconds"], 1),
        "naive_changes_per_s_mixed": round(mixed_n / mixed_naive["seconds"], 1),
        "naive_concurrent_changes_per_s_mixed": round(mixed_n / mixed_concurrent["seconds"], 1),
        "bedrock_calls_per_change_mixed": round(mixed_sink["bedrock_calls"] / mixed_n, 3),
        "sink_index_matches_baselines": True,
        "sink_cpu_us_per_change": round(cpu_in_memory(cpu_table, cpu_docs), 1),
        "sink_sdk_cpu_us_per_change": round(sdk, 1),
        "sink_sdk_cpu_us_per_change_novalidation": round(sdk_novalidation, 1),
        "cost_usd_per_1000_changes_churn": round(sink_cost["total"], 6),
        "naive_cost_usd_per_1000_changes_churn": round(naive_cost["total"], 6),
        "cost_usd_per_1000_changes_churn_by_service": {k: round(v, 7) for k, v in sink_cost.items()},
        "naive_cost_usd_per_1000_changes_churn_by_service": {k: round(v, 7) for k, v in naive_cost.items()},
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
