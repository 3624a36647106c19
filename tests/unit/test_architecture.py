"""The folders tell the architecture: these rules are read from the source, so a change that breaks one fails.

Layers, lowest first; a module may import its own layer and the ones below, never one above:

0. contract — what every part speaks: constants, errors, retry, events, keys, outgoing, ports, filters, state
1. sources  — ``freshvec.sources.*``: each source's reading and type conversions
2. domain   — config, metadata, plan, chunking, the sink (and its TRUNCATE), the forwarder, data files
3. adapters — ``freshvec.adapters.*``: the boto3-facing implementations of the ports
4. runners  — the Lambda handlers, the operator CLI and local mode, none of which imports another;
              ``freshvec.command``, the ``freshvec`` command, is the one package that puts the CLI and local
              mode side by side
5. testing  — ``freshvec.testing.*``: fakes, builders, fault injection, the soak
6. bench    — benchmarks
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

from stacks import bundling
from stacks import constants as k

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = {"constants", "errors", "retry", "events", "keys", "outgoing", "ports", "filters", "state", "versions"}
DOMAIN = {
    "config", "metadata", "plan", "chunking", "sink", "sink_calls", "sink_report", "truncate", "forwarder",
    "datafiles", "generations", "generation_sink", "migration", "pricing", "search",
    "index_settings",
}  # fmt: skip
ENTRY = "freshvec.command"  # with its ``__main__``
RUNNERS = ("lambdas", "freshvec.cli", "freshvec.local")
MAX_MODULE_LINES = 500
SIZE_REASON = "Size:"  # a module over the limit says why in a docstring line starting with this


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    found = {}
    for top in ("freshvec", "lambdas", "bench", "stacks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[_module_name(path)] = path
    return found


@cache
def _imports(module: str) -> frozenset[str]:
    """Every module this one imports, at any depth of the file: an import inside a function or under
    ``if TYPE_CHECKING:`` is a dependency too, even if deferring it keeps a circle from failing at import."""
    path = _modules()[module]
    return frozenset(_imports_of_source(path.read_text(encoding="utf-8"), module, package=path.name == "__init__.py"))


def _imports_of_source(text: str, module: str, *, package: bool = False) -> set[str]:
    anchor_package = module if package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = anchor_package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import module``
    return names


def _project_imports(module: str) -> set[str]:
    return {name for name in _imports(module) if name in _modules()}


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "bench":
        return 6
    if parts[0] == "lambdas" or parts[:2] in (["freshvec", "cli"], ["freshvec", "local"]) or _is_entry(module):
        return 4
    if parts[:2] == ["freshvec", "testing"]:
        return 5
    if parts[:2] == ["freshvec", "adapters"]:
        return 3
    if parts[:2] == ["freshvec", "sources"]:
        return 1
    if parts[0] == "freshvec" and len(parts) >= 2 and parts[1] in DOMAIN:  # a module or a package of modules
        return 2
    if (len(parts) == 2 and parts[1] in CONTRACT) or module == "freshvec":
        return 0
    raise AssertionError(f"{module} belongs to no layer; add it to one in {__file__}")


def _is_entry(module: str) -> bool:
    return module == ENTRY or module.startswith(ENTRY + ".")


def _runner(module: str) -> str | None:
    return next((r for r in RUNNERS if module == r or module.startswith(r + ".")), None)


def _freshvec_modules() -> list[str]:
    return [m for m in _modules() if m.split(".")[0] in ("freshvec", "lambdas", "bench")]


def test_every_module_belongs_to_a_layer() -> None:
    for module in _freshvec_modules():
        _layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module in _freshvec_modules()
        for target in _project_imports(module)
        if target.split(".")[0] != "stacks" and _layer(target) > _layer(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_three_ways_to_run_never_import_each_other() -> None:
    wrong = [
        f"{module} imports {target}"
        for module in _freshvec_modules()
        if _runner(module)
        for target in _project_imports(module)
        if _runner(target) and _runner(target) != _runner(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_folders() -> None:
    """Folder A importing folder B and B importing A (through any modules) is a circle."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module in _freshvec_modules():
        source = _folder(module)
        for target in _project_imports(module):
            if target.split(".")[0] in ("freshvec", "lambdas", "bench") and _folder(target) != source:
                edges[source].add(_folder(target))
    assert _cycle(edges) is None, f"import circle between folders: {' -> '.join(_cycle(edges) or [])}"


