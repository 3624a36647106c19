"""What every ``freshvec migrate`` step works with: the stack, its clients, the index pointer as readers see it,
and the progress file; the live generations seen one at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from freshvec.cli import generations
from freshvec.cli.errors import OperatorError
from freshvec.cli.migrate_state import MigrationState, default_state_path
from freshvec.cli.settings import settings
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.generations import Generation, IndexPointer, generation_named


@dataclass
class Context:
    resources: StackResources
    clients: ClientFactory
    pointer: IndexPointer
    state_path: Path

    @property
    def next_generation(self) -> Generation:
        nxt = self.resources.config.next_generation
        if nxt is None:
            where = (
                "start `freshvec local up` with a config that has one"
                if self.resources.is_local
                else "add next_generation to the config and deploy"
            )
            raise OperatorError(f"the config has no next generation: {where} (docs/migrations.md)")
        return generation_named(self.resources.config, nxt.name)

    @property
    def current_generation(self) -> Generation:
        return generation_named(self.resources.config, self.resources.config.generation)

    def state(self) -> MigrationState:
        nxt = self.next_generation
        return MigrationState.open(self.state_path, source=self.resources.config.generation, target=nxt.name)

    def scoped(self, generation: Generation) -> StackResources:
        return generations.resources_for(self.resources, generation)


def load_context(state_file: Path | None) -> Context:
    s = settings()
    res = s.resources()
    clients = s.clients()
    path = state_file or default_state_path(res.progress_name)
    return Context(res, clients, generations.read_pointer(res, clients), path)
