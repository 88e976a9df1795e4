"""List the imports that sit inside functions (outside the CLI), grouped by module: each should be an optional
dependency loaded only when used, or a cost worth deferring; everything else belongs at the top of its module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "asr"


def function_imports(skip=("apps/cli",)) -> list[tuple[str, int, str]]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).as_posix()
        if any(s in rel for s in skip):
            continue
        for fn in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    out += [(rel, node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    out.append((rel, node.lineno, node.module or "."))
    return sorted(set(out))


if __name__ == "__main__":
    rows = function_imports()
    for rel, line, mod in rows:
        print(f"{rel}:{line}\t{mod}")
    print(f"{len(rows)} function-level imports outside the CLI", file=sys.stderr)
