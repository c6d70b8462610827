"""Shared code names no benchmark: outside ``benchmarks/`` every benchmark fact is read from a definition
through the registry, so that a benchmark is one folder plus one registry line (docs/ARCHITECTURE.md).
Comments and docstrings may name benchmarks (as examples); code and its strings may not."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from mlbench import registry

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mlbench"
# The places that must name them: the registry's lines, and the MLPerf Inference rounds' tables as the official
# submission checker holds them (its benchmark folders per round, mlbench's and others': facts about the rounds).
ALLOWED = {"registry.py", "submission/rounds.py"}


def benchmark_names() -> set[str]:
    """Every name a benchmark goes by: the registry's, MLPerf's (training and inference) and LoadGen's."""
    names = set()
    for name in registry.names(hidden=True):
        names.add(name)
        for bench in registry.sizes(name).values():
            names.update({bench.name, bench.mlperf_name, bench.inference_name, bench.loadgen_model_name})
    return {n.lower() for n in names if n}


def code_without_prose(source: str) -> str:
    """``source`` with its comments and docstrings blanked out (strings and names stay)."""
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.add((first.lineno, first.col_offset))
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and tok.start in docstrings):
            continue
        out.append(tok.string)
    return " ".join(out)


def test_shared_code_names_no_benchmark():
    words = benchmark_names()
    pattern = re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True))
                         + r")(?![a-z0-9])")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("benchmarks/") or rel in ALLOWED:
            continue
        for hit in sorted(set(pattern.findall(code_without_prose(path.read_text()).lower()))):
            found.append(f"{rel}: {hit}")
    assert not found, "benchmark names in shared code (read them from the definition instead):\n" + "\n".join(found)
