"""The backend seam: every call the core makes on a model goes through ``backend_of(model)``.

- ``hooked`` — TransformerLens 3.x ``HookedTransformer`` (the calls lensarith always made);
- ``bridge`` — TransformerLens 4.x ``TransformerBridge`` (legacy hook names, its own stop and
  start handling, weights in TL layout from its properties);
- ``nnsight`` — a Hugging Face model behind nnsight (``lensarith.models.wrap_nnsight``; local or
  NDIF), one trace per forward; imported only for such a model.

Recipes speak TL's legacy hook names (``blocks.{l}.hook_resid_pre`` ...), which both map
to their modules. ``backend_of`` picks the backend by the model's class and caches it per model.

Example:
    >>> backend_of(model).name.split("-")[0] in ("hooked", "bridge")
    True
"""

from __future__ import annotations

import weakref

from ._base import Backend as Backend
from ._base import BlockWeights as BlockWeights
from ._bridge import BridgeBackend as BridgeBackend
from ._hooked import HookedBackend as HookedBackend

__all__ = ["Backend", "BlockWeights", "BridgeBackend", "HookedBackend", "backend_of", "is_bridge", "is_nnsight", "trace_count", "with_traces"]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_bridge(model) -> bool:
    """Whether ``model`` is a TransformerLens 4.x ``TransformerBridge`` (by class, no import)."""
    return any(c.__name__ == "TransformerBridge" and c.__module__.startswith("transformer_lens.")
               for c in type(model).__mro__)


def is_nnsight(model) -> bool:
    """Whether ``model`` is a ``lensarith.models.NNsightModel`` (by a class flag, no import)."""
    return bool(getattr(type(model), "lensarith_nnsight", False))


def _new(model) -> Backend:
    if is_nnsight(model):
        from ._nnsight import NNsightBackend  # noqa: PLC0415 - nnsight is an optional extra

        return NNsightBackend(model)
    return (BridgeBackend if is_bridge(model) else HookedBackend)(model)


def trace_count(model) -> int | None:
    """Traces the nnsight backend has run for ``model`` so far (None on other backends); a recipe
    records the difference over a sweep in its metadata (``meta["traces"]``)."""
    return backend_of(model).traces if is_nnsight(model) else None


def with_traces(model, before: int | None, meta: dict) -> dict:
    """``meta`` plus ``"traces"``: the nnsight traces run since ``before`` (unchanged on other backends)."""
    if before is None:
        return meta
    return {**meta, "traces": trace_count(model) - before}


def backend_of(model) -> Backend:
    """The backend for ``model`` (cached per model object)."""
    try:
        got = _CACHE.get(model)
    except TypeError:  # not weak-referenceable: build one each time
        return _new(model)
    if got is None:
        got = _new(model)
        _CACHE[model] = got
    return got
