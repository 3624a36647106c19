"""The shape checker the fakes rely on catches each kind of mismatch (and accepts what boto3 returns)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from freshvec.testing.botocore_shapes import assert_is_modeled_error, assert_matches_output_shape, output_shape_problems

GOOD_RECORDS = {
    "changeRecords": [
        {
            "eventVersion": "1",
            "createdAt": datetime(2026, 11, 22, tzinfo=UTC),
            "origin": "USER",
            "partitionKeys": {"id": {"intT": "1"}},
            "newImage": {"valueCells": {"b": {"value": {"blobT": b"\x00"}}}, "rowMetadata": {"writeTime": "1"}},
            "sequenceNumber": "1" * 21,
        }
    ],
    "iteratorDescription": {"iteratorPosition": "AT_TIP"},
    "ResponseMetadata": {"HTTPStatusCode": 200},
}


def problems(response) -> str:
    return "\n".join(output_shape_problems("keyspacesstreams", "GetRecords", response))


def with_record(**changes) -> dict:
    record = {**GOOD_RECORDS["changeRecords"][0], **changes}
    return {**GOOD_RECORDS, "changeRecords": [record]}


def test_a_response_as_boto3_returns_it_matches():
    assert_matches_output_shape("keyspacesstreams", "GetRecords", GOOD_RECORDS)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({**GOOD_RECORDS, "nextIterator": "x"}, "'nextIterator' is not a member of GetRecordsOutput"),
        (with_record(partitionKeys={"id": {"intT": "1", "textT": "1"}}), "exactly one member set"),
        (with_record(partitionKeys={"id": {}}), "exactly one member set"),
        (with_record(createdAt="2026-11-22T00:00:00Z"), "expected a timezone-aware datetime"),
        (with_record(createdAt=datetime(2026, 11, 22)), "expected a timezone-aware datetime"),
        (with_record(origin="HUMAN"), "'HUMAN' is not one of OriginType"),
        (with_record(sequenceNumber="12"), "below the SequenceNumber minimum 21"),
        (with_record(partitionKeys={"id": {"intT": 1}}), "expected a str"),
        (with_record(newImage={"valueCells": {"b": {"value": {"blobT": "AA=="}}}}), "expected bytes"),
        (with_record(newImage={"valueCells": {"b": {"value": {"boolT": "true"}}}}), "expected a bool"),
        (with_record(newImage={"valueCells": {"b": {"value": {"listT": {"value": {}}}}}}), "expected a list"),
        (with_record(oldImage=None), "leave it out"),
    ],
)
def test_each_kind_of_mismatch_is_reported_with_its_path(response, expected):
    report = problems(response)
    assert expected in report
    assert report.startswith("GetRecords")


def test_required_members_and_sdk_unknown_members():
    missing = output_shape_problems("keyspacesstreams", "GetStream", {"streamArn": "a" * 40})
    assert any("required member 'streamLabel'" in p for p in missing)
    unknown = with_record(partitionKeys={"id": {"SDK_UNKNOWN_MEMBER": {"name": "vectorT"}}})
    assert "SDK_UNKNOWN_MEMBER" in problems(unknown)
    assert_matches_output_shape("keyspacesstreams", "GetRecords", unknown, allow_unknown_union_members=True)
    with pytest.raises(AssertionError, match="does not match the model"):
        assert_matches_output_shape("keyspacesstreams", "GetRecords", unknown)


def test_streaming_payloads_and_documents_in_other_services():
    body = StreamingBody(io.BytesIO(b"{}"), 2)
    assert_matches_output_shape("bedrock-runtime", "InvokeModel", {"body": body, "contentType": "application/json"})
    assert "streaming body" in "\n".join(
        output_shape_problems("bedrock-runtime", "InvokeModel", {"body": b"{}", "contentType": "application/json"})
    )
    vectors = {"vectors": [{"key": "k", "data": {"float32": [0.5]}, "metadata": {"year": 1993, "tags": ["a"]}}]}
    assert_matches_output_shape("s3vectors", "GetVectors", vectors)


def _error(code: str, status: int, **fields) -> ClientError:
    response = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}, **fields}
    return ClientError(response, "GetRecords")


def test_modeled_errors_are_checked_for_code_status_and_fields():
    assert_is_modeled_error(
        "keyspacesstreams", "GetRecords", _error("ValidationException", 400, errorCode="TrimmedDataAccess")
    )
    assert_is_modeled_error("keyspacesstreams", "GetRecords", _error("InternalServerException", 500))
    with pytest.raises(AssertionError, match="does not raise 'NoSuchKey'"):
        assert_is_modeled_error("keyspacesstreams", "GetRecords", _error("NoSuchKey", 404))
    with pytest.raises(AssertionError, match="must carry HTTP 400"):
        assert_is_modeled_error("keyspacesstreams", "GetRecords", _error("ThrottlingException", 429))
    with pytest.raises(AssertionError, match="ValidationExceptionType"):
        assert_is_modeled_error("keyspacesstreams", "GetRecords", _error("ValidationException", 400, errorCode="Other"))
    with pytest.raises(AssertionError, match="expected a botocore ClientError"):
        assert_is_modeled_error("keyspacesstreams", "GetRecords", ValueError("x"))
