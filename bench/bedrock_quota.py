"""Embedding at the Bedrock quota: four sink instances share one account quota, with no coordinator.

Scaling: the real on-demand quota is thousands of requests per minute; here it is 600 requests per minute
(10 a second) with a burst of 20, and each run lasts about 20 s, so that the whole benchmark takes about
a minute and a half. The Bedrock fake (``freshvec.testing.fakes.bedrock.BedrockQuota``) answers
``ThrottlingException`` beyond the quota, like the service; Titan answers a call after 50 ms, Cohere (96
texts a call) after 150 ms. Four threads each run their own ``Sink`` and embedder over an in-memory index,
on batches of new texts only (every change needs an embedding), re-delivering from the failed record when
a batch reports a failure, as the event source mapping does.

Figures, same run, adaptive pacing (``embedding.adaptive_rate``, the default) vs today's fixed
concurrency (``max_concurrency`` calls in flight per instance, throttles only retried with backoff):

- ``bedrock_quota_utilization``: successful calls ÷ what the quota allows over the run (rate x time +
  burst); for Titan one call is one embedding. Target >= 0.9;
- ``bedrock_throttled_share``: throttled ÷ all calls. Target <= 0.05;
- ``bedrock_throttle_batch_failures``: batches that reported a failure (the only fault here is
  throttling, after the retry budget). Target 0;
- the same with ``_fixed``, and with ``_cohere`` (adaptive) and ``_cohere_fixed``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from freshvec import constants as c
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.config import PipelineConfig, default_config
from freshvec.retry import RetryPolicy
from freshvec.sink import Sink
from freshvec.testing.builders import change, kinesis_record, movie
from freshvec.testing.fakes.bedrock import BedrockQuota, FakeBedrockRuntime
from freshvec.testing.fakes.memory import InMemoryDeadLetterQueue, InMemoryVectorStore

REQUESTS_PER_MINUTE = 600
BURST = 20
RUN_S = 20.0
INSTANCES = 4
TITAN_LATENCY_S = 0.05
COHERE_LATENCY_S = 0.15
TITAN_BATCH = 10
COHERE_BATCH = 192  # two full calls of 96 texts


def _config(provider: str, adaptive: bool) -> PipelineConfig:
    raw = json.loads(json.dumps(default_config().to_dict()))
    if provider == "cohere":
        raw["embedding"] = {"provider": "cohere", "model_id": c.COHERE_EN_V3, "dimensions": 1024}
    raw["embedding"]["adaptive_rate"] = adaptive
    return PipelineConfig.from_dict(raw)


def _instance(
    number: int, config: PipelineConfig, client: FakeBedrockRuntime, batch: int, deadline: float, out: dict[str, int]
) -> None:
    sink = Sink(
        config,
        make_embedder(config.embedding, client, RetryPolicy()),
        InMemoryVectorStore(config.embedding.dimensions),
        InMemoryDeadLetterQueue(),
        tombstones=InProcessTombstones(),
    )
    sequence = 0
    while time.monotonic() < deadline:
        records = []
        for _ in range(batch):
            sequence += 1
            text = f"Instance {number}, overview {sequence}: a new story that has to be embedded."
            records.append(kinesis_record(change("INSERT", movie(f"i{number}-m{sequence}", text)), sequence))
        while records:
            result = sink.process(records)
            if not result.batch_item_failures:
                break
            out["batch_failures"] += 1
            failed = result.batch_item_failures[0]["itemIdentifier"]
            records = [r for r in records if int(r["kinesis"]["sequenceNumber"]) >= int(failed)]
        out["changes"] += batch


def measure(provider: str, adaptive: bool, run_s: float = RUN_S) -> dict[str, float]:
    config = _config(provider, adaptive)
    quota = BedrockQuota(REQUESTS_PER_MINUTE, BURST)
    latency = TITAN_LATENCY_S if provider == "titan" else COHERE_LATENCY_S
    clients = [FakeBedrockRuntime(latency_s=latency, quota=quota) for _ in range(INSTANCES)]
    counts = [{"batch_failures": 0, "changes": 0} for _ in range(INSTANCES)]
    batch = TITAN_BATCH if provider == "titan" else COHERE_BATCH
    started = time.monotonic()
    threads = [
        threading.Thread(target=_instance, args=(i, config, clients[i], batch, started + run_s, counts[i]))
        for i in range(INSTANCES)
    ]
    at_deadline: dict[str, int] = {}
    # What the quota granted up to the deadline: the batches still finishing after it run with fewer instances.
    timer = threading.Timer(run_s, lambda: at_deadline.update(granted=quota.granted))
    timer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timer.join()
    elapsed = time.monotonic() - started
    calls = [call for client in clients for call in client.calls]
    ok = [call for call in calls if call["error"] is None]
    throttled = sum(1 for call in calls if call["error"] == "ThrottlingException")
    texts = sum(len(call["body"].get("texts", [None])) for call in ok)
    allowed = quota.rate_per_s * run_s + quota.burst
    return {
        "utilization": round(at_deadline["granted"] / allowed, 3),
        "throttled_share": round(throttled / len(calls), 3) if calls else 0.0,
        "batch_failures": sum(c["batch_failures"] for c in counts),
        "embeddings_per_s": round(texts / elapsed, 1),
        "seconds": round(elapsed, 1),
    }


def run() -> dict[str, Any]:
    logging.getLogger("freshvec").setLevel(logging.ERROR)
    figures: dict[str, Any] = {
        "bedrock_quota_requests_per_minute": REQUESTS_PER_MINUTE,
        "bedrock_quota_burst": BURST,
        "bedrock_quota_instances": INSTANCES,
    }
    for provider, adaptive, suffix in (
        ("titan", True, ""),
        ("titan", False, "_fixed"),
        ("cohere", True, "_cohere"),
        ("cohere", False, "_cohere_fixed"),
    ):
        result = measure(provider, adaptive)
        figures[f"bedrock_quota_utilization{suffix}"] = result["utilization"]
        figures[f"bedrock_throttled_share{suffix}"] = result["throttled_share"]
        figures[f"bedrock_throttle_batch_failures{suffix}"] = result["batch_failures"]
        figures[f"bedrock_embeddings_per_s{suffix}"] = result["embeddings_per_s"]
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
