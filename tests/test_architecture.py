"""The shape of the code: no import cycles, a platform-neutral core, platforms as plug-ins.

Imports are read with ``ast``, at module level and inside functions alike, so a cycle is found
whichever module a process happens to import first, and a function-local import cannot hide one.
Imports under ``if TYPE_CHECKING:`` never run, so they are not counted as cycles (but they are
counted by the check that the core imports no platform).
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import adapters
from adapters.base import Platform
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "retrieval", "adapters")
COMPOSITION_ROOT = "bot.cli"  # builds the platform commands and settings from the registry


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {
    _module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
}


def _resolve(name: str) -> str | None:
    """The project module ``name`` is or lies in (``bot.settings.Settings`` → ``bot.settings``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _nodes(tree: ast.AST, *, typing_only: bool) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if not typing_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_nodes(child, typing_only=False)])
            continue
        yield node
        yield from _nodes(node, typing_only=typing_only)


def _imports(module: str, *, typing_only: bool = False) -> Iterator[str]:
    """Every project module ``module`` imports, anywhere in the file, with the packages that run first."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8")), typing_only=typing_only):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            target = _resolve(name)
            while target:  # importing a.b.c runs a and a.b first
                if target != module:
                    yield target
                target = _resolve(target.rpartition(".")[0]) if "." in target else None


GRAPH: dict[str, set[str]] = {module: set(_imports(module)) for module in MODULES}
"""What each module imports when it runs (``TYPE_CHECKING`` blocks left out)."""
ALL_IMPORTS: dict[str, set[str]] = {module: set(_imports(module, typing_only=True)) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_core_imports_no_platform() -> None:
    """``bot/`` and ``retrieval/`` never import ``adapters`` (only the composition root does)."""
    leaks = {
        module: sorted(t for t in targets if t.split(".")[0] == "adapters")
        for module, targets in ALL_IMPORTS.items()
        if module.split(".")[0] in ("bot", "retrieval") and module not in (COMPOSITION_ROOT, "bot.__main__")
    }
    assert {m: t for m, t in leaks.items() if t} == {}


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    modules = sorted(m for m in MODULES if not m.endswith("__main__"))
    script = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed[name] = repr(exc)\n"
        "print(json.dumps(failed))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(modules)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {}


def test_the_registry_reads_settings_without_loading_a_client_library() -> None:
    """``bothbot config``/``chat`` validate every platform's block; that must not import bolt or discord.py."""
    script = (
        "import sys, adapters\n"
        "for name in adapters.names():\n"
        "    adapters.settings_model(name); adapters.summary(name)\n"
        "print(sorted(m for m in ('slack_bolt', 'slack_sdk', 'discord', 'aiohttp') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", adapters.names())
def test_each_registered_platform_is_a_platform(name: str) -> None:
    platform: Platform = adapters.load(name)
    assert platform.name == name
    assert platform.settings_model is adapters.settings_model(name)
    assert callable(platform.check)
    assert inspect.iscoroutinefunction(platform.serve)
    assert adapters.summary(name)


def test_platform_settings_share_no_name_with_the_core_or_each_other() -> None:
    """The blocks are shown flat by ``bothbot config``, so their names must stay unique."""
    seen: dict[str, str] = dict.fromkeys(Settings.model_fields, "core")
    for name in adapters.names():
        for field in adapters.settings_model(name).model_fields:
            assert field not in seen, f"{name}.{field} is also a setting of {seen[field]}"
            seen[field] = name


def test_an_unknown_platform_is_named() -> None:
    with pytest.raises(ValueError, match="known: slack, discord"):
        adapters.load("teams")
