"""The pipeline config: defaults, overrides and one clear error per kind of bad value."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from freshvec import constants as c
from freshvec.config import DEFAULT_CONFIG, ConfigError, PipelineConfig, default_config, load_config
from freshvec.datafiles import sample_movies

ROOT = Path(__file__).resolve().parents[2]


def _with(**changes):
    raw = copy.deepcopy(DEFAULT_CONFIG)
    for dotted, value in changes.items():
        target = raw
        *parents, last = dotted.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return raw


def test_cdk_json_holds_the_default_movie_config():
    shipped = json.loads((ROOT / "cdk.json").read_text())["context"]["freshvec"]
    assert PipelineConfig.from_dict(shipped) == PipelineConfig.from_dict(DEFAULT_CONFIG)
    config = default_config()
    assert config.keyspace == "media" and config.table == "movies"
    assert config.primary_key == ("title",)
    assert config.embedding.model_id == "amazon.titan-embed-text-v2:0"
    assert config.embedding.dimensions == 256
    assert config.vector_store.distance_metric == "cosine"
    assert config.non_filterable_keys == ("overview", *c.PIPELINE_NON_FILTERABLE_KEYS)


def test_json_round_trip_keeps_every_setting():
    config = PipelineConfig.from_dict(_with(sink__batch_size=7, alarm_email="ops@example.com"))
    assert PipelineConfig.from_json(config.to_json()) == config


def test_context_overrides_are_parsed_as_json_where_possible():
    config = load_config(
        {
            "freshvec": DEFAULT_CONFIG,
            "freshvec.sink.batch_size": "50",
            "freshvec.embedding.dimensions": "512",
            "freshvec.removal_policy": "retain",
            "unrelated": "x",
        }
    )
    assert config.sink.batch_size == 50
    assert config.embedding.dimensions == 512
    assert config.removal_policy == "retain"


def test_whole_config_can_be_replaced_by_a_json_string():
    config = load_config({"freshvec": json.dumps(_with(table="films"))})
    assert config.table == "films"


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (_with(metadata_fields=["title", "nope"]), "metadata_fields", "unknown column 'nope'"),
        (_with(embedding_field="missing"), "embedding_field", "unknown column 'missing'"),
        (_with(embedding_field="vote_count"), "embedding_field", "must be a text type"),
        (_with(embedding__dimensions=300), "embedding.dimensions", "allowed: 256, 512, 1024"),
        (
            # 5 always included + 6 extra = 11 > 10
            _with(
                columns={**DEFAULT_CONFIG["columns"], **{f"col{i}": "text" for i in range(8)}},
                metadata_fields=[*DEFAULT_CONFIG["metadata_fields"], *(f"col{i}" for i in range(8))],
                vector_store__non_filterable_keys=[f"col{i}" for i in range(6)],
            ),
            "vector_store.non_filterable_keys",
            "at most 4 extra keys",
        ),
        (_with(vector_store__non_filterable_keys=[""]), "vector_store.non_filterable_keys", "1 to 63 characters"),
        (_with(vector_store__index_name="a" * 55), "vector_store.index_name", "3-54 characters"),
        (_with(forwarder__reserved_concurrency=0), "forwarder.reserved_concurrency", "allowed: 1 to 900"),
        (_with(forwarder__reserved_concurrency=901), "forwarder.reserved_concurrency", "allowed: 1 to 900"),
        (_with(vector_store__non_filterable_keys=["nope"]), "vector_store.non_filterable_keys", "not a metadata key"),
        (_with(sink__batch_size=0), "sink.batch_size", "allowed: 1 to 10000"),
        (_with(sink__batch_size=10_001), "sink.batch_size", "allowed: 1 to 10000"),
        (_with(sink__max_record_age_s=30), "sink.max_record_age_s", "allowed: 60 to 604800"),
        (_with(sink__retry_attempts=-1), "sink.retry_attempts", "allowed: 0 to 10000"),
        (_with(sink__batching_window_s=301), "sink.batching_window_s", "allowed: 0 to 300"),
        (_with(sink__parallelization_factor=11), "sink.parallelization_factor", "allowed: 1 to 10"),
        (_with(partition_key=[]), "partition_key", "at least one partition key column"),
        (_with(columns__rating="real"), "columns.rating", "unknown CQL type 'real'"),
        (_with(columns__tags="list<text, int>"), "columns.tags", "takes 1 type parameter"),
        (_with(embedding__provider="openai"), "embedding.provider", "allowed: titan, cohere, nova, local"),
        (_with(embedding__model_id="amazon.titan-embed-text-v1"), "embedding.model_id", "allowed:"),
        (_with(vector_store__distance_metric="dot"), "vector_store.distance_metric", "allowed: cosine, euclidean"),
        (_with(vector_store__bucket_name="Bad_Name"), "vector_store.bucket_name", "lowercase"),
        (_with(removal_policy="keep"), "removal_policy", "allowed: destroy, retain"),
        (_with(alarm_email="not-an-email"), "alarm_email", "not an email address"),
        (_with(vector_key=["overview"]), "vector_key", "every primary key column"),
        (_with(forwarder__starting_position="AT_TIMESTAMP"), "forwarder.starting_position", "allowed"),
        (_with(stream__mode="SOMETIMES"), "stream.mode", "allowed: ON_DEMAND, PROVISIONED"),
        (_with(sink__batch_size="100"), "sink.batch_size", "whole number"),
        (_with(keyspace="1media"), "keyspace", "start with a letter"),
        (_with(surprise=True), "surprise", "unknown setting"),
        (_with(sink__surprise=True), "sink.surprise", "unknown setting"),
    ],
)
def test_invalid_config_names_the_field_and_allowed_values(raw, field, words):
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_dict(raw)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert f"'{field}'" in str(caught.value)


def test_missing_required_setting_is_named():
    raw = copy.deepcopy(DEFAULT_CONFIG)
    del raw["embedding_field"]
    with pytest.raises(ConfigError, match="'embedding_field': required setting is missing"):
        PipelineConfig.from_dict(raw)


def test_composite_primary_key_and_custom_vector_key_order():
    raw = _with(
        columns={"shop": "text", "sku": "int", "day": "date", "body": "text", "tags": "set<text>"},
        partition_key=["shop"],
        clustering_key=["sku", "day"],
        embedding_field="body",
        metadata_fields=["tags"],
        vector_key=["day", "shop", "sku"],
    )
    config = PipelineConfig.from_dict(raw)
    assert config.primary_key == ("shop", "sku", "day")
    assert config.key_columns == ("day", "shop", "sku")
    assert str(config.column_types["tags"]) == "set<text>"


def test_non_filterable_keys_always_hold_the_text_and_pipeline_keys_and_may_add_none():
    # An empty list used to reach the index as [] (S3 Vectors requires at least one key); now it adds no extras.
    config = PipelineConfig.from_dict(_with(vector_store__non_filterable_keys=[]))
    assert config.non_filterable_keys == ("overview", *c.PIPELINE_NON_FILTERABLE_KEYS)
    assert 1 <= len(config.non_filterable_keys) <= c.S3V_MAX_NON_FILTERABLE_KEYS
    extra = PipelineConfig.from_dict(_with(vector_store__non_filterable_keys=["title", "overview"]))
    assert extra.non_filterable_keys == ("overview", *c.PIPELINE_NON_FILTERABLE_KEYS, "title")  # no duplicates
    assert set(c.PIPELINE_NON_FILTERABLE_KEYS) <= set(config.metadata_keys)


def test_four_extra_keys_fit_with_the_six_always_included():
    # The text, _seq, _changed_at, _fp, _ver and _chunks (the chunk count) are always non-filterable.
    columns = {**DEFAULT_CONFIG["columns"], **{f"col{i}": "text" for i in range(4)}}
    raw = _with(
        columns=columns,
        metadata_fields=[*DEFAULT_CONFIG["metadata_fields"], *(f"col{i}" for i in range(4))],
        vector_store__non_filterable_keys=[f"col{i}" for i in range(4)],
    )
    assert len(PipelineConfig.from_dict(raw).non_filterable_keys) == c.S3V_MAX_NON_FILTERABLE_KEYS


def test_chunking_defaults_on_and_keeps_every_sample_movie_at_one_chunk():
    from freshvec.chunking import chunk_text

    config = PipelineConfig.from_dict(DEFAULT_CONFIG)
    assert (config.chunking.strategy, config.chunking.max_chars, config.chunking.overlap_chars) == (
        "recursive",
        1000,
        0,
    )
    movies = [json.loads(line) for line in sample_movies().read_text().splitlines() if line.strip()]
    assert len(movies) > 100
    assert all(len(chunk_text(m["overview"], config.chunking)) == 1 for m in movies if (m["overview"] or "").strip())
    assert max(len(m["overview"] or "") for m in movies) < config.chunking.max_chars


def test_index_name_changes_exactly_when_a_create_only_setting_changes():
    base = PipelineConfig.from_dict(DEFAULT_CONFIG)
    assert base.vector_index_name.startswith("movies-")
    assert len(base.vector_index_name) == len("movies-") + c.S3V_INDEX_SETTINGS_HASH_CHARS
    assert PipelineConfig.from_dict(DEFAULT_CONFIG).vector_index_name == base.vector_index_name  # stable
    changed = [
        _with(embedding__dimensions=512),
        _with(vector_store__distance_metric="euclidean"),
        _with(vector_store__non_filterable_keys=["title"]),
        _with(embedding={"provider": "cohere", "model_id": c.COHERE_EN_V3, "dimensions": 1024}),
        _with(embedding={"provider": "cohere", "model_id": c.COHERE_MULTI_V3, "dimensions": 1024}),
    ]
    names = {PipelineConfig.from_dict(raw).vector_index_name for raw in changed}
    assert len(names) == len(changed) and base.vector_index_name not in names
    # Settings that do not shape the index keep its name.
    same = [_with(sink__batch_size=7), _with(metadata_fields=["title"]), _with(vector_store__bucket_name="my-vectors")]
    assert {PipelineConfig.from_dict(raw).vector_index_name for raw in same} == {base.vector_index_name}
    longest = PipelineConfig.from_dict(_with(vector_store__index_name="a" * 54)).vector_index_name
    assert len(longest) == c.S3V_INDEX_NAME_MAX_CHARS


def test_forwarder_has_no_reserved_concurrency_unless_configured():
    assert PipelineConfig.from_dict(DEFAULT_CONFIG).forwarder.reserved_concurrency is None
    assert PipelineConfig.from_dict(_with(forwarder__reserved_concurrency=2)).forwarder.reserved_concurrency == 2


@pytest.mark.parametrize(
    ("embedding", "model_id", "dimensions"),
    [
        ({"provider": "local"}, "wordllama-l2-supercat", 256),
        ({"provider": "cohere"}, "cohere.embed-english-v3", 1024),
        ({"provider": "cohere", "model_id": "cohere.embed-multilingual-v3"}, "cohere.embed-multilingual-v3", 1024),
        ({"provider": "titan"}, "amazon.titan-embed-text-v2:0", 256),
        ({}, "amazon.titan-embed-text-v2:0", 256),
        ({"provider": "titan", "dimensions": 1024}, "amazon.titan-embed-text-v2:0", 1024),
        ({"provider": "cohere", "model_id": "cohere.embed-v4:0"}, "cohere.embed-v4:0", 256),
        (
            {"provider": "cohere", "model_id": "global.cohere.embed-v4:0", "dimensions": 1536},
            "global.cohere.embed-v4:0",
            1536,
        ),
        ({"provider": "nova"}, "amazon.nova-2-multimodal-embeddings-v1:0", 256),
        ({"provider": "nova", "dimensions": 3072}, "amazon.nova-2-multimodal-embeddings-v1:0", 3072),
        ({"provider": "local", "dimensions": 64}, "wordllama-l2-supercat", 64),
    ],
)
def test_each_provider_has_its_own_default_model_and_dimensions(embedding, model_id, dimensions):
    config = PipelineConfig.from_dict(_with(embedding=embedding))
    assert (config.embedding.model_id, config.embedding.dimensions) == (model_id, dimensions)


def test_a_model_of_another_provider_is_still_refused():
    with pytest.raises(ConfigError) as raised:
        PipelineConfig.from_dict(_with(embedding={"provider": "local", "model_id": c.TITAN_V2}))
    assert raised.value.field == "embedding.model_id" and "allowed: wordllama-l2-supercat" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        PipelineConfig.from_dict(_with(embedding={"provider": "cohere", "dimensions": 256}))
    assert raised.value.field == "embedding.dimensions" and "allowed: 1024" in str(raised.value)


def test_text_search_defaults_to_the_embedded_text_with_the_standard_analyzer():
    off = default_config()
    assert off.text_search_keys == {}
    on = PipelineConfig.from_dict({**off.to_dict(), "text_search": {"enabled": True}})
    assert on.text_search_keys == {off.embedding_field: None}
    assert on.vector_index_name == off.vector_index_name  # changed in place, never a new index
    chosen = {"enabled": True, "keys": ["overview", "title"], "language": "en", "languages": {"title": "fr"}}
    both = PipelineConfig.from_dict({**off.to_dict(), "text_search": chosen})
    assert both.text_search_keys == {"overview": "en", "title": "fr"}
    assert PipelineConfig.from_json(both.to_json()) == both


@pytest.mark.parametrize(
    ("text_search", "field", "words"),
    [
        ({"enabled": True, "language": "xx"}, "text_search.language", "allowed: en, fr"),
        ({"enabled": True, "keys": ["nope"]}, "text_search.keys", "not a metadata key"),
        ({"enabled": True, "keys": ["vote_count"]}, "text_search.keys", "needs a text column"),
        ({"enabled": True, "keys": ["overview", "overview"]}, "text_search.keys", "listed twice"),
        ({"enabled": True, "languages": {"title": "en"}}, "text_search.languages.title", "not in text_search.keys"),
        ({"enabled": True, "index_mode": "CLASSIC"}, "text_search.index_mode", "needs an ENHANCED index"),
        ({"index_mode": "FAST"}, "text_search.index_mode", "allowed: ENHANCED, CLASSIC"),
        ({"enabled": "yes"}, "text_search.enabled", "expected bool"),
    ],
)
def test_text_search_settings_are_validated_by_field(text_search, field, words):
    raw = {**default_config().to_dict(), "text_search": text_search}
    if text_search.get("keys") == ["vote_count"]:
        raw["metadata_fields"] = (
            [*raw["metadata_fields"], "vote_count"]
            if "vote_count" not in raw["metadata_fields"]
            else raw["metadata_fields"]
        )
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_dict(raw)
    assert caught.value.field == field and words in str(caught.value)


@pytest.mark.parametrize(
    ("embedding", "field", "words"),
    [
        (
            {"provider": "cohere", "model_id": c.COHERE_V4, "dimensions": 384},
            "embedding.dimensions",
            "256, 512, 1024, 1536",
        ),
        ({"provider": "cohere", "model_id": "apac.cohere.embed-v4:0"}, "embedding.model_id", "us.cohere.embed-v4:0"),
        ({"provider": "nova", "dimensions": 512}, "embedding.dimensions", "allowed: 256, 384, 1024, 3072"),
        ({"provider": "nova", "model_id": c.TITAN_V2}, "embedding.model_id", c.NOVA_MME),
        ({"provider": "local", "dimensions": 32}, "embedding.dimensions", "allowed: 256, 128, 64"),
    ],
)
def test_new_models_check_their_ids_and_dimensions(embedding, field, words):
    with pytest.raises(ConfigError) as raised:
        PipelineConfig.from_dict(_with(embedding=embedding))
    assert raised.value.field == field and words in str(raised.value)


def test_chunk_size_is_bounded_by_the_models_own_input_limit():
    v4 = {"provider": "cohere", "model_id": c.COHERE_V4, "dimensions": 1024}
    assert PipelineConfig.from_dict(_with(embedding=v4, chunking__max_chars=20_000)).chunking.max_chars == 20_000
    with pytest.raises(ConfigError) as raised:  # Embed v3 takes 2,048 characters a text
        PipelineConfig.from_dict(_with(embedding={"provider": "cohere"}, chunking__max_chars=20_000))
    assert raised.value.field == "chunking.max_chars" and "50 to 2048" in str(raised.value)


def test_different_models_or_dimensions_name_different_indexes():
    embeddings = [
        {"provider": "cohere", "model_id": c.COHERE_V4, "dimensions": 1024},
        {"provider": "cohere", "model_id": c.COHERE_V4, "dimensions": 1536},
        {"provider": "nova", "dimensions": 1024},
        {"provider": "local", "dimensions": 256},
        {"provider": "local", "dimensions": 128},
    ]
    names = {PipelineConfig.from_dict(_with(embedding=e)).vector_index_name for e in embeddings}
    assert len(names) == len(embeddings)


def test_static_columns_cannot_be_embedded_or_metadata_and_the_error_says_why() -> None:
    raw = copy.deepcopy(DEFAULT_CONFIG)
    raw["columns"] = {**raw["columns"], "studio": "text"}
    ok = PipelineConfig.from_dict({**raw, "static_columns": ["studio"]})
    assert ok.static_columns == ("studio",)
    with pytest.raises(ConfigError, match="static: Keyspaces streams its changes as a separate record"):
        PipelineConfig.from_dict({**raw, "static_columns": ["studio"], "metadata_fields": ["title", "studio"]})
    with pytest.raises(ConfigError, match=r"embedding_field.*static"):
        PipelineConfig.from_dict({**raw, "static_columns": ["overview"]})


def test_a_deployed_pipeline_bounds_its_calls_inside_its_timeouts_and_leases() -> None:
    from freshvec.config.deployable import check_call_bounds

    check_call_bounds(default_config())  # the defaults keep both rules
    raw = copy.deepcopy(DEFAULT_CONFIG)
    short_lease = PipelineConfig.from_dict({**raw, "forwarder": {"lease_duration_s": 60, "timeout_s": 70}})
    with pytest.raises(ConfigError, match=r"lease_duration_s.*at least 121"):
        check_call_bounds(short_lease)
    short_sink = PipelineConfig.from_dict({**raw, "sink": {"timeout_s": 60}})
    with pytest.raises(ConfigError, match=f"at least {3 * c.S3V_CALL_BUDGET_S} s"):
        check_call_bounds(short_sink)


def test_the_sections_name_list_is_the_one_every_section_is_exported_and_parsed_by():
    import dataclasses

    import freshvec.config
    from freshvec.config import parsing, sections

    defined = {
        name
        for name, value in vars(sections).items()
        if dataclasses.is_dataclass(value) and value.__module__ == sections.__name__
    }
    assert defined <= set(sections.__all__)  # a new section cannot be left off the list
    assert set(sections.__all__) <= set(freshvec.config.__all__)
    assert all(getattr(freshvec.config, name) is getattr(sections, name) for name in sections.__all__)
    assert set(parsing._NESTED) == defined  # every section can be nested in another and parsed by path
    raw = {"kind": "postgres", "postgres": {"table": "t", "columns": {"id": "int"}, "primary_key": ["id"]}}
    raw["postgres"]["connection"] = {"port": "5432"}  # two levels down, found through the list, checked by path
    with pytest.raises(ConfigError, match=r"source\.postgres\.connection\.port"):
        parsing.build(sections.SourceConfig, raw, "source")
    raw["postgres"]["connection"] = {"port": 5432}
    nested = parsing.build(sections.SourceConfig, raw, "source")
    assert isinstance(nested.postgres.connection, sections.PostgresConnectionConfig)
