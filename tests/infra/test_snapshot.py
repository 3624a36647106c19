"""The whole template against a stored snapshot, asset hashes masked.

Regenerate after an intended change with ``FRESHVEC_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/infra/test_snapshot.py``
and review the diff like code.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from tests.infra.conftest import Synth

SNAPSHOT = Path(__file__).parent / "snapshots" / "freshvec.template.json"
UPDATE_ENV = "FRESHVEC_UPDATE_SNAPSHOTS"
_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def masked(template: dict[str, Any]) -> dict[str, Any]:
    """Asset hashes change with every code edit; CDK's analytics metadata with every CDK release."""
    resources = {lid: r for lid, r in template["Resources"].items() if r["Type"] != "AWS::CDK::Metadata"}
    kept = {**template, "Resources": resources}
    kept.pop("Conditions", None)  # only CDKMetadataAvailable
    return json.loads(_HASH.sub("<asset-hash>", json.dumps(kept)))


def test_template_matches_snapshot(synth: Synth) -> None:
    current = masked(synth.template)
    if os.environ.get(UPDATE_ENV) == "1" or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    stored = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert current == stored, f"template changed; if intended, regenerate with {UPDATE_ENV}=1 and review the diff"


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
