"""Local mode: the whole pipeline on one machine with no AWS account.

``from freshvec.local import LocalPipeline`` is the entry point (see ``freshvec.local.pipeline``); it is
imported on first use, so the light modules here (the moto server, the local table) stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from freshvec.local.pipeline import LocalPipeline

__all__ = ["LocalPipeline"]


def __getattr__(name: str) -> Any:
    if name == "LocalPipeline":
        from freshvec.local.pipeline import LocalPipeline

        return LocalPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
