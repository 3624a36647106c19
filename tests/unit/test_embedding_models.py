"""Cohere Embed v4 and Nova Multimodal Embeddings against the Bedrock fake, and WordLlama's smaller dimensions.

The fake answers each model's documented request schema strictly (tests below send it malformed bodies), so
an embedder that sent a body the model would refuse fails here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from freshvec import constants as c
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.bedrock_models import CohereV4Body, NovaBody, model_body
from freshvec.config import EmbeddingConfig
from freshvec.errors import MisconfigurationError, PoisonRecordError
from freshvec.local.embedder import LocalEmbedder
from freshvec.retry import RetryPolicy
from freshvec.testing.botocore_shapes import assert_is_modeled_error, assert_matches_output_shape
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime, fake_vector, purposed_vector, request_texts


def _bedrock(fake: FakeBedrockRuntime, provider: str, model_id: str, dimensions: int) -> Any:
    """The embedder the sink would make for this model (no pacing, no retry waits)."""
    config = EmbeddingConfig(provider=provider, model_id=model_id, dimensions=dimensions, adaptive_rate=False)
    return make_embedder(config, fake, retry=no_wait())


def no_wait() -> RetryPolicy:
    return RetryPolicy(attempts=2, sleep=lambda _s: None)


def invoke(fake: FakeBedrockRuntime, model_id: str, body: dict) -> dict:
    response = fake.invoke_model(modelId=model_id, body=json.dumps(body), contentType="application/json")
    assert_matches_output_shape("bedrock-runtime", "InvokeModel", response)
    return json.loads(response["body"].read())


def refusal(fake: FakeBedrockRuntime, model_id: str, body: dict) -> str:
    with pytest.raises(ClientError) as caught:
        fake.invoke_model(modelId=model_id, body=json.dumps(body))
    response = assert_is_modeled_error("bedrock-runtime", "InvokeModel", caught.value)
    assert response["Error"]["Code"] == "ValidationException"
    return response["Error"]["Message"]


# ---- Cohere Embed v4 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model_id", [c.COHERE_V4, *c.COHERE_V4_PROFILES])
def test_cohere_v4_sends_its_documented_body_at_the_configured_dimension(model_id: str) -> None:
    fake = FakeBedrockRuntime()
    texts = [f"doc {i}" for i in range(100)]
    vectors = _bedrock(fake, "cohere", model_id, 512).embed_documents(texts)
    assert sorted(len(call["body"]["texts"]) for call in fake.calls) == [4, 96]
    assert {call["modelId"] for call in fake.calls} == {model_id}
    body = fake.calls[0]["body"]
    assert {k: v for k, v in body.items() if k != "texts"} == {
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 512,
        "truncate": "RIGHT",
    }
    assert vectors[42] == pytest.approx(purposed_vector("search_document", "doc 42", 512))


def test_cohere_v4_queries_are_search_query_and_differ_from_the_document_vector() -> None:
    fake = FakeBedrockRuntime()
    embedder = _bedrock(fake, "cohere", c.COHERE_V4, 256)
    query = embedder.embed_query("sharks")
    assert fake.calls[-1]["body"]["input_type"] == "search_query"
    assert query == pytest.approx(purposed_vector("search_query", "sharks", 256))
    assert query != pytest.approx(embedder.embed_documents(["sharks"])[0])


def test_cohere_v4_texts_are_cut_to_its_own_limit_not_v3s() -> None:
    fake = FakeBedrockRuntime()
    embedder = _bedrock(fake, "cohere", c.COHERE_V4, 256)
    embedder.embed_documents(["x" * 60_000])
    assert len(fake.calls[0]["body"]["texts"][0]) == c.COHERE_V4_MAX_INPUT_CHARS == embedder.max_input_chars


def test_cohere_v4_fake_answers_floats_or_by_type_as_documented() -> None:
    fake = FakeBedrockRuntime()
    plain = invoke(fake, c.COHERE_V4, {"texts": ["a"], "input_type": "search_document"})
    assert plain["response_type"] == "embeddings_floats" and len(plain["embeddings"][0]) == 1536  # default
    typed = invoke(
        fake,
        c.COHERE_V4,
        {
            "texts": ["a", "b"],
            "input_type": "clustering",
            "embedding_types": ["float", "int8"],
            "output_dimension": 256,
        },
    )
    assert typed["response_type"] == "embeddings_by_type"
    assert set(typed["embeddings"]) == {"float", "int8"}
    assert [len(v) for v in typed["embeddings"]["int8"]] == [256, 256]
    # The parser reads both forms.
    body = CohereV4Body(c.COHERE_V4, 1536)
    assert body.parse(plain, 1).vectors[0] == pytest.approx(plain["embeddings"][0])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"texts": ["a"]}, "input_type"),
        ({"texts": ["a"], "input_type": "search_document", "output_dimension": 384}, "output_dimension"),
        ({"texts": ["a"], "input_type": "search_document", "truncate": "END"}, "truncate"),
        ({"texts": ["a"], "input_type": "search_document", "dimensions": 256}, "extraneous key [dimensions]"),
        ({"texts": ["a"] * 97, "input_type": "search_document"}, "1 to 96"),
        ({"texts": ["a"], "input_type": "search_document", "embedding_types": ["double"]}, "embedding_types"),
        ({"texts": ["word " * 200_000], "input_type": "search_document", "truncate": "NONE"}, "tokens"),
    ],
)
def test_the_fake_refuses_what_cohere_v4_refuses(body: dict, words: str) -> None:
    assert words in refusal(FakeBedrockRuntime(), c.COHERE_V4, body)


def test_a_v3_body_sent_to_v4_is_refused_for_its_truncate_value() -> None:
    assert "truncate" in refusal(
        FakeBedrockRuntime(), c.COHERE_V4, {"texts": ["a"], "input_type": "search_document", "truncate": "END"}
    )


# ---- Nova Multimodal Embeddings ------------------------------------------------------------------------
def test_nova_sends_single_embedding_generic_index_for_documents() -> None:
    fake = FakeBedrockRuntime()
    vectors = _bedrock(fake, "nova", c.NOVA_MME, 384).embed_documents(["a quiet town", "a shark"])
    bodies = sorted((call["body"] for call in fake.calls), key=lambda b: b["singleEmbeddingParams"]["text"]["value"])
    assert bodies[0] == {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 384,
            "text": {"truncationMode": "END", "value": "a quiet town"},
        },
    }
    assert vectors[1] == pytest.approx(purposed_vector("GENERIC_INDEX", "a shark", 384))


def test_nova_queries_use_the_text_retrieval_purpose() -> None:
    fake = FakeBedrockRuntime()
    vector = _bedrock(fake, "nova", c.NOVA_MME, 256).embed_query("sharks")
    assert fake.calls[0]["body"]["singleEmbeddingParams"]["embeddingPurpose"] == "TEXT_RETRIEVAL"
    assert vector == pytest.approx(purposed_vector("TEXT_RETRIEVAL", "sharks", 256))


def test_nova_reports_a_text_the_model_cut_as_truncated() -> None:
    fake = FakeBedrockRuntime()
    short, long = _bedrock(fake, "nova", c.NOVA_MME, 256).try_embed_documents(["short", "word " * 9_000])
    assert not short.truncated and long.truncated and long.vector is not None


def test_nova_refusal_is_poison_for_its_row_and_a_wrong_dimension_is_misconfiguration() -> None:
    fake = FakeBedrockRuntime()
    fake.fail("ValidationException", times=-1, when=lambda b: b["singleEmbeddingParams"]["text"]["value"] == "bad")
    good, bad = _bedrock(fake, "nova", c.NOVA_MME, 256).try_embed_documents(["good", "bad"])
    assert good.vector is not None and isinstance(bad.error, PoisonRecordError)
    with pytest.raises(MisconfigurationError, match="1024 dimensions; the index expects 256"):
        NovaBody(c.NOVA_MME, 256).parse({"embeddings": [{"embeddingType": "TEXT", "embedding": [0.0] * 1024}]}, 1)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"embeddingDimension": 256, "text": {"truncationMode": "END", "value": "a"}}, "embeddingPurpose"),
        (
            {
                "embeddingPurpose": "GENERIC_INDEX",
                "embeddingDimension": 512,
                "text": {"truncationMode": "END", "value": "a"},
            },
            "embeddingDimension",
        ),
        ({"embeddingPurpose": "GENERIC_INDEX", "text": {"value": "a"}}, "truncationMode"),
        (
            {"embeddingPurpose": "GENERIC_INDEX", "text": {"truncationMode": "END", "value": "a" * 50_001}},
            "maxLength: 50000",
        ),
        ({"embeddingPurpose": "GENERIC_INDEX", "text": {"truncationMode": "NONE", "value": "word " * 9_000}}, "tokens"),
        (
            {"embeddingPurpose": "GENERIC_INDEX", "text": {"truncationMode": "END", "value": "a", "x": 1}},
            "extraneous key [x]",
        ),
        ({"embeddingPurpose": "GENERIC_INDEX"}, "exactly one of text"),
    ],
)
def test_the_fake_refuses_what_nova_refuses(params: dict, words: str) -> None:
    body = {"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": params}
    assert words in refusal(FakeBedrockRuntime(), c.NOVA_MME, body)


def test_nova_task_type_and_schema_version_are_checked() -> None:
    params = {"embeddingPurpose": "GENERIC_INDEX", "text": {"truncationMode": "END", "value": "a"}}
    fake = FakeBedrockRuntime()
    assert "taskType" in refusal(fake, c.NOVA_MME, {"taskType": "SEGMENTED_EMBEDDING", "singleEmbeddingParams": params})
    assert "schemaVersion" in refusal(
        fake, c.NOVA_MME, {"schemaVersion": "v2", "taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": params}
    )
    answer = invoke(fake, c.NOVA_MME, {"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": params})
    assert len(answer["embeddings"][0]["embedding"]) == 3072  # the documented default


# ---- one body per configured model --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "model_id"), [(p, m) for p in ("titan", "cohere", "nova") for m in c.PROVIDER_MODELS[p]]
)
def test_every_configurable_bedrock_model_round_trips_through_the_fake(provider: str, model_id: str) -> None:
    for dimensions in c.PROVIDER_MODELS[provider][model_id]:
        fake = FakeBedrockRuntime()
        embedder = make_embedder(EmbeddingConfig(provider=provider, model_id=model_id, dimensions=dimensions), fake)
        [result] = embedder.try_embed_documents(["a row's text"])
        assert result.error is None and len(result.vector or []) == dimensions
        assert len(embedder.embed_query("a query")) == dimensions
        # The body batch inference writes as modelInput gives the on-demand embedder's vector.
        body = model_body(provider, model_id, dimensions)
        batch_vector = body.parse(invoke(fake, model_id, body.request(["a row's text"], "document")), 1).vectors[0]
        assert batch_vector == pytest.approx(result.vector)


def test_an_unknown_model_has_no_body() -> None:
    with pytest.raises(MisconfigurationError, match="not one freshvec can call"):
        model_body("cohere", "cohere.embed-v9:0", 256)


# ---- WordLlama's matryoshka prefixes -------------------------------------------------------------------
def test_local_dimensions_are_the_renormalized_prefix_of_the_256_dimension_vector() -> None:
    texts = ["dinosaurs in a park", "a theme park with dinosaurs", "a fish story"]
    full = np.asarray(LocalEmbedder(256).embed_documents(texts))
    for dimensions in (128, 64):
        small = np.asarray(LocalEmbedder(dimensions).embed_documents(texts))
        prefix = full[:, :dimensions] / np.linalg.norm(full[:, :dimensions], axis=1, keepdims=True)
        assert small.shape == (3, dimensions) and np.allclose(small, prefix, atol=1e-6)
        assert all(math.isclose(float(np.linalg.norm(v)), 1.0, rel_tol=1e-5) for v in small)
        assert small[0] @ small[1] > small[0] @ small[2]  # still ranks the related text first


def test_local_embedder_refuses_dimensions_it_does_not_offer() -> None:
    with pytest.raises(ValueError, match="allowed: 256, 128, 64"):
        LocalEmbedder(100)


def test_titan_vectors_are_unchanged_by_the_shared_bodies() -> None:
    fake = FakeBedrockRuntime()
    [vector] = make_embedder(EmbeddingConfig(dimensions=256), fake).embed_documents(["same as ever"])
    assert vector == pytest.approx(fake_vector("same as ever", 256))


# ---- the one Bedrock embedder, every model -------------------------------------------------------------
_EVERY_MODEL = [("titan", c.TITAN_V2, 256), ("cohere", c.COHERE_EN_V3, 1024), ("cohere", c.COHERE_V4, 256)]
_EVERY_MODEL += [("nova", c.NOVA_MME, 256)]


@pytest.mark.parametrize(("provider", "model_id", "dimensions"), _EVERY_MODEL)
def test_every_model_isolates_a_refused_text_and_keeps_order(provider: str, model_id: str, dimensions: int) -> None:
    fake = FakeBedrockRuntime()
    fake.fail("ValidationException", times=-1, when=lambda body: "refused" in request_texts(body))
    config = EmbeddingConfig(provider=provider, model_id=model_id, dimensions=dimensions, max_concurrency=2)
    embedder = make_embedder(config, fake, retry=no_wait())
    texts = [f"doc {i}" for i in range(5)]
    texts[3] = "refused"
    results = embedder.try_embed_documents(texts)
    assert [r.error is None for r in results] == [True, True, True, False, True]
    assert isinstance(results[3].error, PoisonRecordError)
    fresh = make_embedder(config, FakeBedrockRuntime(), retry=no_wait())
    assert [r.vector for r in results if r.vector] == fresh.embed_documents([t for t in texts if t != "refused"])


@pytest.mark.parametrize(("provider", "model_id", "dimensions"), _EVERY_MODEL)
@pytest.mark.parametrize(
    ("code", "raised"), [("ValidationException", PoisonRecordError), ("AccessDeniedException", MisconfigurationError)]
)
def test_every_model_raises_a_query_failure_classified(
    provider: str, model_id: str, dimensions: int, code: str, raised: type
) -> None:
    fake = FakeBedrockRuntime()
    fake.fail(code, times=-1)
    embedder = make_embedder(EmbeddingConfig(provider=provider, model_id=model_id, dimensions=dimensions), fake)
    with pytest.raises(raised, match=code):
        embedder.embed_query("sharks")
