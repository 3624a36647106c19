"""The pipeline config written as pydantic v2 models: the baseline `bench.cold_start` measures against.

Same sections, fields, defaults, fixed choices and bounds as ``freshvec.config``; the cross-field rules (a model's
dimensions, the key columns) as one model validator. Never imported by freshvec: it exists to be timed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from freshvec import constants as c

_SECRET_ARN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$"
_M = ConfigDict(frozen=True, extra="forbid", strict=True)


class EmbeddingConfig(BaseModel):
    model_config = _M
    provider: Literal["titan", "cohere", "local"] = "titan"
    model_id: str = "amazon.titan-embed-text-v2:0"
    dimensions: int = 256
    normalize: bool = True
    max_concurrency: int = Field(8, ge=1, le=64)
    adaptive_rate: bool = True


class ChunkingConfig(BaseModel):
    model_config = _M
    strategy: Literal["none", "recursive"] = "recursive"
    max_chars: int = Field(1000, ge=50)
    overlap_chars: int = Field(0, ge=0)


class VectorStoreConfig(BaseModel):
    model_config = _M
    bucket_name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    index_name: str = Field("movies", pattern=r"^[a-z0-9][a-z0-9.-]{1,50}[a-z0-9]$")
    distance_metric: Literal["cosine", "euclidean"] = "cosine"
    non_filterable_keys: tuple[str, ...] = ()


class StreamConfig(BaseModel):
    model_config = _M
    mode: Literal["ON_DEMAND", "PROVISIONED"] = "ON_DEMAND"
    shard_count: int = Field(1, ge=1, le=500)
    retention_hours: int = Field(24, ge=24, le=8760)


class SinkConfig(BaseModel):
    model_config = _M
    batch_size: int = Field(100, ge=1, le=10000)
    batching_window_s: int = Field(1, ge=0, le=300)
    parallelization_factor: int = Field(1, ge=1, le=10)
    retry_attempts: int = Field(10, ge=-1, le=10000)
    max_record_age_s: int = Field(3600, ge=-1, le=604800)
    bisect_on_error: bool = True
    memory_mb: int = Field(1024, ge=128, le=10240)
    timeout_s: int = Field(120, ge=1, le=900)
    reserved_concurrency: int | None = Field(None, ge=0, le=900)
    dlq_retention_days: int = Field(14, ge=1, le=14)


class ForwarderConfig(BaseModel):
    model_config = _M
    schedule_minutes: int = Field(1, ge=1, le=60)
    poll_interval_ms: int = Field(250, ge=10, le=60000)
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    max_concurrent_shards: int = Field(8, ge=1, le=64)
    coalesce_changes: bool = False
    lease_duration_s: int = Field(60, ge=10, le=900)
    memory_mb: int = Field(512, ge=128, le=10240)
    timeout_s: int = Field(70, ge=30, le=900)
    reserved_concurrency: int | None = Field(None, ge=0, le=900)


class PostgresConnectionConfig(BaseModel):
    model_config = _M
    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    database: str = "postgres"
    user: str = "freshvec"
    password_secret_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$"
    )
    password_secret_kms_key_arn: str | None = None
    password: str | None = None
    sslmode: Literal["verify-full", "verify-ca", "require", "disable"] = "verify-full"
    ca_bundle: str | None = None
    connect_timeout_s: int = Field(10, ge=1, le=120)


class PostgresNetworkConfig(BaseModel):
    model_config = _M
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    create_endpoints: bool = True
    route_table_ids: tuple[str, ...] = ()


class PostgresSourceConfig(BaseModel):
    model_config = _M
    table: str
    columns: dict[str, str]
    primary_key: tuple[str, ...]
    schema_: str = Field("public", alias="schema")
    publication: str = "freshvec"
    slot: str = "freshvec"
    max_changes_per_read: int = Field(1000, ge=1, le=100000)
    set_replica_identity_full: bool = True
    connection: PostgresConnectionConfig = PostgresConnectionConfig()
    network: PostgresNetworkConfig = PostgresNetworkConfig()


class SourceConfig(BaseModel):
    model_config = _M
    kind: Literal["keyspaces", "postgres"] = "keyspaces"
    postgres: PostgresSourceConfig | None = None


class PipelineConfig(BaseModel):
    model_config = _M
    keyspace: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
    table: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
    columns: dict[str, str]
    partition_key: tuple[str, ...]
    embedding_field: str
    clustering_key: tuple[str, ...] = ()
    metadata_fields: tuple[str, ...] = ()
    vector_key: tuple[str, ...] | None = None
    stack_name: str = "freshvec"
    embedding: EmbeddingConfig = EmbeddingConfig()
    vector_store: VectorStoreConfig = VectorStoreConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    stream: StreamConfig = StreamConfig()
    sink: SinkConfig = SinkConfig()
    forwarder: ForwarderConfig = ForwarderConfig()
    removal_policy: Literal["destroy", "retain"] = "destroy"
    alarm_email: str | None = None
    source: SourceConfig = SourceConfig()

    @model_validator(mode="after")
    def _cross_field_rules(self) -> PipelineConfig:
        allowed = c.PROVIDER_MODELS.get(self.embedding.provider, {}).get(self.embedding.model_id)
        if not allowed or self.embedding.dimensions not in allowed:
            raise ValueError(f"embedding.dimensions: {self.embedding.dimensions} is not allowed")
        for name in (*self.partition_key, *self.clustering_key, self.embedding_field, *self.metadata_fields):
            if name not in self.columns:
                raise ValueError(f"unknown column {name!r}")
        if self.chunking.overlap_chars >= self.chunking.max_chars:
            raise ValueError("chunking.overlap_chars: below chunking.max_chars")
        return self
