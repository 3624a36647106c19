"""The one price table the benchmarks turn counts into dollars with: us-east-1, list prices as of 2026-12-01.

Sources (on-demand list prices, no free tier, no savings plans):

- Bedrock: https://aws.amazon.com/bedrock/pricing/ (Titan Text Embeddings V2 $0.00002 per 1K input tokens,
  Cohere Embed v3 $0.0001 per 1K input tokens)
- Lambda: https://aws.amazon.com/lambda/pricing/ (arm64: $0.0000133334 per GB-second, $0.20 per 1M requests)
- Kinesis Data Streams: https://aws.amazon.com/kinesis/data-streams/pricing/ (on-demand: $0.04 per
  stream-hour, $0.08 per GB in, $0.04 per GB out; every record is rounded up to the next 1 KB)
- S3 Vectors: https://aws.amazon.com/s3/pricing/ ($0.20 per GB of logical data PUT, $0.06 per GB-month
  stored, $0.0025 per 1K queries, $0.055 per 1K GET/LIST/other requests)
- DynamoDB: https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625 per 1M write, $0.125 per 1M read
  request units)
- SQS: https://aws.amazon.com/sqs/pricing/ ($0.40 per 1M requests)
- Amazon Keyspaces CDC stream reads: not in the published price list on that date, so it is an input
  (``KEYSPACES_STREAM_READ_USD_PER_1M``, 0 by default): figures computed with the default leave it out.

Storage (GB-month) and the stream-hour charge do not scale with the number of changes; the per-change cost
below leaves them out and ``docs/scaling.md`` adds them per month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from freshvec.pricing import BATCH_DISCOUNT, BEDROCK_USD_PER_1K_TOKENS, PRICES_DATE, REGION

__all__ = ["BATCH_DISCOUNT", "BEDROCK_USD_PER_1K_TOKENS", "PRICES_DATE", "REGION", "Usage", "kinesis_billed_bytes"]

GB = 1024**3
LAMBDA_ARM_USD_PER_GB_S = 0.0000133334
LAMBDA_USD_PER_1M_REQUESTS = 0.20
KINESIS_ON_DEMAND_USD_PER_STREAM_HOUR = 0.04
KINESIS_ON_DEMAND_USD_PER_GB_IN = 0.08
KINESIS_ON_DEMAND_USD_PER_GB_OUT = 0.04
KINESIS_RECORD_ROUNDING_BYTES = 1024
S3V_USD_PER_GB_PUT = 0.20
S3V_USD_PER_GB_MONTH = 0.06
S3V_USD_PER_1K_QUERIES = 0.0025
S3V_USD_PER_1K_OTHER_REQUESTS = 0.055  # GET, LIST and every other request (PutVectors, DeleteVectors, ...)
DYNAMODB_USD_PER_1M_WRITES = 0.625
DYNAMODB_USD_PER_1M_READS = 0.125
SQS_USD_PER_1M_REQUESTS = 0.40
KEYSPACES_STREAM_READ_USD_PER_1M = 0.0  # not published: an input, see the module docstring


def kinesis_billed_bytes(record_bytes: int) -> int:
    """On-demand Kinesis bills each record rounded up to the next 1 KB."""
    return max(1, math.ceil(record_bytes / KINESIS_RECORD_ROUNDING_BYTES)) * KINESIS_RECORD_ROUNDING_BYTES


@dataclass
class Usage:
    """What one run consumed, counted by the benchmark (not estimated)."""

    model_id: str = "amazon.titan-embed-text-v2:0"
    bedrock_input_tokens: int = 0
    lambda_gb_s: float = 0.0  # measured duration x configured memory, every function
    lambda_requests: int = 0
    kinesis_billed_bytes_in: int = 0  # each record rounded up to 1 KB
    kinesis_billed_bytes_out: int = 0  # once per consumer read
    s3v_logical_bytes_put: int = 0  # vector data plus key plus metadata of every vector written
    s3v_other_requests: int = 0  # PutVectors, DeleteVectors, GetVectors, ListVectors, ...
    s3v_queries: int = 0
    dynamodb_writes: int = 0  # write request units
    dynamodb_reads: int = 0  # read request units
    sqs_requests: int = 0
    keyspaces_stream_reads: int = 0
    keyspaces_stream_read_usd_per_1m: float = field(default=KEYSPACES_STREAM_READ_USD_PER_1M)

    def cost_usd(self) -> dict[str, float]:
        """Dollars per service, and the total under ``total``."""
        parts = {
            "bedrock": self.bedrock_input_tokens / 1000 * BEDROCK_USD_PER_1K_TOKENS[self.model_id],
            "lambda": self.lambda_gb_s * LAMBDA_ARM_USD_PER_GB_S
            + self.lambda_requests / 1e6 * LAMBDA_USD_PER_1M_REQUESTS,
            "kinesis": self.kinesis_billed_bytes_in / GB * KINESIS_ON_DEMAND_USD_PER_GB_IN
            + self.kinesis_billed_bytes_out / GB * KINESIS_ON_DEMAND_USD_PER_GB_OUT,
            "s3vectors": self.s3v_logical_bytes_put / GB * S3V_USD_PER_GB_PUT
            + self.s3v_other_requests / 1000 * S3V_USD_PER_1K_OTHER_REQUESTS
            + self.s3v_queries / 1000 * S3V_USD_PER_1K_QUERIES,
            "dynamodb": self.dynamodb_writes / 1e6 * DYNAMODB_USD_PER_1M_WRITES
            + self.dynamodb_reads / 1e6 * DYNAMODB_USD_PER_1M_READS,
            "sqs": self.sqs_requests / 1e6 * SQS_USD_PER_1M_REQUESTS,
            "keyspaces_streams": self.keyspaces_stream_reads / 1e6 * self.keyspaces_stream_read_usd_per_1m,
        }
        parts["total"] = sum(parts.values())
        return parts

    def per_1000_changes(self, changes: int) -> dict[str, float]:
        return {name: value * 1000 / changes for name, value in self.cost_usd().items()}
