"""Checkpoints and leases for the forwarder, one DynamoDB item per (stream, shard); every write is conditional.

An item holds the last sequence number forwarded to Kinesis (``seq``), whether the shard was read to its end
(``ended``) and who may read it (``lease_owner`` until ``lease_expires_at``, epoch seconds). Only the lease
owner can move a checkpoint, so two forwarders never read one shard at the same time, and a lease whose
owner died is free again once it expires. Past a stretch of the stream without changes (no sequence number to
checkpoint) the item also keeps where reading got to (``resume``, the source's token, dropped whenever ``seq``
moves) and when the shard was last at its tip (``caught_up_at``). The shard's lineage depth (``depth``,
``freshvec.forwarder.lineage_depth``) is written by the first lease-taking write and never changed after.

The sink's tombstones (``DynamoDbTombstones``) live in the same table, one item per deleted vector key
(``#tombstone/<sha256 of the key>``) holding the delete's version text, with ``expires_at`` as the table's TTL
attribute; a tombstone only rises (conditional writes).

The streams a forwarder has followed are kept in the same table under one registry partition per table
(``#streams/<keyspace>/<table>``, sort key = stream ARN) with ``state`` ``reading`` or ``done``: when CDC is
re-enabled the old stream is finished before the new one is read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError

from freshvec.constants import CHECKPOINT_PK, CHECKPOINT_SK
from freshvec.errors import TransientError, error_code
from freshvec.ports import LeaseLostError, ShardCheckpoint, StreamEntry
from freshvec.retry import RetryPolicy
from freshvec.versions import newer, parse

# Item attributes (the CLI's status command reads them too).
ATTR_SEQUENCE = "seq"
ATTR_ENDED = "ended"
ATTR_LEASE_OWNER = "lease_owner"
ATTR_LEASE_EXPIRES_AT = "lease_expires_at"
ATTR_UPDATED_AT = "updated_at"
ATTR_RESUME = "resume"
ATTR_CAUGHT_UP_AT = "caught_up_at"
ATTR_DEPTH = "depth"  # the shard's lineage depth, written once (``if_not_exists``)
ATTR_STREAM_LABEL = "label"
ATTR_STREAM_STATE = "state"
STREAM_READING = "reading"
STREAM_DONE = "done"
REGISTRY_PREFIX = "#streams/"
TOMBSTONE_PREFIX = "#tombstone/"
TOMBSTONE_SORT = "#"
ATTR_TOMBSTONE_VERSION = "version"
ATTR_EXPIRES_AT = "expires_at"  # the table's TTL attribute
_RAISE_ATTEMPTS = 8  # compare-and-set rounds against concurrent tombstone writers of one key
DYNAMODB_BATCH_GET = 100  # BatchGetItem keys per call

_CONDITION_FAILED = "ConditionalCheckFailedException"


def create_checkpoint_table(dynamodb: Any, table_name: str) -> None:
    """Create the checkpoint/lease table with the key schema the CDK app deploys (local mode, tests, benchmarks)."""
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[
            {"AttributeName": CHECKPOINT_PK, "KeyType": "HASH"},
            {"AttributeName": CHECKPOINT_SK, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": CHECKPOINT_PK, "AttributeType": "S"},
            {"AttributeName": CHECKPOINT_SK, "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def registry_partition(keyspace: str, table: str) -> str:
    return f"{REGISTRY_PREFIX}{keyspace}/{table}"


class CheckpointStore:
    """Conditional reads and writes of shard checkpoints, shard leases and the stream registry."""

    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        *,
        owner_id: str,
        lease_duration_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self.owner_id = owner_id
        self.lease_duration_s = lease_duration_s
        self._clock = clock

    # ---- shards ---------------------------------------------------------------------------
    def load_stream(self, stream_arn: str) -> dict[str, ShardCheckpoint]:
        """Every shard checkpoint of a stream (strongly consistent), by shard id."""
        return {item.shard_id: item for item in map(_checkpoint, self._query(stream_arn))}

    def try_acquire(self, stream_arn: str, shard_id: str, depth: int | None = None) -> ShardCheckpoint | None:
        """Take the lease if it is free, expired or already ours and the shard has not ended; else None. ``depth``
        is stored in the same write unless the shard has one already: the first one stored stays."""
        now = self._clock()
        update = "SET #owner = :me, #expires = :expires, #updated = :now"
        depth_values: dict[str, Any] = {}
        if depth is not None:
            update += ", #depth = if_not_exists(#depth, :depth)"
            depth_values = {":depth": {"N": str(depth)}}
        condition = (
            "(attribute_not_exists(#owner) OR #expires < :now OR #owner = :me) "
            "AND (attribute_not_exists(#ended) OR #ended = :false)"
        )
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key=_key(stream_arn, shard_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=_names_used_in(update, condition),
                ExpressionAttributeValues={
                    ":me": {"S": self.owner_id},
                    ":expires": _number(now + self.lease_duration_s),
                    ":now": _number(now),
                    ":false": {"BOOL": False},
                    **depth_values,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == _CONDITION_FAILED:
                return None
            raise
        return _checkpoint(response["Attributes"])

    def renew(self, stream_arn: str, shard_id: str) -> float:
        """Extend our lease; returns the new expiry. LeaseLostError if another owner took it."""
        now = self._clock()
        expires = now + self.lease_duration_s
        self._update_owned(
            stream_arn,
            shard_id,
            "SET #expires = :expires, #updated = :now",
            {":expires": _number(expires), ":now": _number(now)},
        )
        return expires

    def checkpoint(self, stream_arn: str, shard_id: str, sequence_number: str) -> float:
        """Record that Kinesis accepted everything up to ``sequence_number``; also renews the lease."""
        now = self._clock()
        expires = now + self.lease_duration_s
        self._update_owned(
            stream_arn,
            shard_id,
            "SET #seq = :seq, #expires = :expires, #updated = :now REMOVE #resume",
            {":seq": {"S": sequence_number}, ":expires": _number(expires), ":now": _number(now)},
        )
        return expires

    def save_progress(self, stream_arn: str, shard_id: str, resume: str | None, caught_up_at: float | None) -> float:
        """Keep where reading got to past the checkpoint (None: forget it) and when the shard was last at its
        tip; also renews the lease."""
        now = self._clock()
        expires = now + self.lease_duration_s
        update = "SET #expires = :expires, #updated = :now"
        values: dict[str, Any] = {":expires": _number(expires), ":now": _number(now)}
        if resume is not None:
            update += ", #resume = :resume"
            values[":resume"] = {"S": resume}
        if caught_up_at is not None:
            update += ", #caught = :caught"
            values[":caught"] = _number(caught_up_at)
        self._update_owned(stream_arn, shard_id, update + ("" if resume is not None else " REMOVE #resume"), values)
        return expires

    def mark_ended(self, stream_arn: str, shard_id: str, sequence_number: str | None) -> None:
        """The shard was read to its end and everything in it was forwarded: close it and drop the lease."""
        values: dict[str, Any] = {":true": {"BOOL": True}, ":now": _number(self._clock())}
        update = "SET #ended = :true, #updated = :now"
        if sequence_number is not None:
            update += ", #seq = :seq"
            values[":seq"] = {"S": sequence_number}
        self._update_owned(stream_arn, shard_id, update + " REMOVE #owner, #expires", values)

    def release(self, stream_arn: str, shard_id: str) -> bool:
        """Give the lease back so another forwarder can take it at once; False if it was not ours any more."""
        try:
            self._update_owned(
                stream_arn, shard_id, "SET #updated = :now REMOVE #owner, #expires", {":now": _number(self._clock())}
            )
        except LeaseLostError:
            return False
        return True

    def _update_owned(self, stream_arn: str, shard_id: str, update: str, values: dict[str, Any]) -> None:
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_key(stream_arn, shard_id),
                UpdateExpression=update,
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames=_names_used_in(update, "#owner"),
                ExpressionAttributeValues={":me": {"S": self.owner_id}, **values},
            )
        except ClientError as exc:
            if error_code(exc) == _CONDITION_FAILED:
                raise LeaseLostError(
                    f"lease on {shard_id} of {stream_arn} is no longer held by {self.owner_id}"
                ) from exc
            raise

    # ---- stream registry ------------------------------------------------------------------
    def load_streams(self, keyspace: str, table: str) -> list[StreamEntry]:
        """The streams followed so far, oldest first (stream labels are creation timestamps)."""
        entries = [
            StreamEntry(
                stream_arn=item[CHECKPOINT_SK]["S"],
                label=item.get(ATTR_STREAM_LABEL, {}).get("S", ""),
                done=item.get(ATTR_STREAM_STATE, {}).get("S") == STREAM_DONE,
            )
            for item in self._query(registry_partition(keyspace, table))
        ]
        return sorted(entries, key=lambda e: (e.label, e.stream_arn))

    def register_stream(self, keyspace: str, table: str, stream_arn: str, label: str) -> bool:
        """Start following a stream; False if it was already registered (by us or another forwarder)."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **_key(registry_partition(keyspace, table), stream_arn),
                    ATTR_STREAM_LABEL: {"S": label},
                    ATTR_STREAM_STATE: {"S": STREAM_READING},
                    ATTR_UPDATED_AT: _number(self._clock()),
                },
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": CHECKPOINT_PK},
            )
        except ClientError as exc:
            if error_code(exc) == _CONDITION_FAILED:
                return False
            raise
        return True

    def mark_stream_done(self, keyspace: str, table: str, stream_arn: str) -> None:
        """Every shard of a disabled stream was read to its end; the next stream takes over."""
        self._db.update_item(
            TableName=self._table,
            Key=_key(registry_partition(keyspace, table), stream_arn),
            UpdateExpression="SET #state = :done, #updated = :now",
            ConditionExpression="attribute_exists(#pk)",
            ExpressionAttributeNames={"#state": ATTR_STREAM_STATE, "#updated": ATTR_UPDATED_AT, "#pk": CHECKPOINT_PK},
            ExpressionAttributeValues={":done": {"S": STREAM_DONE}, ":now": _number(self._clock())},
        )

    def _query(self, partition: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": CHECKPOINT_PK},
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "ConsistentRead": True,
        }
        while True:
            page = self._db.query(**request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


_NAMES = {
    "#seq": ATTR_SEQUENCE,
    "#ended": ATTR_ENDED,
    "#owner": ATTR_LEASE_OWNER,
    "#expires": ATTR_LEASE_EXPIRES_AT,
    "#updated": ATTR_UPDATED_AT,
    "#resume": ATTR_RESUME,
    "#caught": ATTR_CAUGHT_UP_AT,
    "#depth": ATTR_DEPTH,
}


def _names_used_in(*expressions: str) -> dict[str, str]:
    """DynamoDB rejects attribute names a request does not use, so send only those the expressions name."""
    text = " ".join(expressions)
    return {name: attribute for name, attribute in _NAMES.items() if name in text}


def tombstone_item_key(key: str) -> dict[str, Any]:
    """The checkpoint-table item key that holds the tombstone of ``key``."""
    return _key(_tombstone_partition(key), TOMBSTONE_SORT)


def _key(partition: str, sort: str) -> dict[str, Any]:
    return {CHECKPOINT_PK: {"S": partition}, CHECKPOINT_SK: {"S": sort}}


def _number(value: float) -> dict[str, str]:
    # Millisecond precision is plenty for lease expiry and keeps the DynamoDB number short.
    return {"N": f"{value:.3f}"}


def _checkpoint(item: dict[str, Any]) -> ShardCheckpoint:
    expires = item.get(ATTR_LEASE_EXPIRES_AT, {}).get("N")
    caught_up_at = item.get(ATTR_CAUGHT_UP_AT, {}).get("N")
    depth = item.get(ATTR_DEPTH, {}).get("N")
    return ShardCheckpoint(
        stream_arn=item[CHECKPOINT_PK]["S"],
        shard_id=item[CHECKPOINT_SK]["S"],
        sequence_number=item.get(ATTR_SEQUENCE, {}).get("S"),
        ended=bool(item.get(ATTR_ENDED, {}).get("BOOL", False)),
        lease_owner=item.get(ATTR_LEASE_OWNER, {}).get("S"),
        lease_expires_at=float(expires) if expires is not None else None,
        resume=item.get(ATTR_RESUME, {}).get("S"),
        caught_up_at=float(caught_up_at) if caught_up_at is not None else None,
        depth=int(float(depth)) if depth is not None else None,
    )


class DynamoDbTombstones:
    """``TombstoneStore`` in the checkpoint table: consistent BatchGetItem (100 keys a call), and one conditional
    PutItem per tombstone that rises, so a lower version never replaces a higher one.

    The condition is compare-and-set on what was read (no item, an expired one, or exactly the version read);
    when another writer got there first, the item is read again and compared again.
    """

    def __init__(
        self, dynamodb: Any, table_name: str, *, retry: RetryPolicy | None = None, clock: Callable[[], float]
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self._retry = retry or RetryPolicy()
        self._clock = clock

    def put(self, versions: Mapping[str, str], expires_at: float) -> None:
        current = self.get(list(versions))
        for key, version in versions.items():
            self._raise(key, version, current.get(key), expires_at)

    def _raise(self, key: str, version: str, seen: str | None, expires_at: float) -> None:
        for _ in range(_RAISE_ATTEMPTS):
            if seen is not None and not newer(parse(version), parse(seen)):
                return  # the stored tombstone is as high or higher: it stays
            # Nothing counted as read: no item, an expired one, or one without a text version (written before
            # versions were texts) — ``get`` skips those, so the write must be allowed to replace them. Expired
            # means exactly what ``get`` means (``expires_at <= now``, the clock unrounded): with a stricter test
            # an item expiring at the very second ``get`` read would count for neither, and every attempt fail.
            values: dict[str, Any] = {":now": {"N": repr(float(self._clock()))}, ":text": {"S": "S"}}
            names = {"#pk": CHECKPOINT_PK, "#exp": ATTR_EXPIRES_AT, "#ver": ATTR_TOMBSTONE_VERSION}
            condition = "attribute_not_exists(#pk) OR #exp <= :now OR NOT attribute_type(#ver, :text)"
            if seen is not None:
                condition, names, values = "#ver = :seen", {"#ver": ATTR_TOMBSTONE_VERSION}, {":seen": {"S": seen}}
            item = {
                **tombstone_item_key(key),
                ATTR_TOMBSTONE_VERSION: {"S": version},
                ATTR_EXPIRES_AT: {"N": str(int(expires_at))},
            }
            try:
                self._retry.call(
                    lambda item=item, condition=condition, names=names, values=values: self._db.put_item(
                        TableName=self._table,
                        Item=item,
                        ConditionExpression=condition,
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues=values,
                    ),
                    "DynamoDB PutItem (tombstone)",
                )
                return
            except ClientError as exc:
                if error_code(exc) != _CONDITION_FAILED:
                    raise
            seen = self.get([key]).get(key)
        raise TransientError(f"the tombstone of {key} kept changing under {_RAISE_ATTEMPTS} attempts to raise it")

    def get(self, keys: Any) -> dict[str, str]:
        by_partition = {_tombstone_partition(key): key for key in keys}
        found: dict[str, str] = {}
        now = self._clock()
        partitions = list(by_partition)
        for start in range(0, len(partitions), DYNAMODB_BATCH_GET):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [_key(p, TOMBSTONE_SORT) for p in partitions[start : start + DYNAMODB_BATCH_GET]],
                    "ConsistentRead": True,
                }
            }
            attempt = 1
            while request:
                response = self._retry.call(
                    lambda request=request: self._db.batch_get_item(RequestItems=request),
                    "DynamoDB BatchGetItem (tombstones)",
                )
                for item in response.get("Responses", {}).get(self._table, []):
                    expires = float(item.get(ATTR_EXPIRES_AT, {}).get("N", "0"))
                    stored = item.get(ATTR_TOMBSTONE_VERSION, {}).get("S")
                    # TTL deletion lags up to days: an expired item no longer counts. A number is a tombstone
                    # from before versions were texts: it cannot be ordered, so it does not count either.
                    if expires > now and stored is not None:
                        found[by_partition[item[CHECKPOINT_PK]["S"]]] = stored
                request = response.get("UnprocessedKeys") or {}
                if request:
                    self._retry.wait(attempt, "tombstone reads unprocessed")
                    attempt += 1
        return found


def _tombstone_partition(key: str) -> str:
    # Hashed: a vector key may hold 1,024 characters (up to 4 KB of UTF-8); a partition key holds 2,048 bytes.
    return TOMBSTONE_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()
