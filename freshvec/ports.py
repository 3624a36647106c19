"""The ports the domain speaks to: what the sink and the forwarder need from the world, and nothing more.

Each port is a Protocol; the errors and value types it speaks of live here too, so an adapter
(``freshvec.adapters``) imports the domain and never the other way round. The wiring — which adapter
serves which port — happens in the Lambda handlers, the operator CLI and local mode.

- ``Embedder``: texts -> vectors (Bedrock Titan and Cohere, WordLlama in local mode).
- ``VectorStore``: the vector index (S3 Vectors; moto plus an exact search in local mode).
- ``DeadLetterQueue``: where poison records are parked with their payload and reason (SQS).
- ``ChangeStreamWriter``: the change stream the forwarder, backfill, redrive and reconcile write to (Kinesis).
- ``LeaseStore``: the forwarder's checkpoints and shard leases (DynamoDB).
- ``TombstoneStore``: versions of recent deletes, so a re-sync put read before a delete cannot resurrect a row.
- ``ChangeSource``: where row changes come from (``freshvec.sources``: Keyspaces CDC streams).
- ``BatchEmbeddingJobs``: many texts embedded at once, asynchronously and at about half the on-demand price
  (Bedrock batch inference; a fake over moto's S3 with the local embedder in local mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from freshvec import constants as c
from freshvec.errors import FreshvecError, MisconfigurationError, PoisonRecordError, TransientError
from freshvec.outgoing import OutgoingRecord

Vector = dict[str, Any]  # {"key": str, "data": {"float32": [...]}, "metadata": {...}}


# ---- embeddings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbedResult:
    """One text's outcome: a vector, or the error that kept it from one (transient or poison)."""

    vector: list[float] | None = None
    error: FreshvecError | None = None
    truncated: bool = False  # the provider had to shorten the text further than max_input_chars


class Embedder(Protocol):
    model_id: str
    dimensions: int
    max_input_chars: int  # callers cut texts to this (and count it) before embedding

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def try_embed_documents(self, texts: Sequence[str]) -> list[EmbedResult]:
        """Embed what can be embedded; per-text transient or poison errors come back in the results.

        MisconfigurationError is raised: no text can succeed.
        """
        ...


# ---- the vector index ------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexInfo:
    dimension: int
    distance_metric: str
    non_filterable_keys: tuple[str, ...] = ()
    index_mode: str | None = None  # ENHANCED or CLASSIC (None: the service did not say)
    text_search: tuple[tuple[str, str | None, str], ...] = ()  # (metadata key, language, BUILDING|ACTIVE)


class RejectedVectorsError(PoisonRecordError):
    """PutVectors refused some vectors (ValidationException); every other vector of the call was written."""

    def __init__(self, rejected: dict[str, str]) -> None:
        self.rejected = rejected  # vector key -> the service's reason
        super().__init__(f"S3 Vectors refused {len(rejected)} vector(s): {next(iter(rejected.values()))}")


class VectorStore(Protocol):
    def describe(self) -> IndexInfo: ...

    def put(self, vectors: list[Vector]) -> None: ...

    def delete(self, keys: Sequence[str]) -> None: ...

    def get(self, keys: Sequence[str], *, return_data: bool = True, return_metadata: bool = True) -> dict[str, Any]:
        """``{key: {"data": [...], "metadata": {...}}}``; keys that are not stored are absent."""
        ...

    def scan(self, *, return_metadata: bool = True) -> Iterator[list[dict[str, Any]]]:
        """Every stored vector, one ListVectors page (at most 1,000) at a time: ``[{"key", "metadata"}]``."""
        ...

    def query(
        self,
        vector: Sequence[float] | None,
        k: int,
        filter: dict[str, Any] | None = None,
        return_metadata: bool = True,
        *,
        texts: Sequence[Mapping[str, str]] = (),
        return_scores: bool = False,
    ) -> list[dict[str, Any]]:
        """Best first: ``[{"key", "distance", "metadata", "scores"}]``; a vector, ``texts`` (full-text) or both
        (hybrid), every page of the answer."""
        ...


# ---- dead letters ----------------------------------------------------------------------------------
class DeadLetterSendError(TransientError):
    """Some dead letters could not be delivered; ``undelivered`` maps their position to the reason."""

    def __init__(self, undelivered: dict[int, str]) -> None:
        self.undelivered = undelivered
        super().__init__(f"{len(undelivered)} dead letter(s) not delivered: {next(iter(undelivered.values()))}")


