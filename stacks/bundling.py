"""Lambda assets built on this machine, without Docker.

Two assets: a layer holding the pinned runtime dependencies (``lambdas/requirements.txt`` for Python 3.13 on
arm64) and a small code asset holding the ``freshvec`` domain package (without ``freshvec/local``) and the
``lambdas`` handlers. Both carry a content hash computed here, so CDK reuses an asset whose inputs did not change.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks import constants as k

_IGNORED_NAMES = ("__pycache__", "*.pyc", "*.pyo", ".DS_Store")
_PREINSTALLED_MARKER = k.PREINSTALLED_DEPS.parent / ".installed"


class BundlingError(RuntimeError):
    """A Lambda asset could not be built locally."""


@jsii.implements(ILocalBundling)
class LocalBuild:
    """Runs ``build(output_dir)`` in place of a Docker build; never falls back to Docker."""

    def __init__(self, build: Callable[[Path], None]) -> None:
        self._build = build

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        self._build(Path(output_dir))
        return True


# ---- what goes into each asset -------------------------------------------------------------------
def code_files(root: Path = k.REPO_ROOT) -> Iterator[tuple[Path, str]]:
    """Every file of the code asset as (source path, path inside the asset), in a stable order."""
    for package, excluded_dirs in ((k.DOMAIN_PACKAGE, k.DOMAIN_EXCLUDED_DIRS), (k.HANDLER_PACKAGE, ())):
        base = root / package
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(base)
            if not path.is_file() or _ignored(relative, excluded_dirs):
                continue
            if package == k.HANDLER_PACKAGE and relative.as_posix() == "requirements.txt":
                continue  # installed into the layer, not read at run time
            yield path, f"{package}/{relative.as_posix()}"


def _ignored(relative: Path, excluded_dirs: tuple[str, ...]) -> bool:
    if relative.parts and relative.parts[0] in excluded_dirs:
        return True
    return any(Path(part).match(pattern) for part in relative.parts for pattern in _IGNORED_NAMES)


def build_code(output_dir: Path, root: Path = k.REPO_ROOT) -> None:
    for source, target in code_files(root):
        destination = output_dir / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def build_dependencies(output_dir: Path) -> None:
    """Copy the pre-installed dependencies (``make setup``) or install them now if they are missing or stale."""
    target = output_dir / k.LAYER_PYTHON_DIR
    if _preinstalled_is_current():
        shutil.copytree(k.PREINSTALLED_DEPS, target, ignore=shutil.ignore_patterns(*_IGNORED_NAMES, "bin"))
        return
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--requirement",
        str(k.LAMBDA_REQUIREMENTS),
        "--target",
        str(target),
        *k.PIP_PLATFORM_ARGS,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if result.returncode != 0:
        raise BundlingError(
            f"could not install the Lambda dependencies from {k.LAMBDA_REQUIREMENTS} for Python 3.13 on arm64 "
            f"(pip exit code {result.returncode}); run `make setup` with network access once, which keeps them "
            f"in {k.PREINSTALLED_DEPS} for offline synth.\n{result.stderr.strip()}"
        )
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: nothing in a layer runs them


def _preinstalled_is_current() -> bool:
    if not (_PREINSTALLED_MARKER.is_file() and k.PREINSTALLED_DEPS.is_dir()):
        return False
    return _PREINSTALLED_MARKER.stat().st_mtime >= k.LAMBDA_REQUIREMENTS.stat().st_mtime


# ---- content hashes ------------------------------------------------------------------------------
def code_hash(root: Path = k.REPO_ROOT) -> str:
    digest = hashlib.sha256()
    for source, target in code_files(root):
        digest.update(target.encode())
        digest.update(b"\0")
        digest.update(source.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def dependencies_hash() -> str:
    digest = hashlib.sha256(k.LAMBDA_REQUIREMENTS.read_bytes())
    digest.update(" ".join(k.PIP_PLATFORM_ARGS).encode())
    return digest.hexdigest()


# ---- CDK objects ---------------------------------------------------------------------------------
def _bundling(build: Callable[[Path], None]) -> BundlingOptions:
    return BundlingOptions(image=DockerImage.from_registry(k.BUNDLING_IMAGE), local=LocalBuild(build))


def function_code() -> lambda_.Code:
    """The code asset shared by both functions: ``freshvec/`` (without ``local/``) and ``lambdas/``."""
    return lambda_.Code.from_asset(
        str(k.REPO_ROOT / k.HANDLER_PACKAGE),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=code_hash(),
        bundling=_bundling(build_code),
    )


def dependencies_layer(scope: Construct, construct_id: str) -> lambda_.LayerVersion:
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=lambda_.Code.from_asset(
            str(k.REPO_ROOT / k.HANDLER_PACKAGE),
            asset_hash_type=AssetHashType.CUSTOM,
            asset_hash=dependencies_hash(),
            bundling=_bundling(build_dependencies),
        ),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_13],
        compatible_architectures=[lambda_.Architecture.ARM_64],
        description="freshvec runtime dependencies: " + ", ".join(_pinned_requirements()),
    )


def _pinned_requirements() -> list[str]:
    lines = k.LAMBDA_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
