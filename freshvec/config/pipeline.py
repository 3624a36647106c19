"""The pipeline config: one typed, validated object shared by the CDK app, the Lambdas, the CLI and local mode.

It is read from ``cdk.json`` context (key ``freshvec``, ``freshvec.config.context``), overridable with
``cdk -c freshvec.a.b=value``, and travels to the Lambdas as JSON in one environment variable. Every error names
the field and, where there is a fixed set, the allowed values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from freshvec import constants as c
from freshvec.config.errors import ConfigError
from freshvec.config.parsing import build, derive_postgres_fields, plain
from freshvec.config.rules import EMAIL_RE, STACK_RE, check_column, check_name, one_of
from freshvec.config.sections import (
    SOURCE_KINDS,
    ChunkingConfig,
    EmbeddingConfig,
    ForwarderConfig,
    GenerationConfig,
    PostgresSourceConfig,
    SinkConfig,
    SourceConfig,
    StreamConfig,
    TextSearchConfig,
    VectorStoreConfig,
)
from freshvec.config.validation import (
    validate_chunking,
    validate_embedding,
    validate_postgres,
    validate_stream_and_lambdas,
    validate_text_search,
    validate_vector_store,
)
from freshvec.sources.keyspaces.cqltypes import CqlType, CqlTypeError, parse_cql_type
from freshvec.sources.postgres import types as pgtypes

CONTEXT_KEY = "freshvec"  # the cdk.json context key holding the config


@dataclass(frozen=True)
class PipelineConfig:
    keyspace: str
    table: str
    columns: dict[str, str]
    partition_key: tuple[str, ...]
    embedding_field: str
    clustering_key: tuple[str, ...] = ()
    metadata_fields: tuple[str, ...] = ()
    # Keyspaces static columns of the table (``freshvec init`` reads them from system_schema). Their changes arrive
    # as separate stream records for the partition, not in the rows' images, so they cannot be embedded or used
    # as metadata until they are fanned out to every row of the partition (docs/exactness.md).
    static_columns: tuple[str, ...] = ()
    vector_key: tuple[str, ...] | None = None  # None: the whole primary key in order
    stack_name: str = "freshvec"
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    vector_store: VectorStoreConfig = field(default_factory=VectorStoreConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    text_search: TextSearchConfig = field(default_factory=TextSearchConfig)
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
    def text_search_keys(self) -> dict[str, str | None]:
        """Full-text searchable metadata key -> analyzer language (None: standard); empty when text search is off."""
        ts = self.text_search
        if not ts.enabled:
            return {}
        return {key: ts.languages.get(key, ts.language) for key in ts.keys or (self.embedding_field,)}

    @property
    def metadata_keys(self) -> tuple[str, ...]:
        """Every metadata key a vector carries: configured columns, the embedded text, the pipeline's own keys."""
        keys = list(self.metadata_fields)
        if self.embedding_field not in keys:
            keys.append(self.embedding_field)
        return (*keys, *c.PIPELINE_NON_FILTERABLE_KEYS, *c.PIPELINE_FILTERABLE_KEYS)

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PipelineConfig:
        config = build(cls, derive_postgres_fields(raw), "")
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
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError("(document)", f"{path}: no such file") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("(document)", f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("(document)", f"{path} is not valid JSON: {exc}") from exc
        if isinstance(raw, dict) and "context" in raw and CONTEXT_KEY in raw["context"]:
            raw = raw["context"][CONTEXT_KEY]
        return cls.from_dict(raw)

    # ---- validation ----------------------------------------------------------------------
    def _check_static_columns(self, types: Mapping[str, Any]) -> None:
        """Static columns may be in the table, never in the embedded text or the metadata (docs/exactness.md)."""
        for name in self.static_columns:
            check_column("static_columns", name, types)
            if name in self.primary_key:
                raise ConfigError("static_columns", f"column {name!r} is a primary key column, not a static one")
            if name == self.embedding_field or name in self.metadata_fields:
                path = "embedding_field" if name == self.embedding_field else "metadata_fields"
                raise ConfigError(
                    path,
                    f"column {name!r} is static: Keyspaces streams its changes as a separate record for the "
                    "partition, not in each row's image, so a row's vector would not follow it",
                )

    def validate(self) -> None:  # noqa: PLR0912 - one flat list of rules reads best
        one_of("source.kind", self.source.kind, SOURCE_KINDS)
        if self.source.kind == "postgres":
            validate_postgres(self.source.postgres)
        check_name("keyspace", self.keyspace)
        check_name("table", self.table)
        if not STACK_RE.match(self.stack_name):
            raise ConfigError("stack_name", f"{self.stack_name!r} is not a CloudFormation stack name")
        if not self.columns:
            raise ConfigError("columns", "the table needs at least one column")
        for name, type_text in self.columns.items():
            check_name(f"columns.{name}", name)
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
                check_column(path, name, types)
                if name in seen:
                    raise ConfigError(path, f"column {name!r} appears twice in the primary key")
                seen.add(name)
                if types[name].name in {"list", "set", "map", "counter", "duration"}:
                    raise ConfigError(path, f"column {name!r} of type {types[name]} cannot be a key column")
        check_column("embedding_field", self.embedding_field, types)
        pg_types = self.pg_column_types or {}
        if self.embedding_field in pg_types and not pgtypes.is_known(pg_types[self.embedding_field]):
            raise ConfigError(
                "embedding_field",
                f"column {self.embedding_field!r}: {pgtypes.unknown_type_message(pg_types[self.embedding_field])}; "
                "the embedded text must be a text type (text, varchar, char)",
            )
        if not types[self.embedding_field].is_text:
            raise ConfigError(
                "embedding_field",
                f"column {self.embedding_field!r} is {types[self.embedding_field]}; "
                "it must be a text type (text, varchar, ascii)",
            )
        if self.embedding_field in self.primary_key:
            raise ConfigError("embedding_field", "the embedded text cannot be a primary key column")
        for name in self.metadata_fields:
            check_column("metadata_fields", name, types)
        if len(set(self.metadata_fields)) != len(self.metadata_fields):
            raise ConfigError("metadata_fields", "a column is listed twice")
        self._check_static_columns(types)
        if self.vector_key is not None and sorted(self.vector_key) != sorted(self.primary_key):
            raise ConfigError(
                "vector_key",
                f"must list every primary key column exactly once (in any order): {', '.join(self.primary_key)}",
            )
        validate_embedding(self.embedding)
        validate_chunking(self.chunking, self.embedding)
        validate_vector_store(
            self.vector_store,
            metadata_keys=self.metadata_keys,
            non_filterable_keys=self.non_filterable_keys,
            embedding_field=self.embedding_field,
        )
        validate_text_search(
            self.text_search,
            embedding_field=self.embedding_field,
            stored={name: types[name] for name in {*self.metadata_fields, self.embedding_field}},
        )
        self._validate_generations()
        validate_stream_and_lambdas(self.stream, self.sink, self.forwarder)
        one_of("removal_policy", self.removal_policy, ("destroy", "retain"))
        if self.alarm_email is not None and not EMAIL_RE.match(self.alarm_email):
            raise ConfigError("alarm_email", f"{self.alarm_email!r} is not an email address")

    def _validate_generations(self) -> None:
        pattern = c.GENERATION_NAME_PATTERN
        rule = "a lowercase letter, then letters, digits or -, at most 16"
        if not re.match(pattern, self.generation):
            raise ConfigError("generation", f"{self.generation!r}: {rule}")
        nxt = self.next_generation
        if nxt is None:
            return
        if not re.match(pattern, nxt.name):
            raise ConfigError("next_generation.name", f"{nxt.name!r}: {rule}")
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
            validate_embedding(view.embedding)
            validate_chunking(view.chunking, view.embedding)
            validate_vector_store(
                view.vector_store,
                metadata_keys=view.metadata_keys,
                non_filterable_keys=view.non_filterable_keys,
                embedding_field=view.embedding_field,
            )
        except ConfigError as exc:
            raise ConfigError(f"next_generation.{exc.field}", str(exc).split(": ", 1)[1]) from exc
        if view.vector_index_name == self.vector_index_name:
            raise ConfigError(
                "next_generation.vector_store.index_name",
                "the next generation has the same model and index settings as the active one, so the same index "
                "name; give it another vector_store.index_name (e.g. a chunking-only change)",
            )
