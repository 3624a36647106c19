"""``freshvec redrive``: list, show and re-sync parked changes (the sink DLQ and the on-failure bucket).

Parked items are read by ``freshvec.cli.parked``. ``redrive send`` does not replay a row change: it reads the
current row of each parked key from the table and sends that (origin REDRIVE, ``freshvec.cli.resync``), so a
redrive can never write older state than the table holds. A parked TRUNCATE (PostgreSQL) has no row to read: it
is re-sent exactly as it was parked. That is sound because its version orders it — it removes only vectors older
than itself and raises the table's floor, which only rises — so applying it late, or twice, removes nothing a
later change wrote (docs/exactness.md). Each item leaves its parking place only after Kinesis accepted everything
it stands for; an item that cannot be redriven (unreadable, a record naming no key, a TRUNCATE the sink cannot
apply) stays, is reported in one line, and the command exits 1. Its payload stays readable with ``redrive show``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from freshvec import truncate
from freshvec.cli import console, resync
from freshvec.cli import generations as generations_cli
from freshvec.cli.errors import EXIT_CHECK_FAILED, OperatorError
from freshvec.cli.parked import (
    ParkedItem,
    find_parked,
    list_on_failure,
    move_redriven,
    peek_parked,
    receive_dlq,
    release_dlq,
)
from freshvec.cli.send import ChangeStreamSender
from freshvec.cli.settings import settings
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.config import PipelineConfig
from freshvec.errors import PoisonRecordError
from freshvec.keys import vector_key
from freshvec.outgoing import OutgoingRecord
from freshvec.ports import ChangeStreamWriter
from freshvec.sources.keyspaces.cells import keys_to_json


@dataclass
class RedriveReport:
    found: int = 0  # parked items looked at
    resynced_items: int = 0  # items redriven: their keys re-synced, their TRUNCATEs re-sent (and left parking)
    keys: int = 0  # distinct keys re-synced (duplicates collapsed)
    updates: int = 0  # keys whose current row was sent
    deletes: int = 0  # keys whose row is gone: a removal of the stored vector was sent
    unchanged: int = 0  # keys with no row and no vector: nothing to send
    truncates: int = 0  # distinct parked TRUNCATEs re-sent as they were parked
    unreadable: int = 0  # items that cannot be decoded (left in place)
    keyless: int = 0  # items with a record whose key cannot be recovered (left in place)
    refused: int = 0  # items with a TRUNCATE the sink cannot apply (left in place)
    dry_run: bool = False

    @property
    def left(self) -> int:
        """Items left where they were parked."""
        return self.unreadable + self.keyless + self.refused


@dataclass
class _Plan:
    """What redriving one item means: the keys to re-sync and the TRUNCATEs to re-send."""

    item: ParkedItem
    keys: list[dict[str, Any]] = field(default_factory=list)
    truncates: list[OutgoingRecord] = field(default_factory=list)


def record_key(data: bytes, config: PipelineConfig) -> dict[str, Any] | None:
    """The primary key a parked record is about: the change event's ``key``, or the raw stream record's keys in
    the forwarder's error envelope; None when the payload names no key of this table (``keyed`` says why)."""
    return keyed(data, config)[0]


def keyed(data: bytes, config: PipelineConfig) -> tuple[dict[str, Any] | None, str]:
    """``(key, "")`` for a parked record that names a key ``redrive`` can re-sync, else ``(None, why not)``: a key
    no vector can hold (the sink's own reason), or no key of this table at all."""
    no_key = f"names no key of {config.table}"
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None, no_key
    if not isinstance(doc, dict) or (doc.get("keyspace"), doc.get("table")) != (config.keyspace, config.table):
        return None, no_key
    key: Any = doc.get("key")
    if not isinstance(key, dict) and isinstance(doc.get("record"), dict):
        raw = doc["record"]
        try:
            key = {**keys_to_json(raw.get("partitionKeys")), **keys_to_json(raw.get("clusteringKeys"))}
        except (AttributeError, TypeError, ValueError):
            return None, no_key
    primary = resync.key_of_row(key, config) if isinstance(key, dict) else None
    if primary is None:
        return None, no_key
    try:
        vector_key(primary, config.key_columns)
    except PoisonRecordError as exc:
        return None, f"its key can be no vector's key ({exc})"
    return primary, ""


