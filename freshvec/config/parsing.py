"""JSON -> config sections: unknown keys and wrong types rejected by field path, provider defaults filled in.

The field annotations (kept as text by ``from __future__``) say what each value must be; ``build`` walks them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, fields, is_dataclass
from typing import Any

from freshvec import constants as c
from freshvec.config import sections
from freshvec.config.errors import ConfigError
from freshvec.config.sections import EmbeddingConfig, GenerationConfig, PostgresSourceConfig


def parse_override(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def build(cls: type, raw: Any, path: str) -> Any:
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


# Every section class, by the name its annotations use (the annotations are text: ``from __future__``).
_NESTED = {name: section for name in sections.__all__ if isinstance(section := getattr(sections, name), type)}


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
        return build(_NESTED[core], value, path)
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


def derive_postgres_fields(raw: Any) -> Any:
    """For a postgres source, fill the top-level table fields from ``source.postgres`` (see PipelineConfig)."""
    if not isinstance(raw, Mapping):
        return raw
    source = raw.get("source")
    if not isinstance(source, Mapping) or source.get("kind") != "postgres":
        return raw
    if not isinstance(source.get("postgres"), Mapping):
        raise ConfigError("source.postgres", "required when source.kind is postgres")
    pg = build(PostgresSourceConfig, source["postgres"], "source.postgres")
    derived = {
        "keyspace": pg.schema,
        "table": pg.table,
        "columns": pg.cql_equivalents(),
        "partition_key": list(pg.primary_key),
        "clustering_key": [],
    }
    merged = dict(raw)
    for name in _DERIVED_FROM_POSTGRES:
        if name in raw and plain(raw[name]) != derived[name]:
            raise ConfigError(name, "with source.kind postgres this comes from source.postgres; leave it out")
        merged[name] = derived[name]
    return merged


def _is_required(f: Any) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def plain(value: Any) -> Any:
    if is_dataclass(value):
        return plain(asdict(value))  # type: ignore[arg-type]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def parse_generation(raw: Mapping[str, Any]) -> GenerationConfig:
    """A ``next_generation`` object (checked by path; its rules against a pipeline run when it is added)."""
    return build(GenerationConfig, raw, "next_generation")
