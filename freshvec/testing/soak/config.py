"""The soak's table and pipeline: a composite primary key, a column of every CQL type, fast local retries."""

from __future__ import annotations

from typing import Any

from freshvec import constants as c

FULL_CHANGES = 10_000

# A table with a composite primary key and a column of every CQL type Keyspaces supports (counter aside: a
# counter table holds only counters).
SOAK_CONFIG: dict[str, Any] = {
    "keyspace": "soak",
    "table": "catalog",
    "stack_name": "freshvec-soak",
    "columns": {
        "tenant": "text",
        "item_id": "bigint",
        "variant": "timeuuid",
        "body": "text",
        "title": "varchar",
        "code": "ascii",
        "qty": "int",
        "small": "smallint",
        "tiny": "tinyint",
        "huge": "varint",
        "ratio": "float",
        "score": "double",
        "price": "decimal",
        "active": "boolean",
        "released": "date",
        "updated": "timestamp",
        "opens": "time",
        "lead_time": "duration",
        "addr": "inet",
        "ref": "uuid",
        "raw": "blob",
        "tags": "list<text>",
        "sizes": "set<int>",
        "stock": "map<text, int>",
        "by_code": "map<int, text>",
        "point": "tuple<double, double>",
        "history": "frozen<list<frozen<list<int>>>>",
        "owner": "udt<person>",
        "notes": "text",
    },
    "partition_key": ["tenant", "item_id"],
    "clustering_key": ["variant"],
    "embedding_field": "body",
    "metadata_fields": [
        "tenant",
        "item_id",
        "variant",
        "title",
        "code",
        "qty",
        "small",
        "tiny",
        "huge",
        "ratio",
        "score",
        "price",
        "active",
        "released",
        "updated",
        "opens",
        "lead_time",
        "addr",
        "ref",
        "raw",
        "tags",
        "sizes",
        "stock",
        "by_code",
        "point",
        "history",
        "owner",
        "notes",
    ],
    "embedding": {"provider": "local", "model_id": c.LOCAL_WORDLLAMA, "dimensions": 256},
    "vector_store": {
        "bucket_name": "freshvec-soak",
        "index_name": "soak-catalog",
        "distance_metric": "cosine",
        "non_filterable_keys": ["body", "notes"],
    },
    "stream": {"mode": "PROVISIONED", "shard_count": 2},
    # The injected faults skip the retries the Bedrock provider makes inside the sink, so far more of them
    # reach the mapping than would in AWS; the retry budget is sized for that (see the README's soak section).
    "sink": {"batch_size": 100, "batching_window_s": 0, "retry_attempts": 1000, "max_record_age_s": 21600},
    "forwarder": {"poll_interval_ms": 20},
}
# Local-only mapping settings: poll and back off quickly so the faults cost retries, not wall time.
MAPPING_OVERRIDES = {"poll_interval_s": 0.02, "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.1}
