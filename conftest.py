"""Doctests of the package (``pytest --doctest-modules lensarith``) run against a tiny random model."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def _doctest_model():
    import torch

    import lensarith as la

    torch.set_num_threads(1)
    return la.tiny_model(n_layers=2, d_model=32, n_heads=4, seed=0)


@pytest.fixture(autouse=True)
def _doctest_names(request, doctest_namespace, _doctest_model):
    """Names every docstring example may use: a 2-layer tiny model, ``la``, ``torch`` and the core."""
    if "doctest_namespace" not in request.fixturenames:
        return
    import torch

    import lensarith as la
    from lensarith.core import Ablate, Site, collect, tokenize
    from lensarith.tasks import build_prompts

    doctest_namespace.update(model=_doctest_model, la=la, torch=torch, build_prompts=build_prompts,
                             tokenize=tokenize, Site=Site, Ablate=Ablate, collect=collect,
                             tmp_path=request.getfixturevalue("tmp_path"))
