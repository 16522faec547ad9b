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
from .._types import Model

__all__ = ["register_recipe", "get_recipe", "list_recipes", "run_recipe"]

_RECIPES: dict[str, Callable[..., Any]] = {}
F = TypeVar("F", bound=Callable[..., Any])


def register_recipe(name: str, *, overwrite: bool = False) -> Callable[[F], F]:
    """Decorator registering ``fn(model, prompts, **options) -> Result`` under ``name``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise LensarithError(f"recipe name must be an identifier-like string, got {name!r}")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise LensarithError(f"register_recipe({name!r}) decorates a function fn(model, prompts, **options) -> Result, "
                                 f"got {type(fn).__name__}")
        if name in _RECIPES and _RECIPES[name] is not fn and not overwrite:
            raise LensarithError(f"a recipe named {name!r} is already registered; pass overwrite=True to replace it")
        _RECIPES[name] = fn
        return fn

    return decorate


def get_recipe(name: str) -> Callable[..., Any]:
    """The function registered under ``name``."""
    if not isinstance(name, str) or name not in _RECIPES:
        raise LensarithError(f"no recipe named {name!r}; registered: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def list_recipes() -> list[str]:
    return sorted(_RECIPES)


def _hook_state(model) -> dict[int, set]:
    """Ids of every forward/backward hook on the model's modules (TransformerLens hook points included)."""
    modules = getattr(model, "modules", None)
    if modules is None:
        return {}
    return {id(m): set(m._forward_hooks) | set(m._forward_pre_hooks) | set(m._backward_hooks) for m in modules()}


def _remove_new_hooks(model, before: dict[int, set]) -> int:
    """Remove the hooks added since ``before``: from PyTorch's dicts and from TransformerLens's own
    handle lists (``HookPoint.fwd_hooks`` / ``bwd_hooks``, which ``model.add_hook`` fills)."""
    removed = 0
    for m in model.modules():
        old = before.get(id(m), set())
        gone = set()
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks):
            for key in [k for k in hooks if k not in old]:
                del hooks[key]
                gone.add(key)
                removed += 1
        for attr in ("fwd_hooks", "bwd_hooks"):
            handles = getattr(m, attr, None)
            if isinstance(handles, list) and gone:
                handles[:] = [h for h in handles if getattr(getattr(h, "hook", None), "id", None) not in gone]
    return removed


def run_recipe(name: str, model: Model, prompts, **options: Any):
    """Run a registered recipe by name.

    The model is left as the recipe found it: hooks a recipe adds and does not remove are
    removed (also when it raises), and a recipe must return a ``lensarith.Result``.

    Raises:
        LensarithError: an unknown name, or a recipe that returned something other than a Result.
    """
    from .result import Result

    fn = get_recipe(name)
    before = _hook_state(model)
    try:
        out = fn(model, prompts, **options)
    finally:
        if hasattr(model, "modules"):
            _remove_new_hooks(model, before)
    if not isinstance(out, Result):
        raise LensarithError(f"recipe {name!r} returned {type(out).__name__} ({out!r:.60}); a recipe must return a "
                             "lensarith.Result (tensors with axis names, labels and metadata)")
    return out
