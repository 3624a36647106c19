"""Names, limits and environment keys in one place (each limit names the service rule it mirrors)."""

from __future__ import annotations

# --- Environment keys shared by the CDK app (writer) and the handlers (readers) ---
ENV_CONFIG = "FRESHVEC_CONFIG"  # the whole pipeline config as JSON
ENV_VECTOR_BUCKET = "FRESHVEC_VECTOR_BUCKET"
ENV_VECTOR_INDEX = "FRESHVEC_VECTOR_INDEX"
ENV_DLQ_URL = "FRESHVEC_DLQ_URL"
ENV_STREAM_NAME = "FRESHVEC_STREAM_NAME"
ENV_CHECKPOINT_TABLE = "FRESHVEC_CHECKPOINT_TABLE"
METRICS_NAMESPACE = "freshvec"

# --- Change-event contract ---
EVENT_VERSION = 1
OPS = ("INSERT", "UPDATE", "DELETE", "EXPIRE", "TRUNCATE")  # TRUNCATE: every row of the table (PostgreSQL)
ORIGINS = ("USER", "TTL", "REPLICATION", "BACKFILL", "REDRIVE", "RECONCILE")
RESYNC_ORIGINS = ("BACKFILL", "REDRIVE", "RECONCILE")  # a row read from the table, not a live change

# --- Exactness (docs/exactness.md) ---
# A Keyspaces re-sync is stamped with its read's start minus these two bounds: B, how far the reader's clock may
# be from the service's (NTP-synchronised hosts stay well inside it; Amazon Time Sync inside a millisecond), and
# δ, how long after a record's ``createdAt`` its write may still be invisible to a LOCAL_QUORUM read. Every write
# with ``createdAt`` at or before the stamp was visible to the read. The sink also refuses a stamp more than B
# ahead of its own clock (the reader's clock was wrong).
KEYSPACES_READER_CLOCK_BOUND_S = 1.0
KEYSPACES_VISIBILITY_BOUND_S = 1.0
# A tombstone outlives the oldest change the event source mapping can still deliver (sink.max_record_age_s),
# plus this margin for the time between a re-sync read and its put to the change stream. A re-sync read longer
# ago than that lifetime is refused (the tombstones it would have to be ordered against may be gone).
TOMBSTONE_MARGIN_S = 3600
# A put that raced a TRUNCATE being applied (PostgreSQL) waits this long at most for its deletes to be done, then
# puts the row again; past it, the record goes back to re-delivery. Well inside the sink's timeout.
TRUNCATE_RACE_WAIT_S = 20.0
TRUNCATE_WAIT_FIRST_S = 0.1  # first pause between floor reads, doubled up to the next
TRUNCATE_WAIT_MAX_S = 2.0
# Every AWS call is bounded (botocore: connect + read timeout, two attempts), so no call outlives its caller: the
# sink's S3 Vectors calls stay well inside the sink's timeout, and a forwarder lease outlives the forwarder's
# timeout plus its last call (config validation checks both).
SDK_ATTEMPTS = 2
S3V_CONNECT_TIMEOUT_S = 5
S3V_READ_TIMEOUT_S = 15
S3V_CALL_BUDGET_S = SDK_ATTEMPTS * (S3V_CONNECT_TIMEOUT_S + S3V_READ_TIMEOUT_S)  # 40 s
FORWARDER_CONNECT_TIMEOUT_S = 5
FORWARDER_READ_TIMEOUT_S = 20
FORWARDER_CALL_BUDGET_S = SDK_ATTEMPTS * (FORWARDER_CONNECT_TIMEOUT_S + FORWARDER_READ_TIMEOUT_S)  # 50 s

