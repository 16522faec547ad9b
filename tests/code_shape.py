"""Static measures of the code's shape, printed by ``python -m tests.code_shape`` and held by
``tests/test_code_shape.py``: the largest modules, public functions whose ``model`` is unannotated,
places outside ``lensarith/core/backends`` (and model loading) that name a backend, and functions
over 100 lines."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lensarith"
# What names a particular backend: its module, its predicates, its trace bookkeeping, the engine's name.
BACKEND_WORDS = re.compile(
    r"\bnnsight\b|is_nnsight|trace_count|with_traces|TransformerBridge|is_bridge|engine_name\s*=="
)
# Where naming a backend is the job: the backends themselves and loading a model for one.
BACKEND_HOMES = ("core/backends/", "models/")


@dataclass(frozen=True)
class Shape:
    largest: list[tuple[str, int]]
    unannotated_model: list[str]
    backend_mentions: list[str]
    long_functions: list[tuple[str, int]]


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root.parent).as_posix()


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines that are code: docstrings, comments and string literals are left out."""
    source = path.read_text()
    tree = ast.parse(source)
    strings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    out = []
    for number, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        if number in strings or not code.strip():
            continue
        out.append((number, code))
    return out


def measure(root: Path = PACKAGE) -> Shape:
    """The shape of the package at ``root`` (default: lensarith)."""
    sizes, unannotated, mentions, long = [], [], [], []
    for path in _modules(root):
        rel = _rel(path, root)
        source = path.read_text()
        sizes.append((rel, len(source.splitlines())))
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > 100:
                long.append((f"{rel}:{node.name}", length))
            if node.name.startswith("_"):
                continue
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            if any(a.arg == "model" and a.annotation is None for a in args):
                unannotated.append(f"{rel}:{node.name}")
        inner = rel.split("/", 1)[1] if "/" in rel else rel
        if not inner.startswith(BACKEND_HOMES):
            for number, code in _code_lines(path):
                if BACKEND_WORDS.search(code):
                    mentions.append(f"{rel}:{number}")
    sizes.sort(key=lambda item: -item[1])
    long.sort(key=lambda item: -item[1])
    return Shape(sizes[:5], unannotated, mentions, long)


def main() -> None:
    shape = measure()
    print("five largest modules:", ", ".join(f"{p} {n}" for p, n in shape.largest))
    print("public functions with an unannotated model:", len(shape.unannotated_model))
    print("places naming a backend outside core/backends and models:", len(shape.backend_mentions))
    for place in shape.backend_mentions:
        print("   ", place)
    print("functions over 100 lines:", len(shape.long_functions))
    for name, length in shape.long_functions:
        print(f"    {name} {length}")


if __name__ == "__main__":
    main()
