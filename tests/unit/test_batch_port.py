"""The batch inference port's contract values agree with the botocore ``bedrock`` model they mirror."""

from __future__ import annotations

import re

from freshvec import constants as c
from freshvec.ports import BatchJob, BatchLimits, BatchTooSmallError
from freshvec.testing.botocore_shapes import service_model


def _job_status_enum() -> list[str]:
    shape = service_model("bedrock").operation_model("GetModelInvocationJob").output_shape
    return list(shape.members["status"].enum)


def test_job_states_are_the_models_states() -> None:
    assert sorted(c.BATCH_JOB_STATES) == sorted(_job_status_enum())
    assert set(c.BATCH_TERMINAL_STATES) < set(c.BATCH_JOB_STATES)
    assert set(c.BATCH_RESULT_STATES) < set(c.BATCH_TERMINAL_STATES)


def test_done_and_results_follow_the_state() -> None:
    running = [s for s in c.BATCH_JOB_STATES if s not in c.BATCH_TERMINAL_STATES]
    assert running == ["Submitted", "Validating", "Scheduled", "InProgress", "Stopping"]
    for state in c.BATCH_JOB_STATES:
        job = BatchJob(job_id="arn", name="n-1", status=state, record_count=1)
        assert job.done == (state in ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"))
        assert job.has_results == (state in ("Completed", "PartiallyCompleted"))


def test_longest_submission_name_leaves_room_for_a_part_number_within_the_job_name_pattern() -> None:
    job_name = service_model("bedrock").operation_model("CreateModelInvocationJob").input_shape.members["jobName"]
    longest = "a" * 56
    assert re.match(c.BATCH_SUBMISSION_NAME_RE, longest)
    assert not re.match(c.BATCH_SUBMISSION_NAME_RE, longest + "a")
    name = f"{longest}-999999"
    assert len(name) <= job_name.metadata["max"]
    assert re.fullmatch(job_name.metadata["pattern"], name)


def test_too_small_says_what_to_do() -> None:
    error = BatchTooSmallError(3, BatchLimits(min_records=100, max_records=50_000, source="documented defaults"))
    assert "3 record(s)" in str(error) and "100" in str(error) and "on demand" in str(error)


def test_inference_profiles_resolve_to_their_foundation_model() -> None:
    assert c.foundation_model_id("global.cohere.embed-v4:0") == c.COHERE_V4
    assert c.foundation_model_id("us.cohere.embed-v4:0") == c.COHERE_V4
    for model in (c.TITAN_V2, c.COHERE_V4, c.NOVA_MME, c.COHERE_EN_V3):
        assert c.foundation_model_id(model) == model


def test_each_model_cuts_texts_at_its_own_limit() -> None:
    assert c.input_char_limit("cohere", c.COHERE_EN_V3) == 2_048
    assert c.input_char_limit("cohere", "eu.cohere.embed-v4:0") == c.COHERE_V4_MAX_INPUT_CHARS
    assert c.input_char_limit("nova", c.NOVA_MME) == c.NOVA_MAX_INPUT_CHARS
    assert c.input_char_limit("titan", c.TITAN_V2) == c.TITAN_MAX_INPUT_CHARS


def test_every_bedrock_model_has_a_batch_quota_name_and_cohere_needs_a_subscription() -> None:
    for provider in ("titan", "cohere", "nova"):
        for model in c.PROVIDER_MODELS[provider]:
            assert c.foundation_model_id(model) in c.BATCH_QUOTA_MODEL_NAMES
    assert set(c.PROVIDER_MODELS["cohere"]) == c.MARKETPLACE_MODELS
    assert c.NOVA_MME not in c.MARKETPLACE_MODELS and c.TITAN_V2 not in c.MARKETPLACE_MODELS
