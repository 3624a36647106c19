"""``freshvec query``: search the index in one of three modes and print the best rows.

``--mode`` (``freshvec.search``): ``vector`` embeds the text like the sink does; ``text`` is BM25 full-text
search over the full-text searchable keys; ``hybrid`` (the default where text search is configured) is both,
fused by S3 Vectors with Reciprocal Rank Fusion. A long row is stored as several chunks
(``freshvec.chunking``): the query over-fetches chunks (``query_top_k``, past one page through ``nextToken``),
groups them by row and returns ``k`` rows, best first, each with its best passage and that chunk's number;
``--json`` also lists every matching chunk of each row and every score (distance, BM25 per key, fused).
A ``$startsWith`` filter needs an ENHANCED index: on a CLASSIC one it is refused before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer
from rich.table import Table

from freshvec import constants as c
from freshvec.chunking import group_hits, query_top_k
from freshvec.cli import console, generations, local_client
from freshvec.cli.errors import OperatorError, UsageError
from freshvec.cli.settings import settings
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.config import PipelineConfig
from freshvec.filters import check_filterable, parse_filter, validate_filter
from freshvec.keys import parse_vector_key
from freshvec.search import QUERY_MODES, QueryModeError, hit_scores, needs_vector, query_texts, resolve_mode


@dataclass(frozen=True)
class QueryHit:
    rank: int
    key: str
    key_values: dict[str, Any]
    distance: float | None
    metadata: dict[str, Any]
    chunk: int = 0  # the best matching chunk of the row
    passage: str = ""  # its text
    chunks: list[dict[str, Any]] | None = None  # every matching chunk of the row: chunk, key, distance, passage
    scores: dict[str, Any] | None = None  # its best chunk's: distance, bm25 (key -> score), fused


@dataclass(frozen=True)
class QueryResult:
    metric: str
    hits: list[QueryHit]
    mode: str = "vector"


def _key_values(key: str, config: PipelineConfig) -> dict[str, Any]:
    try:
        return parse_vector_key(key, config.key_columns)
    except ValueError:
        return {}


def _hits(raw: Iterable[dict[str, Any]], config: PipelineConfig, k: int) -> list[QueryHit]:
    """Chunks (QueryVectors answers, best first) -> ``k`` rows, best first."""
    hits = []
    for rank, row in enumerate(group_hits(raw, k, config.embedding_field), start=1):
        key_values = _key_values(row.key, config)
        chunks = [asdict(chunk) for chunk in row.chunks]
        scores = hit_scores({"distance": row.distance, "scores": row.scores})
        hits.append(
            QueryHit(rank, row.key, key_values, row.distance, row.metadata, row.chunk, row.passage, chunks, scores)
        )
    return hits


def _rows(raw: Iterable[dict[str, Any]], config: PipelineConfig, k: int) -> list[QueryHit]:
    """Rows the local control API already grouped (``LocalPipeline.query``)."""
    hits = []
    for rank, item in enumerate(raw, start=1):
        key_values = item.get("primary_key") or _key_values(item["key"], config)
        distance = item.get("distance")
        hits.append(
            QueryHit(
                rank,
                item["key"],
                key_values,
                None if distance is None else float(distance),
                item.get("metadata") or {},
                int(item.get("chunk", 0)),
                str(item.get("passage", "")),
                item.get("chunks"),
                hit_scores(item),
            )
        )
    return hits[:k]


def check_index(store: Any, resources: StackResources) -> Any:
    """The index's ``IndexInfo``; OperatorError when it is missing or its dimension differs from the config."""
    from freshvec.errors import MisconfigurationError, error_code

    try:
        info = store.describe()
    except MisconfigurationError as exc:
        if error_code(exc.__cause__) in ("NotFoundException", "NoSuchIndex", "NoSuchVectorBucket"):
            raise OperatorError(
                f"vector index {resources.vector_index!r} not found in bucket {resources.vector_bucket!r}"
            ) from exc
        raise
    expected = resources.config.embedding.dimensions
    if info.dimension != expected:
        raise OperatorError(
            f"dimension mismatch: index {resources.vector_index!r} has {info.dimension} dimensions but "
            f"{resources.config.embedding.model_id} is configured for {expected}"
        )
    return info


