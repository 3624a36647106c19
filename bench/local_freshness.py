"""Freshness end to end in local mode: a steady 50 changes/s for 30 s, write call -> searchable.

The pipeline runs with the config as cdk.json ships it (so the event source mapping's 1 s batching window
is part of the figure, as it is in AWS). After the sample movies are loaded, a writer changes rows at a
steady rate, mixing text rewrites (re-embedded), rating updates (vector reused), deletes and re-inserts.
Every change's freshness is the time from its write call until the sink applied it, measured by source
position (see freshvec.local.tracker). Targets: p50 <= 1,000 ms, p99 <= 3,000 ms.

The baseline measured in the same run is the bare loop round trip of one change with no waiting on a
batching window (window 0): ``local_freshness_p50_over_baseline`` shows how much of the p50 the deployed
mapping settings add.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import numpy as np

from freshvec.config import DEFAULT_CONFIG, default_config
from freshvec.datafiles import sample_movies
from freshvec.local.demo import read_rows
from freshvec.local.pipeline import LocalPipeline

DATA = sample_movies()
RATE_PER_S = 50
DURATION_S = 30
BASELINE_CHANGES = 20
SYNC_TIMEOUT_S = 120


def _change(rng: random.Random, rows: list[dict[str, Any]], step: int) -> tuple[str, dict[str, Any]]:
    row = rows[rng.randrange(len(rows))]
    kind = rng.random()
    if kind < 0.45:
        return "upsert", {**row, "overview": f"{row['overview']} Revision {step}."}
    if kind < 0.9:
        return "upsert", {**row, "vote_count": int(row.get("vote_count") or 0) + step}
    if kind < 0.95:
        return "delete", {"title": row["title"]}
    return "upsert", row


def _steady_writes(pipeline: LocalPipeline, rows: list[dict[str, Any]], rate: float, duration: float) -> list[Any]:
    rng = random.Random(42)
    receipts = []
    interval = 1 / rate
    started = time.monotonic()
    step = 0
    while (due := started + step * interval) < started + duration:
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        kind, row = _change(rng, rows, step)
        receipt = pipeline.upsert([row]) if kind == "upsert" else pipeline.delete([row])
        if receipt.changes:
            receipts.append(receipt)
        step += 1
    return receipts


def _baseline_ms(rows: list[dict[str, Any]]) -> float:
    config = {**DEFAULT_CONFIG, "sink": {"batching_window_s": 0}}
    with LocalPipeline.start(config) as pipeline:
        pipeline.wait_synced(SYNC_TIMEOUT_S, pipeline.upsert(rows))
        figures = []
        for step in range(BASELINE_CHANGES):
            row = rows[step % len(rows)]
            receipt = pipeline.upsert([{**row, "vote_count": int(row.get("vote_count") or 0) + step + 1}])
            pipeline.wait_synced(SYNC_TIMEOUT_S, receipt)
            figures.append(pipeline.freshness_ms(receipt))
        return float(np.percentile(figures, 50))


def run() -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    config = default_config()
    with LocalPipeline.start(config) as pipeline:
        rows = read_rows(DATA, pipeline.config)
        pipeline.wait_synced(SYNC_TIMEOUT_S, pipeline.upsert(rows))
        started = time.monotonic()
        receipts = _steady_writes(pipeline, rows, RATE_PER_S, DURATION_S)
        elapsed = time.monotonic() - started
        pipeline.wait_synced(SYNC_TIMEOUT_S)
        freshness = np.array([pipeline.freshness_ms(r) for r in receipts])
        stats = pipeline.stats()
    baseline = _baseline_ms(rows)
    p50 = float(np.percentile(freshness, 50))
    return {
        "local_freshness_p50_ms": round(p50, 1),
        "local_freshness_p99_ms": round(float(np.percentile(freshness, 99)), 1),
        "local_freshness_max_ms": round(float(freshness.max()), 1),
        "local_freshness_changes": len(receipts),
        "local_freshness_rate_per_s": round(len(receipts) / elapsed, 1),
        "local_freshness_batching_window_s": pipeline.config.sink.batching_window_s,
        "local_freshness_baseline_p50_ms": round(baseline, 1),
        "local_freshness_p50_over_baseline": round(p50 / baseline, 2) if baseline else None,
        "local_freshness_embeddings_computed": stats.get("embeddings_computed"),
        "local_freshness_embeddings_skipped": stats.get("embeddings_skipped"),
    }


if __name__ == "__main__":
    print(run())
