"""Render bench-results.json as the README's benchmark table: ``python -m bench.readme_table`` rewrites the block
between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` in README.md (a test keeps the two equal)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results.json"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        # sorted, as the results file stores it: a render from a fresh run and one from the file agree
        return ", ".join(f"{k} {_value(value[k])}" for k in sorted(value))
    return str(value)


def render(results: dict[str, Any]) -> str:
    """The markdown block (markers included) for ``results``."""
    lines = [START, "", "| figure | value |", "|---|---|"]
    lines += [f"| `{key}` | {_value(results[key])} |" for key in sorted(results)]
    return "\n".join([*lines, "", END])


def rewrite(readme: str, results: dict[str, Any]) -> str:
    if START not in readme or END not in readme:
        raise ValueError(f"README.md has no {START} ... {END} block")
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    return before + render(results) + after


def block(readme: str) -> str:
    """The block (markers included) as README.md holds it now."""
    start = readme.index(START)
    return readme[start : readme.index(END) + len(END)]


def main() -> int:
    results = json.loads(RESULTS.read_text())
    README.write_text(rewrite(README.read_text(), results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
