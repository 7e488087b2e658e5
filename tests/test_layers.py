"""The package's layers read top-down: no module of asr/ imports, even inside a function, a
module that imports it back, directly or through others."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "asr"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The asr modules `name` imports anywhere in its code, each with the packages above it,
    whose __init__ runs first."""

    def most_specific(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            named |= {f"{base}.{a.name}" for a in node.names} | {base}
    deps = {m for m in map(most_specific, named) if m and m.startswith("asr")}
    for dep in list(deps):
        while "." in dep:
            dep = dep.rpartition(".")[0]
            deps.add(dep)
    # A module's own packages are already running when it is imported: not an edge.
    return {d for d in deps if d != name and not name.startswith(d + ".")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert "asr.checkpoint" in graph["asr.lm.cli"]  # the walk sees imports inside functions
    assert cycles(graph) == []


def test_the_walk_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_lm_depends_on_text_manifests_and_the_disk_check_only():
    """asr.lm builds LMs without torch: text, manifests, and asr.disk (a full disk's one-line
    error), which is a leaf of the standard library's."""
    known = modules()
    deps = imports_of("asr.lm", known["asr.lm"], known)
    assert deps == {"asr.data", "asr.data.manifest", "asr.disk", "asr.text"}
    assert imports_of("asr.disk", known["asr.disk"], known) == set()


def test_every_module_imports_in_a_fresh_interpreter():
    names = [n for n in modules() if not n.endswith("__main__")]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
