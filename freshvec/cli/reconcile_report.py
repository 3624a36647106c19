"""What ``freshvec reconcile`` found: the per-partition comparison and its report (counts, examples, JSON, text).

Drift comes in four kinds (``KINDS``; ``freshvec.cli.reconcile`` says what each means). A row the sink refuses
(its metadata or a chunk key over S3 Vectors' limits) is **unindexable**: counted apart with its reason, since
only fixing the row brings it into the index; a vector still stored for such a row is **stale** (an older state
must not be served as the row's), and ``--repair`` removes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from freshvec.cli import console
from freshvec.cli.stack import StackResources

KINDS = ("missing", "stale", "metadata", "orphan")
UNINDEXABLE = "!"  # the table side's fingerprint for a row the sink would refuse (its digest holds the reason)


@dataclass
class ReconcileReport:
    rows: int = 0
    vectors: int = 0
    in_sync: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    unindexable: int = 0  # rows the sink refuses (parked in its DLQ until the row is fixed)
    unindexable_examples: list[str] = field(default_factory=list)  # "<key>: <reason>"
    repaired: dict[str, int] | None = None  # with --repair: keys re-synced, by what was sent
    seconds: float = 0.0

    @property
    def drift(self) -> int:
        return sum(self.counts.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "vectors": self.vectors,
            "in_sync": self.in_sync,
            **self.counts,
            "unindexable": self.unindexable,
            "drift": self.drift,
            "examples": {**self.examples, "unindexable": self.unindexable_examples},
            "repaired": self.repaired,
            "seconds": round(self.seconds, 3),
        }


def compare_bucket(
    table: Iterable[tuple[str, str, str]],
    index: Iterable[tuple[str, str, str]],
    report: ReconcileReport,
    show: int,
    on_drift: Callable[[str, str], None],
) -> int:
    """Compare one partition: the index side in memory, the table side streamed past it; returns the number
    of distinct vectors the partition holds."""
    stored: dict[str, tuple[str, str]] = {key: (fp, digest) for key, fp, digest in index}  # duplicates collapse
    vectors = len(stored)
    for key, fp, digest in table:
        found = stored.pop(key, None)
        if fp == UNINDEXABLE:
            report.unindexable += 1
            if len(report.unindexable_examples) < show:
                report.unindexable_examples.append(f"{key}: {digest}")
            if found is not None:  # an older state of the row, served as if it were the row's
                _drift(report, "stale", key, show, on_drift)
            continue
        kind = "missing" if found is None else "stale" if found[0] != fp else "metadata" if found[1] != digest else ""
        if kind:
            _drift(report, kind, key, show, on_drift)
        else:
            report.in_sync += 1
    for key in stored:
        _drift(report, "orphan", key, show, on_drift)
    return vectors


def _drift(report: ReconcileReport, kind: str, key: str, show: int, on_drift: Callable[[str, str], None]) -> None:
    report.counts[kind] += 1
    if len(report.examples[kind]) < show:
        report.examples[kind].append(key)
    on_drift(kind, key)


def reports_json(reports: Mapping[str, ReconcileReport]) -> dict[str, Any]:
    """One generation: its report (and its name); several: each under ``generations`` and the total drift."""
    if len(reports) == 1:
        return {**next(iter(reports.values())).as_json(), "generation": next(iter(reports))}
    every = {name: report.as_json() for name, report in reports.items()}
    return {"generations": every, "drift": sum(report.drift for report in reports.values())}


def print_report(report: ReconcileReport, res: StackResources, generation: str) -> None:
    where = (
        f"the local pipeline ({res.vector_index})"
        if res.is_local
        else f"{res.config.keyspace}.{res.config.table} / {res.vector_index}"
    )
    console.out.print(
        f"reconcile generation {generation}, {where}: {report.rows} row(s), {report.vectors} vector(s), "
        f"{report.in_sync} in sync ({report.seconds:.1f} s)"
    )
    for kind in KINDS:
        line = f"  {kind:<9} {report.counts[kind]}"
        if report.examples[kind]:
            line += "  e.g. " + ", ".join(report.examples[kind])
        console.out.print(line, markup=False)
    if report.unindexable:
        console.out.print(
            f"  unindexable {report.unindexable} row(s) the sink refuses (fix the row; its change waits in the DLQ,"
            " see `freshvec redrive list`)",
            markup=False,
        )
        for example in report.unindexable_examples:
            console.out.print(f"    {example}", markup=False)
    if report.repaired is not None:
        r = report.repaired
        console.out.print(
            f"repair: {r['update']} row(s) re-sent, {r['delete']} removal(s), {r['none']} already gone, "
            f"{r['stray']} vector key(s) that name no row removed; run reconcile again once the pipeline caught up"
        )
    elif not report.drift and not report.unindexable:
        console.out.print("in sync")
