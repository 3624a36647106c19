"""The pipeline's AWS resources, created in a moto server from the same pipeline config the CDK app deploys.

Local mode always embeds with WordLlama (256 dimensions, offline), whatever the config's provider says:
``local_config`` returns the effective config (provider ``local``) so the sink, the query path and the
``freshvec --local`` CLI all embed the same way, and the index is created with that dimension.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from freshvec import constants as c
from freshvec.adapters.dynamodb import create_checkpoint_table
from freshvec.adapters.ssm import SsmPointerStore
from freshvec.config import EmbeddingConfig, PipelineConfig, VectorStoreConfig
from freshvec.generations import initial_pointer, live_generations, pointer_parameter_name

LOCAL_VECTOR_BUCKET = "freshvec-local"
LOCAL_EMBEDDING = EmbeddingConfig(provider="local", model_id=c.LOCAL_WORDLLAMA, dimensions=256)

ClientFactory = Callable[[str], Any]  # service name -> boto3 client (e.g. MotoServer.client)


@dataclass(frozen=True)
class LocalResources:
    """Names and ARNs of everything local mode created; ``outputs`` mirrors the CloudFormation stack outputs."""

    region: str
    account: str
    stream_name: str
    stream_arn: str
    checkpoint_table: str
    dlq_url: str
    dlq_arn: str
    on_failure_bucket: str
    vector_bucket: str
    vector_index: str
    vector_index_arn: str
    pointer_parameter: str = ""  # the SSM parameter holding the index pointer (freshvec.generations)

    def outputs(self, config: PipelineConfig) -> dict[str, str]:
        return {
            c.OUT_REGION: self.region,
            c.OUT_KEYSPACE: config.keyspace,
            c.OUT_TABLE: config.table,
            c.OUT_STREAM_NAME: self.stream_name,
            c.OUT_STREAM_ARN: self.stream_arn,
            c.OUT_VECTOR_BUCKET: self.vector_bucket,
            c.OUT_VECTOR_INDEX: self.vector_index,
            c.OUT_VECTOR_INDEX_ARN: self.vector_index_arn,
            c.OUT_INDEX_POINTER_PARAMETER: self.pointer_parameter,
            c.OUT_SINK_DLQ_URL: self.dlq_url,
            c.OUT_ON_FAILURE_BUCKET: self.on_failure_bucket,
            c.OUT_CHECKPOINT_TABLE: self.checkpoint_table,
            c.OUT_FORWARDER_FUNCTION: f"{config.stack_name}-forwarder-local",
            c.OUT_SINK_FUNCTION: f"{config.stack_name}-sink-local",
            c.OUT_DASHBOARD: f"{config.stack_name}-local",
            c.OUT_PIPELINE_CONFIG: without_password(config).to_json(),
        }


def without_password(config: PipelineConfig) -> PipelineConfig:
    """``config`` as it may be shown or written (the state file, the control API's answers): without the
    PostgreSQL password, which stays in the memory of the pipeline that connects with it."""
    if config.source.postgres is None or config.source.postgres.connection.password is None:
        return config
    pg = config.source.postgres
    postgres = dataclasses.replace(pg, connection=dataclasses.replace(pg.connection, password=None))
    return dataclasses.replace(config, source=dataclasses.replace(config.source, postgres=postgres))


def local_embedding(embedding: EmbeddingConfig) -> EmbeddingConfig:
    """WordLlama at the configured dimensions when it offers them (else its first), whatever the provider."""
    offered = c.PROVIDER_MODELS["local"][c.LOCAL_WORDLLAMA]
    dimensions = embedding.dimensions if embedding.dimensions in offered else offered[0]
    return dataclasses.replace(LOCAL_EMBEDDING, dimensions=dimensions)


def local_config(config: PipelineConfig) -> PipelineConfig:
    """The config local mode runs: WordLlama embeddings and a named vector bucket, everything else as given
    (a next generation too: WordLlama at its dimensions when offered, in the same bucket)."""
    store = config.vector_store
    bucket = store.bucket_name or LOCAL_VECTOR_BUCKET
    nxt = config.next_generation
    effective = dataclasses.replace(
        config,
        embedding=local_embedding(config.embedding) if config.embedding.provider == "local" else LOCAL_EMBEDDING,
        vector_store=VectorStoreConfig(
            bucket_name=bucket,
            index_name=store.index_name,
            distance_metric=store.distance_metric,
            non_filterable_keys=store.non_filterable_keys,
        ),
        next_generation=None
        if nxt is None
        else dataclasses.replace(
            nxt,
            embedding=local_embedding(nxt.embedding),
            vector_store=dataclasses.replace(nxt.vector_store, bucket_name=None),
        ),
    )
    effective.validate()
    return effective


def index_metadata_configuration(config: PipelineConfig) -> dict[str, Any]:
    """CreateIndex's ``metadataConfiguration``: the non-filterable keys and the full-text searchable ones."""
    configuration: dict[str, Any] = {"nonFilterableMetadataKeys": list(config.non_filterable_keys)}
    text = [{"metadataKey": k, **({"language": lang} if lang else {})} for k, lang in config.text_search_keys.items()]
    if text:
        configuration["textSearchConfigurations"] = text
    return configuration


def create_generation_index(clients: ClientFactory, generation: PipelineConfig) -> str:
    """Create one generation's index (named like the stack's) in the existing bucket; returns its ARN."""
    s3vectors = clients("s3vectors")
    bucket = generation.vector_store.bucket_name or LOCAL_VECTOR_BUCKET
    s3vectors.create_index(
        vectorBucketName=bucket,
        indexName=generation.vector_index_name,  # the configured name + a settings hash, as the stack names it
        dataType="float32",
        dimension=generation.embedding.dimensions,
        distanceMetric=generation.vector_store.distance_metric,
        metadataConfiguration=index_metadata_configuration(generation),
    )
    index = s3vectors.get_index(vectorBucketName=bucket, indexName=generation.vector_index_name)["index"]
    if index.get("indexMode") != generation.text_search.index_mode:  # what the stack's index settings resource does
        s3vectors.update_index_mode(
            vectorBucketName=bucket, indexName=generation.vector_index_name, indexMode=generation.text_search.index_mode
        )
    return str(index["indexArn"])


def create_resources(clients: ClientFactory, config: PipelineConfig) -> LocalResources:
    """Create the stream, checkpoint table, DLQ, on-failure bucket and vector index described by ``config``.

    ``config`` should be the effective local config (see ``local_config``): the index dimension is its
    embedding dimension.
    """
    prefix = config.stack_name.lower()
    kinesis = clients("kinesis")
    stream_name = f"{prefix}-changes"
    if config.stream.mode == "ON_DEMAND":
        kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    else:
        kinesis.create_stream(
            StreamName=stream_name,
            ShardCount=config.stream.shard_count,
            StreamModeDetails={"StreamMode": "PROVISIONED"},
        )
    stream_arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]

    checkpoint_table = f"{prefix}-checkpoints"
    create_checkpoint_table(clients("dynamodb"), checkpoint_table)

    sqs = clients("sqs")
    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-sink-dlq",
        Attributes={"MessageRetentionPeriod": str(config.sink.dlq_retention_days * 86_400)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    on_failure_bucket = f"{prefix}-sink-failures-local"
    clients("s3").create_bucket(Bucket=on_failure_bucket)

    store = config.vector_store
    bucket = store.bucket_name or LOCAL_VECTOR_BUCKET
    clients("s3vectors").create_vector_bucket(vectorBucketName=bucket)
    index_arn = ""
    for generation in live_generations(config):
        arn = create_generation_index(clients, generation.config)
        index_arn = index_arn or arn
    pointer = pointer_parameter_name(config)
    SsmPointerStore(clients("ssm"), pointer).write(initial_pointer(config, bucket).to_json())
    account = stream_arn.split(":")[4]
    region = stream_arn.split(":")[3]
    return LocalResources(
        region=region,
        account=account,
        stream_name=stream_name,
        stream_arn=stream_arn,
        checkpoint_table=checkpoint_table,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        on_failure_bucket=on_failure_bucket,
        vector_bucket=bucket,
        vector_index=config.vector_index_name,
        vector_index_arn=index_arn,
        pointer_parameter=pointer,
    )
