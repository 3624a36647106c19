"""Names, sizes and thresholds used only by the CDK app (runtime names live in ``freshvec/constants.py``)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk.aws_logs import RetentionDays

# --- Repository layout the Lambda assets are built from ---
REPO_ROOT = Path(__file__).resolve().parent.parent
DOMAIN_PACKAGE = "freshvec"
# Not in the Lambda asset: the operator CLI, local mode (moto, in-memory Keyspaces), the test kit and the sample data.
DOMAIN_EXCLUDED_DIRS = ("cli", "local", "command", "testing", "data")
HANDLER_PACKAGE = "lambdas"
LAMBDA_REQUIREMENTS = REPO_ROOT / "lambdas" / "requirements.txt"
PREINSTALLED_DEPS = REPO_ROOT / ".build" / "lambda-deps" / "python"  # filled by `make setup`
LAYER_PYTHON_DIR = "python"  # Lambda adds /opt/python to sys.path for layers
# Build image named for completeness; local bundling never falls back to Docker (it fails instead).
BUNDLING_IMAGE = "public.ecr.aws/sam/build-python3.13"
PIP_PLATFORM_ARGS = (
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.13",
    "--only-binary=:all:",
)

# --- Lambda functions ---
FORWARDER_HANDLER = "lambdas.forwarder.handler.handler"
SINK_HANDLER = "lambdas.sink.handler.handler"
INDEX_SETTINGS_HANDLER = "lambdas.index_settings.handler.handler"
INDEX_SETTINGS_TIMEOUT_S = 900  # waits up to ~14 minutes for the analyzers to turn ACTIVE, then reports BUILDING
INDEX_SETTINGS_MEMORY_MB = 256
LOG_RETENTION = RetentionDays.ONE_MONTH
LAMBDA_ENV_MAX_BYTES = 4096  # Lambda's limit for all environment variables of one function together
CFN_OUTPUT_MAX_CHARS = 4096  # CloudFormation's limit for one output value

# --- KMS actions a service needs on the caller's behalf (named, never wildcards) ---
KMS_PRODUCER_ACTIONS = ("kms:GenerateDataKey",)  # Kinesis PutRecords, S3 PutObject into a KMS-encrypted target
KMS_SQS_SEND_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
KMS_DYNAMODB_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")
KMS_CONSUMER_ACTIONS = ("kms:Decrypt",)  # Kinesis event source mapping reading an encrypted stream
KMS_READ_ACTIONS = ("kms:Decrypt",)  # SQS ReceiveMessage, S3 GetObject, DynamoDB Query/Scan of encrypted data

# --- Keyspaces ---
KEYSPACES_VIEW_TYPE = "NEW_AND_OLD_IMAGES"
# The config names clustering columns in order but no sort direction; rows sort ascending within a partition.
CLUSTERING_ORDER = "ASC"

# --- On-failure bucket (Kinesis ESM records of batches that exhausted their retries) ---
ON_FAILURE_EXPIRY_DAYS = 30
# Lambda names each on-failure object "aws/lambda/<ESM UUID>/<shard ID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<UUID>"
# (https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html, "Amazon S3 destinations").
# The request-metrics filter counts only those keys, so `freshvec redrive` moving an object to "redriven/..."
# (a PUT of its own) does not fire the FailedBatches alarm.
ON_FAILURE_LAMBDA_PREFIX = "aws/lambda/"
ON_FAILURE_METRICS_FILTER_ID = "LambdaOnFailureDeliveries"

# --- Bedrock batch inference job files: a job runs at most 168 hours (timeoutDurationInHours), and its output
# is applied as soon as it completes; a week more leaves time to inspect a failed one.
BATCH_FILES_EXPIRY_DAYS = 14

# --- Alarms ---
ALARM_PERIOD_MINUTES = 1
ITERATOR_AGE_ALARM_MS = 5 * 60 * 1000  # sink falls five minutes behind the Kinesis stream
FORWARDER_LAG_ALARM_MS = 5 * 60 * 1000  # newest forwarded change older than five minutes
FORWARDER_LAG_EVALUATION_PERIODS = 3
# PostgreSQL: WAL the replication slot holds back; a healthy forwarder keeps it near zero (it advances the slot
# after every read, and past other tables' WAL at the tip).
SLOT_LAG_ALARM_BYTES = 1024 * 2**20
SLOT_LAG_EVALUATION_PERIODS = 5  # the forwarder reports once per scheduled run (each minute)
DASHBOARD_WIDGET_WIDTH = 8
DASHBOARD_WIDGET_HEIGHT = 6
# CDK context: true for a table created by an earlier release, whose client-side timestamps were turned on by
# hand (ALTER TABLE, docs/deploy.md); the property then stays out of the template, since adding it to a
# deployed table's template makes CloudFormation replace the custom-named table, which fails.
CTX_CLIENT_SIDE_TIMESTAMPS_BY_HAND = "freshvec:clientSideTimestampsByHand"
