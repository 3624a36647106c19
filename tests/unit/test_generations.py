"""Index generations: the config's next generation, the pointer document and its cached reader, the migration plan's
arithmetic, overlap@k."""

from __future__ import annotations

import math
from typing import Any

import pytest

from freshvec import constants as c
from freshvec.config import ConfigError, PipelineConfig, default_config
from freshvec.generations import (
    CachedPointer,
    IndexPointer,
    abandoned,
    initial_pointer,
    live_generations,
    promoted,
    same_fingerprint_space,
    select_generations,
)
from freshvec.migration import BINDING_INDEX, BINDING_QUOTA, Census, Rates, overlap_at_k, plan


def _config(**next_generation: Any) -> PipelineConfig:
    raw = default_config().to_dict()
    raw["next_generation"] = {"name": "g2", **next_generation}
    return PipelineConfig.from_dict(raw)


def test_without_a_next_generation_the_config_is_one_generation() -> None:
    config = default_config()
    assert [g.name for g in live_generations(config)] == [c.DEFAULT_GENERATION]
    assert live_generations(config)[0].index_name == config.vector_index_name


def test_the_next_generation_has_its_own_model_chunking_and_index() -> None:
    config = _config(embedding={"provider": "cohere"}, chunking={"max_chars": 500})
    g1, g2 = live_generations(config)
    assert g2.config.embedding.model_id == c.COHERE_EN_V3 and g2.config.chunking.max_chars == 500
    assert g1.index_name != g2.index_name
    assert g2.config.next_generation is None and g2.config.generation == "g2"
    assert not same_fingerprint_space(g1.config, g2.config)
    assert [g.name for g in select_generations(config, ["g2"])] == ["g2"]
    with pytest.raises(ConfigError, match="not a live generation"):
        select_generations(config, ["g9"])


