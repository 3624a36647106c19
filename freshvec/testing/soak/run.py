"""The soak run: write the workload through the local pipeline while faults hit every boundary, then judge it.

While the changes flow, two re-syncs race them: a backfill reads every row with its version at 30% of the
workload and sends them as BACKFILL events at 70% (after more live writes: many are stale by then), and at 55%
a redrive takes the parked changes of keys that live on out of the DLQ and re-syncs each key from the table.
Writes of the second client carry ``USING TIMESTAMP`` from its skewed clock; column TTLs run out while the
pipeline runs. Once in sync, the index is damaged behind the pipeline's back and ``freshvec --local reconcile
--repair`` runs against it (``freshvec.testing.soak.corrupt``) before the oracle judges.

``run(changes=...)`` returns a ``SoakReport`` (``report.ok`` is the verdict); ``bench/soak.py`` (``make soak``)
runs it at full size and prints the report.
"""

from __future__ import annotations

import base64
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from freshvec.config import PipelineConfig
from freshvec.constants import KEYSPACES_READER_CLOCK_BOUND_S, KEYSPACES_VISIBILITY_BOUND_S
from freshvec.testing.faults import Chaos, FaultPlan
from freshvec.testing.soak.config import FULL_CHANGES, MAPPING_OVERRIDES, SOAK_CONFIG
from freshvec.testing.soak.corrupt import check_in_sync, corrupt_and_repair
from freshvec.testing.soak.oracle import (
    DlqReader,
    SoakReport,
    build_expectations,
    compare_dlq,
    compare_index,
    read_index,
)
from freshvec.testing.soak.resync import (
    ResyncSender,
    backfill,
    event_key,
    is_ambiguous_resync,
    receive_dlq,
    redrive,
    stored_versions,
)
from freshvec.testing.soak.rules import SoakRules
from freshvec.testing.soak.workload import Workload, Write, generate_workload
from freshvec.versions import keyspaces_read_stamp

BACKFILL_READ_AT = 0.3
REDRIVE_AT = 0.55
BACKFILL_SEND_AT = 0.7


@dataclass
class _Disruptions:
    """Shard splits, merges and iterator expiries in the Keyspaces stand-in, spread over the run."""

    plan: FaultPlan
    calls: int
    rng: random.Random
    schedule: dict[int, list[str]] = field(default_factory=dict)
    split_children: list[tuple[str, str]] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        def at(fraction: float, what: str) -> None:
            self.schedule.setdefault(min(self.calls - 1, int(fraction * self.calls)), []).append(what)

        for i in range(self.plan.shard_splits):
            at(0.1 + 0.5 * i / max(1, self.plan.shard_splits), "split")
        for i in range(self.plan.shard_merges):
            at(0.7 + 0.2 * i / max(1, self.plan.shard_merges), "merge")
        for i in range(self.plan.iterator_expiries):
            at((i + 1) / (self.plan.iterator_expiries + 1), "expire_iterators")

    def apply(self, call_index: int, streams: Any, stream_arn: str) -> None:
        for what in self.schedule.get(call_index, []):
            if what == "split":
                shard = self.rng.choice(streams.shard_ids(stream_arn, open_only=True))
                self.split_children.append(streams.split_shard(stream_arn, shard))
            elif what == "merge":
                open_shards = set(streams.shard_ids(stream_arn, open_only=True))
                pairs = [p for p in self.split_children if p[0] in open_shards and p[1] in open_shards]
                if not pairs:
                    continue
                pair = pairs.pop(0)
                self.split_children.remove(pair)
                streams.merge_shards(stream_arn, *pair)
            else:
                streams.expire_iterators()
            self.done[what] += 1


def _put_raw(kinesis: Any, stream_name: str, writes: Sequence[Write]) -> None:
    """Put raw records, re-sending any the stream did not accept (none should fail: no faults here)."""
    pending = [{"Data": w.raw, "PartitionKey": w.partition_key} for w in writes]
    while pending:
        response = kinesis.put_records(StreamName=stream_name, Records=pending)
        pending = [r for r, entry in zip(pending, response["Records"], strict=True) if "ErrorCode" in entry]


