"""Check a fake's responses and errors against the botocore service model they imitate.

``assert_matches_output_shape("keyspacesstreams", "GetRecords", response)`` walks the response against the
operation's output shape, as boto3 would hand it to a caller: only modelled member names, every required
member, the Python type boto3 parses each wire type into (timestamps as datetimes, blobs as bytes), string
enums, lengths, patterns and numeric ranges, and unions with exactly one member set. ``ResponseMetadata`` at
the top level is allowed, as boto3 adds it. Every problem is listed with its path, not only the first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

import botocore.session
from botocore.exceptions import ClientError
from botocore.model import OperationModel, ServiceModel, Shape

RESPONSE_METADATA = "ResponseMetadata"
SDK_UNKNOWN_MEMBER = "SDK_UNKNOWN_MEMBER"


@cache
def service_model(service_name: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service_name)


def operation_model(service_name: str, operation_name: str) -> OperationModel:
    return service_model(service_name).operation_model(operation_name)


def output_shape_problems(
    service_name: str,
    operation_name: str,
    response: Any,
    *,
    allow_unknown_union_members: bool = False,
) -> list[str]:
    """Every way ``response`` differs from the operation's output shape (empty when it matches)."""
    shape = operation_model(service_name, operation_name).output_shape
    if shape is None:
        extra = set(response or {}) - {RESPONSE_METADATA}
        return [f"{operation_name}: has no output, got members {sorted(extra)}"] if extra else []
    walker = _Walker(allow_unknown_union_members)
    walker.walk(response, shape, operation_name, top_level=True)
    return walker.problems


def assert_matches_output_shape(
    service_name: str,
    operation_name: str,
    response: Any,
    *,
    allow_unknown_union_members: bool = False,
) -> None:
    """AssertionError listing every difference between ``response`` and the botocore output shape."""
    problems = output_shape_problems(
        service_name, operation_name, response, allow_unknown_union_members=allow_unknown_union_members
    )
    if problems:
        listing = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise AssertionError(f"{service_name} {operation_name} response does not match the model:\n  {listing}{more}")


def assert_is_modeled_error(service_name: str, operation_name: str, error: BaseException) -> dict[str, Any]:
    """Check ``error`` is a ClientError the operation can raise, shaped as boto3 builds it; return its response.

    boto3 puts the code and message under ``Error`` and copies the error shape's other members (such as
    ``errorCode``) to the top level of ``response``.
    """
    assert isinstance(error, ClientError), f"expected a botocore ClientError, got {type(error).__name__}"
    response = error.response
    code = response.get("Error", {}).get("Code")
    operation = operation_model(service_name, operation_name)
    modeled = {shape.name: shape for shape in operation.error_shapes}
    assert code in modeled, f"{operation_name} does not raise {code!r}; it raises {sorted(modeled)}"
    assert error.operation_name == operation_name, f"error names operation {error.operation_name!r}"
    assert isinstance(response["Error"].get("Message"), str), "Error.Message must be a string"
    status = response.get(RESPONSE_METADATA, {}).get("HTTPStatusCode")
    assert isinstance(status, int), "ResponseMetadata.HTTPStatusCode must be set"
    error_shape = modeled[code]
    expected_status = error_shape.metadata.get("error", {}).get("httpStatusCode")
    if expected_status is None:
        # Without an explicit status the JSON protocols answer 500 for server faults and 400 for the rest.
        is_fault = getattr(error_shape, "_shape_model", {}).get("fault", False)
        expected_status = 500 if is_fault else 400
    assert status == expected_status, f"{code} must carry HTTP {expected_status}, got {status}"
    fields = {name: value for name, value in response.items() if name in error_shape.members}
    walker = _Walker(allow_unknown_union_members=False)
    for name, value in fields.items():
        walker.walk(value, error_shape.members[name], f"{code}.{name}")
    assert not walker.problems, "\n".join(walker.problems)
    return response


