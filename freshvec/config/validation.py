"""The rules of each config section, beyond its field types (the table's own fields: ``PipelineConfig.validate``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from freshvec import constants as c
from freshvec.config.errors import ConfigError
from freshvec.config.rules import (
    BUCKET_RE,
    INDEX_NAME_BASE_MAX,
    INDEX_RE,
    KMS_KEY_ARN_RE,
    PG_NAME_RE,
    PG_SLOT_RE,
    SECRET_ARN_RE,
    in_range,
    one_of,
)
from freshvec.config.sections import (
    ChunkingConfig,
    EmbeddingConfig,
    ForwarderConfig,
    PostgresSourceConfig,
    SinkConfig,
    StreamConfig,
    TextSearchConfig,
    VectorStoreConfig,
)
from freshvec.sources.postgres import types as pgtypes

_SSL_MODES = ("verify-full", "verify-ca", "require", "disable")
_MIN_CHUNK_CHARS = 50  # below this a chunk holds a few words: too little meaning for an embedding


def validate_embedding(e: EmbeddingConfig) -> None:
    one_of("embedding.provider", e.provider, tuple(c.PROVIDER_MODELS))
    models = c.PROVIDER_MODELS[e.provider]
    one_of("embedding.model_id", e.model_id, tuple(models))
    allowed = models[e.model_id]
    if e.dimensions not in allowed:
        raise ConfigError(
            "embedding.dimensions",
            f"{e.dimensions} is not allowed for {e.model_id}; allowed: {', '.join(map(str, allowed))}",
        )
    in_range("embedding.max_concurrency", e.max_concurrency, (1, 64))


def validate_chunking(ch: ChunkingConfig, embedding: EmbeddingConfig) -> None:
    one_of("chunking.strategy", ch.strategy, ("none", "recursive"))
    limit = c.input_char_limit(embedding.provider, embedding.model_id)
    if not _MIN_CHUNK_CHARS <= ch.max_chars <= limit:
        why = f"(the input limit of {embedding.model_id}, in characters)"
        raise ConfigError("chunking.max_chars", f"{ch.max_chars} is out of range; allowed: 50 to {limit} {why}")
    if not 0 <= ch.overlap_chars < ch.max_chars:
        why = f"allowed: 0 to {ch.max_chars - 1} (below chunking.max_chars)"
        raise ConfigError("chunking.overlap_chars", f"{ch.overlap_chars} is out of range; {why}")


def validate_vector_store(
    v: VectorStoreConfig, *, metadata_keys: tuple[str, ...], non_filterable_keys: tuple[str, ...], embedding_field: str
) -> None:
    """``metadata_keys``: every key a vector carries; ``non_filterable_keys``: the index's, extras included."""
    if v.bucket_name is not None and not BUCKET_RE.match(v.bucket_name):
        raise ConfigError(
            "vector_store.bucket_name",
            f"{v.bucket_name!r}: 3-63 characters of lowercase letters, digits and hyphens",
        )
    if not INDEX_RE.match(v.index_name):
        raise ConfigError(
            "vector_store.index_name",
            f"{v.index_name!r}: 3-{INDEX_NAME_BASE_MAX} characters of lowercase letters, digits, dots and "
            f"hyphens (the deployed name adds '-' and {c.S3V_INDEX_SETTINGS_HASH_CHARS} hex digits)",
        )
    one_of("vector_store.distance_metric", v.distance_metric, c.S3V_DISTANCE_METRICS)
    path = "vector_store.non_filterable_keys"
    low, high = c.S3V_METADATA_KEY_CHARS
    known = set(metadata_keys)
    for key in v.non_filterable_keys:
        if not low <= len(key) <= high:
            raise ConfigError(path, f"{key!r}: an S3 Vectors metadata key has {low} to {high} characters")
        if key not in known:
            raise ConfigError(path, f"{key!r} is not a metadata key; allowed: {', '.join(sorted(known))}")
    if len(non_filterable_keys) > c.S3V_MAX_NON_FILTERABLE_KEYS:
        always = (embedding_field, *c.PIPELINE_NON_FILTERABLE_KEYS)
        raise ConfigError(
            path,
            f"{len(non_filterable_keys)} non-filterable keys in total; an S3 Vectors index allows at most "
            f"{c.S3V_MAX_NON_FILTERABLE_KEYS}, and {len(always)} are always included ({', '.join(always)}), "
            f"so list at most {c.S3V_MAX_NON_FILTERABLE_KEYS - len(always)} extra keys",
        )


