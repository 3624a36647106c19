"""``freshvec migrate compare``: the gate before a cutover. The same queries against two generations.

Queries come from a file (JSON Lines ``{"id", "text"}``, or plain text one a line) or are sampled from the table's
own texts (the first sentence of evenly spaced rows: each has a row it should find). Every query is embedded with
each generation's own model and searched in its own index, as a reader would after a switch. Printed: overlap@k
(the share of the top ``k`` rows both return) and, with a judgment file (JSON Lines ``{"query", "key": {primary
key}, "relevance"}``), recall@k and nDCG@k per generation, computed by ir-measures (TREC definitions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from freshvec import migration
from freshvec.cli import console, local_client, query, reconcile
from freshvec.cli.errors import OperatorError
from freshvec.cli.migrate_context import Context
from freshvec.generations import Generation
from freshvec.keys import vector_key

_SAMPLE_CHARS = 200


def load_queries(path: Path) -> list[tuple[str, str]]:
    queries: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                doc = json.loads(line)
                queries.append((str(doc["id"]), str(doc["text"])))
            except (ValueError, KeyError) as exc:
                raise OperatorError(f'{path}:{number}: expected {{"id", "text"}}: {exc}') from exc
        else:
            queries.append((str(number), line.strip()))
    if not queries:
        raise OperatorError(f"{path} holds no queries")
    return queries


def sample_queries(ctx: Context, generation: Generation, sample: int, session: Any) -> list[tuple[str, str]]:
    """The first sentence of ``sample`` rows spread over the table (read through the generation's view)."""
    texts: list[str] = []
    field = generation.config.embedding_field
    for source in reconcile.table_pages(ctx.scoped(generation), session, 4):
        for page in source():
            texts.extend(row[field] for row, _ in page if isinstance(row.get(field), str) and row[field].strip())
    if not texts:
        raise OperatorError("the table has no text to sample queries from; pass --queries")
    step = max(1, len(texts) // sample)
    picked = texts[::step][:sample]
    return [
        (f"s{i}", re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0][:_SAMPLE_CHARS])
        for i, text in enumerate(picked)
    ]


def load_judgments(path: Path, ctx: Context) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    columns = ctx.resources.config.key_columns
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            key = vector_key(doc["key"], columns)
            qrels.setdefault(str(doc["query"]), {})[key] = int(doc.get("relevance", 1))
        except (ValueError, KeyError, TypeError) as exc:
            raise OperatorError(f'{path}:{number}: expected {{"query", "key": {{...}}, "relevance"}}: {exc}') from exc
    return qrels


def ranked_rows(ctx: Context, generation: Generation, text: str, k: int) -> list[tuple[str, float]]:
    """The rows a reader of ``generation`` gets for ``text``, best first, as (row key, score)."""
    res = ctx.resources
    if res.is_local:
        body = local_client.control_request(res, "POST", "query", {"text": text, "k": k, "generation": generation.name})
        return [(hit["key"], -float(hit.get("distance") or 0.0)) for hit in body.get("hits", [])]
    found = query.query_index(ctx.clients, ctx.scoped(generation), text, k=k)
    return [(hit.key, -float(hit.distance or 0.0)) for hit in found.hits]


def compare(
    ctx: Context,
    pair: Sequence[Generation],
    *,
    queries: Path | None,
    sample: int,
    k: int,
    judgments: Path | None,
    session: Any = None,
) -> dict[str, Any]:
    """``session``: the table's (Keyspaces or PostgreSQL) when queries are sampled from a deployed table."""
    asked = load_queries(queries) if queries is not None else sample_queries(ctx, pair[0], sample, session)
    runs: dict[str, dict[str, list[tuple[str, float]]]] = {g.name: {} for g in pair}
    with console.progress_eta() as progress:
        task = progress.add_task("queries", total=len(asked) * len(pair))
        for query_id, text in asked:
            for generation in pair:
                runs[generation.name][query_id] = ranked_rows(ctx, generation, text, k)
                progress.advance(task)
    first, second = (g.name for g in pair)
    overlaps = [
        migration.overlap_at_k([r for r, _ in runs[first][q]], [r for r, _ in runs[second][q]], k) for q, _ in asked
    ]
    result: dict[str, Any] = {
        "generations": [first, second],
        "queries": len(asked),
        "k": k,
        f"overlap@{k}": round(migration.mean(overlaps), 4),
        "empty_answers": {g: sum(1 for q in runs[g].values() if not q) for g in runs},
    }
    if judgments is not None:
        result["judged"] = migration.judged_metrics(runs, load_judgments(judgments, ctx), k)
    return result


def below(result: Mapping[str, Any], *, min_overlap: float | None, min_recall: float | None, target: str) -> list[str]:
    k = result["k"]
    failures = []
    overlap = result[f"overlap@{k}"]
    if min_overlap is not None and overlap < min_overlap:
        failures.append(f"overlap@{k} {overlap:.3f} < {min_overlap}")
    if min_recall is not None:
        if "judged" not in result:
            raise OperatorError("--min-recall needs --judgments")
        recall = result["judged"][target][f"recall@{k}"]
        if recall < min_recall:
            failures.append(f"recall@{k} of {target} {recall:.3f} < {min_recall}")
    return failures


def print_result(result: Mapping[str, Any]) -> None:
    k = result["k"]
    first, second = result["generations"]
    console.out.print(
        f"{result['queries']} queries, {first} against {second}: overlap@{k} {result[f'overlap@{k}']:.3f}"
    )
    for name, empty in result["empty_answers"].items():
        if empty:
            console.out.print(f"  {name}: {empty} query(ies) found nothing")
    for name, scores in result.get("judged", {}).items():
        console.out.print(f"  {name}: recall@{k} {scores[f'recall@{k}']:.3f}, nDCG@{k} {scores[f'ndcg@{k}']:.3f}")
