"""Filling the next generation (``freshvec migrate start``): every row re-synced for it, through the sink.

Both paths send the table's rows as re-syncs named for the next generation only, through the one Kinesis writer,
so the sink orders them against live changes by version (a change made meanwhile wins) and the active generation
is not touched. A chunk whose fingerprint the active generation holds is copied by the sink, never embedded.

- **on demand**: the sink embeds what it cannot copy, under the adaptive pacing that shares the Bedrock quota
  with live traffic. Resumes from its backfill progress file; a re-sent row embeds nothing again (its stored
  vector has the same fingerprint).
- **batch**: the distinct chunk texts nobody holds yet go to Bedrock batch inference (``BatchEmbeddingJobs``:
  JSONL with ``recordId``/``modelInput`` in the stack's bucket, results joined on ``recordId`` — here the
  chunk's fingerprint); the vectors are saved locally as they are read, then ride in the re-syncs
  (``"vectors"``), so the sink writes them without a Bedrock call. A crashed run submits again under the same
  name (the jobs are found, not created twice) and reads only results it has not saved. Fewer texts than a
  job's minimum go the on-demand way.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from freshvec import constants as c
from freshvec.chunking import expected_chunks
from freshvec.cli import backfill, batch, console, local_client, reconcile, resync
from freshvec.cli.errors import OperatorError
from freshvec.cli.migrate_context import Context
from freshvec.cli.migrate_state import MigrationState
from freshvec.generation_sink import encode_vector
from freshvec.generations import Generation, same_fingerprint_space
from freshvec.ports import BatchEmbeddingJobs, BatchRecord, BatchTooSmallError

_POLL_S = 10.0


def fill(
    ctx: Context, state: MigrationState, path: str, *, rate: float, segments: int, workers: int, ca_bundle: Any
) -> int:
    """Re-sync every row for the next generation on ``path``; returns the rows sent."""
    nxt = ctx.next_generation
    close, session = (
        (None, None) if ctx.resources.is_local else resync.connect_table(ctx.resources, ctx.clients, ca_bundle)
    )
    try:
        vectors: dict[str, str] | None = None
        if path == "batch":
            vectors = _batch_vectors(ctx, state, nxt, session, segments)
        return _resync_all(ctx, state, nxt, session, rate=rate, segments=segments, workers=workers, vectors=vectors)
    finally:
        if close is not None:
            close()


def _resync_all(
    ctx: Context,
    state: MigrationState,
    nxt: Generation,
    session: Any,
    *,
    rate: float,
    segments: int,
    workers: int,
    vectors: dict[str, str] | None,
) -> int:
    res = ctx.resources
    total = state.plan.get("census", {}).get("rows")
    if res.config.source.kind == "postgres":  # one snapshot: nothing to resume (a rerun is harmless)
        from freshvec.cli import postgres
        from freshvec.cli.send import ChangeStreamSender

        sender = ChangeStreamSender.for_kinesis(ctx.clients("kinesis"), res.stream_name)
        with console.progress_eta() as progress:
            task = progress.add_task(f"fill {nxt.name}", total=total)
            sent, _version = postgres.backfill(
                session, res.config, sender, rate_per_s=rate, on_progress=lambda n: progress.advance(task, n),
                generations=[nxt.name],
            )  # fmt: skip
        return sent
    progress_path = state.path.with_name(state.path.stem + f"-fill-{nxt.name}.json")
    bstate = backfill.BackfillState.open(progress_path, segments)
    if bstate.complete:
        return bstate.sent
    vectors_for = _row_vectors(nxt, vectors) if vectors else None
    with console.progress_eta() as progress:
        task = progress.add_task(f"fill {nxt.name} ({state.fill_path})", total=total, completed=bstate.sent)
        backfill.backfill(
            session,
            local_client.LocalKinesis(res) if res.is_local else ctx.clients("kinesis"),
            res,
            bstate,
            workers=workers,
            rate_per_s=rate,
            on_progress=lambda n: progress.advance(task, n),
            generations=[nxt.name],
            vectors_for=vectors_for,
        )
    return bstate.sent


def _row_vectors(nxt: Generation, vectors: dict[str, str]) -> Any:
    limit = c.input_char_limit(nxt.config.embedding.provider, nxt.config.embedding.model_id)

    def vectors_for(row: dict[str, Any]) -> dict[str, str]:
        key = resync.checked_vector_key(row, nxt.config)
        if key is None:
            return {}
        chunks = expected_chunks(nxt.config, key, row.get(nxt.config.embedding_field), max_input_chars=limit)
        return {ch.fingerprint: vectors[ch.fingerprint] for ch in chunks if ch.fingerprint in vectors}

    return vectors_for


# ---- the batch path ---------------------------------------------------------------------------------------------
def batch_jobs_for(ctx: Context, generation: Generation) -> BatchEmbeddingJobs:
    """The batch inference adapter for the generation's model (local mode: the stand-in ``freshvec local up``
    serves, over moto's S3)."""
    return batch.batch_jobs(ctx.resources, ctx.clients, generation.config.embedding)


def submission_name(stack: str, generation: str) -> str:
    """A name ``c.BATCH_SUBMISSION_NAME_RE`` accepts, the same on every run of this migration."""
    raw = re.sub(r"[^a-zA-Z0-9]+", "-", f"fv-{stack}-{generation}").strip("-")
    return raw[:56].rstrip("-")


