"""Embedding providers against the Bedrock fake (checked here against the botocore model) and WordLlama."""

from __future__ import annotations

import json
import math
from typing import Any

import botocore.session
import pytest
import requests
from botocore.response import StreamingBody

from freshvec import constants as c
from freshvec.adapters.bedrock import (
    BedrockEmbedder,
    TitanEmbedder,
    make_embedder,
)
from freshvec.config import EmbeddingConfig
from freshvec.errors import MisconfigurationError, PoisonRecordError, TransientError
from freshvec.local.embedder import LocalEmbedder
from freshvec.retry import RetryPolicy
from freshvec.testing.fakes.bedrock import INVOKE_MODEL, INVOKE_MODEL_ERRORS, FakeBedrockRuntime, fake_vector


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def _bedrock(fake: FakeBedrockRuntime, provider: str, model_id: str, dimensions: int) -> Any:
    """The embedder the sink would make for this model (no pacing, no retry waits)."""
    config = EmbeddingConfig(provider=provider, model_id=model_id, dimensions=dimensions, adaptive_rate=False)
    return make_embedder(config, fake, retry=no_wait())


def no_wait(attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=RecordingSleep())


# ---- the fake matches the service model --------------------------------------------------------------
def test_fake_response_has_the_invoke_model_output_shape() -> None:
    response = FakeBedrockRuntime().invoke_model(
        modelId=c.TITAN_V2, body=json.dumps({"inputText": "hello", "dimensions": 256}), contentType="application/json"
    )
    output = INVOKE_MODEL.output_shape
    payload_keys = set(response) - {"ResponseMetadata"}
    assert payload_keys <= set(output.members)
    assert set(output.required_members) <= payload_keys
    assert isinstance(response["body"], StreamingBody)
    assert response["contentType"] == "application/json"
    body = json.loads(response["body"].read())
    assert set(body) == {"embedding", "inputTextTokenCount"}
    assert len(body["embedding"]) == 256


def test_fake_cohere_body_has_the_v3_float_shape() -> None:
    response = FakeBedrockRuntime().invoke_model(
        modelId=c.COHERE_EN_V3, body=json.dumps({"texts": ["a", "b"], "input_type": "search_document"})
    )
    body = json.loads(response["body"].read())
    assert set(body) == {"id", "texts", "embeddings", "response_type"}
    assert body["response_type"] == "embeddings_floats"
    assert [len(v) for v in body["embeddings"]] == [1024, 1024]


def test_fake_errors_carry_the_model_codes_and_statuses() -> None:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    assert INVOKE_MODEL_ERRORS["ThrottlingException"] == 429
    assert INVOKE_MODEL_ERRORS["ModelTimeoutException"] == 408
    assert INVOKE_MODEL_ERRORS["ServiceUnavailableException"] == 503
    assert INVOKE_MODEL_ERRORS["ValidationException"] == 400
    assert INVOKE_MODEL_ERRORS["AccessDeniedException"] == 403
    assert set(INVOKE_MODEL_ERRORS) == {s.name for s in model.operation_model("InvokeModel").error_shapes}
    fake = FakeBedrockRuntime()
    fake.fail("ModelTimeoutException")
    with pytest.raises(Exception) as caught:
        fake.invoke_model(modelId=c.TITAN_V2, body=json.dumps({"inputText": "x"}))
    assert caught.value.response["Error"]["Code"] == "ModelTimeoutException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 408
    with pytest.raises(ValueError, match="not an InvokeModel error"):
        fake.fail("NoSuchThing")


def test_fake_validates_parameters_against_the_model() -> None:
    with pytest.raises(ValueError, match="modelId"):
        FakeBedrockRuntime().invoke_model(body=b"{}")


# ---- Titan ---------------------------------------------------------------------------------------------
def test_titan_sends_one_text_per_call_with_dimensions_and_normalize() -> None:
    fake = FakeBedrockRuntime()
    embedder = TitanEmbedder(fake, dimensions=512, normalize=True, retry=no_wait())
    vectors = embedder.embed_documents(["a", "b", "c"])
    assert [call["body"] for call in sorted(fake.calls, key=lambda call: call["body"]["inputText"])] == [
        {"inputText": t, "dimensions": 512, "normalize": True} for t in ("a", "b", "c")
    ]
    assert vectors[1] == pytest.approx(fake_vector("b", 512))
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
    assert embedder.embed_query("b") == vectors[1]


