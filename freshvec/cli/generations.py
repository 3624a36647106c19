"""Index generations in the CLI: ``--generation``, each generation seen as its own stack resources, and the
index pointer (an SSM parameter: the stack's, or the local one in moto) that readers resolve.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from freshvec import constants as c
from freshvec.adapters.ssm import SsmPointerStore
from freshvec.cli.errors import OperatorError
from freshvec.cli.stack import ClientFactory, StackResources
from freshvec.config import ConfigError
from freshvec.generations import Generation, IndexPointer, initial_pointer, select_generations

GenerationOption = Annotated[
    list[str] | None,
    typer.Option(
        "--generation",
        "-g",
        help="Index generation to work on (repeatable) [default: every live one]",
        show_default=False,
    ),
]


def chosen(resources: StackResources, names: list[str] | None) -> list[Generation]:
    """The live generations named on the command line (all of them when none is)."""
    try:
        return select_generations(resources.config, names)
    except ConfigError as exc:
        raise OperatorError(str(exc)) from exc


def targets(resources: StackResources, names: list[str] | None) -> list[str] | None:
    """What re-syncs name in their ``generations`` field: None (every live one) unless a subset was chosen."""
    picked = chosen(resources, names)
    return None if len(picked) == len(select_generations(resources.config, None)) else [g.name for g in picked]


def resources_for(resources: StackResources, generation: Generation) -> StackResources:
    """The stack as one generation sees it: its config (model, chunking, index settings) and its index (the
    stack's output for the config's own generation, the name the stack gives it for the next one)."""
    if generation.name == resources.config.generation and resources.outputs.get(c.OUT_VECTOR_INDEX):
        return dataclasses.replace(resources, config=generation.config)
    outputs = {**resources.outputs, c.OUT_VECTOR_INDEX: generation.index_name}
    return dataclasses.replace(resources, config=generation.config, outputs=outputs)


def pointer_store(resources: StackResources, clients: ClientFactory) -> SsmPointerStore:
    name = resources.outputs.get(c.OUT_INDEX_POINTER_PARAMETER)
    if not name:
        where = "the local state file" if resources.is_local else f"stack {resources.stack_name!r}"
        raise OperatorError(f"{where} has no index pointer ({c.OUT_INDEX_POINTER_PARAMETER}); deploy this version")
    return SsmPointerStore(clients("ssm"), name)


def read_pointer(resources: StackResources, clients: ClientFactory) -> IndexPointer:
    """The pointer as readers see it; a stack without one yet reads as its config's generation active."""
    store = pointer_store(resources, clients)
    text = store.read()
    if text is None:
        return initial_pointer(resources.config, resources.outputs.get(c.OUT_VECTOR_BUCKET))
    try:
        return IndexPointer.from_json(text)
    except ValueError as exc:
        raise OperatorError(f"the index pointer {store.name} is not valid: {exc}") from exc


def active_resources(resources: StackResources, clients: ClientFactory) -> StackResources:
    """The stack as readers use it now: the generation the pointer names active (the config's own when the
    pointer names a generation the config no longer has)."""
    if resources.config.next_generation is None:
        return resources
    pointer = read_pointer(resources, clients)
    live = {g.name: g for g in select_generations(resources.config, None)}
    generation = live.get(pointer.active)
    return resources_for(resources, generation) if generation is not None else resources


def describe(pointer: IndexPointer) -> dict[str, Any]:
    return {
        "active": pointer.active,
        "previous": pointer.previous,
        "changed_at": pointer.changed_at,
        "generations": {name: dataclasses.asdict(entry) for name, entry in pointer.generations.items()},
    }
