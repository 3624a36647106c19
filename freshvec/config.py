"""The pipeline config: one typed, validated object shared by the CDK app, the Lambdas, the CLI and local mode.

It is read from ``cdk.json`` context (key ``freshvec``), overridable with ``cdk -c freshvec.a.b=value``,
and travels to the Lambdas as JSON in one environment variable. Every error names the field and, where
there is a fixed set, the allowed values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from freshvec import constants as c
from freshvec.sources.keyspaces.cqltypes import CqlType, CqlTypeError, parse_cql_type

CONTEXT_KEY = "freshvec"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")  # Keyspaces keyspace/table/column names
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# S3 Vectors index names are 3-63 characters; the deployed name appends "-<hash>" (see vector_index_name).
_INDEX_NAME_BASE_MAX = c.S3V_INDEX_NAME_MAX_CHARS - 1 - c.S3V_INDEX_SETTINGS_HASH_CHARS
_INDEX_RE = re.compile(rf"^[a-z0-9][a-z0-9.-]{{1,{_INDEX_NAME_BASE_MAX - 2}}}[a-z0-9]$")
_STACK_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MIN_CHUNK_CHARS = 50  # below this a chunk holds a few words: too little meaning for an embedding


class ConfigError(ValueError):
    """An invalid pipeline config; ``field`` is the dotted path of the offending setting."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field = field_path
        super().__init__(f"invalid config field '{field_path}': {message}")


@dataclass(frozen=True)
class EmbeddingConfig:
    provider: str = "titan"
    model_id: str = c.TITAN_V2
    dimensions: int = 256
    normalize: bool = True
    max_concurrency: int = 8  # parallel Bedrock calls for one-text-per-call models


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
    lease_duration_s: int = 60
    memory_mb: int = 512
    timeout_s: int = 70  # one invocation per scheduled minute, looping until shortly before this
    # None: no reservation. The DynamoDB shard leases already keep two runs from reading one shard twice, and a
    # reservation must leave 100 of the account's concurrency unreserved, which a new account's quota of 10 cannot
    # (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
    reserved_concurrency: int | None = None


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
        config = _build(cls, raw, "")
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


_NESTED = {
    "EmbeddingConfig": EmbeddingConfig,
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
