"""``freshvec redrive``: list, show and re-sync parked changes (the sink DLQ and the on-failure bucket).

A DLQ message holds one change the sink could not apply; an on-failure object is the invocation record
Lambda wrote for a discarded batch. ``redrive send`` does not replay them: it reads the current row of each
parked key from the table and sends that (origin REDRIVE, ``freshvec.cli.resync``), so a redrive can never
write older state than the table holds. Each item leaves its parking place only after Kinesis accepted the
re-sync of all of its keys; its payload stays readable with ``redrive show`` until then.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from freshvec.cli import console, resync
from freshvec.cli import generations as generations_cli
from freshvec.cli.errors import OperatorError
from freshvec.cli.send import ChangeStreamSender
from freshvec.cli.settings import settings
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.config import PipelineConfig
from freshvec.keys import vector_key
from freshvec.outgoing import OutgoingRecord
from freshvec.ports import ChangeStreamWriter
from freshvec.sources.keyspaces.cells import keys_to_json

DLQ_RECEIVE_WAIT_S = 1  # long polling: a short poll may miss messages on other SQS servers
# `redrive show` hides what it receives for at most this long while it looks further (a message released at once
# would come back on the next receive), and releases every message it received as soon as it is done.
DLQ_SHOW_VISIBILITY_S = 2
REDRIVEN_PREFIX = "redriven/"  # where redriven on-failure objects are moved, so they are not sent twice


@dataclass
class ParkedItem:
    """One parked change: where it waits, why, and what would be re-sent."""

    source: str  # "dlq" | "on-failure"
    ref: str  # SQS message id, or S3 object key
    records: list[OutgoingRecord]
    reason: str
    failed_at: str | None
    position: str  # shard and sequence number(s) where it was read
    handle: str = ""  # SQS receipt handle, or the S3 key
    unreadable: str | None = None  # why it cannot be re-sent (left where it is)


@dataclass
class RedriveReport:
    found: int = 0  # parked items looked at
    resynced_items: int = 0  # items whose keys were all re-synced (and which left their parking place)
    keys: int = 0  # distinct keys re-synced (duplicates collapsed)
    updates: int = 0  # keys whose current row was sent
    deletes: int = 0  # keys whose row is gone: a removal of the stored vector was sent
    unchanged: int = 0  # keys with no row and no vector: nothing to send
    unreadable: int = 0  # items that cannot be decoded (left in place)
    keyless: int = 0  # items with a record whose key cannot be recovered (left in place)
    dry_run: bool = False


def record_key(data: bytes, config: PipelineConfig) -> dict[str, Any] | None:
    """The primary key a parked record is about: the change event's ``key``, or the raw stream record's keys in
    the forwarder's error envelope; None when the payload names no key of this table."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or (doc.get("keyspace"), doc.get("table")) != (config.keyspace, config.table):
        return None
    key: Any = doc.get("key")
    if not isinstance(key, dict) and isinstance(doc.get("record"), dict):
        raw = doc["record"]
        try:
            key = {**keys_to_json(raw.get("partitionKeys")), **keys_to_json(raw.get("clusteringKeys"))}
        except (AttributeError, TypeError, ValueError):
            return None
    if not isinstance(key, dict):
        return None
    primary = resync.key_of_row(key, config)
    if primary is None or resync.checked_vector_key(primary, config) is None:
        return None
    return primary


def decode_dlq_body(body: str) -> tuple[list[OutgoingRecord], str, str | None, str, str | None]:
    """(records, reason, failed_at, position, unreadable) of a sink DLQ message."""
    try:
        doc = json.loads(body)
        payload = base64.b64decode(doc["payload_b64"], validate=True)
        key = doc["partition_key"]
        if not isinstance(key, str) or not key:
            raise ValueError("empty partition key")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        return [], "", None, "", f"not a freshvec DLQ message: {exc}"
    reason = f"{doc.get('error_class', '?')}: {doc.get('error_message', '')}".strip()
    position = f"{doc.get('kinesis_shard_id', '?')}/{doc.get('kinesis_sequence_number', '?')}"
    sequence_number = str(doc.get("kinesis_sequence_number") or "")
    return [OutgoingRecord(payload, key, sequence_number)], reason, stated_time(doc.get("failed_at")), position, None


