"""An in-memory Amazon Keyspaces table with CDC, and its Keyspaces Streams API, for local mode and tests.

- ``streams``: ``LocalKeyspacesStreams``, the boto3 ``keyspacesstreams`` client stand-in (checked against the
  botocore model), with a control surface for splits, merges, trims and fault injection;
- ``table``: ``LocalTable``, rows in memory whose writes append change records to the stream;
- ``model``: the records, shards and streams both share, ``ManualClock`` and ``partition_hash``.
"""

from __future__ import annotations

from freshvec.local.keyspaces.model import ManualClock, partition_hash
from freshvec.local.keyspaces.streams import READ_OPERATIONS, LocalKeyspacesStreams
from freshvec.local.keyspaces.table import LocalTable

__all__ = ["READ_OPERATIONS", "LocalKeyspacesStreams", "LocalTable", "ManualClock", "partition_hash"]
