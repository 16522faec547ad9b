"""The package's architecture: imports flow one way, and only the core runs a model.

``import_graph`` reads every module's imports (lazy ones inside functions included, those
under ``if TYPE_CHECKING:`` excluded); ``check_graph`` reports cycles and edges that point
up the layer order. Meta-tests show each check can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lensarith"

#: lower layers first; a module may import its own layer's modules (acyclically, same
#: top-level package) and any layer below, never one above
LAYERS: list[tuple[str, ...]] = [
    ("lensarith._errors", "lensarith._paths", "lensarith._io", "lensarith._types"),
    ("lensarith._stats",),  # the one bootstrap (numpy; torch on request), used by vectors and paper
    ("lensarith.tasks",),
    ("lensarith.models",),
    ("lensarith.core",),
    ("lensarith.lens",),
    ("lensarith.decompose",),
    ("lensarith.attribution",),
    ("lensarith.ablation",),
    ("lensarith.patching",),
    ("lensarith.viz",),  # renderers read results through core.Result; vectors re-exports its bench figures
    ("lensarith.vectors",),
    ("lensarith.paper", "lensarith.organism"),
    ("lensarith.guard",),
    ("lensarith.cli",),
    ("lensarith",),  # the root re-exports everything; nothing imports it
]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    out: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "lensarith")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                target = ".".join(parent + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "lensarith":
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)  # `from .core import readout`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the lensarith modules it imports (resolved to existing modules)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        raw = _imports(ast.parse(path.read_text()), name, path.name == "__init__.py")
        targets = set()
        for t in raw:
            while t and t not in files:  # `from .core import Site` -> lensarith.core
                t = t.rpartition(".")[0]
            if t and t != name:
                targets.add(t)
        graph[name] = targets
    return graph


def layer_of(module: str, layers=LAYERS) -> tuple[int, str]:
    best = None
    for i, group in enumerate(layers):
        for prefix in group:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    if best is None:
        raise AssertionError(f"module {module} is in no layer of the layout")
    return best


def check_graph(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """Upward edges, same-layer edges between different packages, and cycles."""
    problems = []
    for a, targets in sorted(graph.items()):
        la, pa = layer_of(a, layers)
        for b in sorted(targets):
            lb, pb = layer_of(b, layers)
            if lb > la:
                problems.append(f"upward import: {a} (layer {pa}) imports {b} (layer {pb})")
            elif lb == la and pa != pb:
                problems.append(f"sideways import: {a} ({pa}) imports {b} ({pb}) of the same layer")
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                problems.append("cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    return problems


def test_imports_flow_one_way_without_cycles():
    graph = import_graph()
    assert len(graph) > 40
    assert check_graph(graph) == []


def test_the_graph_check_can_fail():
    graph = {"lensarith.tasks._datasets": {"lensarith.models._load"},  # up
             "lensarith.core.run": {"lensarith.core.readout"}, "lensarith.core.readout": {"lensarith.core.run"},  # cycle
             "lensarith.paper.figures": {"lensarith.organism.evaluate"}}  # sideways
    found = check_graph(graph)
    assert any(p.startswith("upward import: lensarith.tasks._datasets") for p in found)
    assert any(p.startswith("cycle: lensarith.core.readout -> lensarith.core.run") for p in found)
    assert any(p.startswith("sideways import: lensarith.paper.figures") for p in found)


def test_lazy_and_type_checking_imports_are_read_correctly():
    code = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..vectors import OVector\n"
            "def f():\n    from ..viz import plots\n")
    got = _imports(ast.parse(code), "lensarith.core.run", False)
    assert "lensarith.viz" in got and "lensarith.vectors" not in got


def test_tasks_never_import_transformer_lens_or_torch():
    for path in (PACKAGE / "tasks").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        assert not names & {"torch", "transformer_lens", "transformers"}, (path, names)


# --------------------------------------------------------------------------- one core runs the model

#: attributes only the core touches: forwards with hooks, the final norm, the unembedding
FORBIDDEN_ATTRS = {"run_with_cache", "run_with_hooks", "hooks", "ln_final", "unembed", "W_U", "b_U", "add_hook",
                   "reset_hooks"}
#: outside the core, these files may read block weights or run their own forward, for the stated reason
EXEMPT = {
    "lensarith/organism/train.py": "the organism's training forward over its parameters (fused attention), "
                                   "which trains the model; no recipe runs through it",
}


def forbidden_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS
                and not (isinstance(node.value, ast.Name) and node.value.id == "readout")):
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == "model") or (isinstance(f, ast.Attribute) and f.attr in ("model", "forward")):
                found.append(f"{path.name}:{node.lineno} calls the model")
            if isinstance(f, ast.Name) and f.id == "apply_softcap":
                found.append(f"{path.name}:{node.lineno} applies a logit soft cap")
    return found


def test_only_the_core_runs_the_model_or_reads_out_logits():
    bad = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("lensarith/core/") or rel in EXEMPT:
            continue
        uses = forbidden_uses(path)
        if uses:
            bad[rel] = uses
    assert not bad, bad


def test_the_core_check_can_fail(tmp_path):
    src = tmp_path / "recipe.py"
    src.write_text("def f(model, x):\n    y = model(x)\n    return model.unembed(model.ln_final(y)) @ model.W_U\n")
    found = forbidden_uses(src)
    assert {"calls the model", ".unembed", ".ln_final", ".W_U"} <= {f.split(" ", 1)[1] for f in found}


@pytest.mark.parametrize("name", sorted(EXEMPT))
def test_exemptions_still_need_their_reason(name):
    assert forbidden_uses(ROOT / name), f"{name} no longer runs the model itself: drop its exemption"