def _folder(module: str) -> str:
    """The part of the tree a module belongs to: a subfolder counts with its part (``local/keyspaces`` is
    ``local``), each source is its own part, and the root package holds two layers."""
    parts = _modules()[module].parent.relative_to(ROOT).parts
    if _is_entry(module):
        return ENTRY
    if parts == ("freshvec",):
        return "freshvec(contract)" if _layer(module) == 0 else "freshvec(domain)"
    depth = 3 if parts[:2] == ("freshvec", "sources") else 2
    return "/".join(parts[:depth])


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


# Circles allowed for now (none: the TRUNCATE is a step of the sink's own processing, freshvec.truncate a leaf).
KNOWN_CYCLES: set[frozenset[str]] = set()


def _module_edges() -> dict[str, set[str]]:
    """module -> the project modules it imports (deferred ones included), every part of the tree, stacks too."""
    edges = {module: {t for t in _imports(module) if t in _modules() and t != module} for module in _modules()}
    return {
        m: {
            t
            for t in targets
            # A package's __init__ importing its own modules is how packages re-export; it is no cycle of design.
            if not (_modules()[t].name == "__init__.py" and m.startswith(t + "."))
            and frozenset({m, t}) not in KNOWN_CYCLES
        }
        for m, targets in edges.items()
    }


def test_no_import_cycle_between_modules() -> None:
    edges = _module_edges()
    assert _cycle(edges) is None, f"import cycle: {' -> '.join(_cycle(edges) or [])}"


def test_known_cycles_are_still_there() -> None:
    """An allowed circle that is gone comes off the list, so it cannot come back unnoticed."""
    for pair in KNOWN_CYCLES:
        a, b = sorted(pair)
        assert b in _imports(a) and a in _imports(b), f"{a} <-> {b} is no longer a circle: remove it from KNOWN_CYCLES"


def test_deferred_and_type_checking_imports_count() -> None:
    tree = {"a": "def f():\n    import b\n", "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"}
    found = {name: _imports_of_source(text, name) for name, text in tree.items()}
    assert found == {"a": {"b"}, "b": {"typing", "typing.TYPE_CHECKING", "a"}}


def test_nothing_outside_the_tests_imports_them() -> None:
    wrong = [
        f"{module} imports {name}"
        for module in _freshvec_modules()
        for name in _imports(module)
        if name == "tests" or name.startswith("tests.")
    ]
    assert not wrong, "\n".join(wrong)


def test_only_handlers_cli_and_local_mode_construct_aws_clients() -> None:
    pattern = re.compile(r"\bboto3\.(client|Session|resource)\(|\bboto3\.session\.Session\(")
    wrong = [
        f"{module}: {line.strip()}"
        for module, path in _modules().items()
        if not _runner(module)
        for line in path.read_text(encoding="utf-8").splitlines()
        if pattern.search(line)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("handler", [k.FORWARDER_HANDLER, k.SINK_HANDLER, k.INDEX_SETTINGS_HANDLER])
def test_a_handler_reaches_only_the_asset_the_layer_and_the_standard_library(handler: str) -> None:
    asset = {_module_name(source) for source, _target in bundling.code_files() if source.suffix == ".py"}
    layer_dir = ROOT / ".build" / "lambda-deps" / k.LAYER_PYTHON_DIR
    layer = {p.stem if p.suffix == ".py" else p.name for p in layer_dir.iterdir()} if layer_dir.is_dir() else set()
    assert layer, f"{layer_dir} is empty: run `make setup`"
    start = handler.rpartition(".")[0]
    seen, todo, outside = set(), [start], []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        if module not in asset:
            outside.append(module)
            continue
        for name in _imports(module):
            if name in _modules():
                todo.append(name)
            elif name.split(".")[0] not in (*sys.stdlib_module_names, *layer, "freshvec", "lambdas"):
                outside.append(name)
    assert not outside, f"{handler} reaches what the Lambda does not have: {sorted(set(outside))}"
    assert not any(m.startswith(("freshvec.cli", "freshvec.local", "freshvec.testing")) for m in seen)


def test_modules_stay_short_or_say_why() -> None:
    long = []
    for module, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_MODULE_LINES and not any(line.startswith(SIZE_REASON) for line in docstring.splitlines()):
            long.append(f"{module}: {lines} lines")
    assert not long, "over the limit with no 'Size:' line in the docstring:\n" + "\n".join(long)
