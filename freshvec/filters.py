"""S3 Vectors metadata filters: checked before a query is sent, and evaluated locally with the same meaning.

The filter language (Amazon S3 Vectors metadata filtering):

- ``{"genre": "drama"}`` is an implicit ``$eq``; several fields in one object must all match.
- Comparison operators on a field: ``$eq``/``$ne`` take a string, number or boolean; ``$gt``/``$gte``/
  ``$lt``/``$lte`` take a number; ``$in``/``$nin`` take a non-empty array of strings, numbers or booleans;
  ``$exists`` takes a boolean. Several operators on one field must all match (a range).
- ``$and``/``$or`` take a non-empty array of filters.
- ``$startsWith`` takes a non-empty string and matches string values with that prefix; only an ENHANCED index
  evaluates it (docs "Changing a vector index's mode"), so ``validate_filter(doc, enhanced=False)`` refuses it.
- A metadata value that is an array matches ``$eq``/``$in``/``$startsWith`` when any element matches.
- An ENHANCED index takes at most ``MAX_ENHANCED_CONSTRAINTS`` (100) conditions in one filter (the same page);
  ``constraint_count`` counts them.

``validate_filter`` rejects anything else with the path of the offending part, so a typo fails here with a
clear message instead of as a service error. ``matches`` is used where no service evaluates filters
(local mode's exact search). A key missing from the metadata matches only ``{"$exists": false}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from freshvec.constants import PIPELINE_FILTERABLE_KEYS

COMPARISON_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$startsWith")
STARTS_WITH = "$startsWith"
MAX_ENHANCED_CONSTRAINTS = 100
LOGICAL_OPERATORS = ("$and", "$or")
_RANGE = {"$gt", "$gte", "$lt", "$lte"}
_MISSING = object()


class FilterError(ValueError):
    """A filter S3 Vectors would reject; ``path`` points at the offending part (e.g. ``$and[1].year.$gt``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"invalid filter at {path}: {message}" if path else f"invalid filter: {message}")


