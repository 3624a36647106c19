"""The local state file: how ``freshvec local up`` tells ``freshvec --local ...`` where it runs.

It lives in one fixed per-user place, whatever the working directory (``$XDG_STATE_HOME/freshvec/local.json``,
else ``~/.local/state/freshvec/local.json``; ``$FRESHVEC_LOCAL_STATE`` overrides it), and holds the moto
endpoint, the resource names (the same keys as the stack outputs), the control API's URL and the random
token the control API requires. It is written with mode 0600, since the token is a credential.

Both local mode (the writer) and the CLI (the reader) use this module; neither imports the other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOCAL_STATE_ENV = "FRESHVEC_LOCAL_STATE"
STATE_FILE_NAME = "local.json"
CONTROL_TOKEN_HEADER = "X-Freshvec-Token"  # noqa: S105 - a header name, not a secret


def local_state_path(path: str | Path | None = None) -> Path:
    """The state file: ``path`` if given, else ``$FRESHVEC_LOCAL_STATE``, else the per-user default."""
    if path:
        return Path(path).expanduser()
    override = os.environ.get(LOCAL_STATE_ENV)
    if override:
        return Path(override).expanduser()
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "freshvec" / STATE_FILE_NAME


def write_local_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write atomically (readers never see half a file), readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(state, indent=2) + "\n")
    os.chmod(temporary, 0o600)  # an existing temporary file keeps its old mode through os.open
    temporary.replace(path)


def read_local_state(path: str | Path | None = None) -> dict[str, Any]:
    """The running local stack's state; FileNotFoundError says how to start one, ValueError if unreadable."""
    state_path = local_state_path(path)
    if not state_path.is_file():
        raise FileNotFoundError(
            f"no local pipeline running ({state_path} not found); start one with `freshvec local up`"
        )
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{state_path} is not a freshvec local state file: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{state_path} is not a freshvec local state file")
    return state
