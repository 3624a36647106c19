"""The tutorial's movie table: the config ``cdk.json`` ships, and the fallback where there is no ``cdk.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freshvec import constants as c
from freshvec.config.pipeline import PipelineConfig


def default_config() -> PipelineConfig:
    """The tutorial's movie table, as cdk.json ships it."""
    path = Path(__file__).resolve().parents[2] / "cdk.json"
    if path.exists():
        return PipelineConfig.from_file(path)
    return PipelineConfig.from_dict(DEFAULT_CONFIG)


DEFAULT_CONFIG: dict[str, Any] = {
    "keyspace": "media",
    "table": "movies",
    "columns": {
        "title": "text",
        "overview": "text",
        "original_lang": "text",
        "rel_date": "date",
        "popularity": "decimal",
        "vote_count": "int",
        "vote_average": "decimal",
    },
    "partition_key": ["title"],
    "clustering_key": [],
    "embedding_field": "overview",
    "metadata_fields": ["title", "original_lang", "rel_date", "popularity", "vote_count", "vote_average"],
    "embedding": {"provider": "titan", "model_id": c.TITAN_V2, "dimensions": 256},
    "vector_store": {"index_name": "movies", "distance_metric": "cosine"},
    "removal_policy": "destroy",
}
