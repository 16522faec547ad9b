"""The package's shape holds (issue: second shape pass): no recipe names a backend, every public
function types its ``model``, no function grows past 100 lines beyond the few listed, and a new figure
is one module. ``python -m tests.code_shape`` prints the measures."""

from __future__ import annotations

from pathlib import Path

from tests.code_shape import measure

# functions still over 100 lines, each one loop a reader follows top to bottom
LONG_ALLOWED = {"lensarith/vectors/_bench.py:vector_bench", "lensarith/core/batch.py:tokenize",
                "lensarith/core/run.py:run", "lensarith/vectors/_search.py:find_layers", "lensarith/core/readout.py:scan"}


def test_no_recipe_names_a_backend():
    assert measure().backend_mentions == []


def test_every_public_model_parameter_is_typed():
    assert measure().unannotated_model == []


def test_no_new_function_over_100_lines():
    long = {name for name, _ in measure().long_functions}
    assert long <= LONG_ALLOWED, sorted(long - LONG_ALLOWED)


def test_the_measures_can_fail(tmp_path: Path):
    pkg = tmp_path / "pkg"
    (pkg / "patching").mkdir(parents=True)
    (pkg / "core" / "backends").mkdir(parents=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(101))
    (pkg / "patching" / "sweep.py").write_text(
        "from ..core.backends import is_nnsight\n\n\ndef patch(model, x):\n" + body + "\n    return is_nnsight(model)\n")
    (pkg / "core" / "backends" / "nn.py").write_text("import nnsight  # the backends may name themselves\n")
    shape = measure(pkg)
    assert shape.unannotated_model == ["pkg/patching/sweep.py:patch"]
    assert shape.backend_mentions == ["pkg/patching/sweep.py:1", "pkg/patching/sweep.py:106"]
    assert [name for name, _ in shape.long_functions] == ["pkg/patching/sweep.py:patch"]
