"""The pipeline config, one module per job; every public name is importable from ``freshvec.config``.

- ``sections``   one frozen dataclass per part of the pipeline (embedding, chunking, sink, source, ...)
- ``pipeline``   ``PipelineConfig``: the whole config, its derived views, (de)serialisation and table rules
- ``parsing``    JSON -> sections, rejecting unknown keys and wrong types by field path
- ``validation`` each section's rules; ``rules`` the small checks they are written with
- ``context``    ``load_config``: the config from CDK context and ``-c`` overrides
- ``deployable`` what only a deployed stack requires
- ``defaults``   the tutorial's movie table (``cdk.json``)
"""

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
from freshvec.config.sections import (
    SOURCE_KINDS,
    ChunkingConfig,
    EmbeddingConfig,
    ForwarderConfig,
    GenerationConfig,
    PostgresConnectionConfig,
    PostgresNetworkConfig,
    PostgresSourceConfig,
    SinkConfig,
    SourceConfig,
    StreamConfig,
    TextSearchConfig,
    VectorStoreConfig,
)

__all__ = [
    "CONTEXT_KEY",
    "DEFAULT_CONFIG",
    "SOURCE_KINDS",
    "ChunkingConfig",
    "ConfigError",
    "EmbeddingConfig",
    "ForwarderConfig",
    "GenerationConfig",
    "PipelineConfig",
    "PostgresConnectionConfig",
    "PostgresNetworkConfig",
    "PostgresSourceConfig",
    "SinkConfig",
    "SourceConfig",
    "StreamConfig",
    "TextSearchConfig",
    "VectorStoreConfig",
    "check_cloudformation_names",
    "check_deployable",
    "check_deployable_embedding",
    "check_deployable_postgres",
    "default_config",
    "load_config",
    "parse_generation",
]