# --- Amazon S3 Vectors ---
S3V_MAX_DIMENSION = 4096
S3V_MAX_KEY_CHARS = 1024
S3V_PUT_BATCH = 500  # PutVectors / DeleteVectors keys per call (the SDK does not enforce it)
S3V_GET_BATCH = 100  # GetVectors keys per call
# ListVectors page size at most (https://docs.aws.amazon.com/AmazonS3/latest/API/API_S3VectorBuckets_ListVectors.html)
S3V_LIST_PAGE = 1000
S3V_MAX_TOP_K = 100
S3V_MAX_FILTERABLE_METADATA_BYTES = 2048
S3V_MAX_TOTAL_METADATA_BYTES = 40 * 1024
# CreateIndex metadataConfiguration.nonFilterableMetadataKeys: 1 to 10 keys of 1 to 63 characters each
# (botocore's s3vectors model; https://docs.aws.amazon.com/AmazonS3/latest/API/API_S3VectorBuckets_MetadataConfiguration.html).
S3V_MAX_NON_FILTERABLE_KEYS = 10
S3V_METADATA_KEY_CHARS = (1, 63)
S3V_INDEX_NAME_MAX_CHARS = 63
# The index name is the configured name plus "-" and this many hex digits of a hash of its create-only settings.
S3V_INDEX_SETTINGS_HASH_CHARS = 8
S3V_DISTANCE_METRICS = ("cosine", "euclidean")
# Full-text search (docs "Configuring full-text search", TextSearchConfiguration; botocore 1.44.5 LanguageCode).
S3V_TEXT_LANGUAGES = ("en", "fr", "es", "pt", "it", "de", "nl", "zh", "ja", "ko")
S3V_MAX_TEXT_SEARCH_KEYS = 10  # textSearchConfigurations per index; also queryTexts per query
S3V_MAX_QUERY_TEXT_CHARS = 1024  # QueryText.text
S3V_INDEX_MODES = ("ENHANCED", "CLASSIC")
S3V_MAX_TOP_K_PAGED = 10_000  # QueryVectors topK; answers come in pages joined by nextToken
# Metadata keys the sink adds to every vector: where the change came from and when it happened.
META_SEQUENCE = "_seq"
META_CHANGED_AT = "_changed_at"
# What makes the index exact (non-filterable, written by the sink): a hash of exactly what was embedded, and
# the source row version the vector reflects (a decimal string: versions can pass 2**53).
META_FINGERPRINT = "_fp"
META_VERSION = "_ver"
# Chunked rows (freshvec.chunking): every vector carries its chunk number, chunk 0 also the row's chunk count.
# The count is provenance (non-filterable); the number is a small filterable integer, so a query can ask for
# one vector per row (``{"_chunk": 0}``) without spending a non-filterable slot.
META_CHUNK = "_chunk"
META_CHUNKS = "_chunks"
# A row's chunks at most (10 MB of text at the default bound): a text that needs more is refused, and a stored
# `_chunks` above it is corrupt, not a count — read as this many, so a hostile value cannot stall the sink.
MAX_CHUNKS_PER_ROW = 10_000
CHUNK_KEY_SEPARATOR = "#"  # chunk n > 0 of a row is stored under "<row key>#<n>" (a row key always ends with "]")
# Metadata keys the pipeline writes for itself (provenance, never filters): always non-filterable, added to the
# index's nonFilterableMetadataKeys ahead of the user's extra keys. Everything (config validation, the index
# schema and its name hash, the sink's size checks) derives from this one tuple.
PIPELINE_NON_FILTERABLE_KEYS = (META_SEQUENCE, META_CHANGED_AT, META_FINGERPRINT, META_VERSION, META_CHUNKS)
# Metadata keys the pipeline writes that stay filterable (each a few bytes of the 2 KB filterable budget).
PIPELINE_FILTERABLE_KEYS = (META_CHUNK,)

