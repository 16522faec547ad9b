"""Refactor equivalence: every recipe against the golden outputs frozen before the one-core refactor.

Goldens (``tests/golden/``) were written by ``tests/golden/recipes.py`` on the code before the
execution core existed, once per CPU kernel capability (``golden_file``). Tensors must be equal bit for bit, except where the refactor
legitimately changed the order of float operations; those keys are listed in ``LOOSE``
with the reason, and compared within 1e-6 of the tensor's scale.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import recipes  # noqa: E402

#: key fragment -> why the float order may differ (compared within 1e-6 relative to the tensor's max).
LOOSE: dict[str, str] = {
    "find_layers_screen1/screen": "the gradient screen now sums each row's gradients over positions, then the rows "
                                  "(the core keeps per-row results), instead of rows and positions in one reduction",
    "ablation_mean/": "mean MLP outputs are summed per row, then over rows in float64 (was one float32 reduction "
                      "over rows and positions per chunk)",
}


def _loose(key: str) -> str | None:
    return next((why for frag, why in LOOSE.items() if frag in key), None)


def golden_file() -> Path:
    """The goldens for this CPU's kernels: float rounding in torch's CPU kernels differs between an
    AVX2 and an AVX-512 build path, so the pre-refactor code's outputs were frozen once per capability
    (``recipes-AVX2.safetensors`` by running ``tests/golden/recipes.py`` of commit 092a454, the code
    before the execution core, on an AVX2 machine). ``recipes.safetensors`` is the original freeze."""
    import torch

    own = recipes.HERE / f"recipes-{torch.backends.cpu.get_cpu_capability()}.safetensors"
    return own if own.is_file() else recipes.FILE


@pytest.fixture(scope="module")
def fresh() -> dict[str, torch.Tensor]:
    return recipes.compute()


def test_every_golden_is_recomputed(fresh):
    golden = load_file(str(golden_file()))
    assert set(golden) == set(fresh)


@pytest.mark.parametrize("norm", recipes.NORMS)
def test_recipes_equal_the_goldens(fresh, norm):
    golden = load_file(str(golden_file()))
    bad = []
    for key in sorted(k for k in golden if k.startswith(f"{norm}/")):
        want, got = golden[key], fresh[key]
        if want.shape != got.shape or want.dtype != got.dtype:
            bad.append(f"{key}: {tuple(got.shape)} {got.dtype} vs golden {tuple(want.shape)} {want.dtype}")
            continue
        if torch.equal(want, got) or (want.is_floating_point() and torch.equal(want.isnan(), got.isnan())
                                      and torch.equal(want.nan_to_num(), got.nan_to_num())):
            continue
        if _loose(key) and want.is_floating_point():
            scale = float(want.nan_to_num().abs().max()) or 1.0
            diff = float((want - got).nan_to_num().abs().max())
            if diff <= 1e-6 * max(scale, 1.0):
                continue
            bad.append(f"{key}: max diff {diff:.3g} (scale {scale:.3g})")
        else:
            diff = float((want.double() - got.double()).nan_to_num().abs().max())
            bad.append(f"{key}: not bit-equal (max diff {diff:.3g})")
    assert not bad, "\n".join(bad)


def _numbers(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _numbers(v, f"{path}[{i}]")
    else:
        yield path, x


@pytest.mark.slow
def test_reproduce_small_equals_the_golden(tmp_path):
    want = json.loads((recipes.HERE / "reproduce_small.json").read_text())
    got = json.loads(json.dumps(recipes.reproduce_small(tmp_path), default=str))
    a, b = dict(_numbers(want)), dict(_numbers(got))
    missing = sorted(set(a) - set(b))
    assert not missing, f"no longer reported: {missing[:10]}"
    bad = []
    for path, value in a.items():
        new = b[path]
        if isinstance(value, float) and isinstance(new, (int, float)):
            if not (math.isclose(value, new, rel_tol=0, abs_tol=1e-6) or (math.isnan(value) and math.isnan(new))):
                bad.append(f"{path}: {new} vs golden {value}")
        elif value != new:
            bad.append(f"{path}: {new!r} vs golden {value!r}")
    assert not bad, "\n".join(bad[:20])
