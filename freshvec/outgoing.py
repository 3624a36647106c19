"""What goes onto the change stream, and the rule that keeps each row's changes in order there.

Every producer of change events — the forwarder, backfill, redrive, reconcile — hands ``OutgoingRecord`` s
to one ``ChangeStreamWriter`` in the calls ``plan_calls`` groups them into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
