"""What the forwarder's run-time check of per-row ``createdAt`` order costs, against the work it does anyway.

One page of 1,000 Keyspaces stream records (the most GetRecords returns; rows drawn from 200 titles, so rows
repeat within the page as a hot table's do) is read from the stand-in. In the same run, with the same records:

- ``forwarder_created_at_check_us_per_page``: ``created_at_regressions`` over the page, whose ``createdAt`` rises
  along it (the stand-in's service clock): one comparison per record;
- ``forwarder_created_at_check_us_per_page_out_of_order``: the same page with the first two records' times
  swapped (two different rows: still no regression), so rows are told apart from the second record on — the
  check's worst case;
- ``forwarder_convert_us_per_page``: converting the page into change events (``RecordConverter.convert``, what
  the forwarder does with every record anyway): the fair baseline;
- ``forwarder_created_at_check_share_of_convert`` (and ``..._out_of_order``): the check over the conversion;
- ``forwarder_created_at_check_share_of_get_records``: the check against the 20 ms of one GetRecords call that
  ``bench.forwarder`` models. The check makes no call of its own.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from freshvec.config import DEFAULT_CONFIG, PipelineConfig
from freshvec.local.keyspaces import LocalKeyspacesStreams, LocalTable
from freshvec.sources.keyspaces.convert import RecordConverter
from freshvec.sources.keyspaces.streams import created_at_regressions

PAGE = 1_000
TITLES = 200
ROUNDS = 30
GET_RECORDS_LATENCY_S = 0.020  # as bench.forwarder models it


def _page(config: PipelineConfig) -> list[dict[str, Any]]:
    streams = LocalKeyspacesStreams(seed=1)
    arn = streams.enable_stream(config.keyspace, config.table, shard_count=1)
    table = LocalTable(config.keyspace, config.table, config.columns, config.partition_key, streams=streams)
    rng = random.Random(5)
    for n in range(PAGE):
        title = f"Movie {rng.randrange(TITLES)}"
        row = {"title": title, "overview": f"Overview {n} " * 8, "vote_count": n, "popularity": "1.00",
               "rel_date": "2026-01-02"}  # fmt: skip
        table.upsert([row])
    [shard] = streams.shard_ids(arn)
    iterator = streams.get_shard_iterator(streamArn=arn, shardId=shard, shardIteratorType="TRIM_HORIZON")
    records = streams.get_records(shardIterator=iterator["shardIterator"], maxResults=PAGE)["changeRecords"]
    assert len(records) == PAGE, len(records)
    return records


def _best_us(work: Any) -> float:
    """The fastest of ``ROUNDS`` runs, in µs: the cost without the machine's other load."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def run() -> dict[str, Any]:
    config = PipelineConfig.from_dict(json.loads(json.dumps(DEFAULT_CONFIG)))
    records = _page(config)
    converter = RecordConverter.for_config(config)
    assert records[0]["partitionKeys"] != records[1]["partitionKeys"]
    swapped = [
        {**records[0], "createdAt": records[1]["createdAt"]},
        {**records[1], "createdAt": records[0]["createdAt"]},
        *records[2:],
    ]
    assert swapped[1]["createdAt"] < swapped[0]["createdAt"]
    for page in (records, swapped):
        assert created_at_regressions(page, "shardId-bench") == 0  # the stand-in's clock only rises per row
    check_us = _best_us(lambda: created_at_regressions(records, "shardId-bench"))
    worst_us = _best_us(lambda: created_at_regressions(swapped, "shardId-bench"))
    convert_us = _best_us(lambda: [converter.convert(r, "shardId-bench", ("label", 0)) for r in records])
    return {
        "forwarder_created_at_check_us_per_page": round(check_us, 1),
        "forwarder_created_at_check_us_per_page_out_of_order": round(worst_us, 1),
        "forwarder_convert_us_per_page": round(convert_us, 1),
        "forwarder_created_at_check_share_of_convert": round(check_us / convert_us, 4),
        "forwarder_created_at_check_share_of_convert_out_of_order": round(worst_us / convert_us, 4),
        "forwarder_created_at_check_share_of_get_records": round(check_us / (GET_RECORDS_LATENCY_S * 1e6), 4),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