# --- Amazon Bedrock embedding models: allowed output dimensions and input limits ---
# Titan Text Embeddings V2: {"inputText", "dimensions", "normalize"}
# (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html).
TITAN_V2 = "amazon.titan-embed-text-v2:0"
# Cohere Embed v3: {"texts", "input_type", "truncate"}
# (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed-v3.html).
COHERE_EN_V3 = "cohere.embed-english-v3"
COHERE_MULTI_V3 = "cohere.embed-multilingual-v3"
# Cohere Embed v4: adds output_dimension 256/512/1024/1536, embedding_types, truncate NONE|LEFT|RIGHT; callable
# in-Region or through the us./eu./global. cross-Region inference profiles
# (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed-v4.html).
COHERE_V4 = "cohere.embed-v4:0"
COHERE_V4_PROFILES = tuple(f"{geo}.{COHERE_V4}" for geo in ("us", "eu", "global"))
# Amazon Nova Multimodal Embeddings, text: taskType SINGLE_EMBEDDING, embeddingPurpose, embeddingDimension
# 256/384/1024/3072, text.truncationMode (https://docs.aws.amazon.com/nova/latest/userguide/embeddings-schema.html).
NOVA_MME = "amazon.nova-2-multimodal-embeddings-v1:0"
NOVA_SCHEMA_VERSION = "nova-multimodal-embed-v1"
NOVA_DOCUMENT_PURPOSE = "GENERIC_INDEX"  # what is stored
NOVA_QUERY_PURPOSE = "TEXT_RETRIEVAL"  # a query searching an index of text
NOVA_MAX_INPUT_CHARS = 50_000  # text.value longer than this is refused; 8K tokens are truncated by truncationMode
# WordLlama (local mode): one 256-dimension model; 128 and 64 are its matryoshka prefixes (the first n dimensions,
# renormalized), so a local migration can change dimensions with no account.
LOCAL_WORDLLAMA = "wordllama-l2-supercat"
PROVIDER_MODELS: dict[str, dict[str, tuple[int, ...]]] = {
    "titan": {TITAN_V2: (256, 512, 1024)},
    "cohere": {
        COHERE_EN_V3: (1024,),
        COHERE_MULTI_V3: (1024,),
        **{model: (256, 512, 1024, 1536) for model in (COHERE_V4, *COHERE_V4_PROFILES)},
    },
    "nova": {NOVA_MME: (256, 384, 1024, 3072)},
    "local": {LOCAL_WORDLLAMA: (256, 128, 64)},
}
# What a provider embeds with when the config names no model_id; a model without configured dimensions uses the
# first of its allowed dimensions above.
PROVIDER_DEFAULT_MODEL: dict[str, str] = {
    "titan": TITAN_V2,
    "cohere": COHERE_EN_V3,
    "nova": NOVA_MME,
    "local": LOCAL_WORDLLAMA,
}
# Providers that run in local mode only (WordLlama in-process); a deployed sink embeds with Bedrock.
LOCAL_ONLY_PROVIDERS = ("local",)
# Third-party models: an admin subscribes once in AWS Marketplace before a role without Marketplace permissions
# can call them (https://docs.aws.amazon.com/bedrock/latest/userguide/model-access.html); first-party ones need none.
MARKETPLACE_MODELS = frozenset(m for m in PROVIDER_MODELS["cohere"])
TITAN_MAX_INPUT_CHARS = 50_000
COHERE_MAX_TEXTS_PER_CALL = 96
COHERE_MAX_INPUT_CHARS = 2_048  # Embed v3 (v4 takes up to about 128K tokens a text and truncates beyond)
COHERE_V4_MAX_INPUT_CHARS = 50_000  # freshvec's cut for v4: long texts are chunked, as for Titan and Nova
# What each provider's embedder cuts a text to before embedding: part of every fingerprint, so the embedders
# and the tools that recompute fingerprints (reconcile) read it through ``input_char_limit``. WordLlama has no
# hard limit; local mode cuts like Titan.
PROVIDER_MAX_INPUT_CHARS: dict[str, int] = {
    "titan": TITAN_MAX_INPUT_CHARS,
    "cohere": COHERE_MAX_INPUT_CHARS,
    "nova": NOVA_MAX_INPUT_CHARS,
    "local": TITAN_MAX_INPUT_CHARS,
}
# Models whose cut differs from their provider's.
MODEL_MAX_INPUT_CHARS: dict[str, int] = {model: COHERE_V4_MAX_INPUT_CHARS for model in (COHERE_V4, *COHERE_V4_PROFILES)}


def foundation_model_id(model_id: str) -> str:
    """The foundation model behind a cross-Region inference profile id ("us.cohere.embed-v4:0" -> the model)."""
    geo, _, rest = model_id.partition(".")
    return rest if geo in ("us", "eu", "apac", "global") and rest.count(".") >= 1 else model_id


def input_char_limit(provider: str, model_id: str) -> int:
    """The characters a text is cut to before ``model_id`` embeds it (KeyError: an unknown provider)."""
    return MODEL_MAX_INPUT_CHARS.get(model_id, PROVIDER_MAX_INPUT_CHARS[provider])


