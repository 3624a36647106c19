"""Amazon Bedrock embedding prices, dated: what ``freshvec migrate plan`` and the benchmarks turn tokens into dollars
with (us-east-1 list prices as of ``PRICES_DATE``; https://aws.amazon.com/bedrock/pricing/).

Batch inference is billed at 50% of the on-demand price for the models that support it ("Batch inference",
same page). The on-demand quota is an account's own (Service Quotas, "On-demand InvokeModel requests per minute"
for the model); ``DEFAULT_REQUESTS_PER_MINUTE`` is the documented default a new account starts with and the plan
says when it used it.
"""

from __future__ import annotations

from freshvec import constants as c

PRICES_DATE = "2026-12-01"
REGION = "us-east-1"
BEDROCK_USD_PER_1K_TOKENS = {
    "amazon.titan-embed-text-v2:0": 0.00002,
    "cohere.embed-english-v3": 0.0001,
    "cohere.embed-multilingual-v3": 0.0001,
    # Text input. Not yet confirmed against the pricing page on PRICES_DATE: check before relying on a plan.
    "cohere.embed-v4:0": 0.00012,
    "amazon.nova-2-multimodal-embeddings-v1:0": 0.000135,
}
BATCH_DISCOUNT = 0.5  # batch inference: half the on-demand price
DEFAULT_REQUESTS_PER_MINUTE = {  # Service Quotas defaults for on-demand InvokeModel
    "amazon.titan-embed-text-v2:0": 6_000,
    "cohere.embed-english-v3": 2_000,
    "cohere.embed-multilingual-v3": 2_000,
}


def _priced_id(model_id: str) -> str:
    """A cross-Region inference profile is priced as its foundation model."""
    return c.foundation_model_id(model_id)


def priced(model_id: str) -> bool:
    """The table has this model's price (directly or through its inference profile)."""
    return _priced_id(model_id) in BEDROCK_USD_PER_1K_TOKENS


def ondemand_usd_per_1k_tokens(model_id: str) -> float:
    """The on-demand price of a model in the table; 0 for the local model (WordLlama) and for a model the table
    does not price yet (``migrate plan`` says so)."""
    return BEDROCK_USD_PER_1K_TOKENS.get(_priced_id(model_id), 0.0)


def batch_usd_per_1k_tokens(model_id: str) -> float:
    return ondemand_usd_per_1k_tokens(model_id) * BATCH_DISCOUNT