def parked_truncate(data: bytes, config: PipelineConfig) -> tuple[str | None, str | None]:
    """``(version, None)`` for a TRUNCATE the sink can apply (re-sent as it is), ``(None, why)`` for one it cannot
    (the sink's own check, ``freshvec.truncate.check_truncate``), ``(None, None)`` for anything else."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(doc, dict) or doc.get("op") != truncate.TRUNCATE_OP:
        return None, None
    try:
        return truncate.check_truncate(data, config).version, None
    except PoisonRecordError as exc:
        return None, f"a TRUNCATE the sink cannot apply: {exc}"


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
    """Re-sync the keys of parked changes (read each key's current row and send it, origin REDRIVE) and re-send
    parked TRUNCATEs as they were parked.

    A parked row change is never replayed: sent again it could carry older state than the table holds. A TRUNCATE
    carries no state, only its place in the source's order, so re-sending it cannot go backwards (the module
    docstring). Keys parked several times (re-delivered duplicates, several changes of one row) are re-synced
    once, a TRUNCATE parked several times is sent once. An item leaves its parking place (a DLQ message is
    deleted, an on-failure object moved under ``redriven/``) only after Kinesis accepted everything it stands for;
    an item that cannot be redriven stays where it is and is reported. Records go through ``writer`` (default:
    the Kinesis writer on the stack's stream) in the calls ``plan_calls`` plans. A re-sent TRUNCATE reaches every
    live index generation, whatever ``generations`` says: it is idempotent where it was applied already.
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
        unique, truncates = _distinct(ready, config)
        report.keys, report.truncates = len(unique), len(truncates)
        if dry_run:
            for plan in ready:
                _notify(on_item, plan.item, "would re-sync" if not plan.truncates else "would re-send")
            return report
        sender = ChangeStreamSender(writer, resources.stream_name) if writer is not None else None
        if unique or truncates:
            sender = sender or resync.change_stream_sender(resources, clients)
        if unique:
            resyncer = resync.Resyncer(config, reader, clients("s3vectors"), resources, sender)
            resyncer.generations = generations
            pairs = list(unique.values())
            results = resyncer.resync([key for key, _ in pairs], origin="REDRIVE", seqs=[seq for _, seq in pairs])
            report.updates = sum(1 for r in results if r.action == "update")
            report.deletes = sum(1 for r in results if r.action == "delete")
            report.unchanged = sum(1 for r in results if r.action == "none")
        if truncates:
            assert sender is not None
            sender.send(list(truncates.values()))
        for plan in ready:  # everything it stands for was accepted: the item leaves its parking place
            item = plan.item
            if item.source == "dlq" and sqs is not None:
                sqs.delete_message(QueueUrl=resources.dlq_url, ReceiptHandle=item.handle)
                removed.add(item.ref)
            else:
                move_redriven(clients("s3"), resources.on_failure_bucket, item.handle)
            report.resynced_items += 1
            _notify(on_item, item, "re-synced" if not plan.truncates else "re-sent")
        return report
    finally:  # whatever was not redriven becomes visible again at once, also after an error
        rest = [item for item in received if item.ref not in removed]
        if rest and sqs is not None:
            release_dlq(sqs, resources.dlq_url, rest)


def _distinct(
    ready: list[_Plan], config: PipelineConfig
) -> tuple[dict[str, tuple[dict[str, Any], str]], dict[bytes, OutgoingRecord]]:
    """The keys to re-sync (vector key -> (key, seq naming the first item)) and the TRUNCATEs to re-send, each once
    however often it was parked."""
    unique: dict[str, tuple[dict[str, Any], str]] = {}
    truncates: dict[bytes, OutgoingRecord] = {}
    for plan in ready:
        for key in plan.keys:
            unique.setdefault(vector_key(key, config.key_columns), (key, f"redrive:{plan.item.ref}"))
        for record in plan.truncates:
            truncates.setdefault(record.data, record)
    return unique, truncates


def _recoverable(
    items: list[ParkedItem],
    config: PipelineConfig,
    report: RedriveReport,
    on_item: Callable[[ParkedItem, str], None] | None,
) -> list[_Plan]:
    """The items every record of which names a key or is a TRUNCATE the sink can apply; the others are counted,
    given their reason (``item.unreadable``) and reported."""
    ready: list[_Plan] = []
    for item in items:
        if item.unreadable:
            report.unreadable += 1
            _notify(on_item, item, "unreadable")
            continue
        plan, keyless, refusals = _Plan(item), [], []
        for record in item.records:
            version, refused = parked_truncate(record.data, config)
            key, why = keyed(record.data, config) if version is None and refused is None else (None, "")
            if version is not None:
                plan.truncates.append(record)
            elif refused is not None:
                refusals.append(refused)
            elif key is not None:
                plan.keys.append(key)
            else:
                keyless.append(why)
        if refusals:
            report.refused += 1
            item.unreadable = refusals[0]
            _notify(on_item, item, "cannot apply")
        elif keyless or not item.records:
            report.keyless += 1
            item.unreadable = keyless[0] if keyless else "it holds no records"
            _notify(on_item, item, "no key")
        else:
            ready.append(plan)
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
    for name in ("source", "id", "records", "changes", "failed at", "position", "reason"):
        table.add_column(name, overflow="fold")
    for item in items:
        reason = item.unreadable or item.reason
        cells = (item.source, item.ref, len(item.records), changes(item), item.failed_at or "", item.position, reason)
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
    } | ({"keys": item_keys(item, config), "redrive": redrive_plan(item, config)} if config is not None else {})