# --- Amazon Bedrock batch inference (CreateModelInvocationJob) ---
# Job states (botocore ``bedrock`` model, ModelInvocationJobStatus; "Monitor batch inference jobs",
# https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-monitor.html).
BATCH_JOB_STATES = (
    "Submitted",
    "Validating",
    "Scheduled",
    "InProgress",
    "Completed",
    "PartiallyCompleted",
    "Failed",
    "Stopping",
    "Stopped",
    "Expired",
)
BATCH_TERMINAL_STATES = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
BATCH_RESULT_STATES = ("Completed", "PartiallyCompleted")  # output files exist to read
# Record ids: "alphanumeric string" (https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-data.html);
# the length bound is freshvec's own, generous for a counter.
BATCH_RECORD_ID_RE = r"^[A-Za-z0-9]{1,64}$"
BATCH_RECORD_ID_MAX_CHARS = 64
# Records per job when Service Quotas cannot be read: the documented defaults of "Minimum number of records per
# batch inference job" and "Records per (input file per) batch inference job"
# (https://docs.aws.amazon.com/general/latest/gr/bedrock.html#limits_bedrock).
BATCH_DEFAULT_RECORDS = (100, 50_000)
# How Service Quotas names each model in its batch quotas ("... per batch inference job for <name>").
BATCH_QUOTA_MODEL_NAMES = {
    TITAN_V2: "Titan Text Embeddings V2",
    COHERE_EN_V3: "Cohere Embed English",
    COHERE_MULTI_V3: "Cohere Embed Multilingual",
    COHERE_V4: "Cohere Embed V4",
    NOVA_MME: "Nova 2 Multimodal Embeddings V1",
    LOCAL_WORDLLAMA: "WordLlama L2 Supercat",  # local mode's stand-in answers under this name
}
# How Service Quotas names each model in its on-demand rate quotas ("On-demand model inference requests per minute
# for <name>", "Cross-region model inference tokens per minute for <name>", "Global cross-region ...").
ON_DEMAND_QUOTA_MODEL_NAMES = {
    TITAN_V2: "Amazon Titan Text Embeddings V2",
    COHERE_EN_V3: "Cohere Embed English",
    COHERE_MULTI_V3: "Cohere Embed Multilingual",
    COHERE_V4: "Cohere Embed V4",
    NOVA_MME: "Amazon Nova 2 Multimodal Embeddings V1",
}
# Concurrent jobs per base model ("Sum of in-progress and submitted batch inference jobs using a base model").
BATCH_DEFAULT_ACTIVE_JOBS = 20
# A submission's name leaves room for "-<part>" within the 63-character job name (ModelInvocationJobName).
BATCH_SUBMISSION_NAME_RE = r"^[a-zA-Z0-9](-?[a-zA-Z0-9]){0,55}$"

# --- AWS CloudFormation (AWS::Cassandra::Keyspace / Table): names of fewer characters are refused ---
CFN_KEYSPACES_NAME_MIN_CHARS = 2

# --- Amazon Kinesis ---
KINESIS_PUT_BATCH = 500
KINESIS_MAX_REQUEST_BYTES = 5 * 1024 * 1024
KINESIS_MAX_RECORD_BYTES = 1024 * 1024
KINESIS_MAX_PARTITION_KEY_CHARS = 256

# --- Amazon Keyspaces CDC streams ---
KEYSPACES_MAX_RECORDS_PER_GET = 1000
KEYSPACES_RETENTION_HOURS = 24
KEYSPACES_ITERATOR_TTL_S = 15 * 60

# --- Lambda event source mapping for Kinesis (service ranges) ---
ESM_BATCH_SIZE = (1, 10_000)
ESM_BATCHING_WINDOW_S = (0, 300)
ESM_PARALLELIZATION = (1, 10)
ESM_RETRY_ATTEMPTS = (0, 10_000)  # -1 (forever) is refused on purpose: one poison record would block a shard
ESM_MAX_RECORD_AGE_S = (60, 604_800)
SQS_RETENTION_DAYS = (1, 14)
LAMBDA_MEMORY_MB = (128, 10_240)
LAMBDA_TIMEOUT_S = (1, 900)
# A reservation must leave 100 unreserved; at the default account quota of 1000 that is at most 900
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
LAMBDA_RESERVED_CONCURRENCY = (1, 900)

# --- CloudFormation outputs the CLI reads (stack outputs are the CLI's only source of resource names) ---
OUT_REGION = "Region"
OUT_KEYSPACE = "Keyspace"
OUT_TABLE = "Table"
OUT_STREAM_NAME = "ChangeStreamName"
OUT_STREAM_ARN = "ChangeStreamArn"
OUT_VECTOR_BUCKET = "VectorBucketName"
OUT_VECTOR_INDEX = "VectorIndexName"
OUT_VECTOR_INDEX_ARN = "VectorIndexArn"
OUT_SINK_DLQ_URL = "SinkDlqUrl"
OUT_ON_FAILURE_BUCKET = "OnFailureBucketName"
OUT_CHECKPOINT_TABLE = "CheckpointTableName"
OUT_FORWARDER_FUNCTION = "ForwarderFunctionName"
OUT_SINK_FUNCTION = "SinkFunctionName"
OUT_DASHBOARD = "DashboardName"
OUT_OPERATOR_POLICY_ARN = "OperatorPolicyArn"  # the managed policy an operator attaches to run the CLI
OUT_BATCH_BUCKET = "BatchBucketName"  # Bedrock batch inference job files (stacks/batch_inference.py)
OUT_BATCH_ROLE_ARN = "BatchRoleArn"  # the service role Bedrock assumes to read and write them
OUT_PIPELINE_CONFIG = "PipelineConfig"  # the validated config JSON, so the CLI embeds queries like the sink