def query_index(
    clients: ClientFactory,
    resources: StackResources,
    text: str,
    *,
    k: int = 10,
    filter_doc: dict[str, Any] | None = None,
    embedder: Any = None,
    mode: str | None = None,
) -> QueryResult:
    """Search the index: the text embedded like the sink does (queries as ``search_query`` for Cohere), as BM25
    full-text, or both (``mode``, see ``freshvec.search``)."""
    if not 1 <= k <= c.S3V_MAX_TOP_K:
        raise UsageError(f"--k must be between 1 and {c.S3V_MAX_TOP_K}, got {k}")
    if not text.strip():
        raise UsageError("the query text is empty")
    config = resources.config
    if filter_doc is not None:  # S3 Vectors would refuse it as a ValidationException; say which key, and why
        check_filterable(filter_doc, config)
    try:
        chosen = resolve_mode(config, mode)
        texts = query_texts(config, text, chosen)
    except QueryModeError as exc:
        raise UsageError(str(exc)) from exc
    if resources.is_local:
        if filter_doc is not None:
            validate_filter(filter_doc, enhanced=config.text_search.index_mode == "ENHANCED")
        return _query_local(resources, text, k, filter_doc, chosen)
    from freshvec.adapters.s3vectors import S3VectorsStore

    store = S3VectorsStore(clients("s3vectors"), resources.vector_bucket, resources.vector_index)
    info = check_index(store, resources)
    if filter_doc is not None:  # $startsWith only where the index is ENHANCED
        validate_filter(filter_doc, enhanced=info.index_mode != "CLASSIC")
    building = [key for key, _, status in info.text_search if status != "ACTIVE"]
    if texts and building:
        raise OperatorError(
            f"full-text search on {', '.join(building)} is still BUILDING; use --mode vector until `freshvec status`"
            " shows it ACTIVE"
        )
    vector = None
    if needs_vector(chosen):
        if embedder is None:
            from freshvec.adapters.bedrock import make_embedder

            embedder = make_embedder(config.embedding, clients("bedrock-runtime"))
        vector = embedder.embed_query(text)
        if len(vector) != info.dimension:
            raise OperatorError(
                f"dimension mismatch: the model returned {len(vector)} values, the index takes {info.dimension}"
            )
    hits = store.query(vector, query_top_k(k), filter_doc, texts=texts, return_scores=bool(texts))
    return QueryResult(info.distance_metric, _hits(hits, config, k), chosen)


def _query_local(
    resources: StackResources, text: str, k: int, filter_doc: dict[str, Any] | None, mode: str
) -> QueryResult:
    body = {"text": text, "k": k, "filter": filter_doc, "mode": mode}
    answer = local_client.control_request(resources, "POST", "query", body)
    rows = _rows(answer.get("hits", []), resources.config, k)
    return QueryResult(resources.config.vector_store.distance_metric, rows, mode)


# ---- the command ------------------------------------------------------------------------------


def query_command(  # noqa: PLR0917 - typer passes each option by position
    text: Annotated[str, typer.Argument(metavar="TEXT", help="What to search for")],
    k: Annotated[int, typer.Option("--k", min=1, max=c.S3V_MAX_TOP_K, help="How many rows (at most 100)")] = 10,
    filter_json: Annotated[
        str | None, typer.Option("--filter", help='S3 Vectors metadata filter, e.g. \'{"vote_count": {"$gte": 100}}\'')
    ] = None,
    columns: Annotated[
        str | None, typer.Option("--columns", help="Comma-separated metadata columns to show [default: configured]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help=f"{' | '.join(QUERY_MODES)} [default: hybrid where text search is configured, else vector]",
        ),
    ] = None,
) -> None:
    """Search the index: vector (same model and dimensions as the pipeline), full-text (BM25) or hybrid."""
    if mode is not None and mode not in QUERY_MODES:
        raise UsageError(f"--mode must be one of {', '.join(QUERY_MODES)}, got {mode!r}")
    filter_doc = parse_filter(filter_json) if filter_json is not None else None
    s = settings()
    res = s.resources()
    if not res.is_local:  # the index readers use now (the pointer); local mode's own query path reads it too
        res = generations.active_resources(res, s.clients())
    clients = s.clients() if not res.is_local else _no_clients
    shown = query_columns(res.config, columns)  # before anything is sent: an unknown column is a usage error
    result = query_index(clients, res, text, k=k, filter_doc=filter_doc, mode=mode)
    if as_json:
        console.out.print_json(json.dumps(query_json(result), default=str))
        return
    console.out.print(render_query_table(result, shown, res.config.column_types, width=console.out.width))


def _no_clients(service: str) -> Any:
    raise OperatorError(f"local mode answers queries through its control API, not {service}")


def query_columns(config: Any, columns: str | None) -> list[str]:
    if columns is None:
        return [name for name in config.metadata_fields if name not in config.key_columns]
    names = [name.strip() for name in columns.split(",") if name.strip()]
    known = [*config.metadata_fields, config.embedding_field, c.META_CHUNK, *c.PIPELINE_NON_FILTERABLE_KEYS]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"--columns: {unknown[0]!r} is not stored with the vectors; columns: {', '.join(known)}")
    return names


def query_json(result: QueryResult) -> dict[str, Any]:
    return {
        "mode": result.mode,
        "distance_metric": result.metric,
        # vector: by distance (0 = identical, lower is closer); text: by BM25 (higher is better); hybrid: by the
        # Reciprocal Rank Fusion score ("fused", higher is better); each hit's "scores" holds all three
        "score": {"vector": "distance", "text": "bm25", "hybrid": "fused"}[result.mode],
        "hits": [asdict(hit) for hit in result.hits],
    }