@pytest.mark.parametrize(
    ("next_generation", "field", "message"),
    [
        ({"chunking": {"max_chars": 500}}, "next_generation.vector_store.index_name", "same index name"),
        ({"embedding": {"dimensions": 7}}, "next_generation.embedding.dimensions", "7 is not allowed"),
        (
            {"vector_store": {"index_name": "b", "bucket_name": "other-bucket"}},
            "next_generation.vector_store.bucket_name",
            "same bucket",
        ),
    ],
)
def test_a_bad_next_generation_names_its_field(next_generation: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _config(**next_generation)
    assert caught.value.field == field


def test_a_next_generation_cannot_reuse_the_active_name() -> None:
    raw = default_config().to_dict()
    raw["next_generation"] = {"name": "g1", "vector_store": {"index_name": "other"}}
    with pytest.raises(ConfigError, match="already the name"):
        PipelineConfig.from_dict(raw)


def test_promoting_and_abandoning() -> None:
    config = _config(chunking={"max_chars": 500}, vector_store={"index_name": "movies-b"})
    done = promoted(config)
    assert done.generation == "g2" and done.next_generation is None and done.chunking.max_chars == 500
    assert done.vector_index_name == live_generations(config)[1].index_name
    assert abandoned(config).next_generation is None and abandoned(config).generation == "g1"


def test_the_pointer_round_trips_and_switches() -> None:
    config = _config(embedding={"dimensions": 512})
    pointer = initial_pointer(config, "bucket")
    assert pointer.active == "g1" and set(pointer.generations) == {"g1", "g2"}
    switched = pointer.switched_to("g2", now=0)
    assert (switched.active, switched.previous) == ("g2", "g1")
    assert IndexPointer.from_json(switched.to_json()) == switched
    assert switched.entry().dimensions == 512
    assert switched.switched_to("g2") is switched
    with pytest.raises(ValueError, match="switch away"):
        switched.without("g2")
    assert set(switched.without("g1").generations) == {"g2"}
    with pytest.raises(ValueError, match="not an index pointer"):
        IndexPointer.from_json('{"active": "g1"}')
    with pytest.raises(ValueError, match="has no entry"):
        IndexPointer.from_json(pointer.to_json().replace('"active":"g1"', '"active":"g7"'))


class _Store:
    def __init__(self, text: str) -> None:
        self.text = text
        self.reads = 0
        self.fail = False

    def read(self) -> str | None:
        self.reads += 1
        if self.fail:
            raise TimeoutError("SSM is slow")
        return self.text

    def write(self, document: str) -> None:
        self.text = document


def test_the_cached_pointer_reads_once_per_ttl_and_outlives_a_brief_outage() -> None:
    now = [0.0]
    pointer = initial_pointer(_config(embedding={"dimensions": 512}))
    store = _Store(pointer.to_json())
    cached = CachedPointer(store, ttl_s=10, stale_ok_s=30, clock=lambda: now[0])
    assert cached.current().active == "g1"
    store.write(pointer.switched_to("g2").to_json())
    now[0] = 9.9
    assert cached.current().active == "g1" and store.reads == 1  # within the cache time
    now[0] = 10.0
    assert cached.current().active == "g2" and store.reads == 2
    store.fail = True
    now[0] = 35.0
    assert cached.current().active == "g2"  # the last good pointer, while within ttl + stale_ok
    now[0] = 50.1  # past ttl + stale_ok since the last good read (at 10)
    with pytest.raises(TimeoutError):
        cached.current()


def _rates(**overrides: Any) -> Rates:
    base: dict[str, Any] = {
        "ondemand_usd_per_1k_tokens": 0.00002,
        "batch_usd_per_1k_tokens": 0.00001,
        "prices_date": "2026-12-01",
        "requests_per_minute": 6000,
        "texts_per_request": 1,
        "batch_min_records": 100,
        "batch_max_records": 50_000,
        "batch_hours": 6.0,
    }
    return Rates(**{**base, **overrides})


def test_the_census_counts_copies_distinct_texts_and_rows() -> None:
    census = Census()
    seen: set[str] = set()
    census.add_row(["a", "b"], ["aaaa", "bbbbbbbb"], existing={"a"}, seen=seen)
    census.add_row(["a"], ["aaaa"], existing={"a"}, seen=seen)
    census.add_row([], [], existing={"a"}, seen=seen)
    assert (census.rows, census.rows_with_text, census.chunks, census.distinct_chunks) == (3, 2, 3, 2)
    assert (census.copyable_chunks, census.chunks_to_embed, census.chars_to_embed) == (1, 1, 8)
    assert census.rows_copyable == 1 and census.reembed_avoided_share == 0.5
    assert census.tokens_to_embed == 2


def test_the_plan_names_the_binding_limit_and_the_path() -> None:
    big = Census(rows=1_000_000, rows_with_text=1_000_000, chunks=1_000_000, distinct_chunks=1_000_000,
                 chars_to_embed=400_000_000)  # fmt: skip
    found = plan(big, _rates())
    assert found.ondemand.binding == BINDING_QUOTA
    assert math.isclose(found.ondemand.seconds, 1_000_000 / 100)  # 6,000 a minute
    assert math.isclose(found.ondemand.usd, 100_000_000 / 1000 * 0.00002)
    assert math.isclose(found.batch.usd, found.ondemand.usd / 2)
    assert found.recommended == "batch"  # on demand would take longer than the batch jobs
    cohere = plan(big, _rates(texts_per_request=96, requests_per_minute=100_000))
    assert cohere.ondemand.binding == BINDING_INDEX  # the index's 2,500 vectors/s binds
    assert math.isclose(cohere.ondemand.seconds, 1_000_000 / 2500)
    small = plan(Census(rows=50, rows_with_text=50, chunks=50, distinct_chunks=50, chars_to_embed=5000), _rates())
    assert not small.batch.possible and small.recommended == "ondemand" and "minimum of 100" in small.reason


def test_overlap_at_k() -> None:
    assert overlap_at_k(["a", "b", "c"], ["c", "b", "x"], 3) == pytest.approx(2 / 3)
    assert overlap_at_k(["a", "b", "c", "d"], ["a", "z"], 2) == 0.5
    assert overlap_at_k([], [], 5) == 1.0


def test_the_compare_gate_fails_below_either_threshold() -> None:
    from freshvec.cli.errors import OperatorError
    from freshvec.cli.migrate_compare import below

    result = {"k": 10, "overlap@10": 0.6, "judged": {"g1": {"recall@10": 0.9}, "g2": {"recall@10": 0.7}}}
    assert below(result, min_overlap=0.5, min_recall=0.7, target="g2") == []
    assert below(result, min_overlap=0.61, min_recall=None, target="g2") == ["overlap@10 0.600 < 0.61"]
    assert below(result, min_overlap=None, min_recall=0.8, target="g2") == ["recall@10 of g2 0.700 < 0.8"]
    with pytest.raises(OperatorError, match="--judgments"):
        below({"k": 10, "overlap@10": 1.0}, min_overlap=None, min_recall=0.5, target="g2")


def test_judged_metrics_are_the_trec_definitions() -> None:
    from freshvec.migration import judged_metrics

    runs = {"g1": {"q": [("a", 3.0), ("b", 2.0), ("c", 1.0)]}, "g2": {"q": [("x", 3.0), ("a", 2.0)]}}
    scores = judged_metrics(runs, {"q": {"a": 1, "c": 1}}, 2)
    assert scores["g1"]["recall@2"] == pytest.approx(0.5) and scores["g2"]["recall@2"] == pytest.approx(0.5)
    # nDCG@2: g1 has the relevant row first (1 / (1 + 1/log2(3))), g2 second (1/log2(3) / (1 + 1/log2(3)))
    ideal = 1 + 1 / math.log2(3)
    assert scores["g1"]["ndcg@2"] == pytest.approx(1 / ideal)
    assert scores["g2"]["ndcg@2"] == pytest.approx((1 / math.log2(3)) / ideal)


def test_a_token_quota_binds_when_it_allows_fewer_texts_than_the_request_quota() -> None:
    census = Census(rows=10_000, rows_with_text=10_000, chunks=10_000, distinct_chunks=10_000,
                    chars_to_embed=40_000_000)  # fmt: skip  # 10 M tokens
    by_requests = plan(census, _rates(requests_per_minute=60_000))
    assert math.isclose(by_requests.ondemand.seconds, 10_000 / 1000)
    by_tokens = plan(census, _rates(requests_per_minute=60_000, tokens_per_minute=600_000))
    assert math.isclose(by_tokens.ondemand.seconds, 10_000_000 / 10_000)
    assert by_tokens.ondemand.binding == BINDING_QUOTA


def test_the_plan_takes_the_accounts_quota_unless_given_one() -> None:
    from freshvec.adapters.service_quotas import OnDemandRate
    from freshvec.cli.migrate import rates_for

    nxt = live_generations(_config(embedding={"dimensions": 512}))[1]
    account = OnDemandRate(2_000.0, 300_000.0, ("On-demand model inference requests per minute for X",))
    assert rates_for(nxt, None, 6.0, None, account).requests_per_minute == 2_000
    assert rates_for(nxt, None, 6.0, None, account).tokens_per_minute == 300_000
    given = rates_for(nxt, 9_000, 6.0, None, account)
    assert (given.requests_per_minute, given.tokens_per_minute, given.quota_source) == (
        9_000,
        None,
        "--requests-per-minute",
    )
    default = rates_for(nxt, None, 6.0, None, None)
    assert default.quota_source == "documented default" and default.batch_min_records == c.BATCH_DEFAULT_RECORDS[0]
