"""The small checks every config rule is written with; each raises a ConfigError naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from freshvec import constants as c
from freshvec.config.errors import ConfigError
from freshvec.sources.keyspaces.cqltypes import CqlType

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")  # Keyspaces keyspace/table/column names
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# S3 Vectors index names are 3-63 characters; the deployed name appends "-<hash>" (see vector_index_name).
INDEX_NAME_BASE_MAX = c.S3V_INDEX_NAME_MAX_CHARS - 1 - c.S3V_INDEX_SETTINGS_HASH_CHARS
INDEX_RE = re.compile(rf"^[a-z0-9][a-z0-9.-]{{1,{INDEX_NAME_BASE_MAX - 2}}}[a-z0-9]$")
STACK_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PG_SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")  # replication slot names (PostgreSQL's own rule)
PG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")  # identifiers the pipeline quotes
SECRET_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$")


def check_name(path: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise ConfigError(path, f"{name!r}: start with a letter, then letters, digits or _, at most 48")


def check_column(path: str, name: str, types: Mapping[str, CqlType]) -> None:
    if name not in types:
        raise ConfigError(path, f"unknown column {name!r}; table columns: {', '.join(types)}")


def one_of(path: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(path, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")


def in_range(path: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(path, f"{value} is out of range; allowed: {low} to {high}")
