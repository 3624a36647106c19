"""The soak's corruption phase: damage the index behind the pipeline's back, then ``freshvec reconcile --repair``.

Once the pipeline is in sync, the index is damaged the ways drift really happens (a bug, a restore, a hand
edit): two rows' vectors and metadata swapped, ``_fp`` and ``_ver`` included (a drift that lives in the versions
themselves); a metadata value changed; a vector deleted; a vector under a key that names no row; a chunk beyond
its row's chunk count. Then the operator CLI runs against the running pipeline exactly as a user runs it
(``freshvec --local reconcile --repair``, through the control API and moto), the pipeline catches up, and the
soak's oracle judges the index again: every damage must be gone. A second ``reconcile`` must report no drift.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from freshvec.cli import app as cli_app
from freshvec.testing.local_cli import attached_cli
from freshvec.testing.soak.oracle import read_index

RECONCILE = ("reconcile", "--buckets", "16")


@dataclass
class CorruptionReport:
    damaged: dict[str, int] = field(default_factory=dict)  # kind of damage -> vectors damaged
    repair_exit_code: int | None = None
    repair_output: str = ""
    check_exit_code: int | None = None  # the reconcile after the repair: 0 when it found no drift
    check_output: str = ""

    def figures(self) -> dict[str, Any]:
        return {
            "damaged": dict(self.damaged),
            "repair_exit_code": self.repair_exit_code,
            "reconcile_after_repair_exit_code": self.check_exit_code,
        }


def damage_index(s3vectors: Any, bucket: str, index: str, rng: random.Random) -> dict[str, int]:
    """Damage the index in every way reconcile must repair; returns what was done, by kind."""
    vectors = read_index(s3vectors, bucket, index)
    keys = sorted(k for k in vectors if "#" not in k)
    rng.shuffle(keys)
    done: dict[str, int] = {}
    if len(keys) < 6:
        return done
    target = {"vectorBucketName": bucket, "indexName": index}

    def put(key: str, data: list[float], metadata: Mapping[str, Any]) -> None:
        s3vectors.put_vectors(**target, vectors=[{"key": key, "data": {"float32": data}, "metadata": dict(metadata)}])

    first, second = keys[0], keys[1]  # swapped whole: vector, metadata, fingerprint and version
    put(first, *vectors[second])
    put(second, *vectors[first])
    done["swapped"] = 2
    tampered, (data, metadata) = keys[2], vectors[keys[2]]
    put(tampered, data, {**metadata, "qty": -123_456})
    done["metadata_changed"] = 1
    s3vectors.delete_vectors(**target, keys=[keys[3]])
    done["deleted"] = 1
    data, metadata = vectors[keys[4]]
    put('["tenant-gone",1,"00000000-0000-1000-8000-000000000000"]', data, metadata)
    done["orphan_row"] = 1
    put(f"{keys[5]}#7", data, {**metadata, "_chunk": 7})
    done["orphan_chunk"] = 1
    return done


def corrupt_and_repair(pipeline: Any, rng: random.Random, workdir: Path | None = None) -> CorruptionReport:
    """Damage the index of a running ``LocalPipeline`` and run ``freshvec --local reconcile --repair`` on it."""
    report = CorruptionReport()
    resources = pipeline.resources
    report.damaged = damage_index(
        pipeline.server.client("s3vectors"), resources.vector_bucket, resources.vector_index, rng
    )
    with _cli_state(pipeline, workdir) as invoke:
        report.repair_exit_code, report.repair_output = invoke(*RECONCILE, "--repair")
    return report


def check_in_sync(pipeline: Any, report: CorruptionReport, workdir: Path | None = None) -> None:
    """``freshvec --local reconcile`` once more, after the pipeline caught up: it must find nothing."""
    with _cli_state(pipeline, workdir) as invoke:
        report.check_exit_code, report.check_output = invoke(*RECONCILE)


@contextmanager
def _cli_state(pipeline: Any, workdir: Path | None) -> Iterator[Any]:
    """A control API over the pipeline and the state file ``freshvec --local`` reads, as ``local up`` makes."""
    with (
        tempfile.TemporaryDirectory(prefix="freshvec-soak-", dir=workdir) as tmp,
        attached_cli(pipeline, Path(tmp) / "local.json"),
    ):

        def invoke(*args: str) -> tuple[int, str]:
            result = CliRunner().invoke(cli_app.app, ["--local", *args], catch_exceptions=False)
            return result.exit_code, result.output

        yield invoke
