"""Query modes: what ``freshvec query`` and local mode ask QueryVectors for, from the config and the user's text.

- ``vector``: the text embedded with the pipeline's model; nearest first by distance.
- ``text``: the text as BM25 full-text search over every full-text searchable key (``text_search``); no
  embedding at all.
- ``hybrid``: both in one QueryVectors call, fused by the service with Reciprocal Rank Fusion.

Hybrid is the default where text search is configured, vector search elsewhere. A full-text query text is at
most 1,024 characters (``QueryText.text``): a longer one is refused, never cut. Rows, not chunks: the caller
over-fetches chunks and groups them (``freshvec.chunking.group_hits``).
"""

from __future__ import annotations

from typing import Any

from freshvec import constants as c
from freshvec.config import PipelineConfig

QUERY_MODES = ("hybrid", "vector", "text")


class QueryModeError(ValueError):
    """A mode the index cannot answer, or a text it cannot take."""


def default_mode(config: PipelineConfig) -> str:
    return "hybrid" if config.text_search_keys else "vector"


def resolve_mode(config: PipelineConfig, mode: str | None) -> str:
    chosen = mode or default_mode(config)
    if chosen not in QUERY_MODES:
        raise QueryModeError(f"unknown query mode {chosen!r}; one of {', '.join(QUERY_MODES)}")
    if chosen != "vector" and not config.text_search_keys:
        raise QueryModeError(
            f"--mode {chosen} needs full-text search on the index; set text_search.enabled (docs/deploy.md)"
        )
    return chosen


def query_texts(config: PipelineConfig, text: str, mode: str) -> list[dict[str, str]]:
    """The ``queryTexts`` of a text or hybrid query: the text against every searchable key."""
    if mode == "vector":
        return []
    if len(text) > c.S3V_MAX_QUERY_TEXT_CHARS:
        raise QueryModeError(
            f"the query text has {len(text)} characters; full-text search takes at most {c.S3V_MAX_QUERY_TEXT_CHARS}"
            " (use --mode vector for a longer text)"
        )
    return [{"text": text, "metadataKey": key} for key in config.text_search_keys]


def needs_vector(mode: str) -> bool:
    return mode in ("hybrid", "vector")


def hit_scores(hit: dict[str, Any]) -> dict[str, Any]:
    """The scores of one answer in one flat shape: ``distance``, ``bm25`` (key -> score), ``fused``."""
    scores = hit.get("scores") or {}
    return {
        "distance": hit.get("distance"),
        "bm25": {s["metadataKey"]: s["score"] for s in scores.get("bm25Scores") or []},
        "fused": scores.get("fused"),
    }
