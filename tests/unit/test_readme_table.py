"""The README's benchmark table is the rendering of the committed bench-results.json."""

from __future__ import annotations

import json

from bench import readme_table


def test_the_readme_block_is_the_rendering_of_the_committed_results() -> None:
    results = json.loads(readme_table.RESULTS.read_text())
    assert readme_table.block(readme_table.README.read_text()) == readme_table.render(results)


def test_rewrite_replaces_only_the_block() -> None:
    readme = f"intro\n{readme_table.START}\nold\n{readme_table.END}\noutro\n"
    out = readme_table.rewrite(readme, {"a_per_s": 1234.5, "ok": True})
    assert out.startswith("intro\n") and out.endswith("\noutro\n")
    assert "| `a_per_s` | 1,234.5 |" in out and "| `ok` | yes |" in out and "old" not in out