class DeadLetterQueue(Protocol):
    def send(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Deliver every entry (a dict of ``constants.DLQ_FIELDS``) or raise DeadLetterSendError."""
        ...


# ---- tombstones ------------------------------------------------------------------------------------
class TombstoneStore(Protocol):
    """The version of each recent delete, per vector key, kept until ``expires_at`` (epoch seconds).

    A tombstone must outlive any re-sync change read before its delete: such a change is at most as old as
    the event source mapping's maximum record age when it is applied, so that (plus a margin) is its life.
    """

    def put(self, versions: Mapping[str, str], expires_at: float) -> None:
        """Raise each key's tombstone to its version text (``freshvec.versions``); a tombstone only rises (one
        as high or higher stays). TransientError when some could not be written."""
        ...

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        """The tombstone version of each key that has one (absent: none, or expired)."""
        ...


# ---- the change stream -----------------------------------------------------------------------------
class ChangeStreamWriter(Protocol):
    def put(
        self,
        records: Sequence[OutgoingRecord],
        *,
        should_stop: Callable[[], bool] | None = None,
        on_throttle: Callable[[], None] | None = None,
        before_retry: Callable[[], None] | None = None,
    ) -> int:
        """Deliver one call's records (see ``freshvec.outgoing.plan_calls``) until all were accepted.

        Returns the number of service calls it took; raises TransientError when time (``should_stop``) or
        retries run out, MisconfigurationError when retrying cannot help. ``before_retry`` runs before each
        re-send; what it raises (a lost lease) ends the call.
        """
        ...


# ---- checkpoints and leases ------------------------------------------------------------------------
class LeaseLostError(Exception):
    """Another forwarder holds this shard now; stop reading it without touching its checkpoint."""


@dataclass(frozen=True)
class ShardCheckpoint:
    stream_arn: str
    shard_id: str
    sequence_number: str | None  # last sequence number Kinesis accepted; None: nothing forwarded yet
    ended: bool
    lease_owner: str | None
    lease_expires_at: float | None
    # Where the next read may start, past ``sequence_number`` (a source token, e.g. a Keyspaces shard iterator):
    # saved after stretches with no changes, which move no sequence number, so a later reader skips them.
    resume: str | None = None
    caught_up_at: float | None = None  # epoch seconds of the last read that found the shard at its tip
    # Generations of parents the shard has, stored when it is first leased and never changed: a parent trimmed from
    # the stream's listing later cannot lower it (the tie-break of versions, ``freshvec.versions.KsChange``).
    depth: int | None = None

    def lease_free(self, now: float) -> bool:
        return self.lease_owner is None or self.lease_expires_at is None or self.lease_expires_at < now


@dataclass(frozen=True)
class StreamEntry:
    stream_arn: str
    label: str
    done: bool


class LeaseStore(Protocol):
    """Per (stream, shard): the last position forwarded, whether the shard ended, and who may read it."""

    owner_id: str

    def load_stream(self, stream_arn: str) -> dict[str, ShardCheckpoint]: ...

    def try_acquire(self, stream_arn: str, shard_id: str, depth: int | None = None) -> ShardCheckpoint | None:
        """Take the lease if free; ``depth`` is stored unless the shard has one already (the stored one returns)."""
        ...

    def renew(self, stream_arn: str, shard_id: str) -> float:
        """The new lease expiry; LeaseLostError when another reader holds the shard now."""
        ...

    def checkpoint(self, stream_arn: str, shard_id: str, sequence_number: str) -> float:
        """Move the checkpoint (only while owning the lease, else LeaseLostError) and drop any saved resume
        token, which points before it now; returns the new expiry."""
        ...

    def save_progress(self, stream_arn: str, shard_id: str, resume: str | None, caught_up_at: float | None) -> float:
        """Keep where reading got to past the checkpoint and when the shard was last at its tip (only while
        owning the lease, else LeaseLostError); returns the new expiry."""
        ...

    def mark_ended(self, stream_arn: str, shard_id: str, sequence_number: str | None) -> None: ...

    def release(self, stream_arn: str, shard_id: str) -> bool: ...

    def load_streams(self, keyspace: str, table: str) -> list[StreamEntry]: ...

    def register_stream(self, keyspace: str, table: str, stream_arn: str, label: str) -> bool: ...

    def mark_stream_done(self, keyspace: str, table: str, stream_arn: str) -> None: ...


# ---- sources of row changes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    """One independently ordered part of a stream (a Keyspaces shard), read by one reader at a time."""

    partition_id: str
    parents: tuple[str, ...] = ()  # read only after every parent was read to its end (splits, merges)
    order: int = 0  # reading order among partitions that are readable together
    # Every parent the source names, also those it no longer lists (trimmed): the lineage, for the depth.
    named_parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamView:
    stream_id: str
    closed: bool  # no new partitions or records will appear (CDC disabled, stream gone)
    partitions: dict[str, Partition]


@dataclass
class SourceCursor:
    """Where a reader is in one partition: the checkpointed position plus the source's own state."""

    stream_id: str
    partition_id: str
    position: str | None  # last position forwarded and checkpointed; None: nothing yet
    start: str  # where to begin when there is no position (source-defined, e.g. TRIM_HORIZON)
    state: Any = None  # the source's (an iterator, say); the forwarder never looks inside


