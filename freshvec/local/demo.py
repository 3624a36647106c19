"""``freshvec local demo``: what the pipeline is for, in under a minute, on one machine.

It loads rows into the local table, waits until they are searchable, runs a few queries, then changes the
table and shows the index follow: a text rewritten (the row moves in the results), a row deleted (gone),
other columns updated (new metadata, no embedding computed). Every step reports its freshness: from the
write call until the change is searchable.

With the sample movies it tells a small story (dinosaurs), then adds one long document (the bundled long documents) to
show chunking: a question about a passage in the middle of the text finds it, and an edit of one paragraph
re-embeds one chunk. Last, with full-text search on (the demo turns it on for the sample movies: ``overview`` and
``title``), an exact title among look-alike sequels: vector search alone ranks another film first, hybrid search
(vector and BM25 fused by the local S3 Vectors endpoint) the one named. With any other config and data it picks
its rows and queries from the data itself, so users can watch their own table before deploying.
"""

from __future__ import annotations

import dataclasses
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from freshvec.config import GenerationConfig, PipelineConfig, TextSearchConfig
from freshvec.datafiles import read_records, sample_movies
from freshvec.local.pipeline import LocalPipeline, load_pipeline_config
from freshvec.local.resources import local_config
from freshvec.sources.keyspaces.driver import CellError, TableSchema, convert_row, row_to_json

DEFAULT_DATA = sample_movies()
LONG_DOCUMENT = DEFAULT_DATA.parent / "longdocs" / "documents.jsonl"  # its first row: a 16-paragraph history
LONG_QUESTION = "Who relit the light after the storm broke the lantern glass?"  # answered in paragraph 7 of 16
LONG_EDITED_PARAGRAPH = 12
MOVIE_QUERIES = (
    "dinosaurs",
    "a crew of thieves plans a heist",
    "a robot learns to feel",
    "lost at sea with sharks",
)
MOVIE_REWRITTEN = "Moby Dick"  # a whaling story whose overview the demo rewrites into a dinosaur one
MOVIE_NEW_OVERVIEW = (
    "A young sailor joins a scientific expedition to a fog-bound island and finds living dinosaurs: "
    "raptors in the ferns, a tyrannosaurus on the beach, and a paleontologist who wants them caught."
)
MOVIE_DELETED = "Jurassic Park"
MOVIE_RERATED = "The Land Before Time"
MOVIE_TITLE_QUERY = "Jurassic World Dominion"  # one of six Jurassic films whose overviews read alike
MOVIE_TEXT_SEARCH = TextSearchConfig(enabled=True, keys=("overview", "title"), language="en")
SYNC_TIMEOUT_S = 45
_QUERY_WORDS = 6

Echo = Callable[[str], None]
Row = dict[str, Any]


@dataclass(frozen=True)
class Step:
    name: str
    changes: int
    freshness_ms: float


@dataclass(frozen=True)
class Script:
    """Which rows and queries the demo uses."""

    queries: tuple[str, ...]
    rewritten: Row  # a row whose text is replaced
    new_text: str
    ranked_by: str  # the query whose results show the rewritten row move
    deleted: Row
    updated: Row | None  # a row whose other columns change (None: the table has none to change)
    update: Row  # the changed columns


def read_rows(path: str | Path, config: PipelineConfig, echo: Echo = print) -> list[Row]:
    """Rows of a CSV or JSON Lines file as change-event JSON values; rows that do not fit are reported."""
    schema = TableSchema.from_config(config)
    rows: list[Row] = []
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
    data_path = Path(data) if data is not None else DEFAULT_DATA
    movies = (
        data_path == DEFAULT_DATA and effective.primary_key == ("title",) and effective.embedding_field == "overview"
    )
    if movies and not effective.text_search_keys:  # the hybrid step needs full-text search on the index
        effective = dataclasses.replace(effective, text_search=MOVIE_TEXT_SEARCH)
        effective.validate()
    started = time.monotonic()
    rows = read_rows(data_path, effective, echo)
    texted = [row for row in rows if str(row.get(effective.embedding_field) or "").strip()]
    if len(texted) < 2:
        raise ValueError(f"{data_path} needs at least two rows with text in {effective.embedding_field!r}")
    table = "PostgreSQL on 127.0.0.1" if effective.source.kind == "postgres" else "local table"
    echo(f"Starting the local pipeline (moto server, {table}, forwarder, event source mapping, sink) ...")
    with LocalPipeline.start(effective) as pipeline:
        echo(f"  ready in {time.monotonic() - started:.1f} s; embeddings: WordLlama, 256 dimensions (offline)")
        demo = _Demo(pipeline, echo)

        echo(f"\n1. Load {len(rows)} rows from {data_path.name}")
        demo.step("load", lambda: pipeline.upsert(rows))
        script = _movie_script(effective, rows) or _generic_script(effective, texted)

        metric = effective.vector_store.distance_metric
        echo(f"\n2. Query (exact nearest neighbours, {metric} distance; lower is closer)")
        for text in script.queries:
            demo.show_hits(text)
        demo.change_steps(script)
        long_text = script.queries == MOVIE_QUERIES and effective.chunking.strategy == "recursive"
        if long_text:
            demo.long_text_step(read_rows(LONG_DOCUMENT, effective, echo)[0])
        step = 7 if long_text else 6
        if script.queries == MOVIE_QUERIES and effective.text_search_keys:
            demo.hybrid_step(MOVIE_TITLE_QUERY, step)
            step += 1
        if effective.next_generation is None and effective.source.kind == "keyspaces":
            demo.migration_step(script, step)
        demo.summary(pipeline.config)
    echo(f"\nDone in {time.monotonic() - started:.1f} s.")
    return demo.steps


