"""The migration's progress file: which step ran when, and what a crashed step needs to resume.

One file per stack (``.freshvec/migration-<stack>-<stack id>.json``: a new stack of the same name starts clean),
replaced atomically after every change, so a step that crashes is run again from what it says: ``start``
resumes its backfill (its own progress file) and its batch jobs (found again by their submission name),
``cutover``/``rollback`` are one pointer write each, ``finish`` checks what is already retired.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from freshvec.cli.errors import OperatorError

PHASES = ("planned", "filling", "filled", "cutover", "rolled_back", "finished")


@dataclass
class MigrationState:
    path: Path
    source: str  # the generation readers used when the migration began
    target: str  # the next generation
    phase: str = "planned"
    fill_path: str | None = None  # "ondemand" | "batch"
    steps: dict[str, float] = field(default_factory=dict)  # step -> when it last completed (epoch seconds)
    rows_sent: int = 0
    plan: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=dict)  # submission name, jobs, results file, records
    cutover_s: list[float] = field(default_factory=list)  # how long each pointer switch took

    @classmethod
    def load(cls, path: Path) -> MigrationState | None:
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw.pop("path", None)
            state = cls(path=path, **raw)
        except (ValueError, TypeError) as exc:
            raise OperatorError(f"{path} is not a migration progress file ({exc}); move it away to start over") from exc
        if state.phase not in PHASES:
            raise OperatorError(f"{path}: unknown phase {state.phase!r}")
        return state

    @classmethod
    def open(cls, path: Path, source: str, target: str) -> MigrationState:
        """The migration from ``source`` to ``target``: resumed when the file holds it, else a new one."""
        state = cls.load(path)
        if state is not None and state.target == target and state.phase != "finished":
            return state
        return cls(path=path, source=source, target=target)

    def done(self, step: str, phase: str | None = None) -> None:
        if phase is not None:
            self.phase = phase
        self.steps[step] = time.time()
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)


def default_state_path(stack_name: str) -> Path:
    return Path(".freshvec") / f"migration-{stack_name}.json"