# --- Checkpoint/lease table (DynamoDB) key schema ---
CHECKPOINT_PK = "stream"  # stream ARN
CHECKPOINT_SK = "shard"  # shard id

# --- Sink DLQ message body (JSON); `freshvec redrive` re-sends payload_b64 to Kinesis with partition_key ---
DLQ_FIELDS = (
    "payload_b64",  # the Kinesis record data exactly as received, base64
    "partition_key",
    "error_class",  # PoisonRecordError subclass name or the exception class
    "error_message",
    "kinesis_shard_id",
    "kinesis_sequence_number",
    "event_source_arn",
    "failed_at",  # ISO 8601 UTC
)

# --- Metrics (EMF through Powertools; namespace METRICS_NAMESPACE, dimension service=<SERVICE_*>) ---
SERVICE_FORWARDER = "forwarder"
SERVICE_SINK = "sink"
SERVICE_INDEX_SETTINGS = "index-settings"
M_CHANGES_FORWARDED = "ChangesForwarded"
M_FORWARDER_LAG_MS = "ForwarderLagMs"  # now minus the newest forwarded change time
M_SLOT_LAG_BYTES = "SlotLagBytes"  # PostgreSQL: WAL bytes the replication slot holds back (current LSN - restart LSN)
M_SHARDS_OWNED = "ShardsOwned"
M_THROTTLES = "Throttles"
M_TRIMMED_DATA_EVENTS = "TrimmedDataEvents"
M_CREATED_AT_REGRESSIONS = "CreatedAtRegressions"  # Keyspaces records older than the previous one of their row
M_CHANGES_RECEIVED = "ChangesReceived"
M_EMBEDDINGS_COMPUTED = "EmbeddingsComputed"
M_EMBEDDINGS_SKIPPED = "EmbeddingsSkipped"  # text unchanged: vector reused, no Bedrock call
M_CHUNKS_EMBEDDED = "ChunksEmbedded"  # chunk vectors that came from the model
M_CHUNKS_REUSED = "ChunksReused"  # chunk vectors reused from the index (same fingerprint, any position of the row)
M_CHUNKS_COPIED = "ChunksCopied"  # chunk vectors copied from another index generation or a batch job, not embedded
M_CHUNKS_DELETED = "ChunksDeleted"  # surplus chunks removed because a row's text shrank
M_STALE_CHANGES_SKIPPED = "StaleChangesSkipped"  # older than what the index (or a tombstone) holds
M_TOMBSTONES_WRITTEN = "TombstonesWritten"
M_RESYNCS_PARKED = "ResyncsParked"  # ambiguous Keyspaces re-syncs parked in the DLQ for `freshvec redrive send`
M_TEXTS_TRUNCATED = "TextsTruncated"
M_SEARCHABLE_TEXT_CUT = "SearchableTextCut"  # passages stored as a prefix: over the metadata limits (docs/sink.md)
M_VECTORS_PUT = "VectorsPut"
M_VECTORS_DELETED = "VectorsDeleted"
M_DLQ_RECORDS = "DlqRecords"
M_FRESHNESS_MS = "FreshnessMs"  # now minus change time, per applied change
M_BATCH_DURATION_MS = "BatchDurationMs"

# --- Index generations (freshvec.generations, docs/migrations.md) ---
# Optional change-event fields of a re-sync: the generations it is for (absent: every live one), and vectors a
# Bedrock batch job computed for its chunks ({fingerprint: base64 little-endian float32}).
EVENT_GENERATIONS = "generations"
EVENT_VECTORS = "vectors"
# A change event too large for one Kinesis record goes as the row's marker: key, op and version, no row image,
# and this field with the reason; the sink parks it and removes the row's older vectors (docs/change-event.md).
EVENT_UNSENDABLE = "unsendable"
GENERATION_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,15}$"
DEFAULT_GENERATION = "g1"
# Readers re-read the index pointer this often: a cutover or rollback reaches every reader within it.
POINTER_CACHE_TTL_S = 10.0
OUT_INDEX_POINTER_PARAMETER = "IndexPointerParameter"  # the SSM parameter naming the active generation
OUT_READER_POLICY_ARN = "ReaderPolicyArn"  # the managed policy an application attaches to query the pipeline
ENV_INDEX_POINTER_PARAMETER = "FRESHVEC_INDEX_POINTER_PARAMETER"
# S3 Vectors per-index write limit (vectors a second; docs s3-vectors-limitations): a migration's ceiling.
S3V_INDEX_VECTORS_PER_S = 2500