def test_titan_runs_calls_concurrently_within_the_bound() -> None:
    fake = FakeBedrockRuntime(latency_s=0.05)  # long enough for the three workers to overlap
    TitanEmbedder(fake, max_concurrency=3, retry=no_wait()).embed_documents([f"t{i}" for i in range(12)])
    assert fake.max_in_flight == 3


def test_throttling_is_retried_with_growing_jittered_backoff() -> None:
    fake = FakeBedrockRuntime()
    fake.fail("ThrottlingException", times=3)
    retry = no_wait(attempts=5)
    [result] = TitanEmbedder(fake, retry=retry).try_embed_documents(["x"])
    assert result.vector is not None
    delays = retry.sleep.delays  # type: ignore[attr-defined]
    assert len(delays) == 3
    assert all(0 <= d <= retry.base_delay_s * 2**i for i, d in enumerate(delays))


@pytest.mark.parametrize("code", ["ThrottlingException", "ModelTimeoutException", "ServiceUnavailableException"])
def test_persistent_transient_errors_come_back_per_text(code: str) -> None:
    fake = FakeBedrockRuntime()
    fake.fail(code, times=-1, when=lambda body: body["inputText"] == "bad luck")
    results = TitanEmbedder(fake, retry=no_wait(3)).try_embed_documents(["fine", "bad luck"])
    assert results[0].vector is not None
    assert isinstance(results[1].error, TransientError)
    assert sum(1 for call in fake.calls if call["body"]["inputText"] == "bad luck") == 3


def test_a_refused_text_is_poison_for_its_row_only() -> None:
    fake = FakeBedrockRuntime()
    fake.fail("ValidationException", times=-1, when=lambda body: body["inputText"] == "refused")
    results = TitanEmbedder(fake, retry=no_wait()).try_embed_documents(["fine", "refused"])
    assert results[0].vector is not None
    assert isinstance(results[1].error, PoisonRecordError)
    with pytest.raises(PoisonRecordError):
        TitanEmbedder(fake, retry=no_wait()).embed_documents(["refused"])


def test_a_long_english_text_is_sent_from_a_prefix_that_fits_in_one_call() -> None:
    fake = FakeBedrockRuntime()
    text = "word " * 9_000  # 45,000 characters: under the 50,000-character cut, over 8,192 tokens whole
    [result] = TitanEmbedder(fake, retry=no_wait()).try_embed_documents([text])
    assert result.vector == pytest.approx(fake_vector(text[:32_768], 256))
    assert result.truncated
    assert [call["error"] for call in fake.calls] == [None]


def test_a_long_cjk_text_is_shortened_on_the_token_error_and_never_parked() -> None:
    fake = FakeBedrockRuntime()
    text = "恐竜が公園に戻ってきた。" * 2_000  # 24,000 characters at about one token each
    [result] = TitanEmbedder(fake, retry=no_wait()).try_embed_documents([text])
    assert result.error is None and result.truncated
    sent = [len(call["body"]["inputText"]) for call in fake.calls]
    assert sent == [24_000, 12_000, 6_000]  # halved on each "too many tokens" until it fits 8,192 tokens
    assert result.vector == pytest.approx(fake_vector(text[:6_000], 256))
    assert [call["error"] for call in fake.calls] == ["ValidationException", "ValidationException", None]


def test_shortening_is_bounded_and_only_for_the_token_limit() -> None:
    fake = FakeBedrockRuntime()
    fake.fail("ValidationException", times=-1, message="Too many input tokens")  # refuses every length
    [result] = TitanEmbedder(fake, retry=no_wait()).try_embed_documents(["x" * 40_000])
    assert isinstance(result.error, PoisonRecordError)
    assert len(fake.calls) == 4  # the start and three halvings, then the row is parked with the reason
    other = FakeBedrockRuntime()
    other.fail("ValidationException", times=-1, message="Malformed input request")
    [refused] = TitanEmbedder(other, retry=no_wait()).try_embed_documents(["x" * 40_000])
    assert isinstance(refused.error, PoisonRecordError) and len(other.calls) == 1


