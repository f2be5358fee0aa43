"""The package's shape (issue 24): no import cycles, and layers that only point down.

Every module under ``src/emoreel`` is parsed (not imported) and every ``import`` in it is read, the
ones inside functions too (a late import is still a dependency). Two rules:

* no cycle between modules: no two modules import each other, directly or round a loop;
* a subpackage imports only the layers :data:`ALLOWED` gives it: the shared top-level modules
  (types, errors, config, names, runtime, the results table) import no subpackage; ``media`` <
  ``model`` < ``faces`` < ``analysis`` and ``outputs`` (two siblings: the results table in
  :mod:`emoreel.results` is their contract, neither imports the other) < ``batch`` < the CLI
  (:mod:`emoreel.cli`, :mod:`emoreel.__main__`, :mod:`emoreel._cli`), which nothing else imports.

The checker is tested on a small made-up package too, so a rule that stopped finding anything would fail here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

SUBPACKAGES = ("media", "model", "faces", "analysis", "outputs", "batch")
SHARED, CLI = "shared", "cli"

# what each layer may import (itself included); a module's layer is its subpackage under emoreel,
# "cli" for emoreel.cli, emoreel.__main__ and emoreel._cli, "shared" for the other top-level modules
ALLOWED: dict[str, set[str]] = {
    SHARED: {SHARED},
    "media": {SHARED, "media"},
    "model": {SHARED, "media", "model"},  # never faces: the model sees crops, not frames
    "faces": {SHARED, "media", "model", "faces"},  # alignment fits crops to the model card's geometry
    "analysis": {SHARED, "media", "model", "faces", "analysis"},
    "outputs": {SHARED, "media", "model", "faces", "outputs"},  # never analysis: only the results table
    "batch": {SHARED, "media", "model", "faces", "analysis", "outputs", "batch"},
    CLI: {SHARED, *SUBPACKAGES, CLI},
}


def module_name(path: Path, src: Path) -> tuple[str, bool]:
    """(dotted module name, is a package ``__init__``) of a file under ``src``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def find_modules(src: Path, top: str) -> dict[str, Path]:
    return {module_name(p, src)[0]: p for p in sorted((src / top).rglob("*.py"))}


def imports_of(path: Path, src: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports anywhere in its body (functions included)."""
    name, is_pkg = module_name(path, src)
    package = name if is_pkg else name.rpartition(".")[0]
    top = name.split(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t == top or t.startswith(top + "."):
                while t not in modules and "." in t:  # `import emoreel.x.y` where y is a name: x
                    t = t.rpartition(".")[0]
                if t in modules and t != name:
                    found.add(t)
    return found


def import_graph(src: Path, top: str = "emoreel") -> dict[str, set[str]]:
    modules = find_modules(src, top)
    return {m: imports_of(p, src, modules) for m, p in modules.items()}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return SHARED  # the package itself (``__version__``, the lazy public API)
    if parts[1] in SUBPACKAGES:
        return parts[1]
    if parts[1] in ("cli", "__main__", "_cli"):
        return CLI
    return SHARED


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b (layer x may not import layer y)"`` for every import :data:`ALLOWED` does not allow."""
    bad = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            la, lb = layer_of(a), layer_of(b)
            if lb not in ALLOWED[la]:
                bad.append(f"{a} -> {b} ({la} may not import {lb})")
    return bad


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SRC)


def test_every_module_has_a_layer(graph):
    assert len(graph) > 40
    assert {layer_of(m) for m in graph} == set(ALLOWED)
    for sub in SUBPACKAGES:
        doc = ast.get_docstring(ast.parse((SRC / "emoreel" / sub / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"emoreel.{sub} must say what it owns and what it may import"


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_layers_only_point_down(graph):
    assert upward_imports(graph) == []


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "emoreel"
    for sub in ("", "media", "outputs", "analysis"):
        (pkg / sub).mkdir(parents=True, exist_ok=True)
        (pkg / sub / "__init__.py").write_text('"""May import: ..."""\n')
    (pkg / "types.py").write_text("X = 1\n")
    (pkg / "media" / "a.py").write_text("from . import b\n")
    (pkg / "media" / "b.py").write_text("def f():\n    from .a import g  # a late import is still an import\n")
    (pkg / "outputs" / "table.py").write_text("from ..types import X\nfrom ..analysis.run import go\n")
    (pkg / "analysis" / "run.py").write_text("import emoreel.media.a\nfrom emoreel import types\n")
    g = import_graph(tmp_path)
    assert g["emoreel.outputs.table"] == {"emoreel.types", "emoreel.analysis.run"}
    assert g["emoreel.analysis.run"] == {"emoreel.media.a", "emoreel.types"}
    assert cycles(g) == [["emoreel.media.a", "emoreel.media.b"]]
    assert upward_imports(g) == ["emoreel.outputs.table -> emoreel.analysis.run (outputs may not import analysis)"]
    (pkg / "media" / "b.py").write_text("Y = 2\n")
    (pkg / "types.py").write_text("from .media import a\n")
    g = import_graph(tmp_path)
    assert cycles(g) == []
    assert upward_imports(g) == ["emoreel.outputs.table -> emoreel.analysis.run (outputs may not import analysis)",
                                 "emoreel.types -> emoreel.media.a (shared may not import media)"]  # fmt: skip
