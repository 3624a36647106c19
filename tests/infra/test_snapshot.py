"""The whole template against a stored snapshot, asset hashes masked.

Regenerate after an intended change with ``FRESHVEC_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/infra/test_snapshot.py``
and review the diff like code. A missing snapshot fails the test: it is never written implicitly.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Synth

SNAPSHOT = Path(__file__).parent / "snapshots" / "freshvec.template.json"
UPDATE_ENV = "FRESHVEC_UPDATE_SNAPSHOT"
_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def masked(template: dict[str, Any]) -> dict[str, Any]:
    """Asset hashes change with every code edit; CDK's analytics metadata with every CDK release."""
    resources = {lid: r for lid, r in template["Resources"].items() if r["Type"] != "AWS::CDK::Metadata"}
    kept = {**template, "Resources": resources}
    kept.pop("Conditions", None)  # only CDKMetadataAvailable
    return json.loads(_HASH.sub("<asset-hash>", json.dumps(kept)))


def check_snapshot(current: dict[str, Any], path: Path, *, update: bool) -> None:
    """Compare with the stored snapshot; write it only when asked (``update``), never because it is missing."""
    if update:
        path.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert path.exists(), f"snapshot {path} is missing; create it with {UPDATE_ENV}=1 and review it"
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert current == stored, f"template changed; if intended, regenerate with {UPDATE_ENV}=1 and review the diff"


def test_template_matches_snapshot(synth: Synth) -> None:
    check_snapshot(masked(synth.template), SNAPSHOT, update=os.environ.get(UPDATE_ENV) == "1")


def test_a_missing_snapshot_fails_and_is_not_written(tmp_path: Path) -> None:
    missing = tmp_path / "absent.template.json"
    with pytest.raises(AssertionError, match="missing"):
        check_snapshot({"Resources": {}}, missing, update=False)
    assert not missing.exists()
    check_snapshot({"Resources": {}}, missing, update=True)  # only the explicit update writes it
    assert missing.exists()


def test_masking_hides_hashes_only() -> None:
    digest = "a" * 64
    template = {
        "Resources": {
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": f"{digest}.zip"}, "Memory": 1}},
            "CDKMetadata": {"Type": "AWS::CDK::Metadata", "Properties": {}},
        },
        "Conditions": {"CDKMetadataAvailable": {}},
    }
    assert masked(template) == {
        "Resources": {
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": "<asset-hash>.zip"}, "Memory": 1}}
        }
    }
