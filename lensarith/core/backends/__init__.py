"""The backend seam: every call the core makes on a model goes through ``backend_of(model)``.

- ``hooked`` — TransformerLens 3.x ``HookedTransformer`` (the calls lensarith always made);
- ``bridge`` — TransformerLens 4.x ``TransformerBridge`` (legacy hook names, its own stop and
  start handling, weights in TL layout from its properties);
- ``nnsight`` — a Hugging Face model behind nnsight (``lensarith.models.wrap_nnsight``; local or
  NDIF), one trace per forward; imported only for such a model.

Recipes speak TL's legacy hook names (``blocks.{l}.hook_resid_pre`` ...), which every backend maps
to its modules, and never name a backend: what differs between backends is declared as a
``Capability`` (start mid-stack cheaply, gradients, recomputing blocks for the fast patching
engine, Gemma blocks, TransformerLens modules, counted traces) that the core and the recipes
ask for with ``backend.supports(...)``; ``backend.meter()`` records ``meta["traces"]`` only where
traces are counted. ``backend_of`` picks the backend from one registry (``_registry``: a list of
``(predicate, factory)`` entries, first match wins) and caches it per model; a recipe resolves it
once and passes the backend down (the core's ``run`` and ``readout`` take a model or its backend).

Adding a backend: subclass ``Backend`` in a module of this package and implement its abstract
methods (``forward``, ``forward_from``, ``hooks``, ``has_hook``, ``has_user_hooks``,
``final_norm_weights``, ``block``, ``attn_scale``; the readout methods have defaults that read
TransformerLens's attribute names); declare in ``capabilities`` what else it can do, subclassing
``RecomputesBlocks`` or ``GemmaBlocks`` for the capabilities that need their methods (checked when
the class is defined); then call ``register_backend(predicate, factory)`` with a predicate that
recognises the model without importing its framework and a factory that may import it (the
nnsight entry in ``_registry`` is the model). A backend that cannot start mid-stack, keep
gradients or recompute blocks still runs every recipe that does not need that: the core then
runs from the tokens, gradient recipes refuse with ``why_not``, and patching uses the hooks
engine. ``tests/test_backends.py`` holds the goldens a new backend must reproduce;
docs/guides/adding-a-backend.md walks through it.

Example:
    >>> backend = backend_of(model)
    >>> backend.name.split("-")[0] in ("hooked", "bridge"), backend.supports(Capability.GRADIENTS)
    (True, True)
    >>> backend_of(backend) is backend  # resolved once, passed down
    True
"""

from __future__ import annotations

from ._base import Backend as Backend
from ._base import BlockWeights as BlockWeights
from ._base import Capability as Capability
from ._base import GemmaBlocks as GemmaBlocks
from ._base import Meter as Meter
from ._base import RecomputesBlocks as RecomputesBlocks
from ._bridge import BridgeBackend as BridgeBackend
from ._hooked import HookedBackend as HookedBackend
from ._registry import backend_of as backend_of
from ._registry import is_bridge as is_bridge
from ._registry import is_nnsight as is_nnsight
from ._registry import register_backend as register_backend

__all__ = ["Backend", "BlockWeights", "BridgeBackend", "Capability", "GemmaBlocks", "HookedBackend", "Meter",
           "RecomputesBlocks", "backend_of", "is_bridge", "is_nnsight", "register_backend"]
