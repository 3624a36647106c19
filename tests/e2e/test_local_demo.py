"""`freshvec local demo` with the sample movies, and with another table and its own data."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from freshvec.config import DEFAULT_CONFIG
from freshvec.local.cli import local_app
from freshvec.local.demo import run_demo

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS_CONFIG = ROOT / "data" / "examples" / "products.config.json"
PRODUCTS_DATA = ROOT / "data" / "examples" / "products.jsonl"


def quick(config: dict) -> dict:
    """The same config with no batching window, to keep the suite quick."""
    return {**config, "sink": {**config.get("sink", {}), "batching_window_s": 0}}


def test_the_movie_demo_tells_its_story(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(quick(DEFAULT_CONFIG)))
    result = CliRunner().invoke(local_app, ["demo", "--config", str(config)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Load 176 rows from movies.jsonl" in out
    assert "'dinosaurs'" in out
    after_rewrite = out.split("Rewrite the overview of 'Moby Dick'")[1].split("after:")[1].splitlines()[0]
    assert "for 'dinosaurs'" in after_rewrite  # now among the nearest dinosaur movies
    after_delete = out.split("Delete 'Jurassic Park'")[1].split("after:")[1].splitlines()[0]
    assert after_delete.strip() == "not in the index"
    assert "embeddings computed for this change: 0; stored vector reused: 1" in out
    assert "vote_average=9.9" in out
    for step in ("load", "overview rewritten", "row deleted", "other columns updated", "long text added"):
        assert f"  {step}: " in out
    long_text = out.split("6. Long text: add 'Varna Point Lighthouse'")[1]
    assert "1. Varna Point Lighthouse" in long_text and "Mira Halloway" in long_text  # the passage in the middle
    assert "chunks embedded 1, reused" in long_text
    hybrid = out.split("7. An exact title, 'Jurassic World Dominion'")[1]
    assert "vector ranks another film first" in hybrid
    assert "hybrid ranks the film named first" in hybrid
    assert "1. Jurassic World Dominion  (fused " in hybrid.split("  hybrid:")[1]
    migration = out.split("8. Migrate to a new index generation")[1]
    assert "copied from g1 (same fingerprint)" in migration
    assert "cutover: readers use g2" in migration and "rollback: readers use g1" in migration
    assert "finish: g1 retired" in migration


def test_the_demo_runs_on_another_table_with_its_own_data() -> None:
    lines: list[str] = []
    config = quick(json.loads(PRODUCTS_CONFIG.read_text()))
    steps = run_demo(config, PRODUCTS_DATA, echo=lines.append)
    out = "\n".join(lines)
    assert [s.name for s in steps] == ["load", "description rewritten", "row deleted", "other columns updated"]
    assert "6. Migrate to a new index generation" in out and "finish: g1 retired" in out
    assert steps[0].changes == sum(1 for line in PRODUCTS_DATA.read_text().splitlines() if line.strip())
    assert all(s.freshness_ms > 0 for s in steps)
    # The rewritten row now reads like the first row: it ranks first or second for that row's opening words.
    after = out.split("after:")[1].splitlines()[0]
    assert after.strip().startswith(("#1 ", "#2 ")), after
    assert "embeddings computed for this change: 0; stored vector reused: 1" in out


def test_a_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(local_app, ["demo", "--data", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "no such file" in result.output