@pytest.mark.parametrize("code", ["AccessDeniedException", "ResourceNotFoundException"])
def test_access_and_model_errors_fail_the_whole_batch(code: str) -> None:
    fake = FakeBedrockRuntime()
    fake.fail(code)
    with pytest.raises(MisconfigurationError, match=code):
        TitanEmbedder(fake, retry=no_wait()).try_embed_documents(["a"])


def test_output_dimension_must_match_the_index() -> None:
    with pytest.raises(MisconfigurationError, match="1024 dimensions; the index expects 256"):
        _bedrock(FakeBedrockRuntime(), "cohere", c.COHERE_EN_V3, 256).embed_documents(["a"])


# ---- Cohere --------------------------------------------------------------------------------------------
def test_cohere_sends_up_to_96_texts_per_call_as_documents() -> None:
    fake = FakeBedrockRuntime()
    texts = [f"doc {i}" for i in range(200)]
    vectors = _bedrock(fake, "cohere", c.COHERE_EN_V3, 1024).embed_documents(texts)
    assert sorted(len(call["body"]["texts"]) for call in fake.calls) == [8, 96, 96]
    assert {call["body"]["input_type"] for call in fake.calls} == {"search_document"}
    assert {call["body"]["truncate"] for call in fake.calls} == {"END"}
    assert vectors[150] == pytest.approx(fake_vector("doc 150", 1024))


def test_cohere_queries_use_search_query_and_texts_are_cut_to_2048_characters() -> None:
    fake = FakeBedrockRuntime()
    _bedrock(fake, "cohere", c.COHERE_EN_V3, 1024).embed_query("q" * 3000)
    [call] = fake.calls
    assert call["body"]["input_type"] == "search_query"
    assert len(call["body"]["texts"][0]) == c.COHERE_MAX_INPUT_CHARS


def test_cohere_isolates_a_refused_text_and_keeps_the_rest_of_its_call() -> None:
    fake = FakeBedrockRuntime()
    fake.fail("ValidationException", times=-1, when=lambda body: "refused" in body["texts"])
    results = _bedrock(fake, "cohere", c.COHERE_EN_V3, 1024).try_embed_documents(["a", "refused", "b"])
    assert [r.vector is not None for r in results] == [True, False, True]
    assert isinstance(results[1].error, PoisonRecordError)


# ---- local ---------------------------------------------------------------------------------------------
def test_local_embedder_loads_offline_and_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_a: object, **_kw: object) -> None:
        raise AssertionError("the local embedder must not download anything")

    monkeypatch.setattr(requests, "get", no_network)
    embedder = LocalEmbedder(256)
    assert embedder.model_id == c.LOCAL_WORDLLAMA
    dino, again, fish = embedder.embed_documents(["dinosaurs in a park", "dinosaurs in a park", "a fish story"])
    assert len(dino) == 256 and dino == again
    assert embedder.embed_query("dinosaurs in a park") == pytest.approx(dino)
    related = sum(a * b for a, b in zip(dino, embedder.embed_query("a theme park with dinosaurs"), strict=True))
    unrelated = sum(a * b for a, b in zip(dino, fish, strict=True))
    assert related > unrelated


def test_the_local_provider_is_refused_outside_local_mode() -> None:
    with pytest.raises(MisconfigurationError, match="only in local mode"):
        make_embedder(EmbeddingConfig(provider="local", model_id=c.LOCAL_WORDLLAMA, dimensions=256))


def test_bedrock_providers_need_a_client() -> None:
    with pytest.raises(MisconfigurationError, match="bedrock-runtime client"):
        make_embedder(EmbeddingConfig())


def test_make_embedder_passes_the_config_through() -> None:
    fake = FakeBedrockRuntime()
    titan = make_embedder(EmbeddingConfig(dimensions=1024, max_concurrency=2), fake)
    assert isinstance(titan, TitanEmbedder)
    assert (titan.dimensions, titan.max_concurrency, titan.max_input_chars) == (1024, 2, c.TITAN_MAX_INPUT_CHARS)
    cohere = make_embedder(EmbeddingConfig(provider="cohere", model_id=c.COHERE_MULTI_V3, dimensions=1024), fake)
    assert isinstance(cohere, BedrockEmbedder) and not isinstance(cohere, TitanEmbedder)
    assert cohere.model_id == c.COHERE_MULTI_V3
