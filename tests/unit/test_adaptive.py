"""The adaptive rate limiter: pacing, cuts on throttling, growth on paced successes (a fake clock, no waiting)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from freshvec.adapters.adaptive import AdaptiveRateLimiter
from freshvec.adapters.bedrock import TitanEmbedder
from freshvec.retry import RetryPolicy
from freshvec.testing.fakes.bedrock import BedrockQuota, FakeBedrockRuntime


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def throttle() -> None:
    raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeModel")


def limiter(t: FakeTime, **kw: float) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(8, clock=t.clock, sleep=t.sleep, **kw)  # type: ignore[arg-type]


def test_calls_are_not_paced_before_any_throttle() -> None:
    t = FakeTime()
    lim = limiter(t)
    assert [lim.call(lambda n=n: n) for n in range(5)] == [0, 1, 2, 3, 4]
    assert lim.rate is None and t.sleeps == []


def test_a_throttle_before_anything_was_measured_starts_slowly_from_the_floor_and_paces() -> None:
    t = FakeTime()
    lim = limiter(t, start_rate=2.0, hold_s=1.0)
    with pytest.raises(ClientError):
        lim.call(throttle)
    assert lim.rate == 2.0 and lim.slow_start
    lim.call(lambda: None)  # waits for its turn: 1 / 2.0 s after the cut
    assert t.sleeps == [pytest.approx(0.5)]
    assert lim.rate == 2.0  # within the hold after a cut: no growth
    lim.call(lambda: None)  # 1.0 s after the cut: the hold is over
    assert lim.rate == pytest.approx(2.0 * 1.04)  # a paced success in slow start grows by 4 %


def test_a_throttle_after_a_measure_settles_below_what_got_through() -> None:
    t = FakeTime()
    lim = limiter(t, window_s=2.0, min_measure_s=1.0, margin=0.65, hold_s=1.0)
    for n in range(10):  # 10 successes in the 1.95 s since the first call
        t.now = 1000.0 + 0.2 * n
        lim.call(lambda: None)
    t.now = 1001.95
    with pytest.raises(ClientError):
        lim.call(throttle)
    assert lim.rate == pytest.approx(10 / 1.95 * 0.65) and not lim.slow_start
    t.now += 1.0  # past the hold
    lim.call(lambda: None)  # no wait: not limited by the pace, no growth
    lim.call(lambda: None)  # waits for its turn
    assert lim.rate == pytest.approx(10 / 1.95 * 0.65 * 1.005)  # no ceiling yet: steady growth, 0.5 % a call


def test_a_cut_while_paced_stays_below_the_ceiling_it_measured() -> None:
    t = FakeTime()
    lim = limiter(t, window_s=2.0, min_measure_s=1.0, decrease=0.7, margin=0.65)
    lim.throttled(started=t.now)  # paced from the floor (2 a second)
    for _ in range(8):  # 4 s at 2 a second
        lim.call(lambda: None)
    lim.rate = 8.0  # as if grown far past what gets through
    lim.throttled(started=t.now)
    assert lim.ceiling == pytest.approx(5 / 2.0)  # what got through over the 2 s window, not the rate
    assert lim.rate == pytest.approx(5 / 2.0 * 0.65)  # below both 0.7 x 8 and the margin under the ceiling


def test_growth_is_fast_back_to_near_the_ceiling_slow_up_to_it_and_steady_past_it() -> None:
    t = FakeTime()
    lim = limiter(t, recover_increase=0.03, recover_to=0.8, probe_increase=0.001, increase=0.005, hold_s=0.0)
    lim.throttled(started=t.now)
    lim.slow_start = False
    lim.ceiling = 10.0
    growth = []
    for rate in (5.0, 7.9, 8.5, 10.5):
        lim.rate = rate
        lim.succeeded(paced=True)
        growth.append(lim.rate / rate - 1)
    assert growth[0] == pytest.approx(0.03)
    assert growth[1] == pytest.approx(8.0 / 7.9 - 1)  # never past recover_to x the ceiling in one step
    assert growth[2] == pytest.approx(0.001)
    assert growth[3] == pytest.approx(0.005)


def test_throttles_during_the_hold_do_not_cut_but_cut_again_when_it_ends() -> None:
    t = FakeTime()
    lim = limiter(t, start_rate=4.0, decrease=0.7, margin=0.65, hold_s=1.0)
    lim.throttled(started=t.now)
    assert lim.cuts == 1
    t.now += 0.5
    lim.throttled(started=t.now)  # sent after the cut, but within its hold: the bucket is still refilling
    assert lim.cuts == 1 and lim.rate == 4.0
    t.now += 0.6  # the hold is over and it held a throttle: that cut was not enough
    lim.succeeded(paced=True)
    assert lim.cuts == 2
    assert lim.rate == pytest.approx(4.0 * 0.7)
    assert lim.ceiling == pytest.approx(4.0 * 0.7 / 0.65)


def test_a_cut_gives_up_turns_reserved_at_the_old_rate() -> None:
    t = FakeTime()
    lim = limiter(t, start_rate=10.0, decrease=0.5, hold_s=0.0)
    lim.throttled(started=t.now)  # paced at 10 a second
    lim.call(lambda: None)  # takes the turn 0.1 s out
    first_wait = len(t.sleeps)

    rates = []

    def sleep_through_a_cut(seconds: float) -> None:
        t.sleeps.append(seconds)
        if len(t.sleeps) == first_wait + 1:
            lim.throttled(started=t.now)  # another thread's call was throttled while this one waited
            rates.append(lim.rate)
        t.now += seconds

    lim._sleep = sleep_through_a_cut
    lim.call(lambda: None)
    waits = t.sleeps[first_wait:]
    assert len(waits) == 2  # the reservation made at 10 a second was given up
    assert waits[1] == pytest.approx(1 / rates[0] - waits[0])  # and taken again at the new rate, from the cut


def test_throttles_of_calls_sent_before_the_cut_do_not_cut_again() -> None:
    t = FakeTime()
    lim = limiter(t, start_rate=4.0)
    earlier = t.now
    t.now += 0.01
    lim.throttled(started=t.now)  # the first throttle: a cut
    rate = lim.rate
    lim.throttled(started=earlier)  # in flight before that cut
    assert lim.rate == rate and lim.cuts == 1 and lim.throttles == 2
    t.now += 1.0
    lim.throttled(started=t.now)  # sent at the new rate: cut again (nothing measured: by ``decrease``)
    assert lim.rate == pytest.approx(rate * 0.7) and lim.cuts == 2


def test_the_rate_never_falls_below_the_floor() -> None:
    t = FakeTime()
    lim = limiter(t, start_rate=0.2, min_rate=0.1)
    for _ in range(10):
        t.now += 1
        lim.throttled(started=t.now)
    assert lim.rate == pytest.approx(0.1)


def test_unpaced_successes_do_not_raise_the_rate() -> None:
    t = FakeTime()
    lim = limiter(t, start_rate=1.0)
    lim.throttled(started=t.now)
    t.now += 10  # long idle: the next call needs no wait
    lim.call(lambda: None)
    assert lim.rate == 1.0


def test_titan_paces_itself_to_a_shared_quota_and_embeds_everything() -> None:
    t = FakeTime()
    quota = BedrockQuota(requests_per_minute=60, burst=2, clock=t.clock)  # 1 a second
    client = FakeBedrockRuntime(quota=quota)
    retry = RetryPolicy(sleep=t.sleep, clock=t.clock)
    embedder = TitanEmbedder(
        client, max_concurrency=1, retry=retry, limiter=AdaptiveRateLimiter(1, clock=t.clock, sleep=t.sleep)
    )
    texts = [f"text {n}" for n in range(40)]
    results = embedder.try_embed_documents(texts)
    assert all(r.vector is not None for r in results)
    throttled = sum(1 for call in client.calls if call["error"] == "ThrottlingException")
    # Without pacing every call after the burst would be throttled at least once; paced, few are.
    assert throttled <= 8
    assert quota.granted == 40


def test_the_quota_refuses_beyond_rate_and_burst() -> None:
    t = FakeTime()
    quota = BedrockQuota(requests_per_minute=120, burst=3, clock=t.clock)
    assert [quota.take() for _ in range(4)] == [True, True, True, False]
    t.now += 0.5  # one token back at 2 a second
    assert [quota.take(), quota.take()] == [True, False]


def test_the_sink_parks_a_vector_that_is_not_finite_instead_of_writing_it() -> None:
    from freshvec.adapters.memory import InProcessTombstones
    from freshvec.config import default_config
    from freshvec.ports import EmbedResult
    from freshvec.sink import Sink
    from freshvec.testing.builders import change, kinesis_record, movie
    from freshvec.testing.fakes.memory import InMemoryDeadLetterQueue, InMemoryVectorStore, TableEmbedder

    class NanEmbedder(TableEmbedder):
        def try_embed_documents(self, texts: list[str]) -> list[EmbedResult]:  # type: ignore[override]
            return [EmbedResult([float("nan")] * self.dimensions if "bad" in t else self.vector(t)) for t in texts]

    config = default_config()
    store, dlq = InMemoryVectorStore(config.embedding.dimensions), InMemoryDeadLetterQueue()
    sink = Sink(config, NanEmbedder(config.embedding.dimensions), store, dlq, tombstones=InProcessTombstones())
    records = [kinesis_record(change("INSERT", movie("a", "good text")), 1)]
    records.append(kinesis_record(change("INSERT", movie("b", "bad text")), 2))
    result = sink.process(records)
    assert not result.batch_item_failures
    assert set(store.snapshot()) == {'["a"]'}
    assert len(dlq.entries) == 1 and "finite" in dlq.entries[0]["error_message"]


def test_coalescing_keeps_each_rows_last_state_and_order_and_the_first_old_image() -> None:
    import json

    from freshvec.outgoing import OutgoingRecord, coalesce_changes

    def event(row: str, n: int, old: int | None) -> OutgoingRecord:
        doc = {"key": {"title": row}, "new": {"n": n}, "old": None if old is None else {"n": old}, "version": n}
        return OutgoingRecord(json.dumps(doc).encode(), f"pk-{row}", str(n))

    records = [event("a", 1, None), event("b", 2, None), event("a", 3, 1), event("a", 4, 3), event("b", 5, 2)]
    envelope = OutgoingRecord(b"not an event", "pk-b", "6")
    records += [envelope, event("b", 7, 5)]
    out = coalesce_changes(records, [True] * 5 + [False, True])
    docs = [(json.loads(r.data) if r is not envelope else None, r.sequence_number, n) for r, n in out]
    # a: 1, 3, 4 -> one change at 4's place, old image of 1 (none), new image and version of 4
    assert docs[0] == ({"key": {"title": "a"}, "new": {"n": 4}, "old": None, "version": 4}, "4", 3)
    assert docs[1] == ({"key": {"title": "b"}, "new": {"n": 5}, "old": None, "version": 5}, "5", 2)
    assert docs[2] == (None, "6", 1)  # the envelope keeps its place and ends b's run
    assert docs[3] == ({"key": {"title": "b"}, "new": {"n": 7}, "old": {"n": 5}, "version": 7}, "7", 1)
