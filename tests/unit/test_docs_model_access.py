"""The docs tell users what Bedrock asks of them today: no model-access step for serverless models (enabled by
default), a one-time AWS Marketplace subscription by an administrator for third-party (Cohere) models."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The retired console step: "enable model access", "enable access to the embedding model", "request model access".
RETIRED_STEP = re.compile(r"\b(enable|request)\s+(model\s+access|access\s+to\s+the\s+(embedding\s+)?model)", re.I)


def test_no_doc_tells_users_to_enable_model_access() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in USER_DOCS
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if RETIRED_STEP.search(line)
    ]
    assert not found, "\n".join(found)


def test_troubleshooting_explains_access_denied_by_policy_or_marketplace() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(
        line for line in readme.splitlines() if line.startswith("| sink errors with Bedrock `AccessDeniedException`")
    )
    assert "Marketplace" in row and "administrator" in row and "SCP" in row


def test_deploy_guide_names_the_marketplace_subscription_for_third_party_models() -> None:
    deploy = " ".join((ROOT / "docs" / "deploy.md").read_text(encoding="utf-8").split())
    assert "serverless models are enabled for every account by default" in deploy
    assert "an administrator with `aws-marketplace:Subscribe`" in deploy and "subscribes once per account" in deploy
