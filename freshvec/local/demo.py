"""``freshvec local demo``: what the pipeline is for, in under a minute, on one machine.

It loads the sample movies into the local table, waits until they are searchable, runs a few queries,
then changes the table and shows the index follow: an overview rewritten (the movie moves in the
results), a movie deleted (gone), ratings updated (new metadata, no embedding computed). Every step
reports its freshness: from the write call until the change is searchable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freshvec.config import PipelineConfig
from freshvec.loader import CellError, TableSchema, convert_row, read_records, row_to_json
from freshvec.local.pipeline import LocalPipeline, load_pipeline_config
from freshvec.local.resources import local_config

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "data" / "movies.jsonl"
QUERIES = (
    "dinosaurs",
    "a crew of thieves plans a heist",
    "a robot learns to feel",
    "lost at sea with sharks",
)
RETITLED = "Moby Dick"  # a whaling story whose overview the demo rewrites into a dinosaur one
NEW_OVERVIEW = (
    "A young sailor joins a scientific expedition to a fog-bound island and finds living dinosaurs: "
    "raptors in the ferns, a tyrannosaurus on the beach, and a paleontologist who wants them caught."
)
DELETED = "Jurassic Park"
RERATED = "The Land Before Time"
SYNC_TIMEOUT_S = 45

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    name: str
    changes: int
    freshness_ms: float


def read_rows(path: str | Path, config: PipelineConfig, echo: Echo = print) -> list[dict[str, Any]]:
    """Rows of a CSV or JSON Lines file as change-event JSON values; rows that do not fit are reported."""
    schema = TableSchema.from_config(config)
    rows: list[dict[str, Any]] = []
    for record in read_records(path, config.columns):
        if record.values is None:
            echo(f"  skipped line {record.line}: {record.error}")
            continue
        try:
            rows.append(row_to_json(convert_row(record.values, schema), schema))
        except CellError as exc:
            echo(f"  skipped line {record.line}: {exc}")
    return rows


def run_demo(config: Any = None, data: str | Path | None = None, echo: Echo = print) -> list[Step]:
    """Run the demo; returns each step's freshness. Works with any config whose table holds the data."""
    effective = local_config(load_pipeline_config(config))
    title_column = effective.partition_key[0]
    text_column = effective.embedding_field
    started = time.monotonic()
    echo("Starting the local pipeline (moto server, local table, forwarder, event source mapping, sink) ...")
    with LocalPipeline.start(effective) as pipeline:
        echo(f"  ready in {time.monotonic() - started:.1f} s; embeddings: WordLlama, 256 dimensions (offline)")
        steps: list[Step] = []
        rows = read_rows(data or DEFAULT_DATA, effective, echo)
        by_title = {row.get(title_column): row for row in rows}

        def step(name: str, write: Callable[[], Any]) -> Step:
            receipt = write()
            pipeline.wait_synced(timeout=SYNC_TIMEOUT_S, receipt=receipt)
            done = Step(name, receipt.changes, pipeline.freshness_ms(receipt))
            steps.append(done)
            echo(f"  {name}: {done.changes} change(s) searchable {done.freshness_ms:,.0f} ms after the write")
            return done

        echo(f"\n1. Load {len(rows)} rows from {Path(data or DEFAULT_DATA).name}")
        step("load", lambda: pipeline.upsert(rows))

        echo("\n2. Query (exact nearest neighbours, cosine distance; lower is closer)")
        for text in QUERIES:
            _show_hits(pipeline, text, title_column, echo)

        demo_rows = {DELETED, RETITLED, RERATED} <= set(by_title) and title_column == "title"
        if not demo_rows:
            echo("\n(The remaining steps use rows of the sample movies; they are skipped for this data.)")
        else:
            _change_steps(
                pipeline, by_title=by_title, title_column=title_column, text_column=text_column, step=step, echo=echo
            )

        echo("\nFreshness, write -> searchable:")
        for done in steps:
            echo(f"  {done.name:<28} {done.changes:>5} change(s)  {done.freshness_ms:>8,.0f} ms")
        window = effective.sink.batching_window_s
        echo(
            f"  (a lone change waits out the event source mapping's batching window, sink.batching_window_s = "
            f"{window} s, as it does in AWS; forwarder polls every {effective.forwarder.poll_interval_ms} ms)"
        )
        stats = pipeline.stats()
        echo(
            "\nCounters: "
            + ", ".join(
                f"{name}={stats.get(name, 0)}"
                for name in (
                    "changes",
                    "changes_forwarded",
                    "embeddings_computed",
                    "embeddings_skipped",
                    "vectors_put",
                    "vectors_deleted",
                    "dlq_records",
                )
            )
        )
    echo(f"\nDone in {time.monotonic() - started:.1f} s.")
    return steps


def _change_steps(
    pipeline: LocalPipeline,
    *,
    by_title: dict[Any, dict[str, Any]],
    title_column: str,
    text_column: str,
    step: Callable[[str, Callable[[], Any]], Step],
    echo: Echo,
) -> None:
    query = QUERIES[0]
    echo(f"\n3. Rewrite the overview of {RETITLED!r} into a dinosaur story")
    echo(f"  before: {_rank_text(pipeline, query, RETITLED, title_column)}")
    rewritten = {**by_title[RETITLED], text_column: NEW_OVERVIEW}
    step("overview rewritten", lambda: pipeline.upsert([rewritten]))
    echo(f"  after:  {_rank_text(pipeline, query, RETITLED, title_column)}")

    echo(f"\n4. Delete {DELETED!r}")
    echo(f"  before: {_rank_text(pipeline, query, DELETED, title_column)}")
    step("row deleted", lambda: pipeline.delete([{title_column: DELETED}]))
    echo(f"  after:  {_rank_text(pipeline, query, DELETED, title_column)}")
    _show_hits(pipeline, query, title_column, echo)

    echo(f"\n5. Update only the ratings of {RERATED!r} (the overview stays)")
    row = by_title[RERATED]
    rerated = {**row, "vote_count": int(row.get("vote_count") or 0) + 1, "vote_average": "9.9"}
    before = pipeline.stats()
    step("ratings updated", lambda: pipeline.upsert([rerated]))
    after = pipeline.stats()
    computed = after.get("embeddings_computed", 0) - before.get("embeddings_computed", 0)
    skipped = after.get("embeddings_skipped", 0) - before.get("embeddings_skipped", 0)
    echo(f"  embeddings computed for this change: {computed}; stored vector reused: {skipped}")
    hits = pipeline.query(str(row.get(text_column) or RERATED), k=1, filter={title_column: RERATED})
    if hits:
        meta = hits[0]["metadata"]
        echo(f"  metadata now: vote_count={meta.get('vote_count')} vote_average={meta.get('vote_average')}")


def _show_hits(pipeline: LocalPipeline, text: str, title_column: str, echo: Echo, k: int = 3) -> None:
    echo(f"  {text!r}")
    for rank, hit in enumerate(pipeline.query(text, k=k), start=1):
        title = hit["primary_key"].get(title_column, hit["key"])
        echo(f"    {rank}. {title}  ({hit['distance']:.3f})")


def _rank_text(pipeline: LocalPipeline, text: str, title: str, title_column: str) -> str:
    if not pipeline.query(text, k=1, filter={title_column: title}):
        return "not in the index"
    for rank, hit in enumerate(pipeline.query(text, k=100), start=1):
        if hit["primary_key"].get(title_column) == title:
            return f"#{rank} for {text!r} (distance {hit['distance']:.3f})"
    return f"in the index, beyond the 100 nearest for {text!r}"
