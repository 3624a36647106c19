"""What the model-based exactness tests share: a hypothesis state machine over a ``SteppedStack``.

``SteppedMachine`` holds the rules that drive the pipeline and the operator whatever the source — forwarder
passes, deliveries, faults (a lost batch, a re-delivery, a forwarder crash, a PutRecords call landing after its
forwarder lost its lease, CDC records trimmed before the forwarder read them), damage to the index behind the
pipeline's back, backfills, redrives and repairs — and the checks: once the pipeline is quiet, every row that no
damage touched (and, when no live record was lost for good, every such row) holds exactly the vectors the
test's model calls for; after one ``reconcile --repair`` every row does, and a second ``reconcile`` finds
nothing. A test adds its source's writes, its model (``expected_index``) and its stack.

Also here, from the documented rules and nothing of freshvec's: the expected chunks of a text (a text within
the chunk bound is one chunk; paragraphs between half the bound and the bound are one chunk each,
docs/chunking.md) and the fingerprint of a chunk (docs/sink.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from freshvec import constants as c
from freshvec.cli.errors import EXIT_CHECK_FAILED
from freshvec.testing.fakes.bedrock import fake_vector
from freshvec.testing.stepped import SteppedStack

CHUNK_BOUND = 60
# Paragraphs between half the bound and the bound: each is a chunk of its own.
PARAGRAPHS = tuple(f"Paragraph {name} tells of {subject} in plain words." for name, subject in (
    ("one", "rivers"), ("two", "mountains"), ("three", "old harbours"), ("four", "night trains"),
))  # fmt: skip
_P = PARAGRAPHS
# Texts of one to three paragraphs (chunk growth and shrink); drawn from a fixed list so that generation is
# about uniform over them (hypothesis favours a ``one_of``'s first branch).
BODIES = ["\n\n".join(p) for p in ([_P[0]], [_P[1]], [_P[0], _P[1]], [_P[1], _P[2], _P[3]], [_P[2], _P[0]])]
_FUTURE_KS_VERSION = re.compile(r";ks:(\d{16}):")  # a Keyspaces version's ``createdAt`` (µs) in ``_ver``
_REDRIVE_SUMMARY = re.compile(r"(\d+) parked, (\d+) re-synced:[\s\S]*?(\d+) left in place")
IGNORED_METADATA = {"_seq", "_changed_at", "_ver", "_wid"}  # provenance the pipeline keeps for itself
RECONCILE = ("reconcile", "--buckets", "4", "--segments", "2", "--workers", "2")
VECTOR_DIMENSIONS = 256
DAMAGE_KINDS = ("swap", "tamper", "orphan", "drop", "future")  # ``SteppedStack.damage``; the order they are done in
Expected = dict[str, tuple[str, dict[str, Any]]]  # vector key -> (chunk text, metadata)


def expected_chunks(text: str | None) -> list[str]:
    if text is None or not text.strip():
        return []
    if len(text) <= CHUNK_BOUND:
        return [text.strip()]
    return [paragraph.strip() for paragraph in text.split("\n\n") if paragraph.strip()]


def fingerprint(text: str) -> str:
    material = json.dumps([c.TITAN_V2, VECTOR_DIMENSIONS, True, c.TITAN_MAX_INPUT_CHARS, text], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def expected_vectors(row_key: str, text: str | None, metadata: dict[str, Any]) -> Expected:
    """The vectors of one row: ``row_key`` for chunk 0, ``row_key#n`` for chunk n, each with the row's
    ``metadata`` and its own text, number and fingerprint (chunk 0 also the count)."""
    chunks = expected_chunks(text)
    expected: Expected = {}
    for number, chunk in enumerate(chunks):
        stored = {**metadata, "body": chunk, "_chunk": number, "_fp": fingerprint(chunk)}
        if number == 0:
            stored["_chunks"] = len(chunks)
        expected[row_key if number == 0 else f"{row_key}#{number}"] = (chunk, stored)
    return expected


class SteppedMachine(RuleBasedStateMachine):
    """The shared rules and checks; a subclass creates ``self.stack`` in its ``@initialize`` and gives
    ``expected_index``."""

    workdir: ClassVar[Path]
    # ``redrive send`` as the operator runs it while the pipeline is live (the source of parked changes)
    REDRIVE: ClassVar[tuple[str, ...]] = ("redrive", "send")
    # how far the clock moves before parked re-syncs are read again (past the source's ambiguity bounds)
    AMBIGUITY_WAIT_S: ClassVar[float] = 0.0

    stack: SteppedStack
    final_damage: tuple[str, ...] = ()  # drawn by an initialize rule, if the example got that far
    lossy = False  # live records lost for good (trimmed unread, parked where redrive cannot take them): repair helps
    damaged: set[str]  # rows damaged in the index behind the pipeline's back (chunk 0 keys): only a repair helps

    def expected_index(self) -> Expected:
        raise NotImplementedError

    def may_read_the_table(self) -> bool:
        """Whether a re-sync read can run now without waiting for a lock (the test is one thread)."""
        return True

    def before_catching_up(self, *, final: bool) -> None:
        """What the source does before the pipeline catches up (Keyspaces: the purge of what expired; ``final``:
        after every TTL ran out)."""

    def finish_writes(self) -> None:
        """End what the writers left open before the final checks."""

    # -- the pipeline --
    @rule()
    def forward(self) -> None:
        self.stack.forward()

    @rule(shard=st.integers(0, 1), limit=st.integers(1, 5))
    def deliver(self, shard, limit) -> None:
        self.stack.deliver(self.stack.shard_ids[shard], limit)

    @rule(
        fault=st.sampled_from(["lose", "redeliver", "crash", "hold_put", "land_puts", "trim"]),
        shard=st.integers(0, 1),
        count=st.integers(1, 4),
    )
    def fault(self, fault, shard, count) -> None:
        """Something goes wrong: a batch parked, records delivered twice, a forwarder crash, a PutRecords call
        held in flight past its forwarder's lease and landed later, CDC records trimmed before they were read
        (a PostgreSQL slot keeps its WAL: nothing is trimmed)."""
        stack, shard_id = self.stack, self.stack.shard_ids[shard]
        if fault == "lose":
            stack.lose(shard_id, count)
        elif fault == "redeliver":
            stack.redeliver(shard_id, count)
        elif fault == "crash":
            stack.crash_forwarder()
        elif fault == "hold_put":
            stack.hold_next_put()
        elif fault == "land_puts":
            stack.land_held_puts()
        else:
            self.lossy |= stack.trim_unread() > 0

    # -- the operator, racing all of the above --
    @initialize(kinds=st.lists(st.sampled_from(DAMAGE_KINDS[:-1]), max_size=3, unique=True))
    def damage_before_the_final_repair(self, kinds) -> None:
        """What the index suffers once the pipeline caught up, just before the final repair (the damage rule may
        find an index not yet filled: here every row is in it): some of the kinds, and always last a version
        from the future on a changed value, which only a repair that compares no versions mends (while the
        pipeline runs, a re-sync would stay parked on it: only the repair may meet it)."""
        self.final_damage = (*sorted(kinds, key=DAMAGE_KINDS.index), "stale_future")

    @rule(kind=st.sampled_from(DAMAGE_KINDS))
    def damage_index(self, kind) -> None:
        """Drift behind the pipeline's back, in the versions too (a swap carries the other row's ``_ver``)."""
        self.damaged |= self.stack.damage(kind)

    @rule(command=st.sampled_from(["backfill", "redrive", "reconcile"]))
    def operator(self, command) -> None:
        if not self.may_read_the_table():
            return
        stack = self.stack
        if command == "backfill":
            state = self.workdir / f"{stack.config.stack_name}-backfill.json"
            code, output = stack.cli(
                "backfill", "--segments", "2", "--workers", "1", "--restart", "--state", str(state)
            )
            assert code == 0, output
        elif command == "redrive":
            code, output = stack.cli(*self.REDRIVE)
            assert code in (0, EXIT_CHECK_FAILED), output  # 1: an item had to be left in place
        else:
            code, output = stack.cli(*RECONCILE, "--repair")
            assert code in (0, 1), output

    @rule()
    def catch_up(self) -> None:
        """The pipeline catches up (what is parked read again, as ``redrive send`` does): every row the index
        damage did not touch is right, with no repair, at any quiet moment, not only at the end."""
        if not self.may_read_the_table():
            return
        self.catch_up_all(final=False)
        if not self.lossy:
            self.assert_index_equals_the_table("once the pipeline caught up", except_rows=self.damaged)

    # -- the checks --
    def catch_up_all(self, *, final: bool) -> None:
        """The source's own work (``before_catching_up``), then ``settle``, until waiting out the bounds moved
        the clock no more (time passing may expire more cells), or what stays parked waits for a repair."""
        self.before_catching_up(final=final)
        for _ in range(5):
            at = self.stack.clock()
            if not self.settle() or self.stack.clock() == at:
                return
            self.before_catching_up(final=False)
        raise AssertionError(f"the pipeline kept changing while it caught up: {self.stack.cli_runs[-2:]}")

    def settle(self) -> bool:
        """The pipeline catches up; what the sink parked (re-syncs too close to a write to tell whether they saw
        it) is read again once the source's bounds have passed, as ``redrive send`` does. False when something
        stays parked that only a repair helps: a batch ``redrive send`` leaves in place (exit 1: lost for good),
        or re-syncs of rows whose damaged version no read will pass."""
        output = ""
        for _ in range(10):
            self.stack.quiesce()
            if not self.stack.parked_count():
                return True
            if self.waits_for_a_repair():
                return False
            self.stack.clock.advance(self.AMBIGUITY_WAIT_S)
            code, output = self.stack.cli("redrive", "send")
            assert code in (0, EXIT_CHECK_FAILED), output
            summary = _REDRIVE_SUMMARY.search(output)
            assert summary is not None, output
            parked, resynced, left = (int(n) for n in summary.groups())
            if not parked:  # what is left is in flight, not parked
                return True
            if not resynced and left:
                self.lossy = True
                return False
        raise AssertionError(f"parked changes keep coming back: {output}\n{self.stack.cli('redrive', 'list')[1]}")

    def waits_for_a_repair(self) -> bool:
        """Every parked change is about a row the damage gave a version from the future (``future``): a re-sync
        cannot tell whether its read saw that state until the clock passes it, so it stays parked, and only a
        repair, which compares no versions, mends the row (docs/exactness.md)."""
        rows = self.stack.parked_rows()
        if not rows or not rows <= self.damaged:
            return False
        index, now_us = self.stack.index(), self.stack.clock() * 1_000_000
        bound_us = self.AMBIGUITY_WAIT_S * 1_000_000
        for row in rows:
            found = _FUTURE_KS_VERSION.search(str(index.get(row, (None, {}))[1].get("_ver", "")))
            if found is None or int(found.group(1)) <= now_us + bound_us:
                return False
        return True

    def assert_index_equals_the_table(self, when: str, *, except_rows: set[str] | frozenset[str] = frozenset()) -> None:
        """The index holds exactly the vectors the model calls for, leaving out ``except_rows`` (chunk 0 keys)."""

        def kept(key: str) -> bool:
            return key.partition("#")[0] not in except_rows

        want = {key: value for key, value in self.expected_index().items() if kept(key)}
        have = {key: value for key, value in self.stack.index().items() if kept(key)}
        assert sorted(have) == sorted(want), f"{when}: keys differ: index {sorted(have)}, table {sorted(want)}"
        for key, (text, metadata) in want.items():
            vector, stored = have[key]
            found = {k: v for k, v in stored.items() if k not in IGNORED_METADATA}
            assert found == metadata, f"{when}: {key}: index {found} ({stored.get('_ver')}), table {metadata}"
            assert _close(vector, fake_vector(text, VECTOR_DIMENSIONS)), f"{when}: {key}: another text's vector"

    def check_converges(self) -> None:
        stack = self.stack
        stack.land_held_puts()
        stack.quiesce()
        self.catch_up_all(final=True)
        if not self.lossy:  # no live record lost: the pipeline alone keeps every row right that was not damaged
            self.assert_index_equals_the_table("before the final repair", except_rows=self.damaged)
        for kind in self.final_damage:
            self.damaged |= stack.damage(kind)
        # the source's bounds pass after the last write: a repair read within them may not have seen it, and is
        # left to the next reconcile (docs/exactness.md)
        stack.clock.advance(self.AMBIGUITY_WAIT_S)
        code, output = stack.cli(*RECONCILE, "--repair")
        assert code in (0, 1), output
        self.settle()
        self.assert_index_equals_the_table("after one reconcile --repair")
        code, output = stack.cli(*RECONCILE)
        assert code == 0, f"reconcile still reports drift after the repair:\n{output}"

    def teardown(self) -> None:
        if not hasattr(self, "stack"):
            return
        try:
            self.finish_writes()
            self.check_converges()
        finally:
            self.close()

    def close(self) -> None:
        self.stack.close()


def _close(have: list[float], want: list[float], rel: float = 1e-5) -> bool:
    """Equal within float32 rounding (what the index stores)."""
    if len(have) != len(want):
        return False
    return all(abs(h - w) <= rel * max(abs(w), 1e-12) for h, w in zip(have, want, strict=True))