def _batch_vectors(ctx: Context, state: MigrationState, nxt: Generation, session: Any, segments: int) -> dict[str, str]:
    """Fingerprint -> base64 vector for every chunk text the batch jobs embedded (saved as they are read)."""
    saved_path = state.path.with_name(state.path.stem + f"-vectors-{nxt.name}.jsonl")
    saved = _read_saved(saved_path)
    wanted = _texts_to_embed(ctx, nxt, session, segments)
    todo = [BatchRecord(fp, text) for fp, text in wanted.items() if fp not in saved]
    if not todo:
        return saved
    jobs_port = batch_jobs_for(ctx, nxt)
    name = state.batch.get("name") or submission_name(ctx.resources.stack_name, nxt.name)
    try:
        jobs = jobs_port.submit(name, todo)
    except BatchTooSmallError as exc:
        console.err.print(f"{exc}: the sink embeds them on demand")
        state.batch = {"name": name, "skipped": str(exc)}
        state.save()
        return saved
    state.batch = {"name": name, "records": len(todo), "jobs": [_job_doc(j) for j in jobs]}
    state.save()
    jobs = _wait(jobs_port, jobs, state)
    with saved_path.open("a", encoding="utf-8") as out:
        for job in jobs:
            if not job.has_results:
                console.err.print(
                    f"job {job.name} ended {job.status} ({job.message}): its texts are embedded on demand"
                )
                continue
            for result in jobs_port.results(job):
                if result.vector is not None and result.record_id not in saved:
                    saved[result.record_id] = encode_vector(result.vector)
                    out.write(json.dumps({"fp": result.record_id, "v": saved[result.record_id]}) + "\n")
    return saved


def _wait(jobs_port: BatchEmbeddingJobs, jobs: list[Any], state: MigrationState) -> list[Any]:
    total = sum(j.record_count for j in jobs)
    with console.progress_eta() as progress:
        task = progress.add_task("batch jobs (records)", total=total)
        while True:
            jobs = [jobs_port.status(j.job_id) for j in jobs]
            progress.update(task, completed=sum(j.processed_records or (j.record_count if j.done else 0) for j in jobs))
            state.batch["jobs"] = [_job_doc(j) for j in jobs]
            state.save()
            if all(j.done for j in jobs):
                return jobs
            time.sleep(_POLL_S if not any(j.status == "Completed" for j in jobs) else 1.0)


def _job_doc(job: Any) -> dict[str, Any]:
    return {"job_id": job.job_id, "name": job.name, "status": job.status, "record_count": job.record_count}


def _read_saved(path: Path) -> dict[str, str]:
    saved: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                doc = json.loads(line)
                saved[doc["fp"]] = doc["v"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: that vector is read again
    return saved


def _texts_to_embed(ctx: Context, nxt: Generation, session: Any, segments: int) -> dict[str, str]:
    """Distinct chunk texts of the next generation, by fingerprint, that the active one does not hold."""
    current = ctx.current_generation
    existing: set[str] = set()
    if same_fingerprint_space(current.config, nxt.config):
        for source in reconcile.index_pages(ctx.clients("s3vectors"), ctx.scoped(current), 1):
            existing.update(_fingerprints(source()))
    limit = c.input_char_limit(nxt.config.embedding.provider, nxt.config.embedding.model_id)
    wanted: dict[str, str] = {}
    for source in reconcile.table_pages(ctx.scoped(nxt), session, segments):
        for page in source():
            for row, _version in page:
                key = resync.checked_vector_key(row, nxt.config)
                if key is None:
                    continue
                for chunk in expected_chunks(
                    nxt.config, key, row.get(nxt.config.embedding_field), max_input_chars=limit
                ):
                    if chunk.fingerprint not in existing:
                        wanted.setdefault(chunk.fingerprint, chunk.text)
    return wanted


def _fingerprints(pages: Iterator[list[Any]]) -> Iterator[str]:
    for page in pages:
        for vector in page:
            fp = (vector.get("metadata") or {}).get(c.META_FINGERPRINT)
            if isinstance(fp, str):
                yield fp


# ---- status pieces ----------------------------------------------------------------------------------------------
def job_summary(ctx: Context, state: MigrationState) -> list[dict[str, Any]]:
    jobs = state.batch.get("jobs") or []
    if not jobs or all(j["status"] in c.BATCH_TERMINAL_STATES for j in jobs):
        return jobs
    try:
        port = batch_jobs_for(ctx, ctx.next_generation)
        return [_job_doc(port.status(j["job_id"])) for j in jobs]
    except OperatorError:
        return jobs


def cost_so_far(state: MigrationState) -> dict[str, Any] | None:
    """An estimate from the plan: the planned cost of the path taken, in proportion to the work done."""
    plan = state.plan
    if not plan:
        return None
    path = state.fill_path or plan.get("recommended", "ondemand")
    planned = float(plan.get(path, {}).get("usd", 0.0))
    if path == "batch" and state.batch.get("jobs"):
        jobs = state.batch["jobs"]
        done = sum(j["record_count"] for j in jobs if j["status"] in c.BATCH_RESULT_STATES)
        share = done / max(1, sum(j["record_count"] for j in jobs))
    else:
        rows = plan.get("census", {}).get("rows") or 0
        share = min(1.0, state.rows_sent / rows) if rows else (1.0 if state.phase != "planned" else 0.0)
    return {"planned_usd": planned, "so_far_usd": planned * share, "basis": f"plan share, {path} path"}