# The best matching passage (its chunk number when not 0), folded over lines: two fifths of the terminal, at least
# a phrase per line (30 characters), at most 60; metadata columns get only what is left beside it.
PASSAGE_MIN_WIDTH = 30
PASSAGE_MAX_WIDTH = 60
KEY_MAX_WIDTH = 24  # the key folds onto more lines beyond this; a short key takes only its own width
METADATA_MIN_WIDTH = 10  # a metadata column narrower than this shows too little of its values to be worth a place
_CELL_PADDING = 3  # a column's left padding, right padding and border


def render_query_table(
    result: QueryResult,
    columns: list[str],
    column_types: dict[str, Any] | None = None,
    *,
    width: int | None = None,
) -> Table:
    """Nearest first. Dates and timestamps, stored as numbers so range filters work, are shown as dates.

    ``rank`` and ``distance`` are never cut; the key folds onto more lines; metadata values are cut with an
    ellipsis, and in a terminal too narrow for every header the metadata columns that do not fit are left out
    (named in the caption).
    """
    types = column_types or {}
    title = {
        "vector": f"{len(result.hits)} result(s), by {result.metric} distance (0 = identical, lower = closer)",
        "text": f"{len(result.hits)} result(s), by BM25 full-text score (higher = better)",
        "hybrid": f"{len(result.hits)} result(s), hybrid: vector and full-text ranks fused (RRF, higher = better)",
    }[result.mode]
    keys = [", ".join(f"{k}={v}" for k, v in hit.key_values.items()) or hit.key for hit in result.hits]
    key_width = min(KEY_MAX_WIDTH, max([len("key"), *map(len, keys)]))
    passage_width = passage_column_width(width)
    shown, hidden, spare = _fitting(columns, width, key_width, passage_width)
    caption = f"not shown at this width: {', '.join(hidden)} (see --columns or --json)" if hidden else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("rank", justify="right", no_wrap=True, min_width=len("rank"))
    table.add_column("key", overflow="fold", min_width=key_width, max_width=KEY_MAX_WIDTH)
    score_name = {"vector": "distance", "text": "bm25", "hybrid": "fused"}[result.mode]
    table.add_column(score_name, justify="right", no_wrap=True, min_width=len("distance"))
    table.add_column("passage", overflow="fold", min_width=passage_width, max_width=PASSAGE_MAX_WIDTH)
    # Metadata values are cut, never wrapped: each column gets its header's width and a share of what is left.
    share = PASSAGE_MAX_WIDTH if spare is None else spare // max(1, len(shown))
    for name in shown:
        least = _metadata_width(name)
        table.add_column(name, overflow="ellipsis", no_wrap=True, min_width=least, max_width=least + share)
    for hit, key in zip(result.hits, keys, strict=True):
        distance = _score_cell(hit, result.mode)
        values = [_display(hit.metadata.get(n), types.get(n)) for n in shown]
        passage = _excerpt(hit.passage) if not hit.chunk else f"[chunk {hit.chunk}] {_excerpt(hit.passage)}"
        table.add_row(str(hit.rank), key, distance, passage, *values)
    return table


def _score_cell(hit: QueryHit, mode: str) -> str:
    scores = hit.scores or {}
    if mode == "text":
        bm25 = scores.get("bm25") or {}
        return f"{sum(bm25.values()):.3f}" if bm25 else "-"
    if mode == "hybrid":
        fused = scores.get("fused")
        return "-" if fused is None else f"{fused:.4f}"
    return "-" if hit.distance is None else f"{hit.distance:.4f}"


def passage_column_width(width: int | None) -> int:
    """The passage's width: two fifths of the terminal, between PASSAGE_MIN_WIDTH and PASSAGE_MAX_WIDTH."""
    if width is None:
        return PASSAGE_MIN_WIDTH
    return max(PASSAGE_MIN_WIDTH, min(PASSAGE_MAX_WIDTH, width * 2 // 5))


def _fitting(
    columns: list[str], width: int | None, key_width: int, passage_width: int
) -> tuple[list[str], list[str], int | None]:
    """The metadata columns whose whole header fits beside rank, key, distance and the passage's width (in
    order), the rest, and the width left over (None: no limit)."""
    if width is None:
        return columns, [], None
    fixed = (len("rank"), key_width, len("distance"), passage_width)
    used = 1 + sum(w + _CELL_PADDING for w in fixed)
    for position, name in enumerate(columns):
        if used + _metadata_width(name) + _CELL_PADDING > width:
            return columns[:position], columns[position:], width - used
        used += _metadata_width(name) + _CELL_PADDING
    return columns, [], width - used


def _metadata_width(name: str) -> int:
    return max(len(name), METADATA_MIN_WIDTH)


def _excerpt(passage: str, limit: int = 200) -> str:
    return passage if len(passage) <= limit else passage[: limit - 1].rstrip() + "…"


def _display(value: Any, cql: Any) -> str:
    from freshvec.metadata import date_from_metadata, timestamp_from_metadata

    if value is None:
        return ""
    kind = cql.base.name if cql is not None else None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            if kind == "date":
                return date_from_metadata(value).isoformat()
            if kind == "timestamp":
                return timestamp_from_metadata(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        except (ValueError, OverflowError):
            return str(value)
    return str(value)
