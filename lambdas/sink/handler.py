"""Sink Lambda: Kinesis event source mapping batch -> ``freshvec.sink.Sink`` -> partial-batch response.

Thin on purpose: environment -> config and clients (once per container), Powertools logs and metrics,
one call into the domain.
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from freshvec import constants as c
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.dynamodb import DynamoDbTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.config import PipelineConfig
from freshvec.generation_sink import GenerationSink, GenerationSinkResult
from freshvec.generations import Generation, live_generations
from freshvec.retry import RetryPolicy

logger = Logger(service=c.SERVICE_SINK)
metrics = Metrics(namespace=c.METRICS_NAMESPACE, service=c.SERVICE_SINK)
# botocore retries connection errors once; throttling and 5xx get the domain's backoff with jitter.
_BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=5, read_timeout=60)
# botocore's client-side parameter validation walks every float of every vector; for s3vectors it is off.
# Measured by bench/sink.py (bench-results.json: sink_sdk_cpu_us_per_change against
# sink_sdk_cpu_us_per_change_novalidation, real boto3 against moto): the saving is small and noisy — 5 µs of
# ~530 µs per change on a quiet machine, 40-210 µs on a loaded one — never a cost. Safe because the sink checks
# what it would: key length (freshvec.keys.vector_key), dimension and finite floats
# (freshvec.sink._Run._valid_vectors), metadata size and key count (freshvec.metadata.MetadataBuilder), and S3
# Vectors still validates every request itself. The other clients keep it: their calls are few and small.
# S3 Vectors calls are bounded well inside the sink's timeout (c.S3V_CALL_BUDGET_S; config validation keeps the
# timeout at 3 times that): a call never outlives the invocation, so a killed invocation cannot write late.
_S3VECTORS_CONFIG = _BOTO_CONFIG.merge(
    Config(
        parameter_validation=False,
        connect_timeout=c.S3V_CONNECT_TIMEOUT_S,
        read_timeout=c.S3V_READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": c.SDK_ATTEMPTS},
    )
)
_RETRY = RetryPolicy()


def _client(service: str) -> Any:
    return boto3.client(service, config=_S3VECTORS_CONFIG if service == "s3vectors" else _BOTO_CONFIG)


@cache
def _sink() -> GenerationSink:
    """One sink per live index generation (the config's own, and the next one during a migration)."""
    config = PipelineConfig.from_json(os.environ[c.ENV_CONFIG])
    live = live_generations(config)
    bedrock = _client("bedrock-runtime")
    bucket = os.environ[c.ENV_VECTOR_BUCKET]
    s3vectors = _client("s3vectors")
    dlq = SqsDeadLetterQueue(_client("sqs"), os.environ[c.ENV_DLQ_URL], _RETRY)
    tombstones = DynamoDbTombstones(
        _client("dynamodb"), os.environ[c.ENV_CHECKPOINT_TABLE], retry=_RETRY, clock=time.time
    )
    return GenerationSink(
        live,
        {g.name: make_embedder(g.config.embedding, bedrock, _RETRY) for g in live},
        {g.name: S3VectorsStore(s3vectors, bucket, _index_name(g, config), _RETRY) for g in live},
        dlq,
        tombstones=tombstones,
    )


def _index_name(generation: Generation, config: PipelineConfig) -> str:
    """The stack names the config's own generation's index in the environment, the next one as its config does."""
    return os.environ[c.ENV_VECTOR_INDEX] if generation.name == config.generation else generation.index_name


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records", [])
    sequence_numbers = [r.get("kinesis", {}).get("sequenceNumber") for r in records]
    logger.info(
        "batch received",
        extra={
            "records": len(records),
            "first_sequence_number": sequence_numbers[0] if records else None,
            "last_sequence_number": sequence_numbers[-1] if records else None,
            "event_source_arn": records[0].get("eventSourceARN") if records else None,
        },
    )
    result = _sink().process(records)
    _report(result)
    return result.response()


def _report(result: GenerationSinkResult) -> None:
    s = result.stats
    for letter in result.dead_letters:
        logger.warning("record sent to the DLQ", extra=letter)
    if result.batch_item_failures:
        logger.warning(
            "transient failure: the mapping re-delivers from this sequence number",
            extra={"sequence_number": result.batch_item_failures[0]["itemIdentifier"], "records": s.transient_failures},
        )
    counts = {
        c.M_CHANGES_RECEIVED: s.changes_received,
        c.M_EMBEDDINGS_COMPUTED: s.embeddings_computed,
        c.M_EMBEDDINGS_SKIPPED: s.embeddings_skipped,
        c.M_CHUNKS_EMBEDDED: s.chunks_embedded,
        c.M_CHUNKS_REUSED: s.chunks_reused,
        c.M_CHUNKS_DELETED: s.chunks_deleted,
        c.M_TEXTS_TRUNCATED: s.texts_truncated,
        c.M_SEARCHABLE_TEXT_CUT: s.searchable_text_cut,
        c.M_VECTORS_PUT: s.vectors_put,
        c.M_VECTORS_DELETED: s.vectors_deleted,
        c.M_STALE_CHANGES_SKIPPED: s.stale_skipped,
        c.M_RESYNCS_PARKED: s.resyncs_parked,
        c.M_TOMBSTONES_WRITTEN: s.tombstones_written,
        c.M_DLQ_RECORDS: s.dlq_records,
    }
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for freshness in s.freshness_ms:
        metrics.add_metric(name=c.M_FRESHNESS_MS, unit=MetricUnit.Milliseconds, value=freshness)
    copied = sum(report.copy.copied for report in result.generations.values())
    metrics.add_metric(name=c.M_CHUNKS_COPIED, unit=MetricUnit.Count, value=copied)
    metrics.add_metric(name=c.M_BATCH_DURATION_MS, unit=MetricUnit.Milliseconds, value=s.batch_duration_ms)
    generations = {name: report.as_dict() for name, report in result.generations.items()}
    stats = {k: v for k, v in vars(s).items() if k != "freshness_ms"}
    logger.info("batch applied", extra={"stats": stats, "generations": generations})
