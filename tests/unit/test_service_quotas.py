"""The account's Bedrock quotas read from Service Quotas (answers checked against the botocore model)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from freshvec import constants as c
from freshvec.adapters.service_quotas import OnDemandRate, bedrock_quota_values, on_demand_rate
from freshvec.testing.botocore_shapes import assert_matches_output_shape

QUOTAS = {
    "On-demand model inference requests per minute for Amazon Titan Text Embeddings V2": 6000.0,
    "On-demand model inference tokens per minute for Amazon Titan Text Embeddings V2": 300000.0,
    "Cross-region model inference tokens per minute for Cohere Embed V4": 1000000.0,
    "Global cross-region model inference tokens per minute for Cohere Embed V4": 2000000.0,
    "Minimum number of records per batch inference job for Titan Text Embeddings V2": 100.0,
}


class PagedQuotas:
    def __init__(self, quotas: dict[str, float], page: int = 2) -> None:
        self.quotas, self.page, self.calls = quotas, page, 0

    def list_service_quotas(self, **params: Any) -> dict[str, Any]:
        self.calls += 1
        names = sorted(self.quotas)
        start = int(params.get("NextToken") or 0)
        answer: dict[str, Any] = {
            "Quotas": [
                {"ServiceCode": "bedrock", "QuotaName": n, "Value": self.quotas[n]}
                for n in names[start : start + self.page]
            ]
        }
        if start + self.page < len(names):
            answer["NextToken"] = str(start + self.page)
        assert_matches_output_shape("service-quotas", "ListServiceQuotas", answer)
        return answer


def direct(call: Any, _what: str) -> Any:
    return call()


def test_every_page_is_read_and_names_match_whatever_their_case() -> None:
    client = PagedQuotas(QUOTAS)
    values = bedrock_quota_values(client, direct)
    assert values is not None and client.calls == 3 and len(values) == len(QUOTAS)
    titan = on_demand_rate(values, c.TITAN_V2)
    assert isinstance(titan, OnDemandRate)
    assert (titan.requests_per_minute, titan.tokens_per_minute) == (6000.0, 300000.0)
    assert titan.quota_names[0].startswith("On-demand model inference requests")


def test_inference_profiles_read_the_cross_region_or_global_quota() -> None:
    values = bedrock_quota_values(PagedQuotas(QUOTAS), direct) or {}
    us = on_demand_rate(values, "us.cohere.embed-v4:0")
    world = on_demand_rate(values, "global.cohere.embed-v4:0")
    assert us is not None and (us.requests_per_minute, us.tokens_per_minute) == (None, 1_000_000.0)
    assert world is not None and world.tokens_per_minute == 2_000_000.0
    assert on_demand_rate(values, c.COHERE_V4) is None  # no in-Region quota listed: the caller's default stands


def test_unreadable_quotas_are_none_not_an_error() -> None:
    class Denied:
        def list_service_quotas(self, **_: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListServiceQuotas")

    assert bedrock_quota_values(Denied(), direct) is None
