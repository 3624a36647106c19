"""The Keyspaces Streams stand-in, from the folder where every fake lives (implementation in freshvec.local)."""

from __future__ import annotations

from freshvec.local.keyspaces import (
    READ_OPERATIONS,
    LocalKeyspacesStreams,
    LocalTable,
    ManualClock,
    partition_hash,
)

__all__ = ["READ_OPERATIONS", "LocalKeyspacesStreams", "LocalTable", "ManualClock", "partition_hash"]
