"""Freshness end to end in local mode: a steady 50 changes/s for 30 s, write call -> searchable.

The pipeline runs with the config as cdk.json ships it (so the event source mapping's 1 s batching window
is part of the figure, as it is in AWS). After the sample movies are loaded, a writer changes rows at a
steady rate, mixing text rewrites (re-embedded), rating updates (vector reused), deletes and re-inserts.
Every change's freshness is the time from its write call until the sink applied it, measured by source
position (see freshvec.local.tracker). The local event source mapping polls an idle shard once a second and
reads again at once after a read that returned records, as Lambda does. Targets: p50 <= 2,000 ms,
p99 <= 4,000 ms.

The baseline measured in the same run is the same steady load for 15 s with a batching window of 0 s
(``local_freshness_nowindow_*``): ``local_freshness_p50_over_nowindow`` shows what the 1 s window adds.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from freshvec.config import DEFAULT_CONFIG, default_config
from freshvec.datafiles import sample_movies
from freshvec.local.demo import read_rows
from freshvec.local.pipeline import LocalPipeline

DATA = sample_movies()
RATE_PER_S = 50
DURATION_S = 30
NOWINDOW_S = 15
TARGET_P50_MS = 2_000
TARGET_P99_MS = 4_000
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


Change = Callable[[random.Random, list[dict[str, Any]], int], tuple[str, dict[str, Any]]]


def steady_writes(
    pipeline: LocalPipeline, rows: list[dict[str, Any]], rate: float, duration: float, change: Change = _change
) -> list[Any]:
    """``rate`` changes a second for ``duration`` seconds, each ``change(rng, rows, step)`` (an upsert or a delete
    of one row); the receipts of those that changed something."""
    rng = random.Random(42)
    receipts = []
    interval = 1 / rate
    started = time.monotonic()
    step = 0
    while (due := started + step * interval) < started + duration:
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        kind, row = change(rng, rows, step)
        receipt = pipeline.upsert([row]) if kind == "upsert" else pipeline.delete([row])
        if receipt.changes:
            receipts.append(receipt)
        step += 1
    return receipts


def _steady_run(config: Any, duration: float) -> dict[str, Any]:
    with LocalPipeline.start(config) as pipeline:
        rows = read_rows(DATA, pipeline.config)
        pipeline.wait_synced(SYNC_TIMEOUT_S, pipeline.upsert(rows))
        started = time.monotonic()
        receipts = steady_writes(pipeline, rows, RATE_PER_S, duration)
        elapsed = time.monotonic() - started
        pipeline.wait_synced(SYNC_TIMEOUT_S)
        freshness = np.array([pipeline.freshness_ms(r) for r in receipts])
        return {
            "freshness": freshness,
            "changes": len(receipts),
            "rate": len(receipts) / elapsed,
            "window_s": pipeline.config.sink.batching_window_s,
            "poll_interval_s": pipeline.mapping.settings.poll_interval_s,
            "stats": pipeline.stats(),
        }


def run() -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    deployed = _steady_run(default_config(), DURATION_S)
    no_window = {**DEFAULT_CONFIG, "sink": {**DEFAULT_CONFIG.get("sink", {}), "batching_window_s": 0}}
    nowindow = _steady_run(no_window, NOWINDOW_S)
    freshness, bare = deployed["freshness"], nowindow["freshness"]
    p50, bare_p50 = float(np.percentile(freshness, 50)), float(np.percentile(bare, 50))
    stats = deployed["stats"]
    return {
        "local_freshness_p50_ms": round(p50, 1),
        "local_freshness_p99_ms": round(float(np.percentile(freshness, 99)), 1),
        "local_freshness_max_ms": round(float(freshness.max()), 1),
        "local_freshness_changes": deployed["changes"],
        "local_freshness_rate_per_s": round(deployed["rate"], 1),
        "local_freshness_batching_window_s": deployed["window_s"],
        "local_freshness_poll_interval_s": deployed["poll_interval_s"],
        "local_freshness_nowindow_p50_ms": round(bare_p50, 1),
        "local_freshness_nowindow_p99_ms": round(float(np.percentile(bare, 99)), 1),
        "local_freshness_p50_over_nowindow": round(p50 / bare_p50, 2) if bare_p50 else None,
        "local_freshness_targets_met": p50 <= TARGET_P50_MS and float(np.percentile(freshness, 99)) <= TARGET_P99_MS,
        "local_freshness_embeddings_computed": stats.get("embeddings_computed"),
        "local_freshness_embeddings_skipped": stats.get("embeddings_skipped"),
    }


if __name__ == "__main__":
    print(run())
