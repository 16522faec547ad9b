import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lensarith as la

ROOT = Path(__file__).resolve().parent.parent


def _readme_tables() -> tuple[list[str], list[tuple[str, str]]]:
    """The public-API tables, which moved from the README to the documentation site (docs/public-api.md)."""
    section = (ROOT / "docs" / "public-api.md").read_text()
    top, sub = section.split("In the subpackages", 1)
    names = re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|", top, flags=re.M)
    rows = re.findall(r"^\| `(lensarith\.[a-z_.]+)` \| (.*) \|$", sub.split("### Layout")[0], flags=re.M)
    pairs = [(module, name) for module, text in rows for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", text)]
    return names, pairs


def test_readme_table_is_the_public_surface_both_ways():
    names, _ = _readme_tables()
    assert sorted(names) == sorted(la.__all__), (sorted(set(names) ^ set(la.__all__)))
    assert len(names) == len(set(names))
    assert 35 <= len(la.__all__) <= 45
    for name in la.__all__:
        assert getattr(la, name) is not None


def test_readme_subpackage_names_exist():
    _, pairs = _readme_tables()
    assert len(pairs) > 30
    missing = [f"{module}.{name}" for module, name in pairs if not hasattr(importlib.import_module(module), name)]
    assert not missing, missing


def _loaded_after(code: str) -> set[str]:
    """Top-level modules imported by running ``code`` in a fresh interpreter."""
    script = code + "\nimport sys; print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return set(out.strip().splitlines()[-1].split(","))


HEAVY = {"torch", "transformers", "transformer_lens", "datasets", "pandas", "circuitsvis", "matplotlib", "plotly",
         "nnsight"}


def test_import_is_light():
    assert not (_loaded_after("import lensarith") & HEAVY)


def test_touching_a_recipe_loads_torch_but_not_transformer_lens():
    loaded = _loaded_after("import lensarith as la\nla.logit_lens; la.activation_patch; la.transplant; la.Site")
    assert "torch" in loaded
    assert not (loaded & {"transformers", "transformer_lens", "datasets", "pandas", "circuitsvis", "matplotlib"})


def test_running_a_recipe_on_transformer_lens_does_not_import_nnsight():
    loaded = _loaded_after("import lensarith as la\nm = la.load_model('organism')\n"
                           "la.logit_lens(m, la.build_prompts('capitals', n=2))\nimport lensarith.models")
    assert "transformer_lens" in loaded and "nnsight" not in loaded


def test_cli_help_and_usage_errors_do_not_import_torch():
    for argv in (["--help"], ["lens", "--task", "nope"], ["patch", "--n", "zero"]):
        loaded = _loaded_after(f"from lensarith import cli\ntry:\n cli.main({argv!r})\nexcept SystemExit:\n pass")
        assert not (loaded & HEAVY), (argv, loaded & HEAVY)


def test_the_lightness_check_can_fail():
    assert "torch" in _loaded_after("import lensarith as la\nla.Site")


def test_register_and_run_a_user_recipe(model, prompts):
    @la.register_recipe("mlp_norms_test")
    def mlp_norms(model, prompts, *, position="last"):
        batch = la.as_batch(model, prompts)
        sites = [la.Site("mlp_out", layer, position) for layer in range(model.cfg.n_layers)]
        got = la.collect(model, batch, sites)
        return la.Result({"norm": torch.stack([got[s] for s in sites]).norm(dim=-1)}, {"norm": ("layer", "batch")})

    res = la.run_recipe("mlp_norms_test", model, prompts)
    assert res["norm"].shape == (model.cfg.n_layers, len(prompts))
    assert "mlp_norms_test" in la.list_recipes() and "logit_lens" in la.list_recipes()
    with pytest.raises(la.LensarithError, match="already registered"):
        la.register_recipe("mlp_norms_test")(lambda m, p: None)
    with pytest.raises(la.LensarithError, match="no recipe named 'nope'"):
        la.core.get_recipe("nope")


def test_result_axes_are_checked():
    with pytest.raises(la.LensarithError, match="needs one axis name per dimension"):
        la.Result({"x": torch.zeros(2, 3)}, {"x": ("layer",)})