def parse_filter(text: str) -> dict[str, Any]:
    """Parse and validate filter JSON given on the command line."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FilterError("", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    validate_filter(doc)
    return doc


def validate_filter(doc: Any, *, enhanced: bool = True) -> None:
    """Raise FilterError naming the first part of ``doc`` that is not a valid S3 Vectors filter.

    ``enhanced=False`` checks it for a CLASSIC index, which has no ``$startsWith``.
    """
    _check_filter(doc, "")
    if not enhanced:
        path = _first_starts_with(doc, "")
        if path is not None:
            raise FilterError(path, "$startsWith needs an ENHANCED index; this index is CLASSIC")
    elif constraint_count(doc) > MAX_ENHANCED_CONSTRAINTS:
        raise FilterError("", f"{constraint_count(doc)} conditions; an ENHANCED index takes {MAX_ENHANCED_CONSTRAINTS}")


def check_filterable(doc: Mapping[str, Any], config: Any) -> None:
    """FilterError naming the first key of a valid filter that the index stores as non-filterable metadata
    (S3 Vectors refuses such a query with a ValidationException), and the keys a filter can use.
    ``config``: the ``PipelineConfig``."""
    non_filterable = set(config.non_filterable_keys)
    for key in sorted(filter_keys(doc)):
        if key in non_filterable:
            usable = [name for name in config.metadata_fields if name not in non_filterable]
            usable += [name for name in PIPELINE_FILTERABLE_KEYS if name not in usable]
            raise FilterError(key, f"{key!r} is stored as non-filterable metadata; filterable: {', '.join(usable)}")


def constraint_count(doc: Mapping[str, Any]) -> int:
    """The conditions in a valid filter: each operator on a field (an implicit $eq counts one)."""
    count = 0
    for key, value in doc.items():
        if key in LOGICAL_OPERATORS:
            count += sum(constraint_count(item) for item in value)
        else:
            count += len(value) if isinstance(value, Mapping) else 1
    return count


def filter_keys(doc: Mapping[str, Any]) -> set[str]:
    """The metadata keys a valid filter reads."""
    keys: set[str] = set()
    for key, value in doc.items():
        if key in LOGICAL_OPERATORS:
            for item in value:
                keys |= filter_keys(item)
        else:
            keys.add(key)
    return keys


def _first_starts_with(doc: Mapping[str, Any], path: str) -> str | None:
    for key, value in doc.items():
        if key in LOGICAL_OPERATORS:
            for index, item in enumerate(value):
                found = _first_starts_with(item, f"{_join(path, key)}[{index}]")
                if found is not None:
                    return found
        elif isinstance(value, Mapping) and STARTS_WITH in value:
            return _join(_join(path, key), STARTS_WITH)
    return None


def matches(filter_doc: Mapping[str, Any] | None, metadata: Mapping[str, Any]) -> bool:
    """Whether a vector with this metadata satisfies the (valid) filter; no filter matches everything."""
    if filter_doc is None:
        return True
    return _eval_filter(filter_doc, metadata)


# ---- validation ---------------------------------------------------------------------------------
def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_primitive(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _check_filter(doc: Any, path: str) -> None:
    if not isinstance(doc, Mapping):
        raise FilterError(path, f"a filter must be a JSON object, got {_type_name(doc)}")
    if not doc:
        raise FilterError(path, "a filter must not be empty")
    for key, value in doc.items():
        if not isinstance(key, str) or not key:
            raise FilterError(path, "metadata keys must be non-empty strings")
        if key in LOGICAL_OPERATORS:
            _check_logical(key, value, _join(path, key))
        elif key.startswith("$"):
            allowed = ", ".join(LOGICAL_OPERATORS)
            where = "a field" if key in COMPARISON_OPERATORS else "here"
            raise FilterError(
                _join(path, key),
                f"operator {key!r} cannot be used {where}; at the top of a filter use a metadata key or {allowed}",
            )
        else:
            _check_condition(value, _join(path, key))


def _check_logical(operator: str, value: Any, path: str) -> None:
    if not isinstance(value, list) or not value:
        raise FilterError(path, f"{operator} takes a non-empty array of filters, got {_type_name(value)}")
    for index, item in enumerate(value):
        _check_filter(item, f"{path}[{index}]")


def _check_condition(value: Any, path: str) -> None:
    if isinstance(value, Mapping):
        if not value:
            raise FilterError(path, "an operator object must not be empty")
        for operator, operand in value.items():
            _check_operator(operator, operand, _join(path, str(operator)))
        return
    _check_scalar(value, path, "an implicit $eq")


def _check_operator(operator: Any, operand: Any, path: str) -> None:
    if operator not in COMPARISON_OPERATORS:
        raise FilterError(path, f"unknown operator {operator!r}; allowed: {', '.join(COMPARISON_OPERATORS)}")
    if operator in ("$eq", "$ne"):
        _check_scalar(operand, path, operator)
    elif operator in _RANGE:
        if not _is_number(operand):
            raise FilterError(path, f"{operator} takes a number, got {_type_name(operand)}")
        _check_finite(operand, path)
    elif operator == STARTS_WITH:
        if not isinstance(operand, str) or not operand:
            raise FilterError(path, f"$startsWith takes a non-empty string, got {_type_name(operand)}")
    elif operator in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand:
            raise FilterError(path, f"{operator} takes a non-empty array of values, got {_type_name(operand)}")
        for index, item in enumerate(operand):
            _check_scalar(item, f"{path}[{index}]", f"an element of {operator}")
    elif not isinstance(operand, bool):  # $exists
        raise FilterError(path, f"$exists takes true or false, got {_type_name(operand)}")


def _check_scalar(value: Any, path: str, what: str) -> None:
    if not _is_primitive(value):
        raise FilterError(path, f"{what} takes a string, number or boolean, got {_type_name(value)}")
    if _is_number(value):
        _check_finite(value, path)


def _check_finite(value: float, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(path, f"{value} is not a finite number")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _is_number(value):
        return "a number"
    for kind, name in ((str, "a string"), (list, "an array"), (Mapping, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


# ---- evaluation ---------------------------------------------------------------------------------
def _eval_filter(doc: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    for key, value in doc.items():
        if key == "$and":
            ok = all(_eval_filter(item, metadata) for item in value)
        elif key == "$or":
            ok = any(_eval_filter(item, metadata) for item in value)
        else:
            ok = _eval_condition(value, metadata.get(key, _MISSING))
        if not ok:
            return False
    return True


def _eval_condition(condition: Any, actual: Any) -> bool:
    if isinstance(condition, Mapping):
        return all(_eval_operator(op, operand, actual) for op, operand in condition.items())
    return _eval_operator("$eq", condition, actual)


def _eval_operator(operator: str, operand: Any, actual: Any) -> bool:
    if operator == "$exists":
        return (actual is not _MISSING and actual is not None) == operand
    if actual is _MISSING or actual is None:
        return False
    values = actual if isinstance(actual, list) else [actual]
    if operator in _RANGE:
        return any(_compare(operator, v, operand) for v in values if _is_number(v))
    if operator == STARTS_WITH:
        return any(isinstance(v, str) and v.startswith(operand) for v in values)
    candidates = operand if operator in ("$in", "$nin") else [operand]
    found = any(_same(v, item) for v in values for item in candidates)
    return found if operator in ("$eq", "$in") else not found


def _same(actual: Any, expected: Any) -> bool:
    """Equality without Python's cross-type surprises (True == 1, 1 == 1.0 across bool/number)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if _is_number(actual) and _is_number(expected):
        return actual == expected
    return type(actual) is type(expected) and actual == expected


def _compare(operator: str, actual: float, bound: float) -> bool:
    if operator == "$gt":
        return actual > bound
    if operator == "$gte":
        return actual >= bound
    if operator == "$lt":
        return actual < bound
    return actual <= bound