def item_keys(item: ParkedItem, config: PipelineConfig) -> list[dict[str, Any] | None]:
    """The key each of the item's records is about (None: not recoverable), what ``redrive send`` re-syncs."""
    return [record_key(record.data, config) for record in item.records]


def redrive_plan(item: ParkedItem, config: PipelineConfig) -> list[str]:
    """What ``redrive send`` does with each of the item's records, one line each."""
    lines = []
    for record in item.records:
        version, refused = parked_truncate(record.data, config)
        key, why = keyed(record.data, config)
        if version is not None:
            lines.append(f"re-send this TRUNCATE of {config.keyspace}.{config.table} as parked (version {version})")
        elif refused is not None:
            lines.append(f"left in place: {refused}")
        elif key is not None:
            lines.append(f"re-sync row {json.dumps(key)} from the table")
        else:
            lines.append(f"left in place: {why}")
    return lines


def changes(item: ParkedItem) -> str:
    """The kinds of change an item holds, TRUNCATEs with their table: ``UPDATE, TRUNCATE public.articles``."""
    kinds: dict[str, None] = {}
    for record in item.records:
        try:
            doc = json.loads(record.data)
        except (ValueError, UnicodeDecodeError):
            doc = None
        op = doc.get("op") if isinstance(doc, dict) else None
        if op == truncate.TRUNCATE_OP:
            kinds[f"TRUNCATE {doc.get('keyspace')}.{doc.get('table')}"] = None
        else:
            kinds[op if isinstance(op, str) else "error envelope" if isinstance(doc, dict) else "unreadable"] = None
    return ", ".join(kinds)


def redrive_send(  # noqa: PLR0917 - typer passes every option by keyword; the order is the help's
    source: Source = ParkedSource.ALL,
    limit: Annotated[int | None, _limit_option(1000)] = None,
    old_limit: OldLimit = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be re-synced; change nothing")] = False,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS")] = None,
    generation: generations_cli.GenerationOption = None,
) -> None:
    """Re-sync the keys of parked changes from the table, re-send parked TRUNCATEs; an item leaves its parking
    place once Kinesis took all of it. Exits 1 when an item had to be left in place."""
    s = settings()
    res = s.resources()

    def on_item(item: ParkedItem, outcome: str) -> None:
        detail = f": {item.unreadable}" if item.unreadable else ""
        console.err.print(Text(f"{outcome:>13}  {item.source} {item.ref} ({len(item.records)} record(s)){detail}"))

    reader = _ConnectOnRead(res, s.clients(), ca_bundle)
    try:
        report = redrive(
            s.clients(), res, reader, source=source.value, limit=_limit(limit, old_limit, 1000), dry_run=dry_run,
            on_item=on_item, generations=generations_cli.targets(res, generation),
        )  # fmt: skip
    finally:
        reader.close()
    left = report.left
    truncates = f" and {report.truncates} TRUNCATE(s) re-sent as parked" if report.truncates else ""
    refused = f", {report.refused} TRUNCATE(s) the sink cannot apply" if report.refused else ""
    if dry_run:
        console.out.print(
            f"dry run: {report.found} parked, {report.found - left} would be re-synced ({report.keys} key(s)"
            f"{truncates}), {left} left in place"
        )
    else:
        console.out.print(
            f"{report.found} parked, {report.resynced_items} re-synced: {report.keys} key(s) read from the table "
            f"({report.updates} row(s) sent, {report.deletes} removal(s), {report.unchanged} already gone){truncates}"
            f" to {res.stream_name}; {left} left in place ({report.unreadable} unreadable, {report.keyless} without a "
            f"key{refused})"
        )
    if left:  # the command finished, and not everything could be redriven: scripts can tell
        raise typer.Exit(EXIT_CHECK_FAILED)


class _ConnectOnRead:
    """Reads rows through the stack's reader, connecting to the table on the first read only: a dry run, or a
    redrive of TRUNCATEs alone, needs no connection."""

    def __init__(self, resources: StackResources, clients: ClientFactory, ca_bundle: Path | None) -> None:
        self.resources, self.clients, self.ca_bundle = resources, clients, ca_bundle
        self._reader: resync.RowReader | None = None
        self._close: Callable[[], None] | None = None

    def read(self, keys: Sequence[dict[str, Any]]) -> list[resync.RowRead]:
        if self._reader is None:
            session = None
            if not self.resources.is_local:
                self._close, session = resync.connect_table(self.resources, self.clients, self.ca_bundle)
            self._reader = resync.row_reader(self.resources, session)
        return self._reader.read(keys)

    def close(self) -> None:
        if self._close is not None:
            self._close()
