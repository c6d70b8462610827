"""The package's import structure (docs/ARCHITECTURE.md, "Layers"): no import cycle between modules, no import
from a lower layer into a higher one, and no benchmark folder importing another. Imports inside functions
count: they are hidden dependencies all the same."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mlbench"

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("mlbench", "mlbench.errors", "mlbench.signals", "mlbench.config", "mlbench.runs",
              "mlbench.allocator", "mlbench.sysinfo", "mlbench.definition", "mlbench.registry", "mlbench.efficiency",
              "mlbench.data")),
    ("results", ("mlbench.results",)),
    ("training", ("mlbench.training",)),
    ("inference", ("mlbench.inference",)),
    ("shared blocks", ("mlbench.detection", "mlbench.llm", "mlbench.speech")),
    ("benchmarks", ("mlbench.benchmarks",)),
    ("slurm", ("mlbench.slurm",)),
    ("submission", ("mlbench.submission",)),
    ("cli", ("mlbench.cli", "mlbench.__main__")),
]


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in the file (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(stem + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target.startswith("mlbench") and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"{module} is in no layer: add it to LAYERS here and in docs/ARCHITECTURE.md"
    return rank


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_lower_layer_imports_a_higher_one():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in sorted(graph().items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_benchmark_imports_another_benchmark():
    def folder(m: str) -> str | None:
        parts = m.split(".")
        return parts[2] if len(parts) > 3 and parts[1] == "benchmarks" else None

    crossing = [f"{m} imports {t}" for m, targets in sorted(graph().items()) for t in sorted(targets)
                if folder(m) and folder(t) and folder(m) != folder(t)]
    assert not crossing, "benchmarks importing other benchmarks:\n" + "\n".join(crossing)


def test_the_check_sees_cycles_and_hidden_imports(tmp_path):
    """The walker itself: a cycle made by an import inside a function is found."""
    pkg = tmp_path / "mlbench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from mlbench import b\n")
    (pkg / "b.py").write_text("def f():\n    from mlbench.a import x\n    return x\n")
    known = {"mlbench": pkg / "__init__.py", "mlbench.a": pkg / "a.py", "mlbench.b": pkg / "b.py"}
    g = {name: imports(name, path, known) for name, path in known.items()}
    assert g["mlbench.b"] == {"mlbench.a"} and cycles(g) == [["mlbench.a", "mlbench.b"]]