@dataclass(frozen=True)
class LostRange:
    """Changes that fell out of the source's retention before they were forwarded."""

    stream_arn: str
    shard_id: str
    after_sequence_number: str | None  # last change forwarded before the gap; None: from the shard's start
    resumed_at_sequence_number: str | None  # first change still available; None: none was left


@dataclass
class ReadResult:
    records: list[Any]  # raw source records, in order; ``ChangeSource.convert`` turns each into what is sent
    ended: bool  # the partition was read to its end
    at_tip: bool  # nothing more to read right now
    trims: int = 0  # times the reader found its position gone (retention)
    lost_ranges: list[LostRange] = field(default_factory=list)
    # Where the next read starts, as a token ``ChangeSource.open`` can resume from (None: the source has none);
    # past every record of this read.
    resume: str | None = None
    # Records whose change time is older than the previous record's of the same row in this read (Keyspaces
    # ``createdAt``): what the per-key order of versions assumes never happens (docs/exactness.md).
    created_at_regressions: int = 0


class ChangeSource(Protocol):
    """What the forwarder needs from a source: discover, read with positions that can be checkpointed, convert.

    Errors from the source's client (botocore ``ClientError``) reach the forwarder unchanged; it classifies
    them once (``freshvec.errors``).
    """

    name: str

    @property
    def description(self) -> str: ...  # for messages: "the CDC stream of media.movies"

    def current_stream(self, leases: LeaseStore) -> tuple[StreamEntry | None, bool]:
        """The stream to read now (None: nothing to read) and whether it follows an earlier one."""
        ...

    def stream_done(self, leases: LeaseStore, stream_id: str) -> None: ...

    def describe(self, stream_id: str) -> StreamView: ...

    def open(
        self,
        stream_id: str,
        partition_id: str,
        position: str | None,
        *,
        fresh: bool,
        resume: str | None = None,
        depth: int = 0,
    ) -> SourceCursor:
        """A cursor at ``position``; ``resume`` (a token an earlier ``ReadResult`` gave) starts the first read past
        it, and the source falls back to ``position`` when the token is no longer valid. ``depth``: the partition's
        lineage depth as the lease store keeps it (``ShardCheckpoint.depth``)."""
        ...

    def read(self, cursor: SourceCursor) -> ReadResult: ...

    def rewind(self, cursor: SourceCursor) -> None:
        """Forget the read position: the next read starts again from ``cursor.position``."""
        ...

    def committed(self, cursor: SourceCursor, position: str) -> None:
        """The checkpoint moved to ``position``: a source that holds its own position may release up to it."""
        ...

    def convert(self, record: Any, partition_id: str) -> tuple[OutgoingRecord, bool]:
        """What goes to the change stream for a record, and whether it is a change event (not an envelope)."""
        ...


# ---- batch inference -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchRecord:
    """One text to embed in a batch job, under an id the caller chose.

    ``record_id`` is unique within one submission and matches ``c.BATCH_RECORD_ID_RE`` (letters and digits,
    at most ``c.BATCH_RECORD_ID_MAX_CHARS``): Bedrock hands results back under it, in no guaranteed order.
    The caller keeps the map from id to what it stands for (a row's key and chunk number).
    """

    record_id: str
    text: str


@dataclass(frozen=True)
class BatchLimits:
    """Records one job of this model may hold: fewer than ``min_records`` is refused by the service
    (ValidationException); more than ``max_records`` is split into several jobs by ``submit``."""

    min_records: int
    max_records: int
    source: str  # where the figures came from: "service-quotas" or "documented defaults"


