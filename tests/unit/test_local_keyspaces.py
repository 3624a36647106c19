"""The Keyspaces Streams stand-in answers like the boto3 client: shapes, pagination, errors, parameters."""

from __future__ import annotations

import re
import threading

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from freshvec.local.keyspaces import LocalKeyspacesStreams, LocalTable, ManualClock
from freshvec.testing.botocore_shapes import assert_is_modeled_error, assert_matches_output_shape

SERVICE = "keyspacesstreams"
ARN_RE = re.compile(
    r"^arn:aws:cassandra:us-east-1:111122223333:/keyspace/media/table/movies/stream/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$"
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def streams(clock) -> LocalKeyspacesStreams:
    return LocalKeyspacesStreams(clock=clock, seed=7)


@pytest.fixture
def movies(streams, clock) -> LocalTable:
    streams.enable_stream("media", "movies")
    return LocalTable(
        "media", "movies", {"title": "text", "year": "int", "overview": "text"}, ["title"], (), streams, clock
    )


def key(n: int) -> dict:
    return {"partitionKeys": {"id": {"intT": str(n)}}, "newImage": {"valueCells": {"id": {"value": {"intT": str(n)}}}}}


def read_all(streams, arn: str, shard_id: str, **iterator_args) -> list[dict]:
    iterator = streams.get_shard_iterator(
        streamArn=arn, shardId=shard_id, shardIteratorType=iterator_args.pop("kind", "TRIM_HORIZON"), **iterator_args
    )["shardIterator"]
    records = []
    while iterator:
        page = streams.get_records(shardIterator=iterator, maxResults=1000)
        records.extend(page["changeRecords"])
        if not page["changeRecords"] and page["iteratorDescription"]["iteratorPosition"] == "AT_TIP":
            break
        iterator = page.get("nextShardIterator")
    return records


def caught(call, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value


def test_every_operation_answers_in_the_model_shape(streams, movies):
    movies.upsert([{"title": "Jaws", "year": 1975, "overview": "A shark."}])
    movies.upsert([{"title": "Jaws", "overview": "A bigger shark."}])
    movies.delete([{"title": "Jaws"}])
    listed = streams.list_streams(keyspaceName="media", tableName="movies")
    assert_matches_output_shape(SERVICE, "ListStreams", listed)
    arn = listed["streams"][0]["streamArn"]
    assert ARN_RE.match(arn)
    described = streams.get_stream(streamArn=arn)
    assert_matches_output_shape(SERVICE, "GetStream", described)
    assert described["streamStatus"] == "ENABLED"
    assert described["streamViewType"] == "NEW_AND_OLD_IMAGES"
    shard_id = described["shards"][0]["shardId"]
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")
    assert_matches_output_shape(SERVICE, "GetShardIterator", iterator)
    page = streams.get_records(shardIterator=iterator["shardIterator"])
    assert_matches_output_shape(SERVICE, "GetRecords", page)
    assert [("oldImage" in r, "newImage" in r) for r in page["changeRecords"]] == [
        (False, True),
        (True, True),
        (True, False),
    ]
    assert page["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_sequence_numbers_are_numeric_strings_increasing_per_shard(streams):
    arn = streams.enable_stream("media", "movies", shard_count=3)
    for n in range(60):
        streams.append("media", "movies", key(n))
    total = 0
    for shard_id in streams.shard_ids(arn):
        seqs = [r["sequenceNumber"] for r in read_all(streams, arn, shard_id)]
        assert all(s.isdigit() and 21 <= len(s) <= 48 for s in seqs)
        assert [int(s) for s in seqs] == sorted(int(s) for s in seqs)
        assert len(set(seqs)) == len(seqs)
        total += len(seqs)
    assert total == 60


def test_one_rows_changes_stay_in_one_shard_in_order(streams):
    arn = streams.enable_stream("media", "movies", shard_count=4)
    for version in range(5):
        for n in range(20):
            record = key(n)
            record["newImage"]["valueCells"]["v"] = {"value": {"intT": str(version)}}
            streams.append("media", "movies", record)
    where: dict[str, set[str]] = {}
    versions: dict[str, list[str]] = {}
    for shard_id in streams.shard_ids(arn):
        for record in read_all(streams, arn, shard_id):
            row = record["partitionKeys"]["id"]["intT"]
            where.setdefault(row, set()).add(shard_id)
            versions.setdefault(row, []).append(record["newImage"]["valueCells"]["v"]["value"]["intT"])
    assert all(len(shards) == 1 for shards in where.values())
    assert all(v == ["0", "1", "2", "3", "4"] for v in versions.values())
    assert len({next(iter(s)) for s in where.values()}) > 1  # rows really are spread over shards


def test_get_records_pages_by_max_results_and_reports_the_tip(streams):
    arn = streams.enable_stream("media", "movies")
    for n in range(25):
        streams.append("media", "movies", key(n))
    shard_id = streams.shard_ids(arn)[0]
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")[
        "shardIterator"
    ]
    sizes, positions = [], []
    for _ in range(4):
        page = streams.get_records(shardIterator=iterator, maxResults=10)
        sizes.append(len(page["changeRecords"]))
        positions.append(page["iteratorDescription"]["iteratorPosition"])
        iterator = page["nextShardIterator"]  # the shard is open: always a next iterator
    assert sizes == [10, 10, 5, 0]
    assert positions == ["BEHIND_TIP", "BEHIND_TIP", "AT_TIP", "AT_TIP"]
    streams.append("media", "movies", key(99))
    assert [r["partitionKeys"]["id"]["intT"] for r in streams.get_records(shardIterator=iterator)["changeRecords"]] == [
        "99"
    ]


def test_default_get_records_limit_is_100_and_above_1000_is_refused(streams):
    arn = streams.enable_stream("media", "movies")
    for n in range(150):
        streams.append("media", "movies", key(n))
    shard_id = streams.shard_ids(arn)[0]
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")[
        "shardIterator"
    ]
    assert len(streams.get_records(shardIterator=iterator)["changeRecords"]) == 100
    error = caught(streams.get_records, shardIterator=iterator, maxResults=1001)
    assert_is_modeled_error(SERVICE, "GetRecords", error)
    assert error.response["errorCode"] == "InvalidFormat"


def test_iterator_types_position_the_reader(streams):
    arn = streams.enable_stream("media", "movies")
    seqs = [streams.append("media", "movies", key(n)) for n in range(5)]
    shard_id = streams.shard_ids(arn)[0]

    def first_seq(kind: str, seq: str | None = None) -> list[str]:
        args = {"sequenceNumber": seq} if seq else {}
        iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType=kind, **args)
        return [
            r["sequenceNumber"] for r in streams.get_records(shardIterator=iterator["shardIterator"])["changeRecords"]
        ]

    assert first_seq("TRIM_HORIZON") == seqs
    assert first_seq("AT_SEQUENCE_NUMBER", seqs[2]) == seqs[2:]
    assert first_seq("AFTER_SEQUENCE_NUMBER", seqs[2]) == seqs[3:]
    assert first_seq("LATEST") == []


