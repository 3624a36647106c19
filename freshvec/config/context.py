"""The config from CDK context: the ``freshvec`` object of ``cdk.json`` plus ``-c freshvec.a.b=value`` overrides."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from freshvec.config.errors import ConfigError
from freshvec.config.parsing import parse_override
from freshvec.config.pipeline import CONTEXT_KEY, PipelineConfig


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
        target[path[-1]] = parse_override(value)
    return PipelineConfig.from_dict(merged)
