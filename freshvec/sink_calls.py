"""How the sink groups its writes into S3 Vectors calls (and which vectors it may send at all): at most 500
vectors or keys a call, a row's chunks together (chunk 0 first), in the order the sink gives (``freshvec.sink``:
surplus chunks, puts, tombstones, deletes)."""

from __future__ import annotations

import math
from typing import Any

from freshvec import constants as c
from freshvec.errors import PoisonRecordError
from freshvec.plan import ChunkPlan, KeyPlan


def vector_item(chunk: ChunkPlan) -> dict[str, Any]:
    """A chunk as PutVectors takes it."""
    return {"key": chunk.key, "data": {"float32": chunk.vector}, "metadata": chunk.metadata}


Call = tuple[str, list[KeyPlan], list[Any]]  # kind, the rows it serves, its vectors or keys


def put_calls(puts: list[KeyPlan]) -> list[Call]:
    """PutVectors calls of at most 500 vectors; a row's chunks share a call (chunk 0 first) unless it has more."""
    calls: list[Call] = []
    for plan in puts:
        vectors = [vector_item(chunk) for chunk in plan.chunks]
        for start in range(0, len(vectors), c.S3V_PUT_BATCH):
            part = vectors[start : start + c.S3V_PUT_BATCH]
            if start == 0 and calls and len(calls[-1][2]) + len(part) <= c.S3V_PUT_BATCH:
                calls[-1][1].append(plan)
                calls[-1][2].extend(part)
            else:
                calls.append(("put", [plan], part))
    return calls


def key_calls(kind: str, rows: list[tuple[KeyPlan, list[str]]]) -> list[Call]:
    """DeleteVectors calls of at most 500 keys, in the order given."""
    calls: list[Call] = []
    for plan, keys in rows:
        for key in keys:
            if not calls or len(calls[-1][2]) == c.S3V_PUT_BATCH:
                calls.append((kind, [], []))
            if plan not in calls[-1][1]:
                calls[-1][1].append(plan)
            calls[-1][2].append(key)
    return calls


def valid_vectors(plans: list[KeyPlan], dimension: int) -> list[KeyPlan]:
    """The plans whose every chunk vector has the index's dimension and only finite floats; the others' records
    are marked poison.

    S3 Vectors would refuse the others too, but the SDK's own validation of every float is turned off for vector
    writes (it costs more CPU than the sink), so this check is the one that counts.
    """
    valid = []
    for plan in plans:
        problem = None
        for chunk in plan.chunks:
            vector = chunk.vector or []
            if len(vector) != dimension:
                problem = f"the vector has {len(vector)} dimensions; the index has {dimension}"
            # A non-finite value makes the sum non-finite; only then (or on overflow) is each value checked.
            elif not math.isfinite(sum(vector)) and not all(math.isfinite(x) for x in vector):
                problem = "the vector holds a value that is not a finite number"
            if problem:
                break
        if problem is None:
            valid.append(plan)
            continue
        for record in plan.records:
            record.error = PoisonRecordError(problem)
    return valid
