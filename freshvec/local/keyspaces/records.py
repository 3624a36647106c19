"""The change records a stand-in table emits, in the ``keyspacesstreams`` shapes (botocore's model).

A record names its row by ``partitionKeys`` and ``clusteringKeys`` only; its images hold the regular
columns (``valueCells``), or, for a record of the static columns, ``staticCells`` and no clustering keys
("How CDC streams work": static columns arrive as records of their own). Each cell carries ``writeTime``
(microseconds, only with client-side timestamps on) and ``expirationTime`` (epoch seconds) under a TTL;
``rowMetadata`` carries the row marker's. ``createdAt`` is the service's time, given by the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from freshvec.local.keyspaces.model import EVENT_VERSION, _datetime
from freshvec.local.keyspaces.schema import LocalSchema
from freshvec.local.keyspaces.storage import NO_TIMESTAMP, Cell, Collection, StoredPartition, StoredRow
from freshvec.sources.keyspaces.cells import json_to_value, row_to_image

# (regular or static values, per-column cell metadata, row metadata): a row as one image shows it
Snapshot = tuple[dict[str, Any], dict[str, dict[str, str]], dict[str, str] | None]


class RecordMaker:
    """Builds the records of one table: images from stored cells, keys from the key columns."""

    def __init__(self, schema: LocalSchema, *, client_side_timestamps: bool) -> None:
        self.schema = schema
        self.client_side_timestamps = client_side_timestamps

    def record(
        self,
        key: Mapping[str, Any],
        new: Snapshot | None,
        old: Snapshot | None,
        origin: str,
        created_at: float,
        *,
        static: bool = False,
    ) -> dict[str, Any]:
        schema = self.schema
        record: dict[str, Any] = {
            "eventVersion": EVENT_VERSION,
            "createdAt": _datetime(created_at),
            "origin": origin,
            "partitionKeys": self._key_cells(key, schema.partition_key),
        }
        if schema.clustering_key and not static:
            record["clusteringKeys"] = self._key_cells(key, schema.clustering_key)
        if new is not None:
            record["newImage"] = self._image(new, static=static)
        if old is not None:
            record["oldImage"] = self._image(old, static=static)
        return record

    def snapshot(
        self, partition: StoredPartition, row: StoredRow, now: float, *, expired_view: bool = False
    ) -> Snapshot | None:
        """The row as an image shows it at ``now``, or None when it does not exist (no live marker or cell).

        ``expired_view``: as stored before a purge (cells past their TTL still counted), for the old image of
        a TTL record."""
        at = -math.inf if expired_view else now
        shadow = max(row.deleted_us, partition.deleted_us)
        values, metadata = self.live_cells(row.cells, row.collections, at, shadow)
        marker = row.marker if row.marker is not None and row.marker.live(at, shadow) else None
        if marker is None and not values:
            return None
        return values, metadata, (self.metadata(marker) if marker is not None else None)

    def static_snapshot(self, partition: StoredPartition, now: float, *, expired_view: bool = False) -> Snapshot | None:
        """The partition's static columns as their record's image shows them, or None when none is set."""
        at = -math.inf if expired_view else now
        values, metadata = self.live_cells(partition.static, partition.static_collections, at, partition.deleted_us)
        return (values, metadata, None) if values else None

    def live_cells(
        self, cells: Mapping[str, Cell], collections: Mapping[str, Collection], now: float, shadow: int
    ) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
        """The live values at ``now`` under a deletion at ``shadow``, and each one's cell metadata."""
        values: dict[str, Any] = {}
        metadata: dict[str, dict[str, str]] = {}
        for column, cell in cells.items():
            if cell.live(now, shadow):
                values[column] = cell.value
                metadata[column] = self.metadata(cell)
        for column, collection in collections.items():
            value = collection.value(now, shadow)
            if value is not None:
                values[column] = self.schema.canonical_value(column, value, "stored collection")
                newest = collection.newest_write(now, shadow)
                metadata[column] = self.metadata(Cell(value, newest if newest is not None else NO_TIMESTAMP))
        return values, metadata

    def metadata(self, cell: Cell) -> dict[str, str]:
        metadata: dict[str, str] = {}
        if self.client_side_timestamps:
            metadata["writeTime"] = str(cell.written_us)  # CQL WRITETIME: microseconds
        if cell.expires_at is not None:
            metadata["expirationTime"] = str(int(cell.expires_at))  # epoch seconds
        return metadata

    def _image(self, snapshot: Snapshot, *, static: bool) -> dict[str, Any]:
        values, metadata, row_metadata = snapshot
        cells = row_to_image(values, self.schema.column_types)["valueCells"]
        for column, cell in cells.items():
            cell["metadata"] = metadata[column]
        image: dict[str, Any] = {"valueCells": {}, "staticCells": cells} if static else {"valueCells": cells}
        if row_metadata:
            image["rowMetadata"] = row_metadata
        return image

    def _key_cells(self, values: Mapping[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
        return {column: json_to_value(values[column], self.schema.column_types[column]) for column in columns}
