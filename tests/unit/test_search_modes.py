"""Query modes: hybrid by default where text search is on, refusals that say what to change."""

from __future__ import annotations

import pytest

from freshvec.config import PipelineConfig, default_config
from freshvec.search import QueryModeError, hit_scores, query_texts, resolve_mode


def _with_text_search(**settings: object) -> PipelineConfig:
    return PipelineConfig.from_dict({**default_config().to_dict(), "text_search": {"enabled": True, **settings}})


def test_the_default_mode_follows_the_config() -> None:
    assert resolve_mode(default_config(), None) == "vector"
    assert resolve_mode(_with_text_search(), None) == "hybrid"
    assert resolve_mode(_with_text_search(), "text") == "text"


def test_text_modes_need_text_search_and_a_short_enough_text() -> None:
    with pytest.raises(QueryModeError, match="--mode hybrid needs full-text search on the index; set text_search"):
        resolve_mode(default_config(), "hybrid")
    with pytest.raises(QueryModeError, match="unknown query mode 'fuzzy'"):
        resolve_mode(_with_text_search(), "fuzzy")
    config = _with_text_search(keys=["overview", "title"])
    assert query_texts(config, "dinosaurs", "hybrid") == [
        {"text": "dinosaurs", "metadataKey": "overview"},
        {"text": "dinosaurs", "metadataKey": "title"},
    ]
    assert query_texts(config, "x" * 5000, "vector") == []
    with pytest.raises(QueryModeError, match="1025 characters; full-text search takes at most 1024"):
        query_texts(config, "x" * 1025, "text")


def test_scores_are_flattened_per_hit() -> None:
    hit = {"distance": 0.2, "scores": {"fused": 0.03, "bm25Scores": [{"metadataKey": "overview", "score": 4.5}]}}
    assert hit_scores(hit) == {"distance": 0.2, "bm25": {"overview": 4.5}, "fused": 0.03}
    assert hit_scores({"distance": 0.4}) == {"distance": 0.4, "bm25": {}, "fused": None}