def stated_time(value: Any) -> str | None:
    """A parked item's time as stated: text as it is, anything else shown as malformed (listing must show it)."""
    if value is None or isinstance(value, str):
        return value
    return f"malformed: {json.dumps(value, default=str)[:60]}"


def receive_dlq(sqs: Any, queue_url: str, *, limit: int, visibility_s: int = 300) -> list[ParkedItem]:
    """Take up to ``limit`` DLQ messages out of sight for ``visibility_s`` (release or delete them after)."""
    items: list[ParkedItem] = []
    while len(items) < limit:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, limit - len(items)),
            VisibilityTimeout=visibility_s,
            WaitTimeSeconds=DLQ_RECEIVE_WAIT_S,
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        items.extend(_received(message) for message in messages)
    return items


def release_dlq(sqs: Any, queue_url: str, items: Iterable[ParkedItem]) -> None:
    """Make received messages visible again at once (listing must not hide them for long)."""
    entries = [{"Id": str(i), "ReceiptHandle": item.handle, "VisibilityTimeout": 0} for i, item in enumerate(items)]
    for start in range(0, len(entries), 10):
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries[start : start + 10])


def read_on_failure_object(body: bytes, key: str) -> ParkedItem:
    """An invocation record Lambda wrote for a discarded Kinesis batch, with the batch's records.

    S3 destinations hold the metadata (``requestContext``, ``responseContext``, ``KinesisBatchInfo``) and
    the invocation payload under ``payload``, a JSON string of ``{"Records": [{"kinesis": {"data",
    "partitionKey", "sequenceNumber", ...}, ...}]}`` (an object is accepted too).
    """
    try:
        doc = json.loads(body)
        info = doc.get("KinesisBatchInfo") or {}
        context = doc.get("requestContext") or {}
        reason = (
            f"{context.get('condition', 'discarded')} after {context.get('approximateInvokeCount', '?')} invocation(s)"
        )
        response = doc.get("responseContext") or {}
        if response.get("functionError"):
            reason += f" ({response['functionError']})"
        position = (
            f"{info.get('shardId', '?')}/{info.get('startSequenceNumber', '?')}..{info.get('endSequenceNumber', '?')}"
        )
        payload = doc.get("payload")
        if payload is None:
            missing = "no payload: only the sequence range is known; read it from the stream while retained"
            return ParkedItem("on-failure", key, [], reason, stated_time(doc.get("timestamp")), position, key, missing)
        if isinstance(payload, str):
            payload = json.loads(payload)
        kinesis_records = [r["kinesis"] for r in payload["Records"]]
        kinesis_records.sort(key=lambda r: int(r.get("sequenceNumber", 0)))
        records = [
            OutgoingRecord(
                base64.b64decode(r["data"], validate=True), r["partitionKey"], str(r.get("sequenceNumber", ""))
            )
            for r in kinesis_records
        ]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        return ParkedItem("on-failure", key, [], "", None, "", key, f"not a Lambda invocation record: {exc}")
    return ParkedItem("on-failure", key, records, reason, stated_time(doc.get("timestamp")), position, key)


def list_on_failure(s3: Any, bucket: str, *, limit: int) -> list[ParkedItem]:
    items: list[ParkedItem] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if obj["Key"].startswith(REDRIVEN_PREFIX):
                continue
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            items.append(read_on_failure_object(body, obj["Key"]))
            if len(items) >= limit:
                return items
    return items


def move_redriven(s3: Any, bucket: str, key: str) -> None:
    """Copy to ``redriven/<key>``, then delete: the object stays for audit but is not sent again."""
    s3.copy_object(Bucket=bucket, Key=REDRIVEN_PREFIX + key, CopySource={"Bucket": bucket, "Key": key})
    s3.delete_object(Bucket=bucket, Key=key)


