"""`cdk synth` through the pinned CLI, offline: it works, and a bad -c value fails naming the field."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import REPO_ROOT

CDK = ["npx", "--no-install", "cdk"]
TIMEOUT_S = 300


def _offline_env() -> dict[str, str]:
    """Any network attempt goes to a closed local port and fails at once."""
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    closed = "http://127.0.0.1:9"
    env.update(
        {
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "HTTP_PROXY": closed,
            "HTTPS_PROXY": closed,
            "http_proxy": closed,
            "https_proxy": closed,
            "NO_PROXY": "",
            "npm_config_offline": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


def _cdk(*args: str, outdir: Path) -> subprocess.CompletedProcess[str]:
    if not (REPO_ROOT / "node_modules" / ".bin" / "cdk").exists():
        pytest.fail("the pinned CDK CLI is missing: run `make setup`")
    return subprocess.run(
        [*CDK, "synth", "--quiet", "--no-notices", "--output", str(outdir), *args],
        cwd=REPO_ROOT,
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_cdk_synth_works_offline(tmp_path: Path) -> None:
    result = _cdk(outdir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "freshvec.template.json").is_file()
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "field", "allowed"),
    [
        ("freshvec.sink.batch_size=0", "sink.batch_size", "allowed: 1 to 10000"),
        ("freshvec.embedding.provider=local", "embedding.provider", "allowed: titan, cohere"),
    ],
)
def test_bad_context_value_fails_with_one_clear_line(tmp_path: Path, override: str, field: str, allowed: str) -> None:
    extra = ["-c", "freshvec.embedding.model_id=wordllama-l2-supercat"] if field == "embedding.provider" else []
    result = _cdk("-c", override, *extra, outdir=tmp_path)
    assert result.returncode != 0
    assert f"invalid config field '{field}'" in result.stderr
    assert allowed in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "freshvec.template.json").exists()