def test_list_streams_pages_with_long_opaque_tokens(streams):
    for n in range(7):
        streams.enable_stream("media", f"t{n}")
    streams.enable_stream("other", "t0")
    pages = []
    request = {"keyspaceName": "media", "maxResults": 3}
    while True:
        page = streams.list_streams(**request)
        assert_matches_output_shape(SERVICE, "ListStreams", page)
        pages.append([s["tableName"] for s in page["streams"]])
        if "nextToken" not in page:
            break
        assert len(page["nextToken"]) >= 80
        request["nextToken"] = page["nextToken"]
    assert pages == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
    assert len(streams.list_streams()["streams"]) == 8
    assert streams.list_streams(keyspaceName="none")["streams"] == []


def test_get_stream_pages_shards_and_botocore_paginator_collects_them(streams):
    arn = streams.enable_stream("media", "movies", shard_count=5)
    first = streams.get_stream(streamArn=arn, maxResults=2)
    assert len(first["shards"]) == 2
    assert_matches_output_shape(SERVICE, "GetStream", first)
    second = streams.get_stream(streamArn=arn, maxResults=2, nextToken=first["nextToken"])
    assert_matches_output_shape(SERVICE, "GetStream", second)
    assert {s["shardId"] for s in first["shards"]}.isdisjoint(s["shardId"] for s in second["shards"])
    collected = streams.get_paginator("get_stream").paginate(streamArn=arn, PaginationConfig={"PageSize": 2})
    full = collected.build_full_result()
    assert [s["shardId"] for s in full["shards"]] == streams.shard_ids(arn)
    assert full["streamStatus"] == "ENABLED"
    tables = streams.get_paginator("list_streams").paginate(keyspaceName="media").build_full_result()
    assert [s["streamArn"] for s in tables["streams"]] == [arn]


