"""A whole migration in local mode while the table keeps changing: plan, start (Bedrock batch jobs on the local
stand-in), compare, cutover, rollback, cutover, finish — each step crashed once and run again — with a query loop
that must never get an empty, partial or failed answer, and both generations reconciling to zero drift after
every step."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec.cli import app as cli
from freshvec.cli import backfill as backfill_cli
from freshvec.cli import migrate_compare
from freshvec.cli.migrate_state import MigrationState
from freshvec.config import DEFAULT_CONFIG
from freshvec.datafiles import sample_movies
from freshvec.local import LocalPipeline
from freshvec.local.bedrock_server import start_local_batch
from freshvec.local.cli import stack_state
from freshvec.local.control import ControlServer
from freshvec.local.demo import read_rows
from freshvec.state import write_local_state

ROWS = 60
K = 5
SYNC_S = 60
runner = CliRunner()
# The next generation changes the chunking and the index: same model and dimensions, so every chunk whose text
# the active generation already holds is copied, not embedded; a text longer than its chunk bound is split, into
# new chunks to embed.
NEXT_MAX_CHARS = 240
NEXT = {"name": "g2", "chunking": {"max_chars": NEXT_MAX_CHARS}, "vector_store": {"index_name": "movies-next"}}
BATCH_MIN_RECORDS = 10  # the local batch stand-in's job minimum


class Traffic:
    """Live writes (updates, deletes, re-inserts) to ``rows`` and a query loop, both running until stopped."""

    def __init__(self, pipeline: LocalPipeline, rows: list[dict[str, Any]]) -> None:
        self.pipeline = pipeline
        self.rows = rows
        self.writing = threading.Event()
        self.stop = threading.Event()
        self.answers = 0
        self.bad_answers: list[str] = []
        self.writes = 0
        self._threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._query, daemon=True),
        ]

    def start(self) -> Traffic:
        self.writing.set()
        for thread in self._threads:
            thread.start()
        return self

    def _write(self) -> None:
        rng = random.Random(7)
        for n in itertools.count():
            if self.stop.is_set():
                return
            if not self.writing.wait(0.05):
                continue
            row = dict(rng.choice(self.rows))
            if n % 5 == 4:
                self.pipeline.delete([{"title": row["title"]}])
            else:
                row["overview"] = f"{row['overview']} Edit {n}." if n % 2 else row["overview"]
                row["vote_count"] = n
                self.pipeline.upsert([row])
            self.writes += 1
            time.sleep(0.02)

    def _query(self) -> None:
        texts = ["dinosaurs on an island", "a heist in the city", "space crew", "love story", "a war"]
        for n in itertools.count():
            if self.stop.is_set():
                return
            try:
                hits = self.pipeline.query(texts[n % len(texts)], k=K)
            except Exception as exc:
                self.bad_answers.append(f"failed: {type(exc).__name__}: {exc}")
                continue
            self.answers += 1
            if len(hits) != K:
                self.bad_answers.append(f"{len(hits)} rows instead of {K}")
            elif any(not hit.get("passage") for hit in hits):
                self.bad_answers.append("a row without its passage")

    def pause_writes(self) -> None:
        self.writing.clear()
        time.sleep(0.1)  # the write in progress finishes

    def resume_writes(self) -> None:
        self.writing.set()

    def close(self) -> None:
        self.stop.set()
        self.writing.set()
        for thread in self._threads:
            thread.join(10)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPipeline, Path]]:
    config = {**DEFAULT_CONFIG, "sink": {"batching_window_s": 0}, "next_generation": NEXT}
    with LocalPipeline.start(config) as running:
        control = ControlServer(running).start()
        batch = start_local_batch(running.server.client("s3"), control.token, interval_s=0.05)
        home = tmp_path_factory.mktemp("migration")
        state = home / "state.json"
        running.generations.on_change(lambda: write_local_state(state, stack_state(running, control, batch)))
        write_local_state(state, stack_state(running, control, batch))
        mp = pytest.MonkeyPatch()
        mp.setenv("FRESHVEC_LOCAL_STATE", str(state))
        mp.chdir(home)
        try:
            yield running, home
        finally:
            mp.undo()
            batch.stop()
            control.stop()


def freshvec(*args: str) -> Any:
    result = runner.invoke(cli.app, ["--local", *args], catch_exceptions=False)
    assert "Traceback" not in result.output, result.output
    return result


def crashed_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, after: int = 0) -> Callable[[], int]:
    """Make ``owner.name`` raise once, on its call number ``after`` + 1 (earlier calls go through)."""
    original = getattr(owner, name)
    calls = itertools.count()
    raised = []

    def patched(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == after and not raised:
            raised.append(1)
            raise RuntimeError(f"crash injected in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, patched)
    return lambda: len(raised)


def run_crashing(monkeypatch: pytest.MonkeyPatch, args: list[str], owner: Any, name: str, after: int = 0) -> Any:
    """Run a step with one crash injected (it must fail loudly), then again (it must resume and succeed)."""
    with monkeypatch.context() as patch:
        count = crashed_once(patch, owner, name, after)
        first = runner.invoke(cli.app, ["--local", *args], catch_exceptions=True)
        assert count() == 1 and first.exit_code != 0, first.output
    again = freshvec(*args)
    assert again.exit_code == 0, again.output
    return again


def assert_exact(pipeline: LocalPipeline, traffic: Traffic) -> dict[str, Any]:
    """Writes paused and the pipeline caught up: every live generation equals the table."""
    traffic.pause_writes()
    try:
        pipeline.wait_synced(timeout=SYNC_S)
        result = freshvec("reconcile", "--json")
        report = json.loads(result.stdout)
        per = report.get("generations") or {report["generation"]: report}
        for name, generation in per.items():
            assert generation["drift"] == 0, (name, generation)
        assert result.exit_code == 0
        return per
    finally:
        traffic.resume_writes()


def test_a_whole_migration_under_live_traffic(
    local: tuple[LocalPipeline, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, home = local
    rows = read_rows(sample_movies(), pipeline.config)[:ROWS]
    # The rows the next generation splits are left alone by the traffic, so what the plan must embed does not
    # depend on how far the traffic got: at least their chunks (two or more each), whatever else it edited. The
    # first K rows stay too, so K answers always exist.
    split = [row for row in rows if len(row["overview"]) > NEXT_MAX_CHARS]
    assert 2 * len(split) >= BATCH_MIN_RECORDS, "the sample rows no longer give a batch job enough texts"
    pipeline.wait_synced(timeout=SYNC_S, receipt=pipeline.upsert(rows))
    traffic = Traffic(pipeline, [row for row in rows[K:] if row not in split]).start()
    try:
        assert set(assert_exact(pipeline, traffic)) == {"g1", "g2"}

        planned = run_crashing(monkeypatch, ["migrate", "plan", "--json"], MigrationState, "done")
        plan = json.loads(planned.stdout)
        assert plan["from"] == "g1" and plan["to"] == "g2" and plan["census"]["rows"] >= ROWS - 20
        census = plan["census"]
        assert 0 < census["copyable_chunks"] < census["distinct_chunks"]  # short texts copy, split ones do not
        assert census["chunks_to_embed"] >= 2 * len(split) and plan["batch"]["possible"]
        assert_exact(pipeline, traffic)

        # start on the batch path: the jobs embed the new chunk texts, the re-syncs carry their vectors; it
        # crashes after its first page of rows reached the stream, then resumes (jobs found again by name)
        before = dict(pipeline.stats()["generations"]["live"].get("g2", {"copied": 0, "embedded": 0}))
        run_crashing(
            monkeypatch, ["migrate", "start", "--path", "batch", "--segments", "2"],
            backfill_cli._BackfillRun, "_flush", after=1,
        )  # fmt: skip
        # named by the stack's identity; the fill's own progress sits next to it
        (progress,) = [p for p in (home / ".freshvec").glob("migration-local-*.json") if "-fill-" not in p.name]
        state = json.loads(progress.read_text())
        assert state["phase"] == "filled" and state["fill_path"] == "batch"
        jobs = state["batch"]["jobs"]
        assert jobs and all(job["status"] == "Completed" for job in jobs)
        # the texts to embed when start read the table (live edits since the plan change a few of them)
        assert sum(job["record_count"] for job in jobs) >= 2 * len(split)
        live = pipeline.stats()["generations"]["live"]["g2"]
        assert live["copied"] - before["copied"] >= census["copyable_chunks"]  # job vectors and g1's, not embedded
        assert_exact(pipeline, traffic)

        compared = run_crashing(
            monkeypatch, ["migrate", "compare", "--sample", "10", "--json"], migrate_compare, "ranked_rows", after=3
        )
        comparison = json.loads(compared.stdout)
        assert comparison["generations"] == ["g1", "g2"] and comparison["empty_answers"] == {"g1": 0, "g2": 0}
        assert comparison["overlap@10"] > 0.3
        # a query set with judgments: each query is a row's first sentence, that row judged relevant
        judged_rows = rows[:8]
        queries, judgments = home / "queries.jsonl", home / "judgments.jsonl"
        queries.write_text("".join(json.dumps({"id": f"q{i}", "text": r["overview"].split(". ")[0]}) + "\n"
                                   for i, r in enumerate(judged_rows)))  # fmt: skip
        judgments.write_text("".join(json.dumps({"query": f"q{i}", "key": {"title": r["title"]}, "relevance": 1}) + "\n"
                                     for i, r in enumerate(judged_rows)))  # fmt: skip
        gated = freshvec("migrate", "compare", "--queries", str(queries), "--judgments", str(judgments),
                         "--min-recall", "0.5", "--json")  # fmt: skip
        judged = json.loads(gated.stdout)["judged"]
        assert gated.exit_code == 0 and set(judged) == {"g1", "g2"}
        assert all(0.5 <= scores["recall@10"] <= 1 and 0 < scores["ndcg@10"] <= 1 for scores in judged.values())
        assert_exact(pipeline, traffic)

        for step, active in (("cutover", "g2"), ("rollback", "g1"), ("cutover", "g2")):
            run_crashing(monkeypatch, ["migrate", step], MigrationState, "done")
            assert pipeline.generations.pointer().active == active
            time.sleep(0.5)  # readers follow within their cache time
            assert pipeline.generations.resolve().index == pipeline.generations.pointer().entry(active).index
            assert_exact(pipeline, traffic)

        status = freshvec("migrate", "status", "--json")
        doc = json.loads(status.stdout)
        assert doc["active"] == "g2" and doc["phase"] == "cutover"
        assert {g: r["drift"] for g, r in doc["generations"].items()}.keys() == {"g1", "g2"}

        run_crashing(monkeypatch, ["migrate", "finish"], MigrationState, "done")
        assert pipeline.config.generation == "g2" and pipeline.config.next_generation is None
        assert set(assert_exact(pipeline, traffic)) == {"g2"}
        assert freshvec("migrate", "finish").exit_code == 0  # idempotent
    finally:
        traffic.close()
    assert traffic.writes > 20
    assert traffic.answers > 20
    assert traffic.bad_answers == []
