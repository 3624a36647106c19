"""The ``freshvec`` command: the operator CLI (``freshvec.cli``) with local mode's ``freshvec local ...``.

The composition root of the two runners a person types: the one package that puts them side by side (neither
imports the other), kept beside them rather than in the domain.
"""

from __future__ import annotations

from freshvec.cli.app import app
from freshvec.local.cli import local_app

app.add_typer(local_app, name="local")


def main() -> None:
    """Console entry point (``freshvec``)."""
    app(prog_name="freshvec")