@dataclass(frozen=True)
class BatchJob:
    """One batch inference job as the service reports it."""

    job_id: str  # the job ARN: what ``status``, ``results`` and ``stop`` take
    name: str  # "<submission name>-<part number>", part numbers from 1
    status: str  # one of c.BATCH_JOB_STATES
    record_count: int  # records written to its input
    message: str = ""  # the service's reason for Failed, Stopped or Expired
    processed_records: int | None = None  # counts the service reports while the job runs (None: not yet)
    error_records: int | None = None
    submitted_at: float | None = None  # epoch seconds (for an ETA)

    @property
    def done(self) -> bool:
        """No further state change will come (Completed, PartiallyCompleted, Failed, Stopped, Expired)."""
        return self.status in c.BATCH_TERMINAL_STATES

    @property
    def has_results(self) -> bool:
        """Output exists to read: Completed, or PartiallyCompleted (some records carry an error)."""
        return self.status in c.BATCH_RESULT_STATES


@dataclass(frozen=True)
class BatchResult:
    """One record's outcome, joined on ``record_id``: a vector of the model's dimensions, or the reason the
    model refused it (its ``error`` object in the output, or "no output" when the output lacks the record)."""

    record_id: str
    vector: list[float] | None = None
    error: str | None = None
    input_tokens: int | None = None  # when the model reports it (Titan V2, Nova); for cost against the plan


class BatchTooSmallError(MisconfigurationError):
    """Fewer records than one job's minimum: embed them on demand instead."""

    def __init__(self, records: int, limits: BatchLimits) -> None:
        self.records = records
        self.limits = limits
        super().__init__(
            f"{records} record(s) is below the batch inference minimum of {limits.min_records} per job "
            f"({limits.source}); embed them on demand"
        )


class BatchEmbeddingJobs(Protocol):
    """Embed many documents with one model through asynchronous jobs (Bedrock CreateModelInvocationJob).

    Texts are embedded as documents (the stored side: Cohere ``search_document``, Nova ``GENERIC_INDEX``),
    with the same model, dimensions and request body as the on-demand ``Embedder`` for that model, so a
    vector from a batch job equals the one an on-demand call would give. Texts are cut to ``max_input_chars``
    exactly as the on-demand embedder cuts them (fingerprints stay true).

    A submission is named by the caller (``c.BATCH_SUBMISSION_NAME_RE``, e.g. "fv-<stack>-g2-0007") and is
    idempotent: its records go to ``ceil(n / max_records)`` jobs of near-equal size named "<name>-1",
    "<name>-2", ...; submitting the same name again returns the jobs that already exist instead of creating
    them twice (a crashed ``migrate start`` resumes by submitting again). An existing part is returned as it
    was created — with its own records, which are not compared with this call's — so a caller whose records
    changed reads each job's results by ``record_id`` and embeds what no job holds some other way.
    Errors: BatchTooSmallError (fewer than ``limits().min_records``), ValueError (bad or duplicate record ids, an
    empty submission), TransientError (throttled, 5xx: try again, the same name is safe), MisconfigurationError
    (access, role, bucket, model not enabled, job quota reached).
    """

    model_id: str
    dimensions: int
    max_input_chars: int

    def limits(self) -> BatchLimits:
        """This model's records per job: from Service Quotas when readable, else the documented defaults."""
        ...

    def submit(self, name: str, records: Sequence[BatchRecord]) -> list[BatchJob]:
        """Write the records' input files and create (or find) the submission's jobs; returns them in part order."""
        ...

    def jobs(self, name: str) -> list[BatchJob]:
        """The jobs of one submission that exist now, in part order (empty: none was created)."""
        ...

    def status(self, job_id: str) -> BatchJob:
        """The job's current state and counts (GetModelInvocationJob)."""
        ...

    def results(self, job: BatchJob) -> Iterator[BatchResult]:
        """Every record of a job that ``has_results``, each exactly once, joined on ``record_id`` (never on
        order): a vector, or the record's error. A record the output lacks comes back with an error.
        MisconfigurationError for a job without results (Failed, Stopped, Expired or still running)."""
        ...

    def stop(self, job_id: str) -> None:
        """Ask the service to stop a running job (StopModelInvocationJob); a job already done is left alone."""
        ...
