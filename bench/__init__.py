"""Benchmarks: `make bench` runs every module in BENCHMARKS and merges their figures into bench-results.json."""
