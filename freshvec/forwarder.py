"""The forwarder: pull a source's changes and forward every one, as a change event, to the change stream.

A source (``freshvec.ports.ChangeSource``; Keyspaces CDC in ``freshvec.sources.keyspaces``) cannot push,
so something has to pull it. The forwarder is the same for every source. One pass (``run_once``):

1. Ask the source for the stream to read and its partitions (shards), and lease every partition that is
   readable: not ended, and every parent (split or merge) read to its end. Leases and checkpoints live in a
   ``LeaseStore`` (DynamoDB in AWS).
2. Read each owned partition once, partitions concurrently with a bound.
3. Convert each record (``source.convert``) and write it with the ``ChangeStreamWriter`` (Kinesis) in the
   calls ``freshvec.outgoing.plan_calls`` groups them into: never two changes of one row in one call, so
   that a partial failure (only the rejected records are sent again) cannot reorder a row.
4. Checkpoint only up to the longest run of records, from the start of the read, that was accepted.
5. A read with no records that is not at the tip (the stream moved on without changes) is followed at once by
   the next; where reading got to (``ReadResult.resume``) and when the shard was last at its tip are saved with
   each lease renewal and on release, so a later reader does not walk the same empty stretch again.

At least once: a crash anywhere leaves the checkpoint at or before what the change stream holds, so the next
reader sends some changes again but never skips one. Leases are fenced: a writer retrying a throttled call
renews the lease between attempts, and a reader that lost its lease stops writing at once and drops the
partition; the checkpoint write itself is conditional on still owning it. ``run`` repeats passes until a
deadline, polling at the tip with a short interval, then releases its leases.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from freshvec.config import ForwarderConfig
from freshvec.errors import MisconfigurationError, TransientError, classify, error_code
from freshvec.outgoing import coalesce_changes, plan_calls
from freshvec.ports import (
    ChangeSource,
    ChangeStreamWriter,
    LeaseLostError,
    LeaseStore,
    LostRange,
    ReadResult,
    ShardCheckpoint,
    SourceCursor,
    StreamView,
)
from freshvec.retry import RetryPolicy

log = logging.getLogger(__name__)

# Named steps at which ``hooks`` is called (tests raise from it to simulate a crash right there).
STEP_AFTER_LEASE = "after_lease"  # a shard lease was taken, nothing read yet
STEP_AFTER_READ = "after_read"  # the source returned records, nothing sent yet
STEP_AFTER_PUT = "after_put"  # the change stream accepted one call's records, not checkpointed yet
STEP_AFTER_CHECKPOINT = "after_checkpoint"  # the checkpoint moved forward
STEP_AFTER_SHARD_END = "after_shard_end"  # the shard was read to its end and marked ended
STEP_AFTER_PROGRESS = "after_progress"  # where reading got to past the checkpoint was saved

Hooks = Callable[..., None]  # hooks(step, **details): stream_arn, shard_id and position or count

_REFRESH_INTERVAL_S = 10.0  # how often to look for new shards and free leases while reading
_IDLE_REFRESH_INTERVAL_S = 1.0  # the same while holding no shard
_STREAM_ROUNDS = 8  # one refresh may finish this many drained streams and move on to the next
# Per-shard backoff after a failed read: 50 ms doubling to 5 s (the attempt count never runs out here;
# the invocation's deadline bounds it).
_SHARD_BACKOFF = RetryPolicy(attempts=1_000_000, base_delay_s=0.05, max_delay_s=5.0)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass
class ForwarderStats:
    changes_forwarded: int = 0  # change events Kinesis accepted (repeats after a crash count again)
    unconvertible_forwarded: int = 0  # records sent as an error envelope the sink parks in its DLQ
    changes_coalesced: int = 0  # source changes folded into a later change of the same row (coalesce_changes)
    newest_change_time: float | None = None  # epoch seconds of the newest change forwarded
    shards_owned: int = 0  # most shards held at once
    throttles: int = 0  # ThrottlingException from Keyspaces Streams, throttled PutRecords entries
    trimmed_events: int = 0
    created_at_regressions: int = 0  # records older than the previous one of their row in a read (ReadResult)
    lost_ranges: list[LostRange] = field(default_factory=list)
    passes: int = 0
    at_tip: bool = True  # every owned shard had nothing more to read (for ``run``: at the end of the run)
    # Of the shards not at their tip: the earliest time one of them was last at its tip (None: no such shard,
    # or none was ever at its tip). Everything before it was forwarded, so the reader is at most that far behind.
    behind_since: float | None = None

    def lag_ms(self, now: float) -> float | None:
        """Now minus the newest forwarded change time; with nothing forwarded while behind the tip, now minus the
        time the reader was last at the tip (a stretch without changes is still lag); else None."""
        if self.newest_change_time is not None:
            return max(0.0, (now - self.newest_change_time) * 1000)
        if not self.at_tip and self.behind_since is not None:
            return max(0.0, (now - self.behind_since) * 1000)
        return None

    def merge(self, other: ForwarderStats) -> None:
        self.changes_forwarded += other.changes_forwarded
        self.unconvertible_forwarded += other.unconvertible_forwarded
        self.changes_coalesced += other.changes_coalesced
        if other.newest_change_time is not None:
            self.newest_change_time = max(self.newest_change_time or other.newest_change_time, other.newest_change_time)
        self.shards_owned = max(self.shards_owned, other.shards_owned)
        self.throttles += other.throttles
        self.trimmed_events += other.trimmed_events
        self.created_at_regressions += other.created_at_regressions
        self.lost_ranges.extend(other.lost_ranges)
        self.passes += other.passes
        self.at_tip = self.at_tip and other.at_tip
        if other.behind_since is not None:
            self.behind_since = min(self.behind_since or other.behind_since, other.behind_since)


# ---------------------------------------------------------------------------------------------
# The forwarder
# ---------------------------------------------------------------------------------------------
@dataclass
class _OwnedShard:
    cursor: SourceCursor
    lease_expires_at: float
    failed_reads: int = 0  # consecutive failed reads, for the backoff
    caught_up_at: float | None = None  # when a read last found the shard at its tip
    resume: str | None = None  # where the next read starts, past the checkpoint
    unsaved: bool = False  # ``resume`` and ``caught_up_at`` changed since they were last saved

    @property
    def stream_arn(self) -> str:
        return self.cursor.stream_id

    @property
    def shard_id(self) -> str:
        return self.cursor.partition_id

    @property
    def position(self) -> str | None:
        return self.cursor.position


class Forwarder:
    """Reads every partition of a source's stream in lineage order and forwards each change."""

    def __init__(
        self,
        settings: ForwarderConfig,
        source: ChangeSource,
        writer: ChangeStreamWriter,
        leases: LeaseStore,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        hooks: Hooks | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._source = source
        self._writer = writer
        self._store = leases
        self._clock = clock
        self._sleep = sleep
        self._hooks = hooks
        self._monotonic = monotonic
        self.owner_id = leases.owner_id
        self._backoff = _SHARD_BACKOFF.with_(sleep=sleep)
        self._throttle_lock = threading.Lock()
        self._put_throttles = 0
        self._owned: dict[str, _OwnedShard] = {}
        self._stream_arn: str | None = None
        self._next_refresh = float("-inf")
        self._deadline: float | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ---- public API -----------------------------------------------------------------------
    def run(self, deadline_monotonic: float) -> ForwarderStats:
        """Pass after pass until the deadline (polling at the tip), then release every lease."""
        total = ForwarderStats()
        last = ForwarderStats()
        self._deadline = deadline_monotonic
        try:
            while not self._out_of_time():
                last = self.run_once()
                total.merge(last)
                if last.at_tip:  # behind the tip (records or an empty stretch) the next pass starts at once
                    self._sleep(min(self._settings.poll_interval_ms / 1000, self._time_left()))
        finally:
            self._deadline = None
            self.release()
        total.at_tip = last.at_tip  # where the run ended, not whether it ever fell behind
        total.behind_since = last.behind_since
        return total

    def run_once(self) -> ForwarderStats:
        """One pass: take leases, read each owned shard once, forward, checkpoint."""
        stats = ForwarderStats(passes=1)
        if self._refresh_due():
            try:
                self._refresh()
            except ClientError as exc:
                if classify(exc) is not TransientError:
                    raise MisconfigurationError(f"looking up {self._source.description}: {exc}") from exc
                # Keep reading the shards already owned; look again on the next pass.
                log.warning("looking up the stream and its shards failed, will retry: %s", exc)
                stats.throttles += int(error_code(exc) == "ThrottlingException")
                self._next_refresh = self._clock() + self._settings.poll_interval_ms / 1000
        shards = list(self._owned.values())
        if shards:
            futures = [self._executor().submit(self._read_shard, shard) for shard in shards]
            wait(futures)  # every shard finishes its step before a failure is raised
            for future in futures:
                failure = future.exception()
                if failure is not None:
                    raise failure
                stats.merge(future.result())
        stats.shards_owned = len(self._owned)
        with self._throttle_lock:
            stats.throttles += self._put_throttles
            self._put_throttles = 0
        return stats

    def release(self) -> None:
        """Save where each shard's reading got to, then give back every lease (checkpoints stay), so the next
        invocation can take them at once and resume there."""
        for shard in list(self._owned.values()):
            try:
                if shard.unsaved:
                    self._save_progress(shard)
            except LeaseLostError:
                continue
            except ClientError as exc:  # the next reader walks the stretch again: slower, nothing lost
                log.warning("could not save where reading %s got to: %s", shard.shard_id, exc)
            try:
                self._store.release(shard.stream_arn, shard.shard_id)
            except ClientError as exc:  # the lease simply expires later
                log.warning("could not release the lease on %s: %s", shard.shard_id, exc)
        self._owned.clear()
        self._next_refresh = float("-inf")
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def owned_shards(self) -> list[str]:
        return sorted(self._owned)

    # ---- discovery and leases -------------------------------------------------------------
    def _refresh_due(self) -> bool:
        return self._clock() >= self._next_refresh

    def _refresh(self) -> None:
        self._lookup_stream_and_lease()
        # Holding nothing (another forwarder has the shards, or no stream yet): look again soon, but not on
        # every poll. Holding shards: look for new children and expired leases now and then.
        interval = _IDLE_REFRESH_INTERVAL_S if not self._owned else _REFRESH_INTERVAL_S
        self._next_refresh = self._clock() + min(interval, self._settings.lease_duration_s / 3)

    def _lookup_stream_and_lease(self) -> None:
        for _ in range(_STREAM_ROUNDS):
            entry, successor = self._source.current_stream(self._store)
            if entry is None:
                self._drop_owned(lambda shard: True)
                self._stream_arn = None
                return
            if entry.stream_arn != self._stream_arn:
                self._drop_owned(lambda shard, arn=entry.stream_arn: shard.stream_arn != arn)
                self._stream_arn = entry.stream_arn
            if self._lease_readable_shards(self._source.describe(entry.stream_arn), continuation=successor):
                return
            self._source.stream_done(self._store, entry.stream_arn)
            log.info("stream %s was read to its end; moving on to the next stream", entry.stream_arn)

    def _lease_readable_shards(self, view: StreamView, *, continuation: bool) -> bool:
        """Lease every shard whose parents are done; False when the stream is closed and fully read."""
        checkpoints = self._store.load_stream(view.stream_id)
        ended = {shard_id for shard_id, cp in checkpoints.items() if cp.ended}
        self._drop_owned(lambda shard: shard.shard_id in ended or shard.shard_id not in view.partitions)
        if view.closed and all(shard_id in ended for shard_id in view.partitions):
            return False
        now = self._clock()
        for partition in sorted(view.partitions.values(), key=lambda p: (p.order, p.partition_id)):
            shard_id = partition.partition_id
            if shard_id in ended or shard_id in self._owned:
                continue
            if any(parent not in ended for parent in partition.parents):
                continue  # lineage: a child waits until every parent was read to its end
            current = checkpoints.get(shard_id)
            if current is not None and not current.lease_free(now) and current.lease_owner != self.owner_id:
                continue
            lease = self._store.try_acquire(view.stream_id, shard_id, lineage_depth(shard_id, view, checkpoints))
            if lease is None:
                continue
            # A parent no longer listed (trimmed) but read before still makes this shard a continuation.
            ancestry = partition.named_parents or partition.parents
            fresh = not continuation and not any(p in checkpoints for p in ancestry)
            cursor = self._source.open(
                view.stream_id, shard_id, lease.sequence_number, fresh=fresh, resume=lease.resume,
                depth=lease.depth or 0,
            )  # fmt: skip
            self._owned[shard_id] = _OwnedShard(
                cursor,
                lease_expires_at=lease.lease_expires_at or now,
                caught_up_at=lease.caught_up_at,
                resume=lease.resume,
            )
            self._hook(STEP_AFTER_LEASE, stream_arn=view.stream_id, shard_id=shard_id, position=lease.sequence_number)
        return True

    def _drop_owned(self, predicate: Callable[[_OwnedShard], bool]) -> None:
        for shard in [s for s in self._owned.values() if predicate(s)]:
            del self._owned[shard.shard_id]
            try:
                self._store.release(shard.stream_arn, shard.shard_id)
            except ClientError as exc:
                log.warning("could not release the lease on %s: %s", shard.shard_id, exc)

    def _ensure_lease(self, shard: _OwnedShard) -> None:
        """Renew when less than half the lease is left, so a lease never lapses while a batch is in flight.

        LeaseLostError when another reader took the shard: the caller stops writing at once.
        """
        if shard.lease_expires_at - self._clock() < self._settings.lease_duration_s / 2:
            if shard.unsaved:  # the same write renews the lease and keeps where reading got to
                self._save_progress(shard)
            else:
                shard.lease_expires_at = self._store.renew(shard.stream_arn, shard.shard_id)

    # ---- reading one shard ----------------------------------------------------------------
    def _read_shard(self, shard: _OwnedShard) -> ForwarderStats:
        stats = ForwarderStats()
        if self._out_of_time():
            return stats
        read = False
        try:
            self._ensure_lease(shard)
            read_at = self._clock()
            result = self._source.read(shard.cursor)
            read = True
            shard.failed_reads = 0
            stats.trimmed_events += result.trims
            stats.created_at_regressions += result.created_at_regressions
            stats.lost_ranges.extend(result.lost_ranges)
            self._hook(STEP_AFTER_READ, stream_arn=shard.stream_arn, shard_id=shard.shard_id, count=len(result.records))
            if result.records:
                self._forward(shard, result.records, stats)
            if result.ended:
                self._end_shard(shard)
                stats.at_tip = False  # its children may be readable now
                return stats
            self._note_position(shard, result, read_at, stats)
        except LeaseLostError as exc:
            log.warning("%s; stopping reading it", exc)
            self._owned.pop(shard.shard_id, None)
            self._next_refresh = float("-inf")
        except ClientError as exc:
            if classify(exc) is not TransientError:
                raise MisconfigurationError(f"reading shard {shard.shard_id} of {shard.stream_arn}: {exc}") from exc
            if error_code(exc) == "ThrottlingException":
                stats.throttles += 1
            else:
                log.warning("reading %s failed, will retry: %s", shard.shard_id, exc)
            if read:
                self._source.rewind(shard.cursor)  # resume from the checkpoint, not from where the read got to
            self._back_off(shard)
            stats.at_tip = False  # unknown: try again at once (the backoff already waited)
        except TransientError as exc:
            log.warning("forwarding from %s did not finish, will resume from its checkpoint: %s", shard.shard_id, exc)
            self._source.rewind(shard.cursor)
            stats.at_tip = False
        return stats

    def _forward(self, shard: _OwnedShard, records: Sequence[Any], stats: ForwarderStats) -> None:
        outgoing = []
        events = []
        for record in records:
            converted, is_event = self._source.convert(record, shard.shard_id)
            outgoing.append(converted)
            events.append(is_event)
            if not is_event:
                stats.unconvertible_forwarded += 1
        counts = [1] * len(outgoing)
        if self._settings.coalesce_changes:
            coalesced = coalesce_changes(outgoing, events)
            outgoing, counts = [r for r, _ in coalesced], [n for _, n in coalesced]
            stats.changes_coalesced += len(records) - len(outgoing)
        accepted = [False] * len(outgoing)
        prefix = 0  # records [0, prefix) are all accepted: the checkpoint may move to outgoing[prefix - 1]
        for call in plan_calls(outgoing):
            self._ensure_lease(shard)
            self._writer.put(
                [outgoing[i] for i in call],
                should_stop=self._out_of_time,
                on_throttle=self._count_put_throttle,
                before_retry=lambda shard=shard: self._ensure_lease(shard),  # fencing inside long retries
            )
            for i in call:
                accepted[i] = True
            stats.changes_forwarded += sum(counts[i] for i in call)  # source changes, coalesced or not
            times = [outgoing[i].changed_at for i in call if outgoing[i].changed_at is not None]
            if times:
                stats.newest_change_time = max(stats.newest_change_time or times[0], *times)
            self._hook(STEP_AFTER_PUT, stream_arn=shard.stream_arn, shard_id=shard.shard_id, count=len(call))
            while prefix < len(outgoing) and accepted[prefix]:
                prefix += 1
            last = outgoing[prefix - 1].sequence_number if prefix else None
            if last is not None and last != shard.position:
                shard.lease_expires_at = self._store.checkpoint(shard.stream_arn, shard.shard_id, last)
                shard.resume, shard.unsaved = None, False  # the checkpoint dropped the saved token
                shard.cursor.position = last
                self._source.committed(shard.cursor, last)
                self._hook(STEP_AFTER_CHECKPOINT, stream_arn=shard.stream_arn, shard_id=shard.shard_id, position=last)

    def _end_shard(self, shard: _OwnedShard) -> None:
        self._store.mark_ended(shard.stream_arn, shard.shard_id, shard.position)
        self._owned.pop(shard.shard_id, None)
        self._next_refresh = float("-inf")
        log.info("shard %s of %s was read to its end", shard.shard_id, shard.stream_arn)
        self._hook(STEP_AFTER_SHARD_END, stream_arn=shard.stream_arn, shard_id=shard.shard_id, position=shard.position)

    def _note_position(self, shard: _OwnedShard, result: ReadResult, read_at: float, stats: ForwarderStats) -> None:
        """After a read whose records are all forwarded: whether the shard is at its tip, and where to resume."""
        stats.at_tip = result.at_tip
        if result.at_tip:
            shard.caught_up_at, shard.unsaved = read_at, True  # everything written before this read was forwarded
        else:
            stats.behind_since = shard.caught_up_at
        if result.resume is not None:  # past every record of the read, all of them checkpointed now
            shard.resume, shard.unsaved = result.resume, True

    def _save_progress(self, shard: _OwnedShard) -> None:
        """Save the resume token and the tip time (renewing the lease); a record's checkpoint drops the token, so
        a saved one always points past the saved checkpoint."""
        shard.lease_expires_at = self._store.save_progress(
            shard.stream_arn, shard.shard_id, shard.resume, shard.caught_up_at
        )
        shard.unsaved = False
        self._hook(STEP_AFTER_PROGRESS, stream_arn=shard.stream_arn, shard_id=shard.shard_id, position=shard.position)

    # ---- helpers --------------------------------------------------------------------------
    def _back_off(self, shard: _OwnedShard) -> None:
        shard.failed_reads += 1
        self._sleep(min(self._backoff.delay(shard.failed_reads), self._time_left()))

    def _count_put_throttle(self) -> None:
        with self._throttle_lock:
            self._put_throttles += 1

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._settings.max_concurrent_shards, thread_name_prefix="freshvec-shard"
            )
        return self._pool

    def _time_left(self) -> float:
        if self._deadline is None:
            return float("inf")
        return max(0.0, self._deadline - self._monotonic())

    def _out_of_time(self) -> bool:
        return self._time_left() <= 0

    def _hook(self, step: str, **details: Any) -> None:
        if self._hooks is not None:
            self._hooks(step, **details)


def lineage_depth(partition_id: str, view: StreamView, stored: Mapping[str, ShardCheckpoint]) -> int:
    """How many generations of parents a partition has: its stored depth, else one more than its deepest parent's.

    A parent's depth is the one stored when it was leased, so it survives the parent being trimmed from the
    stream's listing (Keyspaces lists a closed shard for 24 h): a child always ends up deeper than every parent
    whose records were forwarded. A parent neither listed nor stored (trimmed before anything read it) counts as
    depth 0: none of its records were forwarded.
    """
    known: dict[str, int] = {}

    def depth(shard_id: str, trail: frozenset[str]) -> int:
        checkpoint = stored.get(shard_id)
        if checkpoint is not None and checkpoint.depth is not None:
            return checkpoint.depth
        partition = view.partitions.get(shard_id)
        if partition is None or shard_id in trail:  # unknown, or a lineage that loops (never from a real stream)
            return 0
        if shard_id not in known:
            parents = partition.named_parents or partition.parents
            known[shard_id] = max((depth(p, trail | {shard_id}) + 1 for p in parents), default=0)
        return known[shard_id]

    return depth(partition_id, frozenset())
