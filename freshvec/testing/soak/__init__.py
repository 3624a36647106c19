"""The soak: drive the whole local pipeline with a generated workload while faults hit every boundary, then check
the index and the DLQ against an oracle built from the final table state.

``python -m bench.soak`` (``make soak``) runs the full size (10,000 changes over about 3,300 composite keys,
the default fault rates), prints the report and writes ``soak_*`` figures into bench-results.json;
``run(changes=...)`` is the same soak at any size, for tests. Everything talks to loopback only (moto server
in-process, the in-memory Keyspaces stand-in, WordLlama) and is bounded in count and time.

- ``config``: the soak's table (a composite primary key and a column of every CQL type) and pipeline settings;
- ``workload``: inserts, text updates, metadata-only updates (whole rows and partial CQL upserts), duplicate
  writes, deletes, re-inserts, TTL expiries, empty and null texts; about 1% poison changes on keys of their
  own: rows whose vector key is too long or whose filterable metadata is over the S3 Vectors limit (written
  through the table), and records no forwarder would write (bad JSON, an unknown contract version, an empty
  key, bytes that are not UTF-8; put straight into Kinesis, as a foreign producer could); and about 1.5%
  poison changes on live keys (an oversize title) followed later by valid changes of the same key;
- ``resync``: a redrive of the DLQ's parked changes on live keys and a backfill read early and sent late, both
  re-reading the table and sending REDRIVE/BACKFILL change events through the one Kinesis writer;
- ``rules``: the documented rules (vector key, metadata mapping, limits, fingerprint) written out for the
  soak's columns, independent of the pipeline's code;
- ``oracle``: for every row left in the table, the vector is present, its data is the local model's
  embedding of the row's current text (cosine >= 0.999), its metadata the documented mapping of the row, its
  ``_fp`` the fingerprint of the text and its ``_ver`` the row's version; every deleted, expired, text-less
  or poison key is absent; every poison change is in the DLQ with its payload and a reason, except those
  the redrive took out;
- ``run``: the run itself; its ``SoakReport`` counts every difference (``report.ok`` is the verdict).
"""

from __future__ import annotations

from freshvec.testing.soak.config import FULL_CHANGES, MAPPING_OVERRIDES, SOAK_CONFIG
from freshvec.testing.soak.oracle import (
    COSINE_MIN,
    DlqReader,
    Expectations,
    ExpectedVector,
    SoakReport,
    build_expectations,
    compare_dlq,
    compare_index,
    dlq_identity,
    poison_identity,
    read_index,
)
from freshvec.testing.soak.rules import SoakRules
from freshvec.testing.soak.run import run
from freshvec.testing.soak.values import random_value, sentence
from freshvec.testing.soak.workload import (
    PoisonChange,
    Workload,
    WorkloadGenerator,
    Write,
    generate_workload,
)

__all__ = [
    "COSINE_MIN",
    "FULL_CHANGES",
    "MAPPING_OVERRIDES",
    "SOAK_CONFIG",
    "DlqReader",
    "Expectations",
    "ExpectedVector",
    "PoisonChange",
    "SoakReport",
    "SoakRules",
    "Workload",
    "WorkloadGenerator",
    "Write",
    "build_expectations",
    "compare_dlq",
    "compare_index",
    "dlq_identity",
    "generate_workload",
    "poison_identity",
    "random_value",
    "read_index",
    "run",
    "sentence",
]
