"""The shape of the package's imports: no module of edgeseg reaches itself again through its
imports (an import circle), and the deploy half never imports the build half.

The import graph is grimp's (the library import-linter is built on), read from the source
files, function-level imports included: a circle closed by a lazy import is still a circle.
Imports under ``TYPE_CHECKING`` are left out (they never run), and ``from edgeseg import
_core`` counts as an import of the native module, not of the ``edgeseg`` facade (grimp sees
only Python files and would name the package).
The same deploy/build rule runs as import-linter contracts (``[tool.importlinter]`` in
pyproject.toml, ``lint-imports`` in ``make lint``); this test keeps it inside ``make test``.
"""

from __future__ import annotations

import sys

import grimp
import pytest

DEPLOY = ("edgeseg.runtime", "edgeseg.camera", "edgeseg.rules", "edgeseg.sinks")
BUILD = ("edgeseg.train", "edgeseg.export", "edgeseg.quant", "edgeseg.engine.builder")


NATIVE = "edgeseg._core"


@pytest.fixture(scope="module")
def graph():
    g = grimp.build_graph("edgeseg", cache_dir=None, exclude_type_checking_imports=True)
    g.add_module(NATIVE)
    for importer in sorted(g.find_modules_that_directly_import("edgeseg")):
        details = g.get_import_details(importer=importer, imported="edgeseg")
        if details and all(_imports_native(d["line_contents"]) for d in details):
            g.remove_import(importer=importer, imported="edgeseg")
            g.add_import(importer=importer, imported=NATIVE)
    return g


def _imports_native(line: str) -> bool:
    """Whether ``from edgeseg import ...`` names the native module (grimp records the package
    for it; the other names of the line are recorded as imports of their own modules)."""
    names = line.partition(" import ")[2].replace("(", " ").replace(")", " ")
    return "_core" in {n.strip().split(" as ")[0] for n in names.split(",")}


def _circles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _describe(graph, comp: list[str]) -> str:
    lines = [" <-> ".join(comp)]
    members = set(comp)
    for m in comp:
        for dep in sorted(graph.find_modules_directly_imported_by(m) & members):
            for d in graph.get_import_details(importer=m, imported=dep):
                lines.append(f"  {m}:{d['line_number']} imports {dep}: {d['line_contents']}")
    return "\n".join(lines)


def test_tarjan_finds_a_planted_circle_and_no_false_one():
    g = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c", "p.d"):
        g.add_module(m)
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.c")
    g.add_import(importer="p.c", imported="p.a")
    g.add_import(importer="p.d", imported="p.a")
    assert _circles(g) == [["p.a", "p.b", "p.c"]]
    g.remove_import(importer="p.c", imported="p.a")
    assert _circles(g) == []


def test_no_import_circles(graph):
    circles = _circles(graph)
    assert not circles, "import circles:\n" + "\n".join(_describe(graph, c) for c in circles)


def _deploy_to_build(graph) -> list[str]:
    """Every shortest import chain from a deploy package to a build module."""
    bad = []
    for src in DEPLOY:
        for dst in BUILD:
            if src in graph.modules and dst in graph.modules:
                for chain in graph.find_shortest_chains(importer=src, imported=dst):
                    bad.append(" -> ".join(chain))
    return sorted(bad)


def test_a_planted_indirect_import_is_found():
    g = grimp.ImportGraph()
    for m in ("edgeseg", "edgeseg.runtime", "edgeseg.runtime.cli", "edgeseg.metrics"):
        g.add_module(m)
    for m in ("edgeseg.train", "edgeseg.train.trainer"):
        g.add_module(m)
    assert _deploy_to_build(g) == []
    g.add_import(importer="edgeseg.runtime.cli", imported="edgeseg.metrics")
    g.add_import(importer="edgeseg.metrics", imported="edgeseg.train.trainer")
    assert _deploy_to_build(g) == [
        "edgeseg.runtime.cli -> edgeseg.metrics -> edgeseg.train.trainer"
    ]


def test_deploy_never_imports_build(graph):
    bad = _deploy_to_build(graph)
    assert not bad, "deploy code reaches build code:\n" + "\n".join(bad)


def test_the_runtime_imports_without_build_code():
    """Importing the deploy half loads no build module (the Jetson image ships without it)."""
    import subprocess

    code = (
        "import sys, edgeseg, edgeseg.runtime, edgeseg.camera, edgeseg.rules, edgeseg.sinks;"
        "import edgeseg.engine.manifest;"
        f"bad = [m for m in sys.modules if m.startswith({BUILD!r})];"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"build modules loaded by the deploy half: {out.stdout}"