class _Demo:
    def __init__(self, pipeline: LocalPipeline, echo: Echo) -> None:
        self.pipeline = pipeline
        self.config = pipeline.config
        self.echo = echo
        self.steps: list[Step] = []

    def step(self, name: str, write: Callable[[], Any]) -> Step:
        receipt = write()
        self.pipeline.wait_synced(timeout=SYNC_TIMEOUT_S, receipt=receipt)
        done = Step(name, receipt.changes, self.pipeline.freshness_ms(receipt))
        self.steps.append(done)
        self.echo(f"  {name}: {done.changes} change(s) searchable {done.freshness_ms:,.0f} ms after the write")
        return done

    def label(self, row: Row) -> str:
        for column in ("title", "name"):
            if isinstance(row.get(column), str):
                return row[column]
        return " / ".join(str(row.get(column)) for column in self.config.primary_key)

    def key(self, row: Row) -> Row:
        return {column: row[column] for column in self.config.primary_key}

    def show_hits(self, text: str, k: int = 3) -> None:
        self.echo(f"  {text!r}")
        for rank, hit in enumerate(self.pipeline.query(text, k=k, mode="vector"), start=1):
            self.echo(f"    {rank}. {self.label({**hit['metadata'], **hit['primary_key']})}  ({hit['distance']:.3f})")

    def rank(self, text: str, row: Row) -> str:
        key = self.key(row)
        if self.pipeline.indexed(key) is None:
            return "not in the index"
        for rank, hit in enumerate(self.pipeline.query(text, k=100, mode="vector"), start=1):
            if hit["primary_key"] == key:
                return f"#{rank} for {text!r} (distance {hit['distance']:.3f})"
        return f"in the index, beyond the 100 nearest for {text!r}"

    def change_steps(self, script: Script) -> None:
        text_column = self.config.embedding_field
        name = self.label(script.rewritten)
        self.echo(f"\n3. Rewrite the {text_column} of {name!r}")
        self.echo(f"  before: {self.rank(script.ranked_by, script.rewritten)}")
        rewritten = {**script.rewritten, text_column: script.new_text}
        self.step(f"{text_column} rewritten", lambda: self.pipeline.upsert([rewritten]))
        self.echo(f"  after:  {self.rank(script.ranked_by, script.rewritten)}")

        name = self.label(script.deleted)
        self.echo(f"\n4. Delete {name!r}")
        self.echo(f"  before: {self.rank(script.ranked_by, script.deleted)}")
        self.step("row deleted", lambda: self.pipeline.delete([self.key(script.deleted)]))
        self.echo(f"  after:  {self.rank(script.ranked_by, script.deleted)}")
        self.show_hits(script.ranked_by)

        if script.updated is None:
            self.echo("\n5. (No column besides the key and the text to update: step skipped.)")
            return
        columns = ", ".join(script.update)
        self.echo(f"\n5. Update only {columns} of {self.label(script.updated)!r} (the {text_column} stays)")
        before = self.pipeline.stats()
        self.step("other columns updated", lambda: self.pipeline.upsert([{**script.updated, **script.update}]))
        after = self.pipeline.stats()
        computed = after.get("embeddings_computed", 0) - before.get("embeddings_computed", 0)
        skipped = after.get("embeddings_skipped", 0) - before.get("embeddings_skipped", 0)
        self.echo(f"  embeddings computed for this change: {computed}; stored vector reused: {skipped}")
        stored = self.pipeline.indexed(self.key(script.updated))
        if stored is not None:
            shown = ", ".join(f"{column}={stored['metadata'].get(column)!r}" for column in script.update)
            self.echo(f"  metadata now: {shown}")

    def long_text_step(self, document: Row) -> None:
        text_column = self.config.embedding_field
        paragraphs = str(document[text_column]).split("\n\n")
        name = self.label(document)
        self.echo(
            f"\n6. Long text: add {name!r} ({len(paragraphs)} paragraphs, {len(document[text_column])} characters)"
        )
        self.step("long text added", lambda: self.pipeline.upsert([document]))
        chunks = self.pipeline.indexed_chunks(self.key(document))
        self.echo(f"  stored as {len(chunks)} chunks (vectors), each with the row's columns")
        self.echo(f"  {LONG_QUESTION!r}")
        hits = self.pipeline.query(LONG_QUESTION, k=3, mode="vector")
        for rank, hit in enumerate(hits, start=1):
            label = self.label({**hit["metadata"], **hit["primary_key"]})
            self.echo(f"    {rank}. {label}  ({hit['distance']:.3f}), best passage: chunk {hit['chunk']}")
        if hits:  # the passage that matched, whole: the answer may sit anywhere in it
            self.echo(textwrap.indent(textwrap.fill(hits[0]["passage"], width=92), " " * 7))
        edited = list(paragraphs)
        edited[LONG_EDITED_PARAGRAPH] += " A second keeper's log, found in 2019, confirms the date."
        before = self.pipeline.stats()
        self.step(
            "one paragraph edited", lambda: self.pipeline.upsert([{**document, text_column: "\n\n".join(edited)}])
        )
        after = self.pipeline.stats()
        embedded = after.get("chunks_embedded", 0) - before.get("chunks_embedded", 0)
        reused = after.get("chunks_reused", 0) - before.get("chunks_reused", 0)
        self.echo(f"  paragraph {LONG_EDITED_PARAGRAPH + 1} edited: chunks embedded {embedded}, reused {reused}")

    def hybrid_step(self, title: str, number: int) -> None:
        keys = ", ".join(self.config.text_search_keys)
        self.echo(f"\n{number}. An exact title, {title!r}: vector search alone, then hybrid (full-text on {keys})")
        for mode in ("vector", "hybrid"):
            hits = self.pipeline.query(title, k=3, mode=mode)
            self.echo(f"  {mode}:")
            for rank, hit in enumerate(hits, start=1):
                label = self.label({**hit["metadata"], **hit["primary_key"]})
                if mode == "vector":
                    score = f"distance {hit['distance']:.3f}"
                else:
                    bm25 = sum(s["score"] for s in (hit["scores"] or {}).get("bm25Scores", []))
                    score = f"fused {hit['scores']['fused']:.4f}, BM25 {bm25:.2f}"
                self.echo(f"    {rank}. {label}  ({score})")
            first = self.label({**hits[0]["metadata"], **hits[0]["primary_key"]}) if hits else None
            verdict = "the film named" if first == title else "another film"
            self.echo(f"  -> {mode} ranks {verdict} first")

    def migration_step(self, script: Script, number: int) -> None:
        """A migration to smaller chunks in a new index while the table changes: fill, compare, cutover,
        rollback, cutover, finish (``freshvec migrate`` does the same against a stack)."""
        p = self.pipeline
        config = p.config
        nxt = GenerationConfig(
            name="g2",
            embedding=config.embedding,
            chunking=dataclasses.replace(config.chunking, max_chars=max(200, config.chunking.max_chars // 2)),
            vector_store=dataclasses.replace(
                config.vector_store, bucket_name=None, index_name=f"{config.vector_store.index_name}-next"
            ),
        )
        self.echo(
            f"\n{number}. Migrate to a new index generation: chunks of at most {nxt.chunking.max_chars} characters"
        )
        p.generations.add(nxt)
        before = p.stats()["generations"]["live"].get("g2", {"copied": 0, "embedded": 0})
        started = time.monotonic()
        sent = p.generations.fill("g2")
        edited = {**script.rewritten, config.embedding_field: f"{script.new_text} Edited during the migration."}
        p.upsert([edited])  # a live change while g2 fills: it reaches both generations
        p.wait_synced(timeout=SYNC_TIMEOUT_S)
        after = p.stats()["generations"]["live"]["g2"]
        copied, embedded = after["copied"] - before["copied"], after["embedded"] - before["embedded"]
        self.echo(
            f"  filled g2 from {sent} rows in {time.monotonic() - started:.1f} s while the table kept changing: "
            f"{copied} chunk(s) copied from g1 (same fingerprint), {embedded} embedded"
        )
        query = script.queries[0]
        ranked = {g: [h["key"] for h in p.query(query, k=5, generation=g)] for g in ("g1", "g2")}
        shared = len(set(ranked["g1"]) & set(ranked["g2"]))
        self.echo(f"  compare {query!r}: {shared} of the top 5 rows agree (overlap@5 {shared / 5:.1f})")
        for step, target in (("cutover", "g2"), ("rollback", "g1"), ("cutover", "g2")):
            switched = time.monotonic()
            p.generations.switch(target)
            self.echo(f"  {step}: readers use {target} ({(time.monotonic() - switched) * 1000:,.0f} ms, no deploy)")
        p.generations.retire("g1")
        self.echo(f"  finish: g1 retired, its index deleted; queries answer from {p.config.vector_index_name}")
        self.show_hits(query)

    def summary(self, config: PipelineConfig) -> None:
        self.echo("\nFreshness, write -> searchable:")
        for done in self.steps:
            self.echo(f"  {done.name:<28} {done.changes:>5} change(s)  {done.freshness_ms:>8,.0f} ms")
        self.echo(
            "  (a lone change waits out the event source mapping's batching window, sink.batching_window_s = "
            f"{config.sink.batching_window_s} s, as it does in AWS; the forwarder polls every "
            f"{config.forwarder.poll_interval_ms} ms)"
        )
        stats = self.pipeline.stats()
        names = (
            "changes",
            "changes_forwarded",
            "embeddings_computed",
            "embeddings_skipped",
            "chunks_embedded",
            "chunks_reused",
            "vectors_put",
            "vectors_deleted",
            "dlq_records",
        )
        self.echo("\nCounters: " + ", ".join(f"{name}={stats.get(name, 0)}" for name in names))


def _movie_script(config: PipelineConfig, rows: list[Row]) -> Script | None:
    """The sample movies' story, when the table and data are the sample's."""
    by_title = {row.get("title"): row for row in rows}
    wanted = {MOVIE_REWRITTEN, MOVIE_DELETED, MOVIE_RERATED}
    if config.primary_key != ("title",) or config.embedding_field != "overview" or not wanted <= set(by_title):
        return None
    rerated = by_title[MOVIE_RERATED]
    update = {"vote_count": int(rerated.get("vote_count") or 0) + 1, "vote_average": "9.9"}
    if not set(update) <= set(config.columns):
        return None
    return Script(
        queries=MOVIE_QUERIES,
        rewritten=by_title[MOVIE_REWRITTEN],
        new_text=MOVIE_NEW_OVERVIEW,
        ranked_by=MOVIE_QUERIES[0],
        deleted=by_title[MOVIE_DELETED],
        updated=rerated,
        update=update,
    )


def _generic_script(config: PipelineConfig, rows: list[Row]) -> Script:
    """Rows and queries taken from the data: queries are the opening words of a few rows' text."""
    text_column = config.embedding_field
    picks = [rows[i * (len(rows) - 1) // 2] for i in range(3)] if len(rows) >= 3 else rows
    queries = tuple(dict.fromkeys(" ".join(str(row[text_column]).split()[:_QUERY_WORDS]) for row in picks))
    anchor, rewritten = rows[0], rows[-1]
    deleted = rows[len(rows) // 2] if len(rows) > 2 else rows[0]
    updated = next((row for row in rows[1:-1] if row is not deleted and _other_column_change(config, row)), None)
    return Script(
        queries=queries,
        rewritten=rewritten,
        new_text=str(anchor[text_column]),  # it now reads like the first row, so it ranks next to it
        ranked_by=" ".join(str(anchor[text_column]).split()[:_QUERY_WORDS]),
        deleted=deleted,
        updated=updated,
        update=_other_column_change(config, updated) if updated is not None else {},
    )


def _other_column_change(config: PipelineConfig, row: Row) -> Row:
    """A new value for one column that is neither key nor text: a number bumped, a flag flipped, a word added."""
    types = config.column_types
    for column in config.columns:
        if column in config.primary_key or column == config.embedding_field or row.get(column) is None:
            continue
        kind, value = types[column].base.name, row[column]
        if kind in ("int", "bigint", "smallint", "varint") and isinstance(value, int):
            return {column: value + 1}
        if kind == "decimal":
            try:
                return {column: str(Decimal(str(value)) + 1)}
            except InvalidOperation:
                continue
        if kind in ("float", "double") and isinstance(value, int | float):
            return {column: value + 1}
        if kind == "boolean" and isinstance(value, bool):
            return {column: not value}
        if types[column].is_text and isinstance(value, str):
            return {column: f"{value} (updated)"}
    return {}
