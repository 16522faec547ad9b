import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lensarith as la

ROOT = Path(__file__).resolve().parent.parent


def test_every_readme_name_is_exported():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Public API", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `(?:la\.)?([A-Za-z_][A-Za-z0-9_]*)", table, flags=re.M)
    assert len(names) > 20
    missing = [n for n in names if not hasattr(la, n)]
    assert not missing, missing


def test_import_is_light():
    code = "import sys, lensarith; print(','.join(m for m in ('circuitsvis', 'matplotlib', 'plotly') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


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