def peek_parked(clients: ClientFactory, resources: StackResources, *, source: str, limit: int) -> list[ParkedItem]:
    """Parked items for listing/showing; DLQ messages are made visible again before returning."""
    items: list[ParkedItem] = []
    if source in ("dlq", "all"):
        sqs = clients("sqs")
        received = receive_dlq(sqs, resources.dlq_url, limit=limit, visibility_s=30)
        release_dlq(sqs, resources.dlq_url, received)
        items.extend(received)
    if source in ("on-failure", "all"):
        items.extend(list_on_failure(clients("s3"), resources.on_failure_bucket, limit=limit))
    return items


def find_parked(
    clients: ClientFactory, resources: StackResources, ref: str, *, source: str, limit: int
) -> tuple[ParkedItem | None, int]:
    """The parked item ``ref`` (a DLQ message id or an on-failure object key) and how many items were looked at.

    DLQ messages are received with a visibility of ``DLQ_SHOW_VISIBILITY_S`` and all made visible again at
    once before returning, the sought one too: showing an item never hides the queue from the sink's operators.
    An on-failure object is read by its key, not found by listing the bucket.
    """
    looked = 0
    if source in ("dlq", "all"):
        sqs = clients("sqs")
        received: list[ParkedItem] = []
        seen: set[str] = set()
        try:
            while len(seen) < limit:
                messages = sqs.receive_message(
                    QueueUrl=resources.dlq_url,
                    MaxNumberOfMessages=min(10, limit - len(seen)),
                    VisibilityTimeout=DLQ_SHOW_VISIBILITY_S,
                    WaitTimeSeconds=DLQ_RECEIVE_WAIT_S,
                ).get("Messages", [])
                new = [m for m in messages if m["MessageId"] not in seen]
                if not new:  # nothing left, or only messages whose short visibility has already run out
                    release_dlq(sqs, resources.dlq_url, [_received(m) for m in messages])
                    break
                for message in new:
                    seen.add(message["MessageId"])
                    received.append(_received(message))
                found = next((item for item in received if item.ref == ref), None)
                if found is not None:
                    return found, len(seen)
        finally:
            release_dlq(sqs, resources.dlq_url, received)
        looked += len(seen)
    if source in ("on-failure", "all") and not ref.startswith(REDRIVEN_PREFIX):
        from botocore.exceptions import ClientError

        s3 = clients("s3")
        try:
            body = s3.get_object(Bucket=resources.on_failure_bucket, Key=ref)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404", "NotFound"):
                raise
        else:
            return read_on_failure_object(body, ref), looked + 1
        looked += 1
    return None, looked


def _received(message: dict[str, Any]) -> ParkedItem:
    records, reason, failed_at, position, unreadable = decode_dlq_body(message.get("Body", ""))
    return ParkedItem(
        "dlq", message["MessageId"], records, reason, failed_at, position, message["ReceiptHandle"], unreadable
    )