def validate_stream_and_lambdas(k: StreamConfig, s: SinkConfig, f: ForwarderConfig) -> None:
    one_of("stream.mode", k.mode, ("ON_DEMAND", "PROVISIONED"))
    in_range("stream.shard_count", k.shard_count, (1, 500))
    in_range("stream.retention_hours", k.retention_hours, (24, 8760))
    in_range("sink.batch_size", s.batch_size, c.ESM_BATCH_SIZE)
    in_range("sink.batching_window_s", s.batching_window_s, c.ESM_BATCHING_WINDOW_S)
    in_range("sink.parallelization_factor", s.parallelization_factor, c.ESM_PARALLELIZATION)
    in_range("sink.retry_attempts", s.retry_attempts, c.ESM_RETRY_ATTEMPTS)
    in_range("sink.max_record_age_s", s.max_record_age_s, c.ESM_MAX_RECORD_AGE_S)
    if s.max_record_age_s > k.retention_hours * 3600:
        raise ConfigError("sink.max_record_age_s", "cannot exceed the stream's retention (stream.retention_hours)")
    in_range("sink.memory_mb", s.memory_mb, c.LAMBDA_MEMORY_MB)
    in_range("sink.timeout_s", s.timeout_s, c.LAMBDA_TIMEOUT_S)
    if s.reserved_concurrency is not None:
        in_range("sink.reserved_concurrency", s.reserved_concurrency, c.LAMBDA_RESERVED_CONCURRENCY)
    in_range("sink.dlq_retention_days", s.dlq_retention_days, c.SQS_RETENTION_DAYS)
    in_range("forwarder.schedule_minutes", f.schedule_minutes, (1, 60))
    in_range("forwarder.poll_interval_ms", f.poll_interval_ms, (10, 60_000))
    one_of("forwarder.starting_position", f.starting_position, ("TRIM_HORIZON", "LATEST"))
    in_range("forwarder.max_concurrent_shards", f.max_concurrent_shards, (1, 64))
    in_range("forwarder.lease_duration_s", f.lease_duration_s, (10, 900))
    in_range("forwarder.memory_mb", f.memory_mb, c.LAMBDA_MEMORY_MB)
    in_range("forwarder.timeout_s", f.timeout_s, (30, 900))
    if f.reserved_concurrency is not None:
        # Lambda keeps at least 100 of the account's concurrency unreserved; an account at the default quota
        # of 1000 can reserve up to 900 (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
        in_range("forwarder.reserved_concurrency", f.reserved_concurrency, c.LAMBDA_RESERVED_CONCURRENCY)