def test_a_token_from_another_request_is_invalid_format(streams):
    arn = streams.enable_stream("media", "movies", shard_count=3)
    streams.enable_stream("media", "movies2", shard_count=3)
    token = streams.get_stream(streamArn=arn, maxResults=1)["nextToken"]
    error = caught(streams.list_streams, nextToken=token)
    assert_is_modeled_error(SERVICE, "ListStreams", error)
    assert error.response["errorCode"] == "InvalidFormat"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    error = caught(streams.get_stream, streamArn=arn, nextToken=forged)
    assert error.response["errorCode"] == "InvalidFormat"


def test_unknown_stream_and_shard_are_resource_not_found(streams):
    arn = streams.enable_stream("media", "movies")
    missing = arn.replace("movies", "nothing")
    for call, args, operation in (
        (streams.get_stream, {"streamArn": missing}, "GetStream"),
        (
            streams.get_shard_iterator,
            {"streamArn": arn, "shardId": "shardId-00000000000000000000-deadbeef", "shardIteratorType": "LATEST"},
            "GetShardIterator",
        ),
    ):
        error = caught(call, **args)
        assert_is_modeled_error(SERVICE, operation, error)
        assert error.response["Error"]["Code"] == "ResourceNotFoundException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    error = caught(streams.get_stream, streamArn="arn:aws:s3:::a-bucket-name-that-is-long-enough")
    assert error.response["errorCode"] == "InvalidFormat"


def test_validation_errors_carry_error_code_where_boto3_puts_it(streams):
    arn = streams.enable_stream("media", "movies")
    shard_id = streams.shard_ids(arn)[0]
    cases = [
        (streams.get_records, {"shardIterator": "not-an-iterator"}, "GetRecords"),
        (
            streams.get_shard_iterator,
            {"streamArn": arn, "shardId": shard_id, "shardIteratorType": "AT_SEQUENCE_NUMBER"},
            "GetShardIterator",
        ),
        (
            streams.get_shard_iterator,
            {"streamArn": arn, "shardId": shard_id, "shardIteratorType": "SOMEWHERE"},
            "GetShardIterator",
        ),
        (
            streams.get_shard_iterator,
            {
                "streamArn": arn,
                "shardId": shard_id,
                "shardIteratorType": "AT_SEQUENCE_NUMBER",
                "sequenceNumber": "9" * 30,
            },
            "GetShardIterator",
        ),
        (streams.list_streams, {"tableName": "movies"}, "ListStreams"),
        (streams.get_stream, {"streamArn": arn, "shardFilter": {"shardId": shard_id}}, "GetStream"),
        (streams.get_stream, {"streamArn": arn, "maxResults": 101}, "GetStream"),
    ]
    for call, args, operation in cases:
        error = caught(call, **args)
        response = assert_is_modeled_error(SERVICE, operation, error)
        assert isinstance(error, streams.exceptions.ValidationException)
        assert response["Error"]["Code"] == "ValidationException"
        assert response["errorCode"] == "InvalidFormat", (operation, args)
        assert response["message"] == response["Error"]["Message"]


def test_parameters_are_validated_like_the_boto3_client(streams):
    with pytest.raises(ParamValidationError, match="Missing required parameter"):
        streams.get_records()
    with pytest.raises(ParamValidationError, match="Unknown parameter"):
        streams.list_streams(KeyspaceName="media")
    with pytest.raises(ParamValidationError, match="Invalid type"):
        streams.get_records(shardIterator="x", maxResults="10")
    with pytest.raises(ParamValidationError, match="valid min value: 1"):
        streams.get_records(shardIterator="x", maxResults=0)


