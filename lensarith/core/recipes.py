"""A registry of named recipes: ``register_recipe`` adds one, ``run_recipe`` runs it by name.

A recipe is any function ``fn(model, prompts, **options) -> Result``. The built-in
families (logit lens, decomposition, attribution, patching, transplantation) register
themselves; users add theirs with the decorator, without forking lensarith.

Example:
    >>> import lensarith as la
    >>> @la.register_recipe("mlp_norms")
    ... def mlp_norms(model, prompts, *, position="last"):
    ...     batch = la.as_batch(model, prompts)
    ...     sites = [la.Site("mlp_out", l, position) for l in range(model.cfg.n_layers)]
    ...     got = la.collect(model, batch, sites)
    ...     norms = torch.stack([got[s].norm(dim=-1) for s in sites])
    ...     return la.Result({"norm": norms}, {"norm": ("layer", "batch")})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._errors import LensarithError

__all__ = ["register_recipe", "get_recipe", "list_recipes", "run_recipe"]

_RECIPES: dict[str, Callable[..., Any]] = {}
F = TypeVar("F", bound=Callable[..., Any])


def register_recipe(name: str, *, overwrite: bool = False) -> Callable[[F], F]:
    """Decorator registering ``fn(model, prompts, **options) -> Result`` under ``name``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise LensarithError(f"recipe name must be an identifier-like string, got {name!r}")

    def decorate(fn: F) -> F:
        if name in _RECIPES and _RECIPES[name] is not fn and not overwrite:
            raise LensarithError(f"a recipe named {name!r} is already registered; pass overwrite=True to replace it")
        _RECIPES[name] = fn
        return fn

    return decorate


def get_recipe(name: str) -> Callable[..., Any]:
    if name not in _RECIPES:
        raise LensarithError(f"no recipe named {name!r}; registered: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def list_recipes() -> list[str]:
    return sorted(_RECIPES)


def run_recipe(name: str, model, prompts, **options: Any):
    """Run a registered recipe by name."""
    return get_recipe(name)(model, prompts, **options)
