"""Keyspaces Streams records -> what goes to the change stream: change events, or error envelopes.

``RecordConverter.convert`` never raises: a record that cannot become a change event still travels, as an
envelope the sink parks in its DLQ with the reason and the raw record.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from freshvec import constants as c
from freshvec.errors import PoisonRecordError
from freshvec.events import sendable_bytes
from freshvec.keys import partition_key, vector_key
from freshvec.outgoing import OutgoingRecord
from freshvec.sources.keyspaces.cells import record_to_event

log = logging.getLogger(__name__)


class RecordConverter:
    """A Keyspaces Streams record -> the bytes and partition key that go to Kinesis; never raises.

    A record that cannot become a change event (or one too large for Kinesis even without its old image)
    still travels: as an error envelope with the reason and the raw record, which the sink's contract check
    rejects into its DLQ, payload and reason intact. Nothing is dropped silently.
    """

    def __init__(self, keyspace: str, table: str, primary_key: Sequence[str], key_columns: Sequence[str]) -> None:
        self.keyspace = keyspace
        self.table = table
        self.primary_key = tuple(primary_key)  # partition then clustering columns, as in the table
        self.key_columns = tuple(key_columns)  # the vector key's column order

    @classmethod
    def for_config(cls, config: Any) -> RecordConverter:
        """The converter for a ``PipelineConfig`` (duck-typed: sources never import the config module)."""
        return cls(config.keyspace, config.table, config.primary_key, config.key_columns)

    def convert(
        self, record: Mapping[str, Any], shard_id: str, lineage: tuple[str, int] = ("", 0)
    ) -> tuple[OutgoingRecord, bool]:
        """The outgoing record and whether it is a proper change event (False: error envelope). ``lineage``:
        the stream label and the shard's lineage depth (the version's tie-break, ``record_version``)."""
        seq = str(record.get("sequenceNumber") or "")
        try:
            event = record_to_event(
                record,
                keyspace=self.keyspace,
                table=self.table,
                shard_id=shard_id,
                key_columns=self.primary_key,
                lineage=lineage,
            )
            key = partition_key(vector_key(event.key, self.key_columns))
            data = sendable_bytes(event, key)  # too large: the row's marker, parked by the sink (no older state)
        except PoisonRecordError as exc:
            return self._envelope(record, shard_id, seq, str(exc), shard_id), False
        except UnicodeEncodeError as exc:  # a lone surrogate in a text value: not sendable as UTF-8 JSON
            reason = f"text is not valid UTF-8: {exc.reason} at position {exc.start}"
            return self._envelope(record, shard_id, seq, reason, shard_id), False
        return OutgoingRecord(data, key, event.seq, event.changed_at.timestamp()), True

    def _envelope(self, record: Mapping[str, Any], shard_id: str, seq: str, reason: str, key: str) -> OutgoingRecord:
        doc: dict[str, Any] = {
            "v": c.EVENT_VERSION,
            "source": "keyspaces",
            "keyspace": self.keyspace,
            "table": self.table,
            "seq": seq,
            "shard": shard_id,
            "error": f"forwarder could not convert this record: {reason}",
            "record": record,
        }
        data = _dump(doc)
        if len(data) + len(key.encode("utf-8")) > c.KINESIS_MAX_RECORD_BYTES:
            keys_only = {name: record.get(name) for name in ("partitionKeys", "clusteringKeys", "sequenceNumber")}
            doc["record"] = {**keys_only, "truncated": True}
            data = _dump(doc)
        log.error(
            "stream record %s in shard %s cannot become a change event (%s); sending it for the sink's DLQ",
            seq,
            shard_id,
            reason,
        )
        return OutgoingRecord(data, key, seq, None)


def _dump(doc: Mapping[str, Any]) -> bytes:
    # ASCII-escaped so that even text that is not valid Unicode (a lone surrogate) travels to the DLQ intact.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, default=_json_default).encode("ascii")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
