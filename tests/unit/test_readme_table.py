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


def test_writing_results_re_renders_the_readme_block(tmp_path) -> None:
    """What `make bench` does after each module, so `make test` right after it finds README and results equal."""
    from bench.__main__ import write_results

    results, readme = tmp_path / "bench-results.json", tmp_path / "README.md"
    results.write_text(json.dumps({"kept": 1}))
    readme.write_text(f"intro\n{readme_table.START}\nstale\n{readme_table.END}\n")
    write_results({"new_s": 2.5}, results, readme)
    merged = json.loads(results.read_text())
    assert merged == {"kept": 1, "new_s": 2.5}
    assert readme_table.block(readme.read_text()) == readme_table.render(merged)
