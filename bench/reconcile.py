"""Reconcile over 100,000 rows in local mode: rows compared per second, and the peak memory it takes.

Set up (not measured): the rows are written straight into a ``LocalTable`` served by the real control API,
and the index is what the sink would have stored for each row (fingerprint, mapped metadata, version), with
100 vectors left out so the run also finds drift. moto answers ListVectors with the whole index at once (it
does not page), so the index side is a paged ListVectors stand-in holding what moto would return, 1,000 a
page and split into segments as S3 Vectors splits them.

Measured: ``freshvec.cli.reconcile.reconcile`` end to end (table scan over HTTP, listing, spilling to
partitions, the comparison), once for time and once under tracemalloc for the peak of what it allocates
(the set-up data is allocated before tracing starts and is not counted).
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from freshvec import constants as c
from freshvec import versions
from freshvec.cli import reconcile
from freshvec.cli.stack import StackResources
from freshvec.config import default_config
from freshvec.keys import vector_key
from freshvec.local.control import ControlServer
from freshvec.local.keyspaces import LocalTable
from freshvec.local.resources import local_config
from freshvec.metadata import MetadataBuilder
from freshvec.plan import fingerprint

ROWS = 100_000
MISSING = 100
BUCKETS = 64
SEGMENTS = 4


class _TableOnly:
    """What the control API needs to serve table reads from a bare ``LocalTable``."""

    def __init__(self, table: LocalTable) -> None:
        self.table = table

    def scan_rows(self, segment: int, segments: int, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
        page, cursor = self.table.scan(segment, segments, after=after, limit=limit)
        return {"rows": [{"row": row, "version": version} for row, version in page], "next": cursor}


class _PagedIndex:
    """ListVectors over a fixed list of vectors: maxResults, nextToken, segmentCount/segmentIndex."""

    def __init__(self, vectors: list[dict[str, Any]]) -> None:
        self.vectors = vectors

    def list_vectors(self, **kwargs: Any) -> dict[str, Any]:
        count, index = kwargs.get("segmentCount", 1), kwargs.get("segmentIndex", 0)
        start = int(kwargs.get("nextToken") or 0)
        segment = self.vectors[index::count]
        end = start + kwargs.get("maxResults", 500)
        page = {"vectors": segment[start:end]}
        if end < len(segment):
            page["nextToken"] = str(end)
        return page


def _setup() -> tuple[LocalTable, list[dict[str, Any]]]:
    config = local_config(default_config())
    table = LocalTable(config.keyspace, config.table, config.column_types, config.partition_key)
    langs = itertools.cycle(["en", "fr", "de", "ja", "es"])
    for start in range(0, ROWS, 5000):
        table.upsert(
            {
                "title": f"Film {n:06d}",
                "overview": f"Film {n} follows a crew of {n % 97} people through a storm over the {n % 13}th sea.",
                "original_lang": next(langs),
                "rel_date": f"{1950 + n % 70}-0{1 + n % 9}-1{n % 10}",
                "popularity": f"{n % 1000}.{n % 7}",
                "vote_count": n,
                "vote_average": f"{n % 10}.{n % 9}",
            }
            for n in range(start, min(ROWS, start + 5000))
        )
    builder = MetadataBuilder(config)
    e = config.embedding
    changed_at = datetime.now(UTC)
    vectors = []
    for position, (row, version) in enumerate(table.rows_with_versions()):
        if position < MISSING:
            continue
        fp = fingerprint(
            model_id=e.model_id,
            dimensions=e.dimensions,
            normalize=e.normalize,
            max_input_chars=c.input_char_limit(e.provider, e.model_id),
            text=row["overview"],
        )
        # The bench rows' overviews are short: one chunk each, chunk 0 of 1, as the sink stores them.
        write = versions.stamp(f"{position:016x}", versions.KsChange(version, "bench", 0, position).text())
        metadata = builder.build(
            row, seq=str(position), changed_at=changed_at, fingerprint=fp, version=write, chunk=(0, 1)
        )
        vectors.append({"key": vector_key(row, config.key_columns), "metadata": metadata})
    return table, vectors


def _resources(control: ControlServer) -> StackResources:
    config = local_config(default_config())
    outputs = {
        c.OUT_PIPELINE_CONFIG: config.to_json(),
        c.OUT_VECTOR_BUCKET: "bench-vectors",
        c.OUT_VECTOR_INDEX: "bench-index",
        c.OUT_STREAM_NAME: "bench-stream",
    }
    return StackResources.from_outputs(
        "local", "us-east-1", outputs, control_url=control.url, control_token=control.token
    )


def _once(resources: StackResources, index: _PagedIndex) -> reconcile.ReconcileReport:
    sides = reconcile.Sides(
        reconcile.table_pages(resources, None, SEGMENTS), reconcile.index_pages(index, resources, SEGMENTS)
    )
    report = reconcile.reconcile(resources, sides, buckets=BUCKETS, workers=SEGMENTS * 2)
    assert report.rows == ROWS and report.counts["missing"] == MISSING and report.drift == MISSING, report.as_json()
    return report


def run() -> dict[str, float]:
    table, vectors = _setup()
    control = ControlServer(_TableOnly(table)).start()  # type: ignore[arg-type]
    try:
        resources = _resources(control)
        index = _PagedIndex(vectors)
        started = time.monotonic()
        _once(resources, index)
        seconds = time.monotonic() - started
        tracemalloc.start()
        try:
            _once(resources, index)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        control.stop()
    return {
        "reconcile_rows": ROWS,
        "reconcile_rows_per_s": round(ROWS / seconds),
        "reconcile_peak_mb": round(peak / 1e6, 1),
        "reconcile_buckets": BUCKETS,
    }


if __name__ == "__main__":
    print(run())
