"""Local mode's Kinesis keeps every acknowledged put when puts to one shard arrive at once, as Kinesis does."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from freshvec.local.moto_server import MotoServer

WRITERS, PUTS, BATCH = 8, 40, 5


def test_concurrent_puts_to_one_shard_are_all_kept() -> None:
    with MotoServer.start() as server:
        kinesis = server.client("kinesis")
        kinesis.create_stream(StreamName="puts", ShardCount=1)

        def writer(number: int) -> list[str]:
            client = server.client("kinesis")
            sequences = []
            for put in range(PUTS):
                records = [
                    {"Data": f"{number}-{put}-{i}".encode(), "PartitionKey": f"{number}-{put}-{i}"}
                    for i in range(BATCH)
                ]
                answer = client.put_records(StreamName="puts", Records=records)
                assert answer["FailedRecordCount"] == 0
                sequences += [r["SequenceNumber"] for r in answer["Records"]]
            return sequences

        with ThreadPoolExecutor(WRITERS) as pool:
            acknowledged = [s for found in pool.map(writer, range(WRITERS)) for s in found]
        shard = kinesis.list_shards(StreamName="puts")["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName="puts", ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        stored = kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
    assert len(set(acknowledged)) == WRITERS * PUTS * BATCH  # each acknowledged record has its own number
    assert sorted(r["Data"].decode() for r in stored) == sorted(
        f"{n}-{p}-{i}" for n in range(WRITERS) for p in range(PUTS) for i in range(BATCH)
    )
