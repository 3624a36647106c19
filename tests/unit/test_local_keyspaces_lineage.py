"""Shard lineage (splits, merges), re-enabled streams, iterator expiry, trimming and retention."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from freshvec.local.keyspaces import LocalKeyspacesStreams, ManualClock, partition_hash
from freshvec.testing.botocore_shapes import assert_is_modeled_error, assert_matches_output_shape

SERVICE = "keyspacesstreams"
HOUR = 3600


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def streams(clock) -> LocalKeyspacesStreams:
    return LocalKeyspacesStreams(clock=clock, seed=11)


def key(n: int) -> dict:
    return {"partitionKeys": {"id": {"intT": str(n)}}, "newImage": {"valueCells": {"id": {"value": {"intT": str(n)}}}}}


def shards_by_id(streams, arn: str, **kwargs) -> dict[str, dict]:
    described = streams.get_stream(streamArn=arn, **kwargs)
    assert_matches_output_shape(SERVICE, "GetStream", described)
    return {shard["shardId"]: shard for shard in described["shards"]}


def drain(streams, arn: str, shard_id: str) -> tuple[list[dict], dict]:
    """Read a shard from TRIM_HORIZON until it ends or reaches the tip; return records and the last page."""
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")[
        "shardIterator"
    ]
    records = []
    while True:
        page = streams.get_records(shardIterator=iterator, maxResults=7)
        assert_matches_output_shape(SERVICE, "GetRecords", page)
        records.extend(page["changeRecords"])
        if "nextShardIterator" not in page or (
            not page["changeRecords"] and page["iteratorDescription"]["iteratorPosition"] == "AT_TIP"
        ):
            return records, page
        iterator = page["nextShardIterator"]


def caught(call, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value


def test_split_closes_the_parent_and_children_list_it(streams):
    arn = streams.enable_stream("media", "movies")
    (parent,) = streams.shard_ids(arn)
    for n in range(20):
        streams.append("media", "movies", key(n))
    low, high = streams.split_shard(arn, parent)
    shards = shards_by_id(streams, arn)
    closed = shards[parent]["sequenceNumberRange"]
    assert "endingSequenceNumber" in closed
    assert int(closed["startingSequenceNumber"]) <= int(closed["endingSequenceNumber"])
    for child in (low, high):
        assert shards[child]["parentShardIds"] == [parent]
        assert "endingSequenceNumber" not in shards[child]["sequenceNumberRange"]
        assert int(shards[child]["sequenceNumberRange"]["startingSequenceNumber"]) > int(closed["endingSequenceNumber"])
    children = shards_by_id(streams, arn, shardFilter={"type": "CHILD_SHARDS", "shardId": parent})
    assert set(children) == {low, high}


def test_closed_shard_reads_to_its_end_then_has_no_next_iterator(streams):
    arn = streams.enable_stream("media", "movies")
    (parent,) = streams.shard_ids(arn)
    seqs = [streams.append("media", "movies", key(n)) for n in range(20)]
    streams.split_shard(arn, parent)
    records, last_page = drain(streams, arn, parent)
    assert [r["sequenceNumber"] for r in records] == seqs
    assert "nextShardIterator" not in last_page
    ending = shards_by_id(streams, arn)[parent]["sequenceNumberRange"]["endingSequenceNumber"]
    assert ending == seqs[-1]  # a reader checkpointed at the ending sequence number is done
    after_end = streams.get_shard_iterator(
        streamArn=arn, shardId=parent, shardIteratorType="AFTER_SEQUENCE_NUMBER", sequenceNumber=ending
    )
    page = streams.get_records(shardIterator=after_end["shardIterator"])
    assert page["changeRecords"] == []
    assert "nextShardIterator" not in page


def test_after_a_split_each_row_continues_in_the_child_covering_its_hash(streams):
    arn = streams.enable_stream("media", "movies")
    (parent,) = streams.shard_ids(arn)
    for n in range(30):
        streams.append("media", "movies", key(n))
    low, high = streams.split_shard(arn, parent)
    for n in range(30):
        streams.append("media", "movies", key(n))
    low_rows = {r["partitionKeys"]["id"]["intT"] for r in drain(streams, arn, low)[0]}
    high_rows = {r["partitionKeys"]["id"]["intT"] for r in drain(streams, arn, high)[0]}
    assert low_rows.isdisjoint(high_rows)
    assert low_rows | high_rows == {str(n) for n in range(30)}
    assert max(partition_hash(key(int(n))["partitionKeys"]) for n in low_rows) < min(
        partition_hash(key(int(n))["partitionKeys"]) for n in high_rows
    )


def test_merge_joins_adjacent_shards_into_one_child_with_two_parents(streams):
    arn = streams.enable_stream("media", "movies", shard_count=3)
    first, second, third = streams.shard_ids(arn)
    with pytest.raises(ValueError, match="adjacent"):
        streams.merge_shards(arn, first, third)
    child = streams.merge_shards(arn, second, first)
    shards = shards_by_id(streams, arn)
    assert sorted(shards[child]["parentShardIds"]) == sorted([first, second])
    assert "endingSequenceNumber" in shards[first]["sequenceNumberRange"]
    assert "endingSequenceNumber" in shards[second]["sequenceNumberRange"]
    assert streams.shard_ids(arn, open_only=True) == [third, child]
    with pytest.raises(ValueError, match="already closed"):
        streams.split_shard(arn, first)


def test_re_enabling_cdc_creates_a_new_stream_and_disables_the_old_one(streams, clock):
    old_arn = streams.enable_stream("media", "movies")
    old_seq = streams.append("media", "movies", key(1))
    clock.advance(60)
    new_arn = streams.enable_stream("media", "movies", shard_count=2)
    new_seq = streams.append("media", "movies", key(2))
    assert new_arn != old_arn
    listed = streams.list_streams(keyspaceName="media", tableName="movies")["streams"]
    assert [s["streamArn"] for s in listed] == [old_arn, new_arn]
    assert listed[0]["streamLabel"] < listed[1]["streamLabel"]
    old = streams.get_stream(streamArn=old_arn)
    assert old["streamStatus"] == "DISABLED"
    assert all("endingSequenceNumber" in s["sequenceNumberRange"] for s in old["shards"])
    assert streams.get_stream(streamArn=new_arn)["streamStatus"] == "ENABLED"
    (old_shard,) = streams.shard_ids(old_arn)
    records, last_page = drain(streams, old_arn, old_shard)
    assert [r["sequenceNumber"] for r in records] == [old_seq]
    assert "nextShardIterator" not in last_page
    new_records = [r for shard in streams.shard_ids(new_arn) for r in drain(streams, new_arn, shard)[0]]
    assert [r["sequenceNumber"] for r in new_records] == [new_seq]


def test_re_enable_in_the_same_millisecond_still_gets_a_later_label(streams):
    first = streams.enable_stream("media", "movies")
    second = streams.enable_stream("media", "movies")
    labels = [s["streamLabel"] for s in streams.list_streams(keyspaceName="media", tableName="movies")["streams"]]
    assert first != second
    assert labels == sorted(labels)
    assert len(set(labels)) == 2


def test_iterators_expire_after_15_minutes_of_the_clock(streams, clock):
    arn = streams.enable_stream("media", "movies")
    streams.append("media", "movies", key(1))
    shard_id = streams.shard_ids(arn)[0]
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")[
        "shardIterator"
    ]
    clock.advance(14 * 60)
    page = streams.get_records(shardIterator=iterator)
    assert len(page["changeRecords"]) == 1
    clock.advance(15 * 60 + 1)
    error = caught(streams.get_records, shardIterator=page["nextShardIterator"])
    assert_is_modeled_error(SERVICE, "GetRecords", error)
    assert error.response["errorCode"] == "ExpiredIterator"


def test_expire_iterators_expires_everything_handed_out(streams):
    arn = streams.enable_stream("media", "movies")
    shard_id = streams.shard_ids(arn)[0]
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="LATEST")["shardIterator"]
    streams.expire_iterators()
    error = caught(streams.get_records, shardIterator=iterator)
    assert error.response["errorCode"] == "ExpiredIterator"
    fresh = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="LATEST")["shardIterator"]
    assert streams.get_records(shardIterator=fresh)["changeRecords"] == []


def test_next_tokens_expire(streams, clock):
    arn = streams.enable_stream("media", "movies", shard_count=3)
    token = streams.get_stream(streamArn=arn, maxResults=1)["nextToken"]
    clock.advance(16 * 60)
    error = caught(streams.get_stream, streamArn=arn, maxResults=1, nextToken=token)
    assert_is_modeled_error(SERVICE, "GetStream", error)
    assert error.response["errorCode"] == "ExpiredNextToken"


def test_explicit_trim_makes_readers_behind_it_fail_with_trimmed_data_access(streams):
    arn = streams.enable_stream("media", "movies")
    shard_id = streams.shard_ids(arn)[0]
    seqs = [streams.append("media", "movies", key(n)) for n in range(10)]
    behind = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")[
        "shardIterator"
    ]
    streams.trim(arn, shard_id, seqs[3])
    error = caught(streams.get_records, shardIterator=behind)
    assert_is_modeled_error(SERVICE, "GetRecords", error)
    assert error.response["errorCode"] == "TrimmedDataAccess"
    error = caught(
        streams.get_shard_iterator,
        streamArn=arn,
        shardId=shard_id,
        shardIteratorType="AT_SEQUENCE_NUMBER",
        sequenceNumber=seqs[2],
    )
    assert_is_modeled_error(SERVICE, "GetShardIterator", error)
    assert error.response["errorCode"] == "TrimmedDataAccess"
    after_horizon = streams.get_shard_iterator(
        streamArn=arn, shardId=shard_id, shardIteratorType="AFTER_SEQUENCE_NUMBER", sequenceNumber=seqs[3]
    )
    assert [
        r["sequenceNumber"] for r in streams.get_records(shardIterator=after_horizon["shardIterator"])["changeRecords"]
    ] == seqs[4:]
    horizon = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")
    assert [
        r["sequenceNumber"] for r in streams.get_records(shardIterator=horizon["shardIterator"])["changeRecords"]
    ] == seqs[4:]


def test_records_older_than_24_hours_are_trimmed(streams, clock):
    arn = streams.enable_stream("media", "movies")
    shard_id = streams.shard_ids(arn)[0]
    early = [streams.append("media", "movies", key(n)) for n in range(3)]
    clock.advance(2 * HOUR)
    late = [streams.append("media", "movies", key(n)) for n in range(3, 5)]
    clock.advance(22 * HOUR + 1)
    assert streams.record_count(arn) == 2
    error = caught(
        streams.get_shard_iterator,
        streamArn=arn,
        shardId=shard_id,
        shardIteratorType="AFTER_SEQUENCE_NUMBER",
        sequenceNumber=early[0],
    )
    assert error.response["errorCode"] == "TrimmedDataAccess"
    horizon = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")
    assert [
        r["sequenceNumber"] for r in streams.get_records(shardIterator=horizon["shardIterator"])["changeRecords"]
    ] == late


def test_closed_shards_and_disabled_streams_disappear_after_retention(streams, clock):
    old_arn = streams.enable_stream("media", "movies")
    (parent,) = streams.shard_ids(old_arn)
    streams.append("media", "movies", key(1))
    low, high = streams.split_shard(old_arn, parent)
    streams.enable_stream("media", "movies")  # disables old_arn
    clock.advance(24 * HOUR + 1)
    error = caught(streams.get_stream, streamArn=old_arn)
    assert_is_modeled_error(SERVICE, "GetStream", error)
    assert error.response["Error"]["Code"] == "ResourceNotFoundException"
    assert len(streams.list_streams(keyspaceName="media", tableName="movies")["streams"]) == 1
    assert low and high


def test_a_new_stream_reports_enabling_until_it_is_ready(streams, clock):
    arn = streams.enable_stream("media", "movies", enabling_s=30)
    assert streams.get_stream(streamArn=arn)["streamStatus"] == "ENABLING"
    seq = streams.append("media", "movies", key(1))
    clock.advance(30)
    described = streams.get_stream(streamArn=arn)
    assert_matches_output_shape(SERVICE, "GetStream", described)
    assert described["streamStatus"] == "ENABLED"
    assert [r["sequenceNumber"] for r in drain(streams, arn, streams.shard_ids(arn)[0])[0]] == [seq]
