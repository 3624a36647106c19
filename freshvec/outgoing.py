"""What goes onto the change stream, and the rule that keeps each row's changes in order there.

Every producer of change events — the forwarder, backfill, redrive, reconcile — hands ``OutgoingRecord`` s
to one ``ChangeStreamWriter`` in the calls ``plan_calls`` groups them into.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from freshvec import constants as c


@dataclass(frozen=True)
class OutgoingRecord:
    data: bytes
    partition_key: str
    sequence_number: str  # source position, checkpointed once Kinesis accepted this record
    changed_at: float | None = None  # epoch seconds; None for an error envelope

    @property
    def size(self) -> int:
        """What counts against the Kinesis record and request limits: data plus partition key."""
        return len(self.data) + len(self.partition_key.encode("utf-8"))


def plan_calls(
    records: Sequence[OutgoingRecord],
    *,
    max_records: int = c.KINESIS_PUT_BATCH,
    max_bytes: int = c.KINESIS_MAX_REQUEST_BYTES,
) -> list[list[int]]:
    """Group records (by index) into PutRecords calls: ≤``max_records`` and ≤``max_bytes`` each, and never two
    changes of one row in the same call.

    Kinesis may accept a later record of a call while rejecting an earlier one, so a call that held two
    changes of one row could store them out of order whatever is re-sent afterwards. With one change per row
    per call, a row's changes go in successive calls, sent one after another, and a failed record can be
    re-sent on its own. Each record goes to the first call after its row's previous change that has room.
    """
    calls: list[list[int]] = []
    sizes: list[int] = []
    last_call: dict[str, int] = {}
    for index, record in enumerate(records):
        target = last_call.get(record.partition_key, -1) + 1
        while target < len(calls) and (len(calls[target]) >= max_records or sizes[target] + record.size > max_bytes):
            target += 1
        if target == len(calls):
            calls.append([])
            sizes.append(0)
        calls[target].append(index)
        sizes[target] += record.size
        last_call[record.partition_key] = target
    return calls


def coalesce_changes(records: Sequence[OutgoingRecord], events: Sequence[bool]) -> list[tuple[OutgoingRecord, int]]:
    """A row's changes within one read as one change: each with the number of source changes it stands for.

    A row's run (its changes in ``records``, other rows' in between) becomes one change event: the last
    one's op, new image, version, position and time, with the first one's old image. It goes out where the
    last change was, so a checkpoint that passes it has passed every change it stands for. Records that are
    not change events (``events[i]`` False: error envelopes) are sent as they are and end the run of their
    partition key, so they keep their place in its order.
    """
    runs: list[list[int]] = []
    open_run: dict[tuple[str, str], int] = {}  # (partition key, row key) -> index in runs
    for index, record in enumerate(records):
        if not events[index]:
            for row in [row for row in open_run if row[0] == record.partition_key]:
                del open_run[row]
            runs.append([index])
            continue
        row = (record.partition_key, json.dumps(json.loads(record.data).get("key"), sort_keys=True))
        if row in open_run:
            runs[open_run[row]].append(index)
        else:
            open_run[row] = len(runs)
            runs.append([index])
    merged: list[tuple[int, OutgoingRecord, int]] = []
    for run in runs:
        last = records[run[-1]]
        if len(run) > 1:
            doc = json.loads(last.data)
            doc["old"] = json.loads(records[run[0]].data).get("old")
            data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            if len(data) + len(last.partition_key.encode("utf-8")) <= c.KINESIS_MAX_RECORD_BYTES:
                last = replace(last, data=data)  # else the last change goes as it is: the old image is only a hint
        merged.append((run[-1], last, len(run)))
    merged.sort(key=lambda item: item[0])
    return [(record, count) for _, record, count in merged]