def validate_postgres(pg: PostgresSourceConfig | None) -> None:  # noqa: PLR0912 - one flat list of rules
    if pg is None:
        raise ConfigError("source.postgres", "required when source.kind is postgres")
    for path, name in (("source.postgres.schema", pg.schema), ("source.postgres.table", pg.table)):
        if not PG_NAME_RE.match(name):
            raise ConfigError(path, f"{name!r}: start with a letter or _, then letters, digits or _, at most 63")
    if not pg.columns:
        raise ConfigError("source.postgres.columns", "the table needs at least one column")
    for name, type_text in pg.columns.items():
        if not PG_NAME_RE.match(name):
            raise ConfigError(f"source.postgres.columns.{name}", f"{name!r} is not a column name the pipeline reads")
        if not type_text.strip():
            raise ConfigError(f"source.postgres.columns.{name}", "the PostgreSQL type is empty")
    if not pg.primary_key:
        raise ConfigError("source.postgres.primary_key", "list the table's primary key columns")
    for name in pg.primary_key:
        if name not in pg.columns:
            raise ConfigError(
                "source.postgres.primary_key", f"unknown column {name!r}; columns: {', '.join(pg.columns)}"
            )
        if pgtypes.family(pg.columns[name]) is None:
            raise ConfigError(
                f"source.postgres.columns.{name}",
                f"{pgtypes.unknown_type_message(pg.columns[name])}; a primary key column needs a known type",
            )
        if pgtypes.family(pg.columns[name]) in ("array", "json", "float"):
            raise ConfigError("source.postgres.primary_key", f"column {name!r} ({pg.columns[name]}) cannot be a key")
    for path, name in (("source.postgres.publication", pg.publication), ("source.postgres.slot", pg.slot)):
        if not PG_SLOT_RE.match(name):
            raise ConfigError(path, f"{name!r}: 1-63 lowercase letters, digits or _")
    in_range("source.postgres.max_changes_per_read", pg.max_changes_per_read, (1, 100_000))
    conn = pg.connection
    if not conn.host.strip():
        raise ConfigError("source.postgres.connection.host", "the host is empty")
    in_range("source.postgres.connection.port", conn.port, (1, 65535))
    in_range("source.postgres.connection.connect_timeout_s", conn.connect_timeout_s, (1, 120))
    one_of("source.postgres.connection.sslmode", conn.sslmode, _SSL_MODES)
    if conn.password_secret_arn is not None and not SECRET_ARN_RE.match(conn.password_secret_arn):
        raise ConfigError("source.postgres.connection.password_secret_arn", "not a Secrets Manager secret ARN")
    key_arn = conn.password_secret_kms_key_arn
    if key_arn is not None and not KMS_KEY_ARN_RE.match(key_arn):
        raise ConfigError("source.postgres.connection.password_secret_kms_key_arn", "not a KMS key ARN (...:key/<id>)")
    if key_arn is not None and conn.password_secret_arn is None:
        raise ConfigError("source.postgres.connection.password_secret_kms_key_arn", "needs password_secret_arn")
    if conn.password_secret_arn is not None and conn.password is not None:
        raise ConfigError("source.postgres.connection.password", "set password_secret_arn or password, not both")
    net = pg.network
    if net.vpc_id is not None and not re.match(r"^vpc-[0-9a-f]{8,17}$", net.vpc_id):
        raise ConfigError("source.postgres.network.vpc_id", f"{net.vpc_id!r} is not a VPC id (vpc-...)")
    for path, values, prefix in (
        ("source.postgres.network.subnet_ids", net.subnet_ids, "subnet-"),
        ("source.postgres.network.security_group_ids", net.security_group_ids, "sg-"),
        ("source.postgres.network.route_table_ids", net.route_table_ids, "rtb-"),
    ):
        for value in values:
            if not re.match(rf"^{prefix}[0-9a-f]{{8,17}}$", value):
                raise ConfigError(path, f"{value!r} is not an id starting with {prefix}")
    if net.vpc_id is not None and (not net.subnet_ids or not net.security_group_ids):
        raise ConfigError("source.postgres.network", "with vpc_id, list subnet_ids and security_group_ids too")
    if net.vpc_id is None and (net.subnet_ids or net.security_group_ids):
        raise ConfigError("source.postgres.network.vpc_id", "subnet_ids and security_group_ids need the vpc_id")


def validate_text_search(ts: TextSearchConfig, *, embedding_field: str, stored: Mapping[str, Any]) -> None:
    """``stored``: the metadata keys a vector carries (columns and the embedded text) -> their CQL types."""
    one_of("text_search.index_mode", ts.index_mode, c.S3V_INDEX_MODES)
    if ts.language is not None:
        one_of("text_search.language", ts.language, c.S3V_TEXT_LANGUAGES)
    keys = ts.keys or (embedding_field,)
    for key, language in ts.languages.items():
        if key not in keys:
            raise ConfigError(f"text_search.languages.{key}", f"{key!r} is not in text_search.keys")
        one_of(f"text_search.languages.{key}", language, c.S3V_TEXT_LANGUAGES)
    if len(set(keys)) != len(keys):
        raise ConfigError("text_search.keys", "a key is listed twice")
    if len(keys) > c.S3V_MAX_TEXT_SEARCH_KEYS:
        raise ConfigError("text_search.keys", f"{len(keys)} keys; an index has at most {c.S3V_MAX_TEXT_SEARCH_KEYS}")
    for key in keys:
        if key not in stored:
            allowed = ", ".join(sorted(stored))
            raise ConfigError("text_search.keys", f"{key!r} is not a metadata key; allowed: {allowed}")
        if not stored[key].is_text:
            raise ConfigError("text_search.keys", f"{key!r} is {stored[key]}; full-text search needs a text column")
    if ts.enabled and ts.index_mode != "ENHANCED":
        raise ConfigError("text_search.index_mode", "full-text search needs an ENHANCED index")