def test_throttling_is_random_but_reproducible_and_counted(streams):
    arn = streams.enable_stream("media", "movies")
    streams.throttle(0.5, seed=3, operations=["GetStream"])
    outcomes = []
    for _ in range(40):
        try:
            streams.get_stream(streamArn=arn)
            outcomes.append("ok")
        except ClientError as error:
            assert_is_modeled_error(SERVICE, "GetStream", error)
            assert isinstance(error, streams.exceptions.ThrottlingException)
            outcomes.append("throttled")
    assert 5 < outcomes.count("throttled") < 35
    assert streams.counters()["throttled"] == {"GetStream": outcomes.count("throttled")}
    assert streams.counters()["calls"]["GetStream"] == 40
    streams.list_streams()  # not a throttled operation
    again = LocalKeyspacesStreams(clock=ManualClock(), seed=7)
    again_arn = again.enable_stream("media", "movies")
    again.throttle(0.5, seed=3, operations=["GetStream"])
    replay = []
    for _ in range(40):
        try:
            again.get_stream(streamArn=again_arn)
            replay.append("ok")
        except ClientError:
            replay.append("throttled")
    assert replay == outcomes
    streams.throttle(0.0)
    streams.get_stream(streamArn=arn)


def test_injected_errors_and_denied_access_use_the_real_codes(streams):
    arn = streams.enable_stream("media", "movies")
    streams.inject_error("GetStream", "InternalServerException", count=2)
    for _ in range(2):
        error = caught(streams.get_stream, streamArn=arn)
        assert_is_modeled_error(SERVICE, "GetStream", error)
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    streams.get_stream(streamArn=arn)
    streams.deny_access(["ListStreams"])
    error = caught(streams.list_streams)
    assert_is_modeled_error(SERVICE, "ListStreams", error)
    assert isinstance(error, streams.exceptions.AccessDeniedException)
    streams.deny_access([])
    streams.list_streams()
    with pytest.raises(ValueError, match="not an error Keyspaces Streams returns"):
        streams.inject_error("GetStream", "NoSuchBucket")


def test_latency_is_injected_per_operation():
    slept: list[float] = []
    streams = LocalKeyspacesStreams(clock=ManualClock(), seed=1, sleep=slept.append)
    arn = streams.enable_stream("media", "movies")
    streams.latency(get_stream_s=0.02, get_records_s=0.005)
    streams.get_stream(streamArn=arn)
    streams.list_streams()
    shard_id = streams.shard_ids(arn)[0]
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="LATEST")["shardIterator"]
    streams.get_records(shardIterator=iterator)
    assert slept == [0.02, 0.005]
    streams.latency()
    streams.get_stream(streamArn=arn)
    assert slept == [0.02, 0.005]


def test_view_types_cut_images_like_the_service(streams):
    for view, expected in (
        ("NEW_IMAGE", (False, True)),
        ("OLD_IMAGE", (True, False)),
        ("KEYS_ONLY", (False, False)),
    ):
        arn = streams.enable_stream("media", view.lower(), view_type=view)
        record = key(1)
        record["oldImage"] = {"valueCells": {}}
        streams.append("media", view.lower(), record)
        (got,) = read_all(streams, arn, streams.shard_ids(arn)[0])
        assert ("oldImage" in got, "newImage" in got) == expected
        assert got["partitionKeys"] == {"id": {"intT": "1"}}
        assert streams.get_stream(streamArn=arn)["streamViewType"] == view


def test_append_refuses_records_it_cannot_route_and_ignores_tables_without_cdc(streams):
    assert streams.append("media", "no_cdc", key(1)) is None
    streams.enable_stream("media", "movies")
    with pytest.raises(ValueError, match="sequenceNumber"):
        streams.append("media", "movies", {**key(1), "sequenceNumber": "1" * 21})
    with pytest.raises(ValueError, match="partitionKeys"):
        streams.append("media", "movies", {"newImage": {}})


def test_returned_records_are_copies(streams):
    arn = streams.enable_stream("media", "movies")
    streams.append("media", "movies", key(1))
    shard_id = streams.shard_ids(arn)[0]
    (first,) = read_all(streams, arn, shard_id)
    first["partitionKeys"]["id"]["intT"] = "changed"
    (again,) = read_all(streams, arn, shard_id)
    assert again["partitionKeys"]["id"]["intT"] == "1"


