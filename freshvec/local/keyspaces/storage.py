"""How the Keyspaces stand-in stores one partition: cells with write times and TTLs, tombstones, collections.

These are Apache Cassandra's storage rules, which Amazon Keyspaces keeps with client-side timestamps on
(docs: "Client-side timestamps in Amazon Keyspaces", client-side-timestamps.html: timestamps "persisted for
each cell", used "for conflict resolution"):

- **Last write wins per cell**, by write timestamp (microseconds). On equal timestamps a tombstone beats a
  value and, between two values, the greater one wins (Cassandra "Storage Engine" / "Dynamo: data
  versioning" pages: cells are reconciled by timestamp, ties broken deterministically, deletes first).
- **A null write is a tombstone** for that cell: the column disappears from the row, ``WRITETIME`` of it is
  null, and it still shadows older writes of that cell (CQL docs, INSERT/UPDATE: "setting a column to null
  ... creates a tombstone").
- **A deletion at timestamp T shadows every cell written at or before T** — a row tombstone for the row, a
  partition tombstone for every row and the static cells — also writes that arrive later with older
  timestamps (CQL docs, DELETE: "USING TIMESTAMP ... deletes data older than the timestamp").
- **TTL is per cell**: ``USING TTL`` applies to the cells (and, for INSERT, the row marker) that statement
  writes; a cell is live until its deadline, counted on the service's clock from the write (Keyspaces docs
  "How it works: Amazon Keyspaces Time to Live (TTL)": custom TTLs "for rows and columns"; expired data
  "isn't available for DML statements").
- **A row exists** while its row marker (written by INSERT, not by UPDATE) or any regular cell is live
  (CQL docs, UPDATE: "the row is created if it does not exist"; a row whose cells all expire or are
  nulled, and which never had an INSERT, is gone).
- **Non-frozen collections are one cell per element** (CQL docs "Collections"): replacing the whole
  collection writes a collection tombstone just below the write's timestamp plus one cell per element;
  ``+``/``-`` add or remove elements without touching the others, each element with its own timestamp and
  TTL. An empty collection reads as null. Sets and maps read in key order, lists in insertion order.
  ``WRITETIME`` cannot be asked of a non-frozen collection (Cassandra before 5.0 rejects it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NO_TIMESTAMP = -(2**63)  # below every write: "never deleted"
COLLECTION_KINDS = ("list", "set", "map")
ADD, REMOVE = "$add", "$remove"  # collection element changes in an ``update`` row


def _order_key(value: Any) -> tuple[int, Any]:
    """A total order over JSON values (numbers by value, everything else by its canonical text)."""
    if isinstance(value, bool):
        return (1, str(value))
    if isinstance(value, int | float):
        return (0, value)
    return (2, json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str))


@dataclass
class Cell:
    """One stored cell: a value (None: a tombstone), its write timestamp (µs) and its TTL deadline."""

    value: Any
    written_us: int
    expires_at: float | None = None  # service-clock epoch seconds

    def beats(self, other: Cell) -> bool:
        """Whether this cell wins over ``other`` when both are written to the same place."""
        if self.written_us != other.written_us:
            return self.written_us > other.written_us
        if (self.value is None) != (other.value is None):
            return self.value is None  # on a tie, the deletion wins
        return _order_key(self.value) > _order_key(other.value)

    def live(self, now: float, shadow_us: int) -> bool:
        """Holds a value, not shadowed by a deletion at ``shadow_us`` or later, not expired at ``now``."""
        return (
            self.value is not None
            and self.written_us > shadow_us
            and (self.expires_at is None or self.expires_at > now)
        )

    def expired(self, now: float) -> bool:
        return self.value is not None and self.expires_at is not None and self.expires_at <= now


@dataclass
class Collection:
    """A non-frozen list, set or map: one cell per element, and the newest whole-collection tombstone.

    Element ids: a list element's id is its insertion order (Cassandra keys list elements by a timeuuid the
    coordinator makes when the write arrives, whatever the write's timestamp, so two appends always make two
    elements); a set element's id is its value; a map entry's id is its key.
    """

    kind: str
    cleared_us: int = NO_TIMESTAMP
    elements: dict[str, Cell] = field(default_factory=dict)
    keys: dict[str, Any] = field(default_factory=dict)  # element id -> set element or map key
    appended: int = 0  # list elements made so far: the next one's insertion order

    def clear(self, written_us: int) -> None:
        self.cleared_us = max(self.cleared_us, written_us)

    def put(self, element_id: str, cell: Cell, key: Any = None) -> None:
        current = self.elements.get(element_id)
        if current is None or cell.beats(current):
            self.elements[element_id] = cell
            self.keys[element_id] = key

    def live_elements(self, now: float, shadow_us: int) -> list[tuple[str, Cell]]:
        floor = max(shadow_us, self.cleared_us)
        return [(eid, cell) for eid, cell in self.elements.items() if cell.live(now, floor)]

    def value(self, now: float, shadow_us: int) -> Any:
        """The collection as a JSON value, or None when empty (an empty collection is null in CQL)."""
        live = self.live_elements(now, shadow_us)
        if not live:
            return None
        if self.kind == "list":
            return [cell.value for _, cell in sorted(live, key=lambda item: item[0])]
        if self.kind == "set":
            return sorted((self.keys[eid] for eid, _ in live), key=_order_key)
        entries = sorted(((self.keys[eid], cell.value) for eid, cell in live), key=lambda kv: _order_key(kv[0]))
        if all(isinstance(key, str) for key, _ in entries):
            return dict(entries)
        return [[key, value] for key, value in entries]

    def newest_write(self, now: float, shadow_us: int) -> int | None:
        live = self.live_elements(now, shadow_us)
        return max(cell.written_us for _, cell in live) if live else None

    def expired(self, now: float) -> list[str]:
        return [eid for eid, cell in self.elements.items() if cell.expired(now)]


@dataclass
class StoredRow:
    """A clustering row: its row marker (INSERT), regular cells, collections and row tombstone."""

    marker: Cell | None = None  # value True; written by INSERT only
    cells: dict[str, Cell] = field(default_factory=dict)
    collections: dict[str, Collection] = field(default_factory=dict)
    deleted_us: int = NO_TIMESTAMP


@dataclass
class StoredPartition:
    """A partition: its rows (by clustering key id), static cells and partition tombstone."""

    rows: dict[str, StoredRow] = field(default_factory=dict)
    static: dict[str, Cell] = field(default_factory=dict)
    static_collections: dict[str, Collection] = field(default_factory=dict)
    deleted_us: int = NO_TIMESTAMP


def write_cell(cells: dict[str, Cell], column: str, cell: Cell) -> None:
    """Last write wins: store ``cell`` unless the stored one beats it."""
    current = cells.get(column)
    if current is None or cell.beats(current):
        cells[column] = cell


def element_id(collection: Collection, element: Any) -> str:
    """A collection element's id (see ``Collection``); a list element gets the next insertion order."""
    if collection.kind == "list":
        collection.appended += 1
        return f"{collection.appended:012d}"
    return json.dumps(element, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def apply_cells(  # noqa: PLR0917 - one write's cells, collections, kinds, ops, time and TTL
    kinds: Mapping[str, str],
    cells: dict[str, Cell],
    collections: dict[str, Collection],
    values: Mapping[str, Any],
    ops: Mapping[str, Mapping[str, Any]],
    written_us: int,
    expires_at: float | None,
) -> None:
    for column, value in values.items():
        kind = kinds[column]
        if kind in COLLECTION_KINDS:  # a whole-collection write replaces it: tombstone just below, then elements
            collection = collections.setdefault(column, Collection(kind))
            collection.clear(written_us - 1)
            if value is not None:
                _add_elements(collection, value, written_us, expires_at)
        else:
            write_cell(cells, column, Cell(value, written_us, expires_at))
    for column, value in ops.get(ADD, {}).items():
        collection = collections.setdefault(column, Collection(kinds[column]))
        _add_elements(collection, value, written_us, expires_at)
    for column, value in ops.get(REMOVE, {}).items():
        collection = collections.setdefault(column, Collection(kinds[column]))
        _remove_elements(collection, value, written_us)


def _add_elements(collection: Collection, value: Any, written_us: int, expires_at: float | None) -> None:
    if collection.kind == "map":
        entries = value.items() if isinstance(value, Mapping) else [tuple(pair) for pair in value]
        for key, item in entries:
            collection.put(element_id(collection, key), Cell(item, written_us, expires_at), key)
        return
    for element in value:
        eid = element_id(collection, element)
        stored = True if collection.kind == "set" else element
        collection.put(eid, Cell(stored, written_us, expires_at), element)


def _remove_elements(collection: Collection, value: Any, written_us: int) -> None:
    if collection.kind == "list":  # list removal by value: every element equal to one given goes
        doomed = {json.dumps(v, sort_keys=True, default=str) for v in value}
        for eid, cell in list(collection.elements.items()):
            if cell.value is not None and json.dumps(cell.value, sort_keys=True, default=str) in doomed:
                collection.put(eid, Cell(None, written_us), collection.keys.get(eid))
        return
    for element in value:
        collection.put(element_id(collection, element), Cell(None, written_us), element)


def tombstone(row: StoredRow, *, written_us: int) -> None:
    row.deleted_us = max(row.deleted_us, written_us)


def expired_parts(cells: Mapping[str, Cell], collections: Mapping[str, Collection], now: float) -> bool:
    return any(cell.expired(now) for cell in cells.values()) or any(c.expired(now) for c in collections.values())


def purge(cells: dict[str, Cell], collections: Mapping[str, Collection], now: float) -> None:
    """An expired cell becomes a tombstone with its write timestamp (it still shadows older writes)."""
    for column, cell in list(cells.items()):
        if cell.expired(now):
            cells[column] = Cell(None, cell.written_us)
    for collection in collections.values():
        for eid in collection.expired(now):
            collection.elements[eid] = Cell(None, collection.elements[eid].written_us)


def ttl_deadlines(partition: StoredPartition, row_id: str | None) -> list[float]:
    """The TTL deadlines of a row's values not purged yet (``row_id`` None: the partition's static row)."""
    row = partition.rows[row_id] if row_id is not None else None
    cells = [*row.cells.values(), row.marker] if row else list(partition.static.values())
    collections = row.collections if row else partition.static_collections
    cells += [cell for collection in collections.values() for cell in collection.elements.values()]
    return [cell.expires_at for cell in cells if cell is not None and cell.value is not None and cell.expires_at]
