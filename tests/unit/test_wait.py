"""The waiting logic of ``freshvec load --wait`` / ``freshvec wait`` with a fake clock and a fake index."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pytest

from freshvec import constants as c
from freshvec.cli.wait import PRESENT, Expectations, Expected, percentile, wait_visible
from freshvec.config import default_config
from freshvec.plan import fingerprint
from freshvec.sources.keyspaces.driver import TableSchema


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Index:
    """Vectors that appear (or disappear) at given times on the clock; records every GetVectors call."""

    def __init__(self, clock: Clock, timeline: Mapping[str, list[tuple[float, dict[str, Any] | None]]]) -> None:
        self.clock = clock
        self.timeline = timeline
        self.calls: list[list[str]] = []

    def get(self, keys: list[str]) -> dict[str, Any]:
        self.calls.append(keys)
        found = {}
        for key in keys:
            state = None
            for at, vector in self.timeline.get(key, []):
                if at <= self.clock.now:
                    state = vector
            if state is not None:
                found[key] = state
        return found


def vector(fp: str, changed_at_ms: int | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {c.META_FINGERPRINT: fp}
    if changed_at_ms is not None:
        metadata[c.META_CHANGED_AT] = changed_at_ms
    return {"metadata": metadata}


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 95, 4),
        (list(range(1, 101)), 95, 95),
        ([3, 1, 2], 100, 3),
    ],
)
def test_nearest_rank_percentiles(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_no_values_have_no_percentile() -> None:
    assert math.isnan(percentile([], 50))


def test_each_write_is_timed_from_its_write_to_the_first_poll_that_sees_it() -> None:
    clock = Clock()
    t0 = clock.now
    index = Index(
        clock,
        {
            "a": [(t0 - 5, vector("old")), (t0 + 0.6, vector("new-a"))],  # an old text first: not yet visible
            "b": [(t0 + 1.1, vector("new-b"))],
            "gone": [(t0 - 5, vector("x")), (t0 + 0.3, None)],  # a delete
            "any": [(t0 + 0.1, vector("whatever"))],
        },
    )
    expected = [
        Expected("a", "new-a", written_at=t0 - 0.5),
        Expected("b", "new-b", written_at=t0),
        Expected("gone", None, written_at=t0),
        Expected("any", PRESENT, written_at=t0),
    ]
    outcome = wait_visible(expected, index.get, timeout_s=10, clock=clock, sleep=clock.sleep, interval_s=0.25)
    assert outcome.never_visible == []
    # Polls at +0, +0.25, +0.5, +0.75, +1.0, +1.25: each key counts from its write to the poll that saw it.
    assert sorted(outcome.latencies_ms) == pytest.approx(sorted([1250.0, 1250.0, 500.0, 250.0]))
    assert outcome.polls == 6
    assert index.calls[-1] == ["b"]  # a key seen is not asked for again


def test_keys_never_visible_are_named_when_the_timeout_passes() -> None:
    clock = Clock()
    index = Index(clock, {"ok": [(clock.now, vector("fp"))]})
    started = clock.now
    outcome = wait_visible(
        [Expected("ok", "fp", written_at=started), Expected("late", "fp", written_at=started)],
        index.get,
        timeout_s=2,
        clock=clock,
        sleep=clock.sleep,
        interval_s=0.5,
    )
    assert outcome.never_visible == ["late"]
    assert outcome.latencies_ms == [0.0]
    assert clock.now - started == pytest.approx(2.0)  # it gave up at the timeout, not before or long after


def test_without_a_write_time_the_vector_changed_at_is_the_start() -> None:
    clock = Clock()
    changed_ms = int((clock.now - 2) * 1000)
    index = Index(clock, {"k": [(clock.now + 0.5, vector("fp", changed_ms))], "d": [(clock.now + 0.5, None)]})
    index.timeline["d"].insert(0, (clock.now - 9, vector("y")))
    outcome = wait_visible(
        [Expected("k", "fp"), Expected("d", None)],
        index.get,
        timeout_s=5,
        clock=clock,
        sleep=clock.sleep,
        interval_s=0.5,
    )
    assert sorted(outcome.latencies_ms) == pytest.approx([500.0, 2500.0])  # the delete: from the start of waiting


def test_get_vectors_asks_for_at_most_100_keys_a_call() -> None:
    clock = Clock()
    keys = [f"k{i}" for i in range(250)]
    index = Index(clock, {k: [(clock.now, vector("fp"))] for k in keys})
    wait_visible([Expected(k, "fp", clock.now) for k in keys], index.get, timeout_s=1, clock=clock, sleep=clock.sleep)
    assert [len(call) for call in index.calls] == [100, 100, 50]


def test_expectations_use_the_fingerprint_the_sink_writes() -> None:
    config = default_config()
    expectations = Expectations(config, TableSchema.from_config(config))
    row = {"title": "Jaws", "overview": "A shark.", "vote_count": 3}
    expected = expectations.of(row, delete=False, written_at=1.0)
    e = config.embedding
    assert expected.key == '["Jaws"]'
    assert expected.fingerprint == fingerprint(
        model_id=e.model_id,
        dimensions=e.dimensions,
        normalize=e.normalize,
        max_input_chars=c.TITAN_MAX_INPUT_CHARS,
        text="A shark.",
    )
    assert expectations.of({**row, "overview": "  "}, delete=False, written_at=1.0).fingerprint is None
    assert expectations.of({"title": "Jaws"}, delete=False, written_at=1.0).fingerprint is PRESENT
    assert expectations.of(row, delete=True, written_at=1.0).fingerprint is None


def test_the_input_limits_match_the_embedders() -> None:
    from freshvec.adapters.bedrock import make_embedder
    from freshvec.cli.wait import max_input_chars
    from freshvec.config import EmbeddingConfig
    from freshvec.local.embedder import LOCAL_MAX_INPUT_CHARS

    assert c.input_char_limit("local", c.LOCAL_WORDLLAMA) == LOCAL_MAX_INPUT_CHARS
    for provider in ("titan", "cohere", "nova"):
        for model_id, dimensions in c.PROVIDER_MODELS[provider].items():
            embedding = EmbeddingConfig(provider=provider, model_id=model_id, dimensions=dimensions[0])
            config = dataclasses.replace(default_config(), embedding=embedding)
            assert make_embedder(embedding, object()).max_input_chars == max_input_chars(config), model_id