def test_readers_in_threads_see_every_record_once_in_order_while_a_writer_appends(streams):
    arn = streams.enable_stream("media", "movies", shard_count=4)
    total = 2000
    done = threading.Event()

    def write() -> None:
        for n in range(total):
            record = key(n % 50)
            record["newImage"]["valueCells"]["n"] = {"value": {"intT": str(n)}}
            streams.append("media", "movies", record)
        done.set()

    seen: dict[str, list[int]] = {}

    def read(shard_id: str) -> None:
        iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")[
            "shardIterator"
        ]
        numbers = []
        while True:
            finished = done.is_set()
            page = streams.get_records(shardIterator=iterator, maxResults=37)
            numbers.extend(int(r["newImage"]["valueCells"]["n"]["value"]["intT"]) for r in page["changeRecords"])
            iterator = page["nextShardIterator"]
            if finished and not page["changeRecords"]:
                break
        seen[shard_id] = numbers

    readers = [threading.Thread(target=read, args=(shard_id,)) for shard_id in streams.shard_ids(arn)]
    writer = threading.Thread(target=write)
    for thread in (*readers, writer):
        thread.start()
    for thread in (*readers, writer):
        thread.join(timeout=60)
    everything = [n for numbers in seen.values() for n in numbers]
    assert sorted(everything) == list(range(total))
    assert all(numbers == sorted(numbers) for numbers in seen.values())


def test_a_third_reader_on_one_shard_is_throttled_when_readers_are_limited(streams, clock):
    arn = streams.enable_stream("media", "movies")
    streams.append("media", "movies", key(1))
    shard_id = streams.shard_ids(arn)[0]
    streams.limit_readers(max_readers=2, window_s=1.0)

    def reader() -> str:
        return streams.get_shard_iterator(streamArn=arn, shardId=shard_id, shardIteratorType="TRIM_HORIZON")[
            "shardIterator"
        ]

    first, second, third = reader(), reader(), reader()
    next_first = streams.get_records(shardIterator=first)["nextShardIterator"]
    streams.get_records(shardIterator=second)
    error = caught(streams.get_records, shardIterator=third)
    assert_is_modeled_error(SERVICE, "GetRecords", error)
    assert isinstance(error, streams.exceptions.ThrottlingException)
    streams.get_records(shardIterator=next_first)  # a reader following its own chain is still the same reader
    clock.advance(1.5)  # the other readers went quiet: a new one may start
    streams.get_records(shardIterator=reader())
    streams.limit_readers(None)
    for _ in range(3):
        streams.get_records(shardIterator=reader())


def test_client_metadata_like_boto3(streams):
    assert streams.meta.region_name == "us-east-1"
    assert streams.meta.service_model.service_name == "keyspacesstreams"
    assert streams.can_paginate("get_stream")
    assert not streams.can_paginate("get_records")
    with pytest.raises(ValueError, match="cannot be paginated"):
        streams.get_paginator("get_records")


def test_large_records_make_short_pages_behind_the_tip(clock):
    small = LocalKeyspacesStreams(clock=clock, seed=2, max_response_bytes=10_000)
    arn = small.enable_stream("media", "movies")
    for n in range(10):
        record = key(n)
        record["newImage"]["valueCells"]["text"] = {"value": {"textT": "x" * 3000}}
        small.append("media", "movies", record)
    iterator = small.get_shard_iterator(
        streamArn=arn, shardId=small.shard_ids(arn)[0], shardIteratorType="TRIM_HORIZON"
    )
    sizes, positions = [], []
    token = iterator["shardIterator"]
    while True:
        page = small.get_records(shardIterator=token, maxResults=1000)
        if not page["changeRecords"]:
            break
        sizes.append(len(page["changeRecords"]))
        positions.append(page["iteratorDescription"]["iteratorPosition"])
        token = page["nextShardIterator"]
    assert sum(sizes) == 10
    assert max(sizes) < 10
    assert positions[:-1] == ["BEHIND_TIP"] * (len(positions) - 1)
    assert positions[-1] == "AT_TIP"
