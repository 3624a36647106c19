"""The config's sections: one frozen dataclass per part of the pipeline, each field with its default.

``PipelineConfig`` (``freshvec.config.pipeline``) holds one of each; the rules live in ``validation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from freshvec import constants as c
from freshvec.sources.postgres import types as pgtypes

# The public names, re-exported by ``freshvec.config``; ``parsing`` reads its nested sections from this list.
__all__ = [
    "SOURCE_KINDS",
    "ChunkingConfig",
    "EmbeddingConfig",
    "ForwarderConfig",
    "GenerationConfig",
    "PostgresConnectionConfig",
    "PostgresNetworkConfig",
    "PostgresSourceConfig",
    "SinkConfig",
    "SourceConfig",
    "StreamConfig",
    "TextSearchConfig",
    "VectorStoreConfig",
]

SOURCE_KINDS = ("keyspaces", "postgres")
# PostgreSQL type family -> the CQL type whose change-event JSON form is the same (for the shared checks:
# the embedded text is text, key columns are scalars). Metadata of a PostgreSQL column is converted by its own
# type (``freshvec.sources.postgres.types``), so json's stand-in only matters for those checks.
_PG_CQL_EQUIVALENT = {
    "text": "text",
    "numeric": "decimal",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "uuid": "uuid",
    "json": "list<text>",  # not a key column, not a text column; nothing else reads it
    "bytea": "blob",
}


@dataclass(frozen=True)
class EmbeddingConfig:
    # A config that names only the provider gets its default model (c.PROVIDER_DEFAULT_MODEL) and that model's
    # first allowed dimensions (c.PROVIDER_MODELS); see _embedding_defaults.
    provider: str = "titan"
    model_id: str = c.TITAN_V2
    dimensions: int = 256
    normalize: bool = True
    max_concurrency: int = 8  # parallel Bedrock calls for one-text-per-call models: the upper bound
    # Pace Bedrock calls to the shared quota, adapting to throttles (freshvec.adapters.adaptive); False: only
    # the fixed bound above.
    adaptive_rate: bool = True


@dataclass(frozen=True)
class ChunkingConfig:  # how a row's text becomes vectors (freshvec.chunking)
    strategy: str = "recursive"  # "none": one vector per row, the text cut to the model's input limit
    max_chars: int = 1000  # bound, overlap included: fits every model (Cohere: 2,048); a sample movie is 1 chunk
    overlap_chars: int = 0  # the end of chunk n-1 repeated at the start of chunk n; below max_chars


@dataclass(frozen=True)
class VectorStoreConfig:
    bucket_name: str | None = None  # None: CloudFormation names it (local mode uses "freshvec-local")
    index_name: str = "movies"
    distance_metric: str = "cosine"
    # EXTRA non-filterable keys only: the embedding field and c.PIPELINE_NON_FILTERABLE_KEYS are always added.
    non_filterable_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextSearchConfig:  # full-text (BM25) and hybrid search on the index (docs/deploy.md, README "Query modes")
    enabled: bool = False
    keys: tuple[str, ...] = ()  # metadata keys made full-text searchable; empty: the embedded text (each passage)
    language: str | None = None  # analyzer of every key: one of c.S3V_TEXT_LANGUAGES; None: the standard analyzer
    languages: dict[str, str] = field(default_factory=dict)  # per-key analyzer, over ``language``
    index_mode: str = "ENHANCED"  # CLASSIC only for an index without full-text search, in an older bucket


@dataclass(frozen=True)
class GenerationConfig:
    """The next index generation during a migration: its own model, dimensions, chunking and index settings
    (``freshvec.generations``; docs/migrations.md). The bucket is the active generation's."""

    name: str
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    vector_store: VectorStoreConfig = field(default_factory=VectorStoreConfig)


@dataclass(frozen=True)
class StreamConfig:
    mode: str = "ON_DEMAND"
    shard_count: int = 1  # PROVISIONED only
    retention_hours: int = 24


