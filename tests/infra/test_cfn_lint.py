"""cfn-lint on the synthesized templates: no errors; the only warning is the explicit index -> bucket dependency."""

from __future__ import annotations

import json
from pathlib import Path

from cfnlint.api import ManualArgs, lint

from tests.infra.conftest import Synth

# W3005 "dependency already enforced by GetAtt": the index's DependsOn on its vector bucket is kept explicit on
# purpose (delete order on `cdk destroy`), and CDK adds the same for roles and their functions.
TOLERATED_WARNINGS = {"W3005"}


def _lint(template: dict, tmp_path: Path) -> list:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    return lint(path.read_text(encoding="utf-8"), config=ManualArgs(regions=["us-east-1"]))


def test_templates_have_no_cfn_lint_errors(synth: Synth, variant: Synth, pg_synth: Synth, tmp_path: Path) -> None:
    for result in (synth, variant, pg_synth):
        matches = _lint(result.template, tmp_path)
        errors = [f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")]
        assert errors == []
        unexpected = [f"{m.rule.id} {m.message}" for m in matches if m.rule.id not in TOLERATED_WARNINGS]
        assert unexpected == []


def test_cfn_lint_sees_a_broken_template(synth: Synth, tmp_path: Path) -> None:
    broken = json.loads(json.dumps(synth.template))
    index = next(r for r in broken["Resources"].values() if r["Type"] == "AWS::S3Vectors::Index")
    index["Properties"]["DataType"] = "float16"
    assert any(m.rule.id.startswith("E") for m in _lint(broken, tmp_path))
