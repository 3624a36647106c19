"""Run every benchmark and merge the figures into bench-results.json (keys from other runs are kept); the README's
figures block is re-rendered from it after every module, so README and results never disagree."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from bench import readme_table

RESULTS = readme_table.RESULTS
# Each module exposes run() -> dict of figures; ratios are measured against a baseline in the same run.
BENCHMARKS = (
    "bench.forwarder",
    "bench.forwarder_checks",
    "bench.sink",
    "bench.bedrock_quota",
    "bench.local_freshness",
    "bench.reconcile",
    "bench.chunking",
    "bench.pg_forwarder",
    "bench.cold_start",
    "bench.hybrid",
    "bench.init",
    "bench.migration",
)


def write_results(figures: dict, results: Path = RESULTS, readme: Path = readme_table.README) -> None:
    """Merge ``figures`` into the results file, then render the README's figures block from it."""
    merged = json.loads(results.read_text()) if results.exists() else {}
    merged.update(figures)
    results.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    readme.write_text(readme_table.rewrite(readme.read_text(), merged))


def main(names: list[str]) -> int:
    selected = [n for n in BENCHMARKS if not names or n.split(".")[-1] in names]
    for name in selected:
        started = time.monotonic()
        try:
            figures = importlib.import_module(name).run()
        except AssertionError as exc:  # a benchmark found a wrong result: the figures would mean nothing
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            return 1
        figures[f"{name.split('.')[-1]}_bench_seconds"] = round(time.monotonic() - started, 2)
        write_results(figures)
        print(f"{name}: {json.dumps(figures, sort_keys=True)}")
    print(f"results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
