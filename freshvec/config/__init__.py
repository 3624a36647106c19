"""The pipeline config, one module per job; every public name is importable from ``freshvec.config``.

- ``sections``   one frozen dataclass per part of the pipeline (embedding, chunking, sink, source, ...)
- ``pipeline``   ``PipelineConfig``: the whole config, its derived views, (de)serialisation and table rules
- ``parsing``    JSON -> sections, rejecting unknown keys and wrong types by field path
- ``validation`` each section's rules; ``rules`` the small checks they are written with
- ``context``    ``load_config``: the config from CDK context and ``-c`` overrides
- ``deployable`` what only a deployed stack requires
- ``defaults``   the tutorial's movie table (``cdk.json``)
"""

from freshvec.config import sections
from freshvec.config.context import load_config
from freshvec.config.defaults import DEFAULT_CONFIG, default_config
from freshvec.config.deployable import (
    check_cloudformation_names,
    check_deployable,
    check_deployable_embedding,
    check_deployable_postgres,
)
from freshvec.config.errors import ConfigError
from freshvec.config.parsing import parse_generation
from freshvec.config.pipeline import CONTEXT_KEY, PipelineConfig
from freshvec.config.sections import *  # noqa: F403 - the sections' own list of public names

__all__ = [
    "CONTEXT_KEY",
    "DEFAULT_CONFIG",
    "ConfigError",
    "PipelineConfig",
    "check_cloudformation_names",
    "check_deployable",
    "check_deployable_embedding",
    "check_deployable_postgres",
    "default_config",
    "load_config",
    "parse_generation",
]
__all__ += sections.__all__
