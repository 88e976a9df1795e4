"""The package's shape, checked: no import cycle (imports inside functions count), no function over 100 lines,
no module over 600 lines, and the layout along the data path."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "asr"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (module level or inside functions)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                if t in mods and t != name:
                    graph[name].add(t)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if m == "asr" or n.startswith(m + "."):  # a package's own __init__ runs first anyway
                continue
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle_counting_imports_inside_functions():
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_cycle_check_finds_a_cycle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_is_longer_than_100_lines():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 100:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, long


def test_no_module_is_longer_than_600_lines():
    big = [f"{name}: {n}" for name, p in _modules().items() if (n := len(p.read_text().splitlines())) > 600]
    assert not big, big


def test_inference_does_not_import_training_or_apps():
    graph = import_graph()
    bad = [(m, t) for m, ts in graph.items() if m.startswith(("asr.inference", "asr.search", "asr.models"))
           for t in ts if t.startswith(("asr.train", "asr.apps", "asr.evaluation"))]
    assert not bad, bad


def test_evaluation_does_not_import_the_apps():
    """The layers run one way: apps (CLI, live, the caption server and its load benchmark) use evaluation, never
    the reverse."""
    graph = import_graph()
    bad = [(m, t) for m, ts in graph.items() if m.startswith("asr.evaluation") for t in ts if t.startswith("asr.apps")]
    assert not bad, bad