@dataclass(frozen=True)
class SinkConfig:
    batch_size: int = 100
    batching_window_s: int = 1
    parallelization_factor: int = 1
    retry_attempts: int = 10  # the sink already retries throttles inside; these cover longer outages
    max_record_age_s: int = 3600
    bisect_on_error: bool = True
    memory_mb: int = 1024
    timeout_s: int = 120
    reserved_concurrency: int | None = None
    dlq_retention_days: int = 14


@dataclass(frozen=True)
class ForwarderConfig:
    schedule_minutes: int = 1
    poll_interval_ms: int = 250
    starting_position: str = "TRIM_HORIZON"
    max_concurrent_shards: int = 8
    # A row's changes within one read go out as one change (old image of the first, everything else of the last):
    # hot rows no longer cost a PutRecords call per change. Off by default: the change stream then carries every
    # change, which other consumers may rely on. See docs/forwarder.md.
    coalesce_changes: bool = False
    # Outlives timeout_s plus a call's retry budget (c.FORWARDER_CALL_BUDGET_S): a forwarder that lost its lease has
    # stopped before another takes the shard. Leases are released at the end of every invocation, so this only
    # delays a takeover after a crash.
    lease_duration_s: int = 150
    memory_mb: int = 512
    timeout_s: int = 70  # one invocation per scheduled minute, looping until shortly before this
    # None: no reservation. The DynamoDB shard leases already keep two runs from reading one shard twice, and a
    # reservation must leave 100 of the account's concurrency unreserved, which a new account's quota of 10 cannot
    # (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class PostgresConnectionConfig:
    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "postgres"
    user: str = "freshvec"
    # In AWS the password comes from Secrets Manager (a plain secret string, or JSON with a "password" key);
    # ``password`` is for local use only.
    password_secret_arn: str | None = None
    # The KMS key the secret is encrypted with, when it is a customer managed key: the forwarder may then
    # kms:Decrypt with it (the AWS managed aws/secretsmanager key needs no grant).
    password_secret_kms_key_arn: str | None = None
    password: str | None = None
    sslmode: str = "verify-full"  # the server certificate is checked against ca_bundle and the host name
    ca_bundle: str | None = None  # PEM path; None: the system trust store (RDS: the global bundle, docs/sources.md)
    connect_timeout_s: int = 10


@dataclass(frozen=True)
class PostgresNetworkConfig:
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    create_endpoints: bool = True  # interface endpoints (and the DynamoDB gateway) instead of a NAT gateway
    route_table_ids: tuple[str, ...] = ()  # the subnets' route tables, for the DynamoDB gateway endpoint


@dataclass(frozen=True)
class PostgresSourceConfig:
    table: str
    columns: dict[str, str]  # column -> PostgreSQL type, e.g. {"id": "bigint", "body": "text"}
    primary_key: tuple[str, ...]
    schema: str = "public"
    publication: str = "freshvec"
    slot: str = "freshvec"
    max_changes_per_read: int = 1000
    # Unchanged TOASTed values (long texts) are only sent when the table's replica identity is FULL; the reader
    # sets it when it is not (needs table ownership) or stops with an error saying so when this is false.
    set_replica_identity_full: bool = True
    connection: PostgresConnectionConfig = field(default_factory=PostgresConnectionConfig)
    network: PostgresNetworkConfig = field(default_factory=PostgresNetworkConfig)

    def cql_equivalents(self) -> dict[str, str]:
        return {name: _cql_equivalent(type_text) for name, type_text in self.columns.items()}


@dataclass(frozen=True)
class SourceConfig:
    kind: str = "keyspaces"
    postgres: PostgresSourceConfig | None = None


def _cql_equivalent(type_text: str) -> str:
    kind = pgtypes.family(type_text)
    if kind == "integer":
        width = pgtypes.normalize_type(type_text)
        return {"smallint": "smallint", "int2": "smallint", "bigint": "bigint", "int8": "bigint"}.get(width, "int")
    if kind == "float":
        return "float" if pgtypes.normalize_type(type_text) in ("real", "float4") else "double"
    if kind == "array":
        inner = _cql_equivalent(pgtypes.element_type(type_text))
        return f"list<{inner if '<' not in inner else 'text'}>"
    if kind is None:
        return "blob"  # unknown: carried as a tagged value; never the embedded text, never a key
    return _PG_CQL_EQUIVALENT[kind]
