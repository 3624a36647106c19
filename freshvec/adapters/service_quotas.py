"""The account's Amazon Bedrock quotas from Service Quotas: records per batch job and the on-demand rate.

Service Quotas names each Bedrock quota after the model ("Minimum number of records per batch inference job for
Titan Text Embeddings V2", "On-demand model inference requests per minute for Amazon Titan Text Embeddings V2",
"Cross-region model inference tokens per minute for Cohere Embed V4", ...); ``ListServiceQuotas`` with
ServiceCode ``bedrock`` returns them all with the account's applied values
(https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_ListServiceQuotas.html). A caller that
cannot read them (no permission, no endpoint) gets None and falls back to the documented defaults, saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from freshvec import constants as c
from freshvec.errors import error_code

logger = logging.getLogger(__name__)

QuotaValues = dict[str, float]  # quota name, lowercased -> the account's value


def bedrock_quota_values(quotas_client: Any, call: Callable[[Callable[[], Any], str], Any]) -> QuotaValues | None:
    """Every Bedrock quota of the account (paged), or None when Service Quotas cannot be read."""
    values: QuotaValues = {}
    token: str | None = None
    try:
        while True:
            params: dict[str, Any] = {"ServiceCode": "bedrock", "MaxResults": 100}
            if token:
                params["NextToken"] = token
            page = call(lambda params=params: quotas_client.list_service_quotas(**params), "ListServiceQuotas")
            for quota in page.get("Quotas", []):
                if "QuotaName" in quota and "Value" in quota:
                    values[str(quota["QuotaName"]).lower()] = float(quota["Value"])
            token = page.get("NextToken")
            if not token:
                return values
    except Exception as exc:  # noqa: BLE001 - no permission or no Service Quotas: the caller's defaults stand
        logger.info("Service Quotas not readable (%s); using documented defaults", error_code(exc) or exc)
        return None


def quota(values: QuotaValues, name: str) -> float | None:
    return values.get(name.lower())


@dataclass(frozen=True)
class OnDemandRate:
    """How fast the account may call a model on demand: requests and/or tokens per minute (None: no such quota)."""

    requests_per_minute: float | None
    tokens_per_minute: float | None
    quota_names: tuple[str, ...]  # the quotas the figures came from


def on_demand_rate(values: QuotaValues, model_id: str) -> OnDemandRate | None:
    """The on-demand rate quotas that apply to ``model_id``: in-Region for a foundation model, cross-Region or
    global for an inference profile (``us.``/``eu.`` or ``global.``). None when the account lists none."""
    base = c.foundation_model_id(model_id)
    label = c.ON_DEMAND_QUOTA_MODEL_NAMES.get(base)
    if label is None:
        return None
    if base == model_id:
        scope = "On-demand model inference"
    elif model_id.startswith("global."):
        scope = "Global cross-region model inference"
    else:
        scope = "Cross-region model inference"
    requests_name = f"{scope} requests per minute for {label}"
    tokens_name = f"{scope} tokens per minute for {label}"
    requests, tokens = quota(values, requests_name), quota(values, tokens_name)
    if requests is None and tokens is None:
        return None
    names = tuple(name for name, value in ((requests_name, requests), (tokens_name, tokens)) if value is not None)
    return OnDemandRate(requests, tokens, names)
