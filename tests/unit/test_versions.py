"""Versions: one order per source, JSON-safe texts, and the verdicts the sink folds a key's changes with."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from freshvec import versions
from freshvec.adapters.memory import InProcessTombstones
from freshvec.sources.postgres.reader import full_xid
from freshvec.versions import KsChange, KsRead, PgChange, PgSnapshot, Verdict, verdict

XIDS = st.integers(3, 60)
SNAPSHOTS = st.builds(
    lambda xmin, span, running: PgSnapshot(xmin, xmin + span, frozenset(x for x in running if xmin <= x < xmin + span)),
    XIDS,
    st.integers(0, 8),
    st.frozensets(XIDS, max_size=6),
)
PG_CHANGES = st.builds(PgChange, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(3, 2**63))
KS_CHANGES = st.builds(
    KsChange,
    st.integers(0, 10**16 - 1),
    st.text(alphabet="0123456789-:T.Z/", max_size=30),
    st.integers(0, 9999),
    st.integers(0, 10**40),
)
VERSIONS = st.one_of(PG_CHANGES, SNAPSHOTS, KS_CHANGES, st.builds(KsRead, st.integers(-(10**17), 10**17)))


@given(VERSIONS)
def test_every_version_is_a_json_safe_text_that_reads_back_exactly(version: versions.Version) -> None:
    text = version.text()
    assert json.loads(json.dumps(text)) == text and versions.parse(text) == version


def test_texts_in_no_known_form_cannot_be_ordered_and_block_nothing() -> None:
    for text in (None, "12345", "pg:zz", "ks:1", "", "other:1"):
        assert versions.parse(text) is None
    assert verdict(None, versions.parse("ks:0000000000000005:0000:5:l")) is Verdict.APPLY
    assert verdict(KsRead(1), None) is Verdict.APPLY


@given(SNAPSHOTS, SNAPSHOTS)
def test_covers_means_every_visible_xid_stays_visible(newer: PgSnapshot, older: PgSnapshot) -> None:
    brute = all(newer.visible(x) for x in range(0, 80) if older.visible(x))
    assert newer.covers(older) == brute


def test_postgres_live_changes_order_by_commit_lsn_then_position_in_the_transaction() -> None:
    update, insert, truncate, later = (PgChange(0x500, i, 9) for i in range(4))
    assert verdict(truncate, insert) is Verdict.APPLY and verdict(insert, truncate) is Verdict.SKIP
    assert versions.newer(truncate, update) and not versions.newer(truncate, later)
    assert verdict(PgChange(0x400, 9, 7), truncate) is Verdict.SKIP


def test_a_snapshot_is_placed_by_visibility_not_by_commit_order() -> None:
    """Long fork: the snapshot saw xid 12 (committed later in the WAL) but not xid 11 (committed earlier)."""
    snapshot = PgSnapshot(xmin=11, xmax=13, xip=frozenset({11}))
    early, late = PgChange(0x100, 0, 11), PgChange(0x200, 0, 12)
    assert verdict(early, snapshot) is Verdict.APPLY  # not included: the live change wins
    assert verdict(late, snapshot) is Verdict.SKIP  # included: it arrives again and is dropped
    assert verdict(snapshot, late) is Verdict.APPLY and verdict(snapshot, early) is Verdict.SKIP


def test_keyspaces_rules_against_a_reads_stamp() -> None:
    read = KsRead(100)
    assert verdict(read, KsChange(100, "l", 0, 1)) is Verdict.APPLY  # seen for certain
    assert verdict(read, KsChange(101, "l", 0, 1)) is Verdict.AMBIGUOUS  # maybe not seen: read again
    assert verdict(KsChange(101, "l", 0, 1), read) is Verdict.APPLY  # newer than the stamp
    assert verdict(KsChange(100, "l", 0, 1), read) is Verdict.SKIP  # the read included it
    assert verdict(KsRead(99), read) is Verdict.SKIP and verdict(KsRead(101), read) is Verdict.APPLY
    stamp = versions.keyspaces_read_stamp(1000.0)
    assert stamp.stamp_us == 998_000_000  # the read's start minus B (1 s) and δ (1 s)


def test_the_write_id_rides_with_the_version_in_one_metadata_value() -> None:
    write_id = versions.new_write_id()
    assert write_id != versions.new_write_id() and len(write_id) == 16
    value = versions.stamp(write_id, "pg:0000000000000500:00000002:9")
    assert versions.unstamp(value) == (write_id, "pg:0000000000000500:00000002:9")
    assert versions.unstamp(versions.stamp(write_id, None)) == (write_id, None)
    assert versions.unstamp("1795000000000042") == (None, None)  # written before write ids


def test_the_64_bit_xid_of_a_32_bit_one_uses_the_servers_next_xid() -> None:
    assert full_xid(700, 1000) == 700
    assert full_xid(2**32 - 5, 2**32 + 10) == 2**32 - 5  # committed before the wraparound of the low bits
    assert full_xid(3, 2**33 + 10) == 2**33 + 3


def test_an_in_process_tombstone_only_rises() -> None:
    tombstones = InProcessTombstones(clock=lambda: 0.0)
    high, low = KsChange(9, "l", 0, 9).text(), KsChange(5, "l", 0, 5).text()
    tombstones.put({"k": high}, expires_at=100)
    tombstones.put({"k": low}, expires_at=100)
    assert tombstones.get(["k"]) == {"k": high}
    higher = KsChange(12, "l", 0, 12).text()
    tombstones.put({"k": higher}, expires_at=100)
    assert tombstones.get(["k"]) == {"k": higher}
