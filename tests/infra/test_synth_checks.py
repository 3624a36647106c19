"""Config the pipeline config accepts but the stack cannot deploy fails synth with a ConfigError naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from freshvec.config import (
    DEFAULT_CONFIG,
    ConfigError,
    PipelineConfig,
    check_cloudformation_names,
    check_deployable_embedding,
)
from stacks.function import check_environment_size


def _config(**changes: Any) -> PipelineConfig:
    raw = {**DEFAULT_CONFIG, **changes}
    return PipelineConfig.from_dict(raw)


def test_one_character_column_names_are_refused_for_cloudformation() -> None:
    config = _config(
        columns={"t": "text", "overview": "text"}, partition_key=["t"], metadata_fields=[], embedding_field="overview"
    )
    with pytest.raises(ConfigError) as raised:
        check_cloudformation_names(config)
    assert raised.value.field == "columns.t"
    assert "at least 2" in str(raised.value)


def test_one_character_keyspace_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        check_cloudformation_names(_config(keyspace="m"))
    assert raised.value.field == "keyspace"


def test_default_config_passes_every_synth_check() -> None:
    config = _config()
    check_cloudformation_names(config)
    check_deployable_embedding(config)
    check_environment_size("sink", {"FRESHVEC_CONFIG": config.to_json()})


def test_local_embeddings_cannot_be_deployed() -> None:
    config = _config(embedding={"provider": "local", "model_id": "wordllama-l2-supercat", "dimensions": 256})
    with pytest.raises(ConfigError) as raised:
        check_deployable_embedding(config)
    assert raised.value.field == "embedding.provider"
    assert "allowed: titan, cohere" in str(raised.value)


def test_an_environment_over_four_kilobytes_is_refused_before_deploy() -> None:
    with pytest.raises(ConfigError, match="Lambda allows 4096"):
        check_environment_size("sink", {"FRESHVEC_CONFIG": "x" * 4000, "FRESHVEC_DLQ_URL": "${Token[TOKEN.1]}"})
    check_environment_size("sink", {"FRESHVEC_CONFIG": "x" * 3000, "FRESHVEC_DLQ_URL": "${Token[TOKEN.1]}"})
