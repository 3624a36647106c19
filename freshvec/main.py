"""The ``freshvec`` command: the operator CLI (``freshvec.cli``) with local mode's ``freshvec local ...``.

This is the one module that puts two ways of running freshvec side by side; neither imports the other.
"""

from __future__ import annotations

from freshvec.cli.app import app
from freshvec.local.cli import local_app

app.add_typer(local_app, name="local")


def main() -> None:
    """Console entry point (``freshvec``)."""
    app(prog_name="freshvec")


if __name__ == "__main__":
    main()