def _wait_quiet(pipeline: Any, deadline: float, quiet_s: float = 1.0) -> None:
    """Until nothing moves: the mapping idle and no change forwarded or invocation made for ``quiet_s``."""

    def snapshot() -> tuple[int, int]:
        stats = pipeline.stats()
        return stats["changes_forwarded"], stats["mapping"]["invocations"]

    last, since = snapshot(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = snapshot()
        if now != last or not pipeline.mapping.idle():
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def run(
    changes: int = FULL_CHANGES,
    *,
    keys: int | None = None,
    plan: FaultPlan | None = None,
    seed: int = 7,
    timeout_s: float = 540.0,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
    chaos: Chaos | None = None,
    corrupt: bool = True,
) -> SoakReport:
    """Run the soak and return its report (``report.ok`` is the verdict).

    ``chaos`` replaces the fault injector built from ``plan`` (tests hand in one that breaks the pipeline
    on purpose, to show the oracle notices); ``corrupt`` runs the corruption and repair phase.
    """
    from freshvec.local.pipeline import LocalPipeline

    started = time.monotonic()
    deadline = started + timeout_s
    plan = plan or FaultPlan(seed=seed)
    config = PipelineConfig.from_dict(SOAK_CONFIG)
    workload = generate_workload(config, changes, keys=keys, seed=seed)
    chaos = chaos or Chaos(plan)
    plan = chaos.plan
    report = SoakReport(changes=workload.changes, kinds=workload.kinds())
    log(f"soak: {workload.changes} changes in {len(workload.calls)} calls, faults: {plan.to_dict()}")
    removed: list[dict[str, Any]] = []
    rules = SoakRules(SOAK_CONFIG)
    redriven: list[dict[str, Any]] = []
    with LocalPipeline.start(config, faults=chaos, mapping_overrides=MAPPING_OVERRIDES) as pipeline:
        streams, arn = pipeline.streams, pipeline.stream_arn
        if plan.keyspaces_throttle:
            streams.throttle(plan.keyspaces_throttle, seed=plan.seed)
        producer = pipeline.stream_producer()
        sender = ResyncSender(pipeline.config, producer, pipeline.resources.stream_name)
        disruptions = _Disruptions(plan, len(workload.calls), random.Random(seed))
        calls = len(workload.calls)
        at = {int(fraction * calls): name for fraction, name in _RESYNCS}
        snapshot: list[tuple[dict[str, Any], str]] = []
        ttl_deadline = 0.0  # every TTL written has run out after this (epoch seconds)
        progress_step = max(1, len(workload.calls) // 10)
        for index, call in enumerate(workload.calls):
            disruptions.apply(index, streams, arn)
            if at.get(index) == "backfill_read":
                stamp = keyspaces_read_stamp(time.time()).text()
                snapshot = [(row, stamp) for row, _ in pipeline.table.rows_with_versions()]
            elif at.get(index) == "backfill_send":
                report.resync["backfill_sent"] = backfill(sender, snapshot)
            elif at.get(index) == "redrive":
                redriven, counts = _redrive(pipeline, sender, rules, workload, deadline)
                report.resync.update(counts)
            kind, ttl_s, skew_s = call[0].call
            if kind == "raw":
                _put_raw(producer, pipeline.resources.stream_name, call)
            elif kind == "delete":
                keys_to_delete = [w.row for w in call if w.row is not None]
                pipeline.delete(keys_to_delete)
                removed.extend(keys_to_delete)
            else:
                # The second client's writes carry its own (skewed) clock's time as USING TIMESTAMP.
                stamp = None if skew_s is None else int((time.time() + skew_s) * 1_000_000)
                rows = [w.row for w in call if w.row is not None]
                pipeline.upsert(rows, ttl_s=ttl_s, timestamp_us=stamp, partial=kind == "update")
                if ttl_s is not None:
                    ttl_deadline = max(ttl_deadline, time.time() + ttl_s)
            if index % progress_step == 0:
                log(f"  {index}/{len(workload.calls)} calls written, {pipeline.stats()['pending']} changes pending")
        log(f"soak: all changes written after {time.monotonic() - started:.1f} s; disruptions {dict(disruptions.done)}")
        _wait_for_ttl(pipeline, workload.ttl_keys, deadline)
        time.sleep(max(0.0, ttl_deadline - time.time()))  # column TTLs too; then purge what is due now
        pipeline.expire_due()
        removed.extend(workload.ttl_keys)
        report.ttl_rows_left = sum(1 for key in workload.ttl_keys if pipeline.table.get(key) is not None)
        report.sync_timeout = _wait_synced(pipeline, deadline, log, started)
        report.resync["ambiguous_redriven"] = _redrive_ambiguous(pipeline, sender, deadline)
        dlq = DlqReader(pipeline.server.client("sqs"), pipeline.resources.dlq_url)
        _wait_for_raw_poison(dlq, workload.poison_raw, deadline)
        _wait_quiet(pipeline, deadline)
        if corrupt:
            repair = corrupt_and_repair(pipeline, random.Random(seed))
            log(f"soak: index damaged ({repair.damaged}); reconcile --repair exited {repair.repair_exit_code}")
            _wait_quiet(pipeline, deadline, quiet_s=2.0)
            check_in_sync(pipeline, repair)
            report.corruption = repair.figures()
            if repair.check_exit_code != 0:
                report.differences.append(f"reconcile after the repair still finds drift:\n{repair.check_output}")
        state = "in sync" if report.sync_timeout is None else "NOT in sync"
        log(f"soak: {state} after {time.monotonic() - started:.1f} s; comparing with the oracle")
        final_rows = list(pipeline.table.rows_with_versions())
        expectations = build_expectations(rules, final_rows, removed, workload.poison_changes, workload.poison_raw)
        index = read_index(
            pipeline.server.client("s3vectors"), pipeline.resources.vector_bucket, pipeline.resources.vector_index
        )
        report.rows_final = len(final_rows)
        compare_index(rules, expectations, index, pipeline.embedder.embed_documents, report)
        compare_dlq(rules, expectations, dlq.drain(), report, redriven)
        stats = pipeline.stats()
        report.parked_records = stats["records_to_on_failure_destination"]
        report.pipeline = {k: v for k, v in stats.items() if k != "mapping"} | {"mapping": stats["mapping"]}
        report.pipeline["keyspaces_streams"] = streams.counters()
        report.pipeline["disruptions"] = dict(disruptions.done)
    report.faults = chaos.counts()
    report.seconds = time.monotonic() - started
    _check_workload(workload, report)
    return report


_RESYNCS = ((BACKFILL_READ_AT, "backfill_read"), (REDRIVE_AT, "redrive"), (BACKFILL_SEND_AT, "backfill_send"))


def _redrive(
    pipeline: Any, sender: ResyncSender, rules: SoakRules, workload: Workload, deadline: float
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Take the parked changes of keys that live on out of the DLQ and re-sync those keys from the table.

    The pipeline first catches up (bounded), so that some are parked by now. Returns the bodies taken out and
    what was sent."""
    with contextlib.suppress(TimeoutError):  # the redrive takes whatever is parked by then
        pipeline.wait_synced(timeout=max(0.1, min(20.0, deadline - time.monotonic())))
    live = {rules.canonical_key(p.key) for p in workload.poison_changes if p.live}

    def take(body: Mapping[str, Any]) -> bool:
        key = event_key(body)
        return key is not None and rules.canonical_key(key) in live

    taken = receive_dlq(pipeline.server.client("sqs"), pipeline.resources.dlq_url, take)
    resources, s3vectors = pipeline.resources, pipeline.server.client("s3vectors")
    counts = redrive(
        sender,
        pipeline.table.read,
        lambda keys: stored_versions(s3vectors, resources.vector_bucket, resources.vector_index, keys),
        [key for body in taken if (key := event_key(body)) is not None],
    )
    return taken, {"redrive_taken": len(taken), **counts}


def _redrive_ambiguous(pipeline: Any, sender: ResyncSender, deadline: float) -> int:
    """Re-read, as ``freshvec redrive send`` would, the re-syncs the sink parked as ambiguous, until none is
    left (once the writes stop, a new read's stamp passes every ``createdAt`` after the clock bounds)."""
    resources, s3vectors = pipeline.resources, pipeline.server.client("s3vectors")
    total = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            pipeline.wait_synced(timeout=max(0.1, min(20.0, deadline - time.monotonic())))
        taken = receive_dlq(pipeline.server.client("sqs"), resources.dlq_url, is_ambiguous_resync)
        if not taken:
            return total
        total += len(taken)
        time.sleep(KEYSPACES_READER_CLOCK_BOUND_S + KEYSPACES_VISIBILITY_BOUND_S)
        redrive(
            sender,
            pipeline.table.read,
            lambda keys: stored_versions(s3vectors, resources.vector_bucket, resources.vector_index, keys),
            [key for body in taken if (key := event_key(body)) is not None],
        )
    return total


def _wait_synced(pipeline: Any, deadline: float, log: Callable[[str], None], started: float) -> str | None:
    """Wait for the pipeline to apply or park every change, logging progress; the reason if it never did."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            pipeline.wait_synced(timeout=max(0.1, min(10.0, remaining)))
            return None
        except TimeoutError as exc:
            if remaining <= 10.0:
                return str(exc)
            stats = pipeline.stats()
            log(
                f"  {time.monotonic() - started:.0f} s: {stats['pending']} changes pending, "
                f"{stats['mapping']['invocations']} sink invocations, {stats['forwarder_crashes']} forwarder crashes"
            )


def _wait_for_ttl(pipeline: Any, ttl_keys: Sequence[Mapping[str, Any]], deadline: float) -> None:
    """Until every row written with a TTL has expired (the pipeline's TTL loop removes due rows)."""
    while time.monotonic() < deadline:
        if all(pipeline.table.get(key) is None for key in ttl_keys):
            return
        time.sleep(0.2)


def _wait_for_raw_poison(dlq: DlqReader, payloads: Sequence[bytes], deadline: float) -> None:
    """Raw records have no source position to wait for: wait until the DLQ holds each of them."""
    wanted = {base64.b64encode(p).decode("ascii") for p in payloads}
    while time.monotonic() < deadline:
        seen = {body.get("payload_b64") for body in dlq.drain()}
        if wanted <= seen:
            return
        time.sleep(0.2)


def _check_workload(workload: Workload, report: SoakReport) -> None:
    """The workload must have exercised every kind of change it claims to (a soak that skipped deletes proves
    nothing about deletes)."""
    wanted = {"insert", "text_update", "metadata_update", "partial_update", "duplicate", "delete", "ttl_insert"}
    wanted |= {"column_ttl", "null_write", "collection_add"}
    if workload.changes >= 300:
        missing = sorted(wanted - set(report.kinds))
        if missing:
            report.differences.append(f"workload did not exercise: {', '.join(missing)}")
            report.sync_timeout = report.sync_timeout or "incomplete workload"