def redrive(
    clients: ClientFactory,
    resources: StackResources,
    reader: resync.RowReader,
    *,
    source: str = "all",
    limit: int = 1000,
    dry_run: bool = False,
    on_item: Callable[[ParkedItem, str], None] | None = None,
    writer: ChangeStreamWriter | None = None,
    generations: Sequence[str] | None = None,
) -> RedriveReport:
    """Re-sync the keys of parked changes: read each key's current row and send it (origin REDRIVE).

    A parked payload is never replayed: an old change sent again could carry older state than the table holds.
    Keys parked several times (re-delivered duplicates, several changes of one row) are re-synced once. An item
    leaves its parking place (a DLQ message is deleted, an on-failure object moved under ``redriven/``) only
    after Kinesis accepted the re-sync of every one of its keys; an item that cannot be decoded, or with a record
    whose key cannot be recovered, stays where it is and is reported. Records go through ``writer`` (default:
    the Kinesis writer on the stack's stream) in the calls ``plan_calls`` plans.
    """
    report = RedriveReport(dry_run=dry_run)
    config = resources.config
    sqs = clients("sqs") if source in ("dlq", "all") else None
    received = receive_dlq(sqs, resources.dlq_url, limit=limit) if sqs is not None else []
    removed: set[str] = set()
    try:
        items = list(received)
        if source in ("on-failure", "all"):
            items.extend(list_on_failure(clients("s3"), resources.on_failure_bucket, limit=limit))
        report.found = len(items)
        ready = _recoverable(items, config, report, on_item)
        unique: dict[str, tuple[dict[str, Any], str]] = {}  # vector key -> (key, seq naming the first item)
        for item, keys in ready:
            for key in keys:
                unique.setdefault(vector_key(key, config.key_columns), (key, f"redrive:{item.ref}"))
        report.keys = len(unique)
        if dry_run:
            for item, _ in ready:
                _notify(on_item, item, "would re-sync")
            return report
        if unique:
            sender = ChangeStreamSender(writer, resources.stream_name) if writer is not None else None
            sender = sender or resync.change_stream_sender(resources, clients)
            resyncer = resync.Resyncer(config, reader, clients("s3vectors"), resources, sender)
            resyncer.generations = generations
            pairs = list(unique.values())
            results = resyncer.resync([key for key, _ in pairs], origin="REDRIVE", seqs=[seq for _, seq in pairs])
            report.updates = sum(1 for r in results if r.action == "update")
            report.deletes = sum(1 for r in results if r.action == "delete")
            report.unchanged = sum(1 for r in results if r.action == "none")
        for item, _ in ready:  # every key is re-synced: the item leaves its parking place
            if item.source == "dlq" and sqs is not None:
                sqs.delete_message(QueueUrl=resources.dlq_url, ReceiptHandle=item.handle)
                removed.add(item.ref)
            else:
                move_redriven(clients("s3"), resources.on_failure_bucket, item.handle)
            report.resynced_items += 1
            _notify(on_item, item, "re-synced")
        return report
    finally:  # whatever was not re-synced becomes visible again at once, also after an error
        rest = [item for item in received if item.ref not in removed]
        if rest and sqs is not None:
            release_dlq(sqs, resources.dlq_url, rest)


def _recoverable(
    items: list[ParkedItem],
    config: PipelineConfig,
    report: RedriveReport,
    on_item: Callable[[ParkedItem, str], None] | None,
) -> list[tuple[ParkedItem, list[dict[str, Any]]]]:
    """The items every record of which names a key, with those keys; the others are counted and reported."""
    ready: list[tuple[ParkedItem, list[dict[str, Any]]]] = []
    for item in items:
        keys = item_keys(item, config)
        if item.unreadable:
            report.unreadable += 1
            _notify(on_item, item, "unreadable")
        elif not keys or any(key is None for key in keys):
            report.keyless += 1
            item.unreadable = f"{sum(key is None for key in keys)} record(s) name no key of {config.table}"
            _notify(on_item, item, "no key")
        else:
            ready.append((item, [key for key in keys if key is not None]))
    return ready


def _notify(on_item: Callable[[ParkedItem, str], None] | None, item: ParkedItem, outcome: str) -> None:
    if on_item is not None:
        on_item(item, outcome)


# ---- the commands -----------------------------------------------------------------------------


class ParkedSource(StrEnum):
    """Where ``--source`` looks for parked changes."""

    DLQ = "dlq"
    ON_FAILURE = "on-failure"
    ALL = "all"


Source = Annotated[
    ParkedSource, typer.Option("--source", case_sensitive=False, help="Where to look: the sink DLQ, the bucket, both")
]


def _limit_option(default: int, what: str = "parked items") -> Any:
    return typer.Option("--limit", min=1, max=100_000, help=f"At most this many {what} [default: {default}]")


# The name redrive used before every command said --limit; still accepted, not shown.
OldLimit = Annotated[int | None, typer.Option("--max", min=1, max=100_000, hidden=True)]


def _limit(limit: int | None, old: int | None, default: int) -> int:
    if limit is not None and old is not None and limit != old:
        raise typer.BadParameter("give --limit once (--max is its old name)", param_hint="--limit")
    return limit if limit is not None else old if old is not None else default


