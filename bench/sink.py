"""Sink benchmark: Bedrock calls, S3 Vectors write calls and wall time of the sink vs a naive baseline.

Both run in the same process against the same moto server, with the Bedrock fake answering after an
injected latency (20 ms a call, about what Titan V2 takes for a short text). The workload is a table's
life in Kinesis batches of 100: inserts (some rows sharing a text), then text updates, metadata-only
updates, rows changed several times in one batch, and deletes. The baseline is what the reference
connector does: for each record, one embedding call and one write, one after the other.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections import Counter
from typing import Any

from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.config import default_config
from freshvec.local.moto_server import MotoServer
from freshvec.retry import RetryPolicy
from freshvec.sink import Sink
from freshvec.testing.builders import change, kinesis_record, movie
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime

BEDROCK_LATENCY_S = 0.02
BATCH_SIZE = 100
ROWS = 300
DIMENSION = 256
_WRITES = ("PutVectors", "DeleteVectors")


def workload(seed: int = 7) -> list[dict[str, Any]]:
    """600 change events in Kinesis order."""
    rng = random.Random(seed)
    texts = {
        i: f"Overview number {i}: a story about {rng.choice(['ships', 'cities', 'dogs', 'storms'])}."
        for i in range(ROWS)
    }
    for i in rng.sample(range(ROWS), 50):  # rows that share their text with another row
        texts[i] = texts[(i + 1) % ROWS]
    docs = [change("INSERT", movie(f"m{i}", texts[i])) for i in range(ROWS)]
    ids = list(range(ROWS))
    rng.shuffle(ids)
    text_updates, meta_updates, repeated, deletes = ids[:80], ids[80:180], ids[180:200], ids[200:280]
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


class _Counter:
    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def __call__(self, model: Any, **_kw: Any) -> None:
        self.calls[model.name] += 1


def _environment(server: MotoServer, name: str) -> tuple[Any, Any, str, str, _Counter]:
    s3vectors, sqs = server.client("s3vectors"), server.client("sqs")
    counter = _Counter()
    s3vectors.meta.events.register("before-call.s3vectors", lambda model, **kw: counter(model))
    bucket = f"bench-{name}"
    s3vectors.create_vector_bucket(vectorBucketName=bucket)
    s3vectors.create_index(
        vectorBucketName=bucket, indexName="movies", dataType="float32", dimension=DIMENSION, distanceMetric="cosine"
    )
    queue_url = sqs.create_queue(QueueName=f"bench-{name}-dlq")["QueueUrl"]
    return s3vectors, sqs, bucket, queue_url, counter


def _stored(s3vectors: Any, bucket: str) -> dict[str, list[float]]:
    listed = s3vectors.list_vectors(vectorBucketName=bucket, indexName="movies", returnData=True)["vectors"]
    return {v["key"]: v["data"]["float32"] for v in listed}


def run_sink(server: MotoServer, docs: list[dict[str, Any]]) -> dict[str, Any]:
    config = default_config()
    s3vectors, sqs, bucket, queue_url, counter = _environment(server, "sink")
    bedrock = FakeBedrockRuntime(latency_s=BEDROCK_LATENCY_S)
    retry = RetryPolicy()
    sink = Sink(
        config,
        make_embedder(config.embedding, bedrock, retry),
        S3VectorsStore(s3vectors, bucket, "movies", retry),
        SqsDeadLetterQueue(sqs, queue_url, retry),
        tombstones=InProcessTombstones(),
    )
    records = [kinesis_record(doc, i + 1) for i, doc in enumerate(docs)]
    counter.calls.clear()
    started = time.perf_counter()
    for start in range(0, len(records), BATCH_SIZE):
        result = sink.process(records[start : start + BATCH_SIZE])
        assert not result.batch_item_failures
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bedrock_calls": len(bedrock.calls),
        "write_calls": sum(counter.calls[op] for op in _WRITES),
        "index": _stored(s3vectors, bucket),
    }


def run_naive(server: MotoServer, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One embedding call and one write per record, in order: the reference connector's loop."""
    config = default_config()
    s3vectors, _sqs, bucket, _queue_url, counter = _environment(server, "naive")
    bedrock = FakeBedrockRuntime(latency_s=BEDROCK_LATENCY_S)
    records = [kinesis_record(doc, i + 1) for i, doc in enumerate(docs)]
    counter.calls.clear()
    started = time.perf_counter()
    for record in records:
        event = json.loads(base64.b64decode(record["kinesis"]["data"]))
        key = json.dumps([event["key"]["title"]], separators=(",", ":"), ensure_ascii=False)
        if event["op"] in ("DELETE", "EXPIRE"):
            s3vectors.delete_vectors(vectorBucketName=bucket, indexName="movies", keys=[key])
            continue
        text = event["new"][config.embedding_field]
        body = json.dumps({"inputText": text, "dimensions": DIMENSION, "normalize": True})
        response = bedrock.invoke_model(modelId=config.embedding.model_id, body=body)
        vector = json.loads(response["body"].read())["embedding"]
        s3vectors.put_vectors(
            vectorBucketName=bucket,
            indexName="movies",
            vectors=[{"key": key, "data": {"float32": vector}, "metadata": {"title": event["key"]["title"]}}],
        )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bedrock_calls": len(bedrock.calls),
        "write_calls": sum(counter.calls[op] for op in _WRITES),
        "index": _stored(s3vectors, bucket),
    }


def run() -> dict[str, Any]:
    docs = workload()
    with MotoServer.start() as server:
        naive = run_naive(server, docs)
        sink = run_sink(server, docs)
    same_vectors = naive["index"].keys() == sink["index"].keys() and all(
        max(abs(a - b) for a, b in zip(naive["index"][k], sink["index"][k], strict=True)) < 1e-6 for k in naive["index"]
    )
    return {
        "sink_changes": len(docs),
        "sink_bedrock_latency_ms": BEDROCK_LATENCY_S * 1000,
        "sink_bedrock_calls": sink["bedrock_calls"],
        "sink_naive_bedrock_calls": naive["bedrock_calls"],
        "sink_bedrock_calls_ratio_vs_naive": round(sink["bedrock_calls"] / naive["bedrock_calls"], 3),
        "sink_write_calls": sink["write_calls"],
        "sink_naive_write_calls": naive["write_calls"],
        "sink_write_calls_ratio_vs_naive": round(sink["write_calls"] / naive["write_calls"], 3),
        "sink_seconds": round(sink["seconds"], 3),
        "sink_naive_seconds": round(naive["seconds"], 3),
        "sink_speedup_vs_naive": round(naive["seconds"] / sink["seconds"], 2),
        "sink_changes_per_s": round(len(docs) / sink["seconds"], 1),
        "sink_naive_changes_per_s": round(len(docs) / naive["seconds"], 1),
        "sink_index_matches_naive": same_vectors,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
