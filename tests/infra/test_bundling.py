"""Local (no-Docker) bundling: what goes into the code asset and the dependency layer, and how it fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import bundling
from stacks import constants as k
from tests.infra.conftest import Synth


def _asset_dir(synth: Synth, construct: object) -> Path:
    """The staged asset directory behind a function's or layer's code (``asset.<hash>`` in the cloud assembly)."""
    props = synth.template["Resources"][synth.logical_id(construct)]["Properties"]
    s3_key = (props.get("Code") or props["Content"])["S3Key"]
    return synth.outdir / f"asset.{s3_key.removesuffix('.zip')}"


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_code_asset_holds_domain_and_handlers_without_local_mode(synth: Synth) -> None:
    files = _files(_asset_dir(synth, synth.stack.forwarder.function))
    assert "freshvec/config/__init__.py" in files
    assert "freshvec/change-event.schema.json" in files
    assert "lambdas/__init__.py" in files
    for runner in ("freshvec/local/", "freshvec/cli/", "freshvec/command/"):  # none of them runs in a Lambda
        assert not any(f.startswith(runner) for f in files)
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    assert "lambdas/requirements.txt" not in files
    sink_code = synth.template["Resources"][synth.logical_id(synth.stack.sink.function)]["Properties"]["Code"]
    forwarder_code = synth.template["Resources"][synth.logical_id(synth.stack.forwarder.function)]["Properties"]["Code"]
    assert sink_code == forwarder_code  # one asset shared by both functions


def test_layer_holds_the_pinned_arm64_dependencies(synth: Synth) -> None:
    root = _asset_dir(synth, synth.stack.node.find_child("Dependencies"))
    python = root / k.LAYER_PYTHON_DIR
    for package in ("boto3", "botocore", "aws_lambda_powertools"):
        assert (python / package / "__init__.py").is_file()
    dist_infos = {p.name for p in python.glob("*.dist-info")}
    for line in k.LAMBDA_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            assert f"{name.replace('-', '_')}-{version}.dist-info" in dist_infos
    assert not (python / "bin").exists()
    layer = synth.one("AWS::Lambda::LayerVersion")["Properties"]
    assert layer["CompatibleRuntimes"] == ["python3.13"]
    assert layer["CompatibleArchitectures"] == ["arm64"]


def _fake_repo(root: Path) -> None:
    for relative in (
        "freshvec/__init__.py",
        "freshvec/config.py",
        "freshvec/schema.json",
        "freshvec/local/moto_server.py",
        "freshvec/__pycache__/config.cpython-311.pyc",
        "lambdas/__init__.py",
        "lambdas/sink/handler.py",
        "lambdas/requirements.txt",
    ):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {relative}\n", encoding="utf-8")


def test_build_code_copies_exactly_the_runtime_files(tmp_path: Path) -> None:
    repo, out = tmp_path / "repo", tmp_path / "out"
    _fake_repo(repo)
    bundling.build_code(out, root=repo)
    assert _files(out) == {
        "freshvec/__init__.py",
        "freshvec/config.py",
        "freshvec/schema.json",
        "lambdas/__init__.py",
        "lambdas/sink/handler.py",
    }


def test_code_hash_follows_content_not_time(tmp_path: Path) -> None:
    _fake_repo(tmp_path)
    first = bundling.code_hash(tmp_path)
    (tmp_path / "freshvec/__pycache__/config.cpython-311.pyc").write_text("changed", encoding="utf-8")
    (tmp_path / "freshvec/local/moto_server.py").write_text("changed", encoding="utf-8")
    assert bundling.code_hash(tmp_path) == first  # ignored files do not change the asset
    (tmp_path / "lambdas/sink/handler.py").write_text("def handler(event, context): ...\n", encoding="utf-8")
    assert bundling.code_hash(tmp_path) != first


def test_local_build_reports_success_without_docker(tmp_path: Path) -> None:
    built: list[Path] = []
    assert bundling.LocalBuild(built.append).try_bundle(str(tmp_path), image=None) is True
    assert built == [tmp_path]


def test_missing_dependencies_are_installed_and_a_pip_failure_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundling, "_PREINSTALLED_MARKER", tmp_path / "missing" / ".installed")
    calls: list[list[str]] = []

    def failing_pip(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="No matching distribution found")

    monkeypatch.setattr(bundling.subprocess, "run", failing_pip)
    with pytest.raises(bundling.BundlingError, match="make setup") as raised:
        bundling.build_dependencies(tmp_path / "out")
    assert "No matching distribution found" in str(raised.value)
    (command,) = calls
    assert command[command.index("--target") + 1] == str(tmp_path / "out" / "python")
    assert "manylinux2014_aarch64" in command
    assert command[command.index("--python-version") + 1] == "3.13"


def test_stale_preinstalled_dependencies_are_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / ".installed"
    marker.write_text("", encoding="utf-8")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("boto3==1.44.5\n", encoding="utf-8")
    monkeypatch.setattr(bundling, "_PREINSTALLED_MARKER", marker)
    monkeypatch.setattr(k, "LAMBDA_REQUIREMENTS", requirements)
    monkeypatch.setattr(k, "PREINSTALLED_DEPS", tmp_path)
    old = marker.stat().st_mtime - 60
    os.utime(marker, (old, old))
    assert bundling._preinstalled_is_current() is False
    os.utime(marker, None)
    assert bundling._preinstalled_is_current() is True


@pytest.mark.parametrize("handler", [k.FORWARDER_HANDLER, k.SINK_HANDLER])
def test_handler_imports_with_only_the_bundled_code_and_layer(synth: Synth, handler: str) -> None:
    """Import each handler with nothing but the standard library, the code asset and the layer on the path."""
    module = handler.rsplit(".", 1)[0]
    code_dir = _asset_dir(synth, synth.stack.sink.function)
    assert (code_dir / (module.replace(".", "/") + ".py")).is_file(), f"{module} is missing from the code asset"
    layer_dir = _asset_dir(synth, synth.stack.node.find_child("Dependencies")) / k.LAYER_PYTHON_DIR
    script = (
        "import importlib, sys; "
        f"sys.path[:0] = [{str(code_dir)!r}, {str(layer_dir)!r}]; "
        f"importlib.import_module({module!r}); "
        "print('imported')"
    )
    # -I: ignore the environment and user site; -S: no site-packages, so the venv cannot stand in for the layer.
    env = {"AWS_DEFAULT_REGION": "us-east-1", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
