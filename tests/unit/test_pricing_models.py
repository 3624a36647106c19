"""Every Bedrock model freshvec can configure has a dated price; profiles cost what their model costs."""

from __future__ import annotations

import pytest

from freshvec import constants as c
from freshvec import pricing


@pytest.mark.parametrize(
    ("provider", "model"), [(p, m) for p in ("titan", "cohere", "nova") for m in c.PROVIDER_MODELS[p]]
)
def test_every_configurable_bedrock_model_is_priced(provider: str, model: str) -> None:
    assert pricing.priced(model)
    assert pricing.ondemand_usd_per_1k_tokens(model) > 0
    assert pricing.batch_usd_per_1k_tokens(model) == pytest.approx(pricing.ondemand_usd_per_1k_tokens(model) / 2)


def test_an_inference_profile_costs_what_its_model_costs_and_local_is_free() -> None:
    assert pricing.ondemand_usd_per_1k_tokens("global.cohere.embed-v4:0") == pricing.ondemand_usd_per_1k_tokens(
        c.COHERE_V4
    )
    assert not pricing.priced(c.LOCAL_WORDLLAMA) and pricing.ondemand_usd_per_1k_tokens(c.LOCAL_WORDLLAMA) == 0.0
