"""The pipeline config: one typed, validated object shared by the CDK app, the Lambdas, the CLI and local mode.

It is read from ``cdk.json`` context (key ``freshvec``), overridable with ``cdk -c freshvec.a.b=value``,
and travels to the Lambdas as JSON in one environment variable. Every error names the field and, where
there is a fixed set, the allowed values. ``check_deployable`` adds the rules only a deployed stack has (the
CDK app runs it at synth, ``freshvec preflight`` before a first deploy).

Size: one module holds every setting and its rule, so synth, the Lambdas, the CLI and local mode cannot
disagree and a field's name, default and check are found together.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from freshvec import constants as c
from freshvec.sources.keyspaces.cqltypes import CqlType, CqlTypeError, parse_cql_type
from freshvec.sources.postgres import types as pgtypes

CONTEXT_KEY = "freshvec"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")  # Keyspaces keyspace/table/column names
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# S3 Vectors index names are 3-63 characters; the deployed name appends "-<hash>" (see vector_index_name).
_INDEX_NAME_BASE_MAX = c.S3V_INDEX_NAME_MAX_CHARS - 1 - c.S3V_INDEX_SETTINGS_HASH_CHARS
_INDEX_RE = re.compile(rf"^[a-z0-9][a-z0-9.-]{{1,{_INDEX_NAME_BASE_MAX - 2}}}[a-z0-9]$")
_STACK_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PG_SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")  # replication slot names (PostgreSQL's own rule)
_PG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")  # identifiers the pipeline quotes
_SECRET_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
_KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$")
_SSL_MODES = ("verify-full", "verify-ca", "require", "disable")
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
_MIN_CHUNK_CHARS = 50  # below this a chunk holds a few words: too little meaning for an embedding


class ConfigError(ValueError):
    """An invalid pipeline config; ``field`` is the dotted path of the offending setting."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field = field_path
        super().__init__(f"invalid config field '{field_path}': {message}")


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
    lease_duration_s: int = 60
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