class _Walker:
    def __init__(self, allow_unknown_union_members: bool) -> None:
        self.allow_unknown = allow_unknown_union_members
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def walk(self, value: Any, shape: Shape, path: str, *, top_level: bool = False, payload: bool = False) -> None:
        kind = shape.type_name
        if payload and kind == "blob":
            # boto3 hands a blob payload (InvokeModel's body) over unread, as a StreamingBody.
            if not hasattr(value, "read"):
                self.fail(path, f"expected a streaming body with read() ({shape.name}), got {type(value).__name__}")
        elif kind == "structure":
            self._structure(value, shape, path, top_level)
        elif kind == "list":
            self._list(value, shape, path)
        elif kind == "map":
            self._map(value, shape, path)
        else:
            self._scalar(value, shape, path)

    def _structure(self, value: Any, shape: Shape, path: str, top_level: bool) -> None:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a dict ({shape.name}), got {type(value).__name__}")
            return
        if shape.metadata.get("document"):
            return
        members = shape.members
        present = {name: item for name, item in value.items() if not (top_level and name == RESPONSE_METADATA)}
        if shape.is_tagged_union:
            set_members = [name for name, item in present.items() if item is not None]
            if len(set_members) != 1:
                self.fail(path, f"union {shape.name} must have exactly one member set, got {sorted(set_members)}")
            if self.allow_unknown and set_members == [SDK_UNKNOWN_MEMBER]:
                return
        for name, item in present.items():
            if name not in members:
                self.fail(path, f"{name!r} is not a member of {shape.name} (members: {', '.join(sorted(members))})")
                continue
            if item is None:
                self.fail(f"{path}.{name}", "boto3 never returns None for a member; leave it out")
                continue
            is_payload = shape.serialization.get("payload") == name
            self.walk(item, members[name], f"{path}.{name}", payload=is_payload)
        for name in shape.required_members:
            if name not in present:
                self.fail(path, f"required member {name!r} of {shape.name} is missing")

    def _list(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, list):
            self.fail(path, f"expected a list ({shape.name}), got {type(value).__name__}")
            return
        self._length(len(value), shape, path)
        for position, item in enumerate(value):
            self.walk(item, shape.member, f"{path}[{position}]")

    def _map(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a dict ({shape.name}), got {type(value).__name__}")
            return
        self._length(len(value), shape, path)
        for key, item in value.items():
            self.walk(key, shape.key, f"{path}<key {key!r}>")
            self.walk(item, shape.value, f"{path}[{key!r}]")

    def _scalar(self, value: Any, shape: Shape, path: str) -> None:
        kind = shape.type_name
        if kind == "string":
            if not isinstance(value, str):
                self.fail(path, f"expected a str ({shape.name}), got {type(value).__name__}")
                return
            if shape.enum and value not in shape.enum:
                self.fail(path, f"{value!r} is not one of {shape.name}: {', '.join(shape.enum)}")
            self._length(len(value), shape, path)
            pattern = shape.metadata.get("pattern")
            if pattern and not re.search(pattern, value):
                self.fail(path, f"{value!r} does not match {shape.name} pattern {pattern}")
        elif kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(path, f"expected an int ({shape.name}), got {type(value).__name__}")
                return
            self._range(value, shape, path)
        elif kind in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(path, f"expected a float ({shape.name}), got {type(value).__name__}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.fail(path, f"expected a bool ({shape.name}), got {type(value).__name__}")
        elif kind == "timestamp":
            if not isinstance(value, datetime) or value.tzinfo is None:
                self.fail(path, f"expected a timezone-aware datetime ({shape.name}), got {value!r}")
        elif kind == "blob":
            if not isinstance(value, bytes):
                self.fail(path, f"expected bytes ({shape.name}), got {type(value).__name__}")
        else:
            self.fail(path, f"shape type {kind!r} of {shape.name} is not checked by this helper")

    def _length(self, length: int, shape: Shape, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and length < low:
            self.fail(path, f"length {length} is below the {shape.name} minimum {low}")
        if high is not None and length > high:
            self.fail(path, f"length {length} is above the {shape.name} maximum {high}")

    def _range(self, number: int, shape: Shape, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and number < low:
            self.fail(path, f"{number} is below the {shape.name} minimum {low}")
        if high is not None and number > high:
            self.fail(path, f"{number} is above the {shape.name} maximum {high}")
