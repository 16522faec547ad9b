"""The one place a model's backend is chosen: a list of ``(predicate, factory)`` entries, first match wins."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from ..._types import Model
from ._base import Backend
from ._bridge import BridgeBackend
from ._hooked import HookedBackend

__all__ = ["backend_of", "register_backend", "is_bridge", "is_nnsight"]

Predicate = Callable[[Any], bool]
Factory = Callable[[Any], Backend]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_bridge(model: Model) -> bool:
    """Whether ``model`` is a TransformerLens 4.x ``TransformerBridge`` (by class, no import)."""
    return any(c.__name__ == "TransformerBridge" and c.__module__.startswith("transformer_lens.")
               for c in type(model).__mro__)


def is_nnsight(model: Model) -> bool:
    """Whether ``model`` is a ``lensarith.models.NNsightModel`` (by a class flag, no import)."""
    return bool(getattr(type(model), "lensarith_nnsight", False))


def _nnsight(model) -> Backend:
    from ._nnsight import NNsightBackend  # noqa: PLC0415 - nnsight is an optional extra, imported for its models only

    return NNsightBackend(model)


def _any(model) -> bool:
    return True


#: ``(predicate, factory)``, tried in order; ``HookedTransformer`` (TransformerLens 3.x) is the fallback
_ENTRIES: list[tuple[Predicate, Factory]] = [
    (is_nnsight, _nnsight),
    (is_bridge, BridgeBackend),
    (_any, HookedBackend),
]


def register_backend(matches: Predicate, factory: Factory) -> None:
    """Choose ``factory(model)`` as the backend of every model ``matches(model)`` is true for, ahead of
    the backends registered before (the built-in ones included).

    ``matches`` should recognise the model without importing its framework (by class name, or a
    class flag as ``NNsightModel`` has), and ``factory`` may import it. A model resolved before keeps
    the backend it has (a backend holds state, such as its trace count): register at import time.

    Example:
        >>> class Wrapped:  # a model object lensarith does not know: a wrapper around a TL model
        ...     def __init__(self, inner):
        ...         self.inner, self.cfg = inner, inner.cfg
        >>> class WrappedBackend(HookedBackend):
        ...     def __init__(self, wrapped):
        ...         super().__init__(wrapped.inner)
        ...         self.name = "wrapped"
        >>> register_backend(lambda m: isinstance(m, Wrapped), WrappedBackend)
        >>> wrapped = Wrapped(model)
        >>> backend_of(wrapped).name, backend_of(model).name == "wrapped"
        ('wrapped', False)
    """
    _ENTRIES.insert(0, (matches, factory))


def _new(model) -> Backend:
    for matches, factory in _ENTRIES:
        if matches(model):
            return factory(model)
    raise AssertionError("unreachable: the last entry matches every model")  # pragma: no cover


def backend_of(model: Model) -> Backend:
    """The backend for ``model`` (cached per model object).

    A ``Backend`` is its own backend: a recipe resolves the model's once and passes it down to
    the core (``run``, ``readout``), which takes a model or its backend.
    """
    if isinstance(model, Backend):
        return model
    try:
        got = _CACHE.get(model)
    except TypeError:  # not weak-referenceable: build one each time
        return _new(model)
    if got is None:
        got = _new(model)
        _CACHE[model] = got
    return got