@dataclass(frozen=True)
class PipelineConfig:
    keyspace: str
    table: str
    columns: dict[str, str]
    partition_key: tuple[str, ...]
    embedding_field: str
    clustering_key: tuple[str, ...] = ()
    metadata_fields: tuple[str, ...] = ()
    vector_key: tuple[str, ...] | None = None  # None: the whole primary key in order
    stack_name: str = "freshvec"
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    vector_store: VectorStoreConfig = field(default_factory=VectorStoreConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    forwarder: ForwarderConfig = field(default_factory=ForwarderConfig)
    removal_policy: str = "destroy"
    alarm_email: str | None = None
    # Where the rows come from. For "postgres" the top-level keyspace, table, columns and partition_key are
    # derived from source.postgres: keyspace = the schema (change events keep their field names), columns =
    # the CQL type with the same JSON form (docs/sources.md).
    source: SourceConfig = field(default_factory=SourceConfig)
    # Index generations (docs/migrations.md): the name of the generation embedding, chunking and vector_store
    # describe, and during a migration the next one. The sink keeps both exact.
    generation: str = c.DEFAULT_GENERATION
    next_generation: GenerationConfig | None = None

    # ---- the source --------------------------------------------------------------------
    @property
    def postgres(self) -> PostgresSourceConfig:
        """The PostgreSQL source settings; ConfigError when the source is not PostgreSQL."""
        if self.source.kind != "postgres" or self.source.postgres is None:
            raise ConfigError("source.kind", f"this operation needs a postgres source, not {self.source.kind}")
        return self.source.postgres

    @property
    def pg_column_types(self) -> dict[str, str] | None:
        """Column -> PostgreSQL type for a postgres source, else None."""
        return dict(self.source.postgres.columns) if self.source.kind == "postgres" and self.source.postgres else None

    # ---- derived views -------------------------------------------------------------------
    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.partition_key + self.clustering_key

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Columns the vector key is built from, in order."""
        return self.vector_key if self.vector_key is not None else self.primary_key

    @property
    def column_types(self) -> dict[str, CqlType]:
        return {name: parse_cql_type(type_text) for name, type_text in self.columns.items()}

    @property
    def non_filterable_keys(self) -> tuple[str, ...]:
        """The index's non-filterable keys: the embedded text, the pipeline's own keys, then the user's extras."""
        keys = (self.embedding_field, *c.PIPELINE_NON_FILTERABLE_KEYS, *self.vector_store.non_filterable_keys)
        return tuple(dict.fromkeys(keys))

    @property
    def vector_index_name(self) -> str:
        """The deployed S3 Vectors index name: ``vector_store.index_name`` + ``-`` + a hash of its create-only settings.

        Dimension, distance metric and non-filterable keys cannot change on an existing index, and the model decides
        what the stored vectors mean; a change of any of them yields a new name, so CloudFormation creates a new
        index (and deletes the old one) instead of failing to replace a custom-named resource.
        """
        settings = {
            "dimension": self.embedding.dimensions,
            "distance_metric": self.vector_store.distance_metric,
            "non_filterable_keys": sorted(self.non_filterable_keys),
            "model_id": self.embedding.model_id,
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        return f"{self.vector_store.index_name}-{digest[: c.S3V_INDEX_SETTINGS_HASH_CHARS]}"

    @property
    def metadata_keys(self) -> tuple[str, ...]:
        """Every metadata key a vector carries: configured columns, the embedded text, the pipeline's own keys."""
        keys = list(self.metadata_fields)
        if self.embedding_field not in keys:
            keys.append(self.embedding_field)
        return (*keys, *c.PIPELINE_NON_FILTERABLE_KEYS, *c.PIPELINE_FILTERABLE_KEYS)

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PipelineConfig:
        config = _build(cls, _derive_postgres_fields(raw), "")
        config.validate()
        return config

    @classmethod
    def from_json(cls, text: str) -> PipelineConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("(document)", f"not valid JSON: {exc}") from exc
        return cls.from_dict(raw)

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineConfig:
        """A JSON file holding either the bare config or a whole cdk.json (its ``context.freshvec``)."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("(document)", f"{path} is not valid JSON: {exc}") from exc
        if isinstance(raw, dict) and "context" in raw and CONTEXT_KEY in raw["context"]:
            raw = raw["context"][CONTEXT_KEY]
        return cls.from_dict(raw)

    # ---- validation ----------------------------------------------------------------------
    def validate(self) -> None:  # noqa: PLR0912 - one flat list of rules reads best
        _one_of("source.kind", self.source.kind, SOURCE_KINDS)
        if self.source.kind == "postgres":
            _validate_postgres(self.source.postgres)
        _check_name("keyspace", self.keyspace)
        _check_name("table", self.table)
        if not _STACK_RE.match(self.stack_name):
            raise ConfigError("stack_name", f"{self.stack_name!r} is not a CloudFormation stack name")
        if not self.columns:
            raise ConfigError("columns", "the table needs at least one column")
        for name, type_text in self.columns.items():
            _check_name(f"columns.{name}", name)
            try:
                parse_cql_type(type_text)
            except CqlTypeError as exc:
                raise ConfigError(f"columns.{name}", str(exc)) from exc
        if not self.partition_key:
            raise ConfigError("partition_key", "the primary key needs at least one partition key column")
        types = self.column_types
        seen: set[str] = set()
        for path, names in (("partition_key", self.partition_key), ("clustering_key", self.clustering_key)):
            for name in names:
                _check_column(path, name, types)
                if name in seen:
                    raise ConfigError(path, f"column {name!r} appears twice in the primary key")
                seen.add(name)
                if types[name].name in {"list", "set", "map", "counter", "duration"}:
                    raise ConfigError(path, f"column {name!r} of type {types[name]} cannot be a key column")
        _check_column("embedding_field", self.embedding_field, types)
        if not types[self.embedding_field].is_text:
            raise ConfigError(
                "embedding_field",
                f"column {self.embedding_field!r} is {types[self.embedding_field]}; "
                "it must be a text type (text, varchar, ascii)",
            )
        if self.embedding_field in self.primary_key:
            raise ConfigError("embedding_field", "the embedded text cannot be a primary key column")
        for name in self.metadata_fields:
            _check_column("metadata_fields", name, types)
        if len(set(self.metadata_fields)) != len(self.metadata_fields):
            raise ConfigError("metadata_fields", "a column is listed twice")
        if self.vector_key is not None and sorted(self.vector_key) != sorted(self.primary_key):
            raise ConfigError(
                "vector_key",
                f"must list every primary key column exactly once (in any order): {', '.join(self.primary_key)}",
            )
        self._validate_embedding()
        self._validate_chunking()
        self._validate_vector_store()
        self._validate_generations()
        self._validate_stream_and_lambdas()
        _one_of("removal_policy", self.removal_policy, ("destroy", "retain"))
        if self.alarm_email is not None and not _EMAIL_RE.match(self.alarm_email):
            raise ConfigError("alarm_email", f"{self.alarm_email!r} is not an email address")

    def _validate_embedding(self) -> None:
        e = self.embedding
        _one_of("embedding.provider", e.provider, tuple(c.PROVIDER_MODELS))
        models = c.PROVIDER_MODELS[e.provider]
        _one_of("embedding.model_id", e.model_id, tuple(models))
        allowed = models[e.model_id]
        if e.dimensions not in allowed:
            raise ConfigError(
                "embedding.dimensions",
                f"{e.dimensions} is not allowed for {e.model_id}; allowed: {', '.join(map(str, allowed))}",
            )
        _in_range("embedding.max_concurrency", e.max_concurrency, (1, 64))

    def _validate_generations(self) -> None:
        if not re.match(c.GENERATION_NAME_PATTERN, self.generation):
            raise ConfigError(
                "generation", f"{self.generation!r}: a lowercase letter, then letters, digits or -, at most 16"
            )
        nxt = self.next_generation
        if nxt is None:
            return
        if not re.match(c.GENERATION_NAME_PATTERN, nxt.name):
            raise ConfigError(
                "next_generation.name", f"{nxt.name!r}: a lowercase letter, then letters, digits or -, at most 16"
            )
        if nxt.name == self.generation:
            raise ConfigError("next_generation.name", f"{nxt.name!r} is already the name of the active generation")
        if nxt.vector_store.bucket_name not in (None, self.vector_store.bucket_name):
            raise ConfigError(
                "next_generation.vector_store.bucket_name", "every generation lives in the same bucket; leave it out"
            )
        store = replace(nxt.vector_store, bucket_name=self.vector_store.bucket_name)
        view = replace(self, generation=nxt.name, embedding=nxt.embedding, chunking=nxt.chunking, vector_store=store,
                       next_generation=None)  # fmt: skip
        try:
            view._validate_embedding()
            view._validate_chunking()
            view._validate_vector_store()
        except ConfigError as exc:
            raise ConfigError(f"next_generation.{exc.field}", str(exc).split(": ", 1)[1]) from exc
        if view.vector_index_name == self.vector_index_name:
            raise ConfigError(
                "next_generation.vector_store.index_name",
                "the next generation has the same model and index settings as the active one, so the same index "
                "name; give it another vector_store.index_name (e.g. a chunking-only change)",
            )

    def _validate_chunking(self) -> None:
        ch = self.chunking
        _one_of("chunking.strategy", ch.strategy, ("none", "recursive"))
        limit = c.PROVIDER_MAX_INPUT_CHARS[self.embedding.provider]
        if not _MIN_CHUNK_CHARS <= ch.max_chars <= limit:
            why = f"(the input limit of {self.embedding.model_id}, in characters)"
            raise ConfigError("chunking.max_chars", f"{ch.max_chars} is out of range; allowed: 50 to {limit} {why}")
        if not 0 <= ch.overlap_chars < ch.max_chars:
            why = f"allowed: 0 to {ch.max_chars - 1} (below chunking.max_chars)"
            raise ConfigError("chunking.overlap_chars", f"{ch.overlap_chars} is out of range; {why}")

    def _validate_vector_store(self) -> None:
        v = self.vector_store
        if v.bucket_name is not None and not _BUCKET_RE.match(v.bucket_name):
            raise ConfigError(
                "vector_store.bucket_name",
                f"{v.bucket_name!r}: 3-63 characters of lowercase letters, digits and hyphens",
            )
        if not _INDEX_RE.match(v.index_name):
            raise ConfigError(
                "vector_store.index_name",
                f"{v.index_name!r}: 3-{_INDEX_NAME_BASE_MAX} characters of lowercase letters, digits, dots and "
                f"hyphens (the deployed name adds '-' and {c.S3V_INDEX_SETTINGS_HASH_CHARS} hex digits)",
            )
        _one_of("vector_store.distance_metric", v.distance_metric, c.S3V_DISTANCE_METRICS)
        path = "vector_store.non_filterable_keys"
        low, high = c.S3V_METADATA_KEY_CHARS
        known = set(self.metadata_keys)
        for key in v.non_filterable_keys:
            if not low <= len(key) <= high:
                raise ConfigError(path, f"{key!r}: an S3 Vectors metadata key has {low} to {high} characters")
            if key not in known:
                raise ConfigError(path, f"{key!r} is not a metadata key; allowed: {', '.join(sorted(known))}")
        keys = self.non_filterable_keys
        if len(keys) > c.S3V_MAX_NON_FILTERABLE_KEYS:
            always = (self.embedding_field, *c.PIPELINE_NON_FILTERABLE_KEYS)
            raise ConfigError(
                path,
                f"{len(keys)} non-filterable keys in total; an S3 Vectors index allows at most "
                f"{c.S3V_MAX_NON_FILTERABLE_KEYS}, and {len(always)} are always included ({', '.join(always)}), "
                f"so list at most {c.S3V_MAX_NON_FILTERABLE_KEYS - len(always)} extra keys",
            )

    def _validate_stream_and_lambdas(self) -> None:
        s, k, f = self.sink, self.stream, self.forwarder
        _one_of("stream.mode", k.mode, ("ON_DEMAND", "PROVISIONED"))
        _in_range("stream.shard_count", k.shard_count, (1, 500))
        _in_range("stream.retention_hours", k.retention_hours, (24, 8760))
        _in_range("sink.batch_size", s.batch_size, c.ESM_BATCH_SIZE)
        _in_range("sink.batching_window_s", s.batching_window_s, c.ESM_BATCHING_WINDOW_S)
        _in_range("sink.parallelization_factor", s.parallelization_factor, c.ESM_PARALLELIZATION)
        _in_range("sink.retry_attempts", s.retry_attempts, c.ESM_RETRY_ATTEMPTS)
        _in_range("sink.max_record_age_s", s.max_record_age_s, c.ESM_MAX_RECORD_AGE_S)
        if s.max_record_age_s > k.retention_hours * 3600:
            raise ConfigError("sink.max_record_age_s", "cannot exceed the stream's retention (stream.retention_hours)")
        _in_range("sink.memory_mb", s.memory_mb, c.LAMBDA_MEMORY_MB)
        _in_range("sink.timeout_s", s.timeout_s, c.LAMBDA_TIMEOUT_S)
        if s.reserved_concurrency is not None:
            _in_range("sink.reserved_concurrency", s.reserved_concurrency, c.LAMBDA_RESERVED_CONCURRENCY)
        _in_range("sink.dlq_retention_days", s.dlq_retention_days, c.SQS_RETENTION_DAYS)
        _in_range("forwarder.schedule_minutes", f.schedule_minutes, (1, 60))
        _in_range("forwarder.poll_interval_ms", f.poll_interval_ms, (10, 60_000))
        _one_of("forwarder.starting_position", f.starting_position, ("TRIM_HORIZON", "LATEST"))
        _in_range("forwarder.max_concurrent_shards", f.max_concurrent_shards, (1, 64))
        _in_range("forwarder.lease_duration_s", f.lease_duration_s, (10, 900))
        _in_range("forwarder.memory_mb", f.memory_mb, c.LAMBDA_MEMORY_MB)
        _in_range("forwarder.timeout_s", f.timeout_s, (30, 900))
        if f.reserved_concurrency is not None:
            # Lambda keeps at least 100 of the account's concurrency unreserved; an account at the default quota
            # of 1000 can reserve up to 900 (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
            _in_range("forwarder.reserved_concurrency", f.reserved_concurrency, c.LAMBDA_RESERVED_CONCURRENCY)


def load_config(context: Mapping[str, Any]) -> PipelineConfig:
    """Build the config from CDK context: the ``freshvec`` object plus any ``freshvec.a.b`` overrides.

    ``cdk -c freshvec.sink.batch_size=50`` arrives as a string; values are parsed as JSON when they
    can be (numbers, booleans, lists) and kept as strings otherwise. ``-c freshvec='{...}'`` replaces
    the whole object.
    """
    base = context.get(CONTEXT_KEY, {})
    if isinstance(base, str):
        try:
            base = json.loads(base)
        except json.JSONDecodeError as exc:
            raise ConfigError(CONTEXT_KEY, f"context value is not valid JSON: {exc}") from exc
    if not isinstance(base, Mapping):
        raise ConfigError(CONTEXT_KEY, "context value must be a JSON object")
    merged: dict[str, Any] = json.loads(json.dumps(base))
    prefix = CONTEXT_KEY + "."
    for key, value in sorted(context.items()):
        if not key.startswith(prefix):
            continue
        path = key[len(prefix) :].split(".")
        target = merged
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(key[len(prefix) :], "cannot set a sub-field of a value that is not an object")
        target[path[-1]] = _parse_override(value)
    return PipelineConfig.from_dict(merged)


def parse_generation(raw: Mapping[str, Any]) -> GenerationConfig:
    """A ``next_generation`` object (checked by path; its rules against a pipeline run when it is added)."""
    return _build(GenerationConfig, raw, "next_generation")


# ---- helpers ------------------------------------------------------------------------------
def _parse_override(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _build(cls: type, raw: Any, path: str) -> Any:
    """Turn a JSON object into the dataclass ``cls``, rejecting unknown keys and wrong types by path."""
    where = path or "(document)"
    if not isinstance(raw, Mapping):
        raise ConfigError(where, f"expected an object, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{path}{'.' if path else ''}{unknown[0]}", f"unknown setting; allowed: {', '.join(known)}")
    if cls is EmbeddingConfig:
        raw = _embedding_defaults(raw)
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        sub = f"{path}.{name}" if path else name
        kwargs[name] = _coerce(known[name].type, value, sub)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required setting is missing
        missing = [f.name for f in fields(cls) if f.name not in kwargs and _is_required(f)]
        name = missing[0] if missing else "?"
        raise ConfigError(f"{path}{'.' if path else ''}{name}", "required setting is missing") from exc


def _embedding_defaults(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """Each provider's own default model, and a model's own default dimensions (a known provider/model only:
    an unknown one is left for validation to name)."""
    filled = dict(raw)
    provider = filled.get("provider", EmbeddingConfig.provider)
    if "model_id" not in filled and isinstance(provider, str) and provider in c.PROVIDER_DEFAULT_MODEL:
        filled["model_id"] = c.PROVIDER_DEFAULT_MODEL[provider]
    model = filled.get("model_id", EmbeddingConfig.model_id)
    if "dimensions" not in filled and isinstance(provider, str) and isinstance(model, str):
        allowed = c.PROVIDER_MODELS.get(provider, {}).get(model)
        if allowed:
            filled["dimensions"] = allowed[0]
    return filled


_NESTED = {
    "SourceConfig": SourceConfig,
    "PostgresSourceConfig": PostgresSourceConfig,
    "PostgresConnectionConfig": PostgresConnectionConfig,
    "PostgresNetworkConfig": PostgresNetworkConfig,
    "EmbeddingConfig": EmbeddingConfig,
    "GenerationConfig": GenerationConfig,
    "VectorStoreConfig": VectorStoreConfig,
    "ChunkingConfig": ChunkingConfig,
    "StreamConfig": StreamConfig,
    "SinkConfig": SinkConfig,
    "ForwarderConfig": ForwarderConfig,
}


def _coerce(type_text: Any, value: Any, path: str) -> Any:
    """Check one JSON value against the field's annotation (kept as text by ``from __future__``)."""
    t = str(type_text)
    optional = t.endswith("| None")
    if value is None:
        if optional:
            return None
        raise ConfigError(path, "must not be null")
    core = t.removesuffix(" | None")
    if core in _NESTED:
        return _build(_NESTED[core], value, path)
    if core.startswith("tuple[str"):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(path, "expected a list of column names (strings)")
        return tuple(value)
    if core.startswith("dict[str, str]"):
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(path, "expected an object of column name -> CQL type")
        return dict(value)
    expected = {"str": str, "int": int, "bool": bool}[core]
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(path, f"expected a whole number, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(path, f"expected {core}, got {value!r}")
    return value


_DERIVED_FROM_POSTGRES = ("keyspace", "table", "columns", "partition_key", "clustering_key")


def _derive_postgres_fields(raw: Any) -> Any:
    """For a postgres source, fill the top-level table fields from ``source.postgres`` (see PipelineConfig)."""
    if not isinstance(raw, Mapping):
        return raw
    source = raw.get("source")
    if not isinstance(source, Mapping) or source.get("kind") != "postgres":
        return raw
    if not isinstance(source.get("postgres"), Mapping):
        raise ConfigError("source.postgres", "required when source.kind is postgres")
    pg = _build(PostgresSourceConfig, source["postgres"], "source.postgres")
    derived = {
        "keyspace": pg.schema,
        "table": pg.table,
        "columns": pg.cql_equivalents(),
        "partition_key": list(pg.primary_key),
        "clustering_key": [],
    }
    merged = dict(raw)
    for name in _DERIVED_FROM_POSTGRES:
        if name in raw and _plain(raw[name]) != derived[name]:
            raise ConfigError(name, "with source.kind postgres this comes from source.postgres; leave it out")
        merged[name] = derived[name]
    return merged


def _validate_postgres(pg: PostgresSourceConfig | None) -> None:  # noqa: PLR0912 - one flat list of rules
    if pg is None:
        raise ConfigError("source.postgres", "required when source.kind is postgres")
    for path, name in (("source.postgres.schema", pg.schema), ("source.postgres.table", pg.table)):
        if not _PG_NAME_RE.match(name):
            raise ConfigError(path, f"{name!r}: start with a letter or _, then letters, digits or _, at most 63")
    if not pg.columns:
        raise ConfigError("source.postgres.columns", "the table needs at least one column")
    for name, type_text in pg.columns.items():
        if not _PG_NAME_RE.match(name):
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
        if pgtypes.family(pg.columns[name]) in (None, "array", "json", "float"):
            raise ConfigError("source.postgres.primary_key", f"column {name!r} ({pg.columns[name]}) cannot be a key")
    for path, name in (("source.postgres.publication", pg.publication), ("source.postgres.slot", pg.slot)):
        if not _PG_SLOT_RE.match(name):
            raise ConfigError(path, f"{name!r}: 1-63 lowercase letters, digits or _")
    _in_range("source.postgres.max_changes_per_read", pg.max_changes_per_read, (1, 100_000))
    conn = pg.connection
    if not conn.host.strip():
        raise ConfigError("source.postgres.connection.host", "the host is empty")
    _in_range("source.postgres.connection.port", conn.port, (1, 65535))
    _in_range("source.postgres.connection.connect_timeout_s", conn.connect_timeout_s, (1, 120))
    _one_of("source.postgres.connection.sslmode", conn.sslmode, _SSL_MODES)
    if conn.password_secret_arn is not None and not _SECRET_ARN_RE.match(conn.password_secret_arn):
        raise ConfigError("source.postgres.connection.password_secret_arn", "not a Secrets Manager secret ARN")
    key_arn = conn.password_secret_kms_key_arn
    if key_arn is not None and not _KMS_KEY_ARN_RE.match(key_arn):
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


def _is_required(f: Any) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return _plain(asdict(value))  # type: ignore[arg-type]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _check_name(path: str, name: str) -> None:
    if not _NAME_RE.match(name):
        raise ConfigError(path, f"{name!r}: start with a letter, then letters, digits or _, at most 48")


def _check_column(path: str, name: str, types: Mapping[str, CqlType]) -> None:
    if name not in types:
        raise ConfigError(path, f"unknown column {name!r}; table columns: {', '.join(types)}")


def _one_of(path: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(path, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")


def _in_range(path: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(path, f"{value} is out of range; allowed: {low} to {high}")


# ---- what only a deployed stack requires ------------------------------------------------------
def check_deployable(config: PipelineConfig) -> None:
    """The rules a valid config must also meet to be deployed (run at synth and by ``freshvec preflight``)."""
    if config.source.kind == "postgres":
        check_deployable_postgres(config)
    else:
        check_cloudformation_names(config)
    check_deployable_embedding(config)


def check_deployable_postgres(config: PipelineConfig) -> None:
    """A deployed forwarder reads its password from Secrets Manager, never from the config (which travels in
    its environment); a DynamoDB gateway endpoint needs the route tables of the forwarder's subnets."""
    pg = config.postgres
    if pg.connection.password is not None or pg.connection.password_secret_arn is None:
        raise ConfigError(
            "source.postgres.connection.password_secret_arn",
            "a deployed pipeline reads the password from Secrets Manager: set password_secret_arn, leave password out",
        )
    net = pg.network
    if net.vpc_id is not None and net.create_endpoints and not net.route_table_ids:
        raise ConfigError(
            "source.postgres.network.route_table_ids",
            "create_endpoints adds a DynamoDB gateway endpoint, which needs the subnets' route tables (rtb-...)",
        )


def check_cloudformation_names(config: PipelineConfig) -> None:
    """CloudFormation rejects one-character keyspace, table and column names that CQL would accept."""
    least = c.CFN_KEYSPACES_NAME_MIN_CHARS
    for path, name in (("keyspace", config.keyspace), ("table", config.table)):
        if len(name) < least:
            raise ConfigError(path, f"{name!r}: AWS::Cassandra names need at least {least}")
    for name in config.columns:
        if len(name) < least:
            raise ConfigError(f"columns.{name}", f"{name!r}: AWS::Cassandra column names need at least {least}")


def check_deployable_embedding(config: PipelineConfig) -> None:
    """The local provider (WordLlama) exists for local mode only; a deployed sink embeds with Bedrock."""
    if config.embedding.provider in c.LOCAL_ONLY_PROVIDERS:
        deployable = ", ".join(p for p in c.PROVIDER_MODELS if p not in c.LOCAL_ONLY_PROVIDERS)
        raise ConfigError(
            "embedding.provider",
            f"{config.embedding.provider!r} runs in local mode only and cannot be deployed; allowed: {deployable}",
        )


def default_config() -> PipelineConfig:
    """The tutorial's movie table, as cdk.json ships it."""
    path = Path(__file__).resolve().parent.parent / "cdk.json"
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
