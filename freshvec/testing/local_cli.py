"""A running local pipeline as ``freshvec --local`` finds it, for tests that drive the CLI in this process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from freshvec.local.cli import stack_state
from freshvec.local.control import ControlServer
from freshvec.state import LOCAL_STATE_ENV, write_local_state


@contextmanager
def attached_cli(pipeline: Any, state: Path) -> Iterator[ControlServer]:
    """Serve ``pipeline``'s control API, write the state file ``state`` naming it and point
    ``FRESHVEC_LOCAL_STATE`` at that file, as ``freshvec local up`` does; all undone on exit."""
    control = ControlServer(pipeline).start()
    try:
        write_local_state(state, stack_state(pipeline, control))
        with environment(LOCAL_STATE_ENV, str(state)):
            yield control
    finally:
        control.stop()


@contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """``name`` set to ``value`` for the block, then as it was."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