def redrive_list(
    source: Source = ParkedSource.ALL,
    limit: Annotated[int | None, _limit_option(100)] = None,
    old_limit: OldLimit = None,
) -> None:
    """List parked changes with their reason (DLQ messages stay in the queue)."""
    s = settings()
    items = peek_parked(s.clients(), s.resources(), source=source.value, limit=_limit(limit, old_limit, 100))
    table = Table(title=f"{len(items)} parked item(s)", title_justify="left")
    for name in ("source", "id", "records", "failed at", "position", "reason"):
        table.add_column(name, overflow="fold")
    for item in items:
        reason = item.unreadable or item.reason
        cells = (item.source, item.ref, len(item.records), item.failed_at or "", item.position, reason)
        table.add_row(*(Text(str(cell)) for cell in cells))  # as written by whoever parked it, never markup
    console.out.print(table)


def redrive_show(
    ref: Annotated[
        str, typer.Argument(metavar="ID", help="DLQ message id or on-failure object key (from `redrive list`)")
    ],
    source: Source = ParkedSource.ALL,
    limit: Annotated[int | None, _limit_option(1000, "DLQ messages to look at")] = None,
    old_limit: OldLimit = None,
) -> None:
    """Show one parked item with its full payload (every DLQ message looked at is visible again at once)."""
    s = settings()
    item, looked = find_parked(
        s.clients(), s.resources(), ref, source=source.value, limit=_limit(limit, old_limit, 1000)
    )
    if item is None:
        raise OperatorError(f"no parked item {ref!r} (looked at {looked}); list them with `freshvec redrive list`")
    console.out.print_json(json.dumps(item_json(item, s.resources().config), default=str))


def item_json(item: ParkedItem, config: PipelineConfig | None = None) -> dict[str, Any]:
    """The item as JSON; with ``config``, also the key each record is about (what ``redrive send`` re-syncs)."""

    def payload(data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            return data.decode("utf-8", errors="replace")

    return {
        "source": item.source,
        "id": item.ref,
        "failed_at": item.failed_at,
        "position": item.position,
        "reason": item.reason,
        "unreadable": item.unreadable,
        "records": [{"partition_key": r.partition_key, "payload": payload(r.data)} for r in item.records],
    } | ({"keys": item_keys(item, config)} if config is not None else {})


def item_keys(item: ParkedItem, config: PipelineConfig) -> list[dict[str, Any] | None]:
    """The key each of the item's records is about (None: not recoverable), what ``redrive send`` re-syncs."""
    return [record_key(record.data, config) for record in item.records]


def redrive_send(  # noqa: PLR0917 - typer passes every option by keyword; the order is the help's
    source: Source = ParkedSource.ALL,
    limit: Annotated[int | None, _limit_option(1000)] = None,
    old_limit: OldLimit = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be re-synced; change nothing")] = False,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS")] = None,
    generation: generations_cli.GenerationOption = None,
) -> None:
    """Re-sync the keys of parked changes from the table; each item leaves its parking place once Kinesis took them."""
    s = settings()
    res = s.resources()

    def on_item(item: ParkedItem, outcome: str) -> None:
        detail = f": {item.unreadable}" if item.unreadable else ""
        console.err.print(Text(f"{outcome:>13}  {item.source} {item.ref} ({len(item.records)} record(s)){detail}"))

    close, session = (None, None) if res.is_local or dry_run else resync.connect_table(res, s.clients(), ca_bundle)
    try:
        reader = resync.row_reader(res, session) if not dry_run else _NoReads()
        report = redrive(
            s.clients(), res, reader, source=source.value, limit=_limit(limit, old_limit, 1000), dry_run=dry_run,
            on_item=on_item, generations=generations_cli.targets(res, generation),
        )  # fmt: skip
    finally:
        if close is not None:
            close()
    left = report.unreadable + report.keyless
    if dry_run:
        console.out.print(
            f"dry run: {report.found} parked, {report.found - left} would be re-synced ({report.keys} key(s)), "
            f"{left} left in place"
        )
    else:
        console.out.print(
            f"{report.found} parked, {report.resynced_items} re-synced: {report.keys} key(s) read from the table "
            f"({report.updates} row(s) sent, {report.deletes} removal(s), {report.unchanged} already gone) to "
            f"{res.stream_name}; {left} left in place ({report.unreadable} unreadable, {report.keyless} without a key)"
        )


class _NoReads:
    """The reader of a dry run, which reads nothing."""

    def read(self, keys: Any) -> list[resync.RowRead]:
        raise AssertionError("a dry run reads no rows")
