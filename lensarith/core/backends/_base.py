"""What the core asks of a model, whatever framework runs it.

- ``Backend``: the calls every backend implements (abstract), the ones with a default, and the
  ``Capability`` set it declares; the core and the recipes ask ``backend.supports(...)``, never
  which backend it is.
- ``RecomputesBlocks`` / ``GemmaBlocks``: the methods behind two capabilities (a backend that
  declares one subclasses its mixin; checked when the class is defined).
- ``Meter``: what a recipe records of the forwards it ran (``meta["traces"]`` where the backend
  counts traces).
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["Backend", "BlockWeights", "Capability", "GemmaBlocks", "HookFn", "Meter", "RecomputesBlocks"]

HookFn = Callable[..., Tensor | None]


class Capability(StrEnum):
    """What a backend can do beyond the calls every backend has; declared in ``Backend.capabilities``.

    Attributes:
        START_MID_STACK: ``forward_from`` a residual at layer ``l`` costs only the layers from
            ``l`` on (the core then starts intervention groups mid-stack).
        GRADIENTS: forwards may keep the autograd graph (attribution patching, gradient screens).
        RECOMPUTE_BLOCKS: ``block_norm``, ``mlp`` and ``norm_params`` recompute a block from its
            weights in this process (the fast patching engine, the attribution methods).
        GEMMA_BLOCKS: ``post_norm``, ``qk_norm`` and ``attn_window`` read Gemma 2/3 block pieces.
        TL_MODULES: the model object is TransformerLens's, so its modules can be read directly
            (``model.blocks[l].attn.W_O``).
        TRACES: each forward is one counted trace (``Backend.traces``, possibly a remote request);
            recipes record how many they ran in ``meta["traces"]`` (``Backend.meter``).
    """

    START_MID_STACK = "start_mid_stack"
    GRADIENTS = "gradients"
    RECOMPUTE_BLOCKS = "recompute_blocks"
    GEMMA_BLOCKS = "gemma_blocks"
    TL_MODULES = "tl_modules"
    TRACES = "traces"


@dataclass(frozen=True)
class BlockWeights:
    """One block's weights in TransformerLens's layout (``HookedTransformer`` shapes).

    Attention: ``W_Q/W_K/W_V [head, d_model, d_head]`` (K and V expanded to every query
    head under grouped-query attention), ``W_O [head, d_head, d_model]``, biases
    ``b_Q/b_K/b_V [head, d_head]`` and ``b_O [d_model]`` (zeros where the model has none).
    MLP: ``W_in [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``, ``b_in``, ``b_out``
    (zeros where absent), ``W_gate`` for gated MLPs; all None for attention-only models.
    """

    W_Q: Float[Tensor, "head d_model d_head"]
    W_K: Float[Tensor, "head d_model d_head"]
    W_V: Float[Tensor, "head d_model d_head"]
    W_O: Float[Tensor, "head d_head d_model"]
    b_Q: Float[Tensor, "head d_head"]
    b_K: Float[Tensor, "head d_head"]
    b_V: Float[Tensor, "head d_head"]
    b_O: Float[Tensor, " d_model"]
    W_in: Float[Tensor, "d_model d_mlp"] | None = None
    b_in: Float[Tensor, " d_mlp"] | None = None
    W_out: Float[Tensor, "d_mlp d_model"] | None = None
    b_out: Float[Tensor, " d_model"] | None = None
    W_gate: Float[Tensor, "d_model d_mlp"] | None = None


class Backend(ABC):
    """The calls the core makes on a model; one subclass per kind of model object.

    Subclasses implement the abstract methods, declare what else they can do in
    ``capabilities`` and register a predicate and a factory with ``register_backend``
    (``lensarith.core.backends``).

    Attributes:
        name: the backend and its framework's version, e.g. ``"hooked-3.9"`` (``HookedTransformer``),
            ``"bridge-4.3"`` (``TransformerBridge``), ``"nnsight-0.5"``.
        capabilities: the ``Capability`` values this backend declares (``supports``).
        traces: forwards counted so far where the backend declares ``Capability.TRACES``.
    """

    name: str = "?"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    traces: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for capability, mixin in _METHODS_OF.items():
            if capability in cls.capabilities and not issubclass(cls, mixin):
                raise TypeError(f"{cls.__name__} declares Capability.{capability.name} but does not subclass "
                                f"{mixin.__name__}, which holds that capability's methods")

    def __init__(self, model) -> None:
        try:  # a weak reference: the per-model cache must not keep the model alive
            ref = weakref.ref(model)
            self._model = lambda: ref()
        except TypeError:
            self._model = lambda: model

    @property
    def model(self):
        return self._model()

    @property
    def cfg(self):
        """The model's config (TransformerLens's field names); the core reads it from a model or its backend."""
        return self.model.cfg

    # ---- capabilities
    def supports(self, capability: Capability) -> bool:
        """Whether this backend declares ``capability``."""
        return capability in self.capabilities

    def why_not(self, capability: Capability) -> str | None:
        """None where ``capability`` is supported, else a sentence for the user saying what to do instead."""
        return None if self.supports(capability) else f"the {self.name} backend does not support {capability.value}"

    def meter(self) -> Meter:
        """Start counting this backend's traces for a recipe's metadata (see ``Meter``)."""
        return Meter(self, self.traces if self.supports(Capability.TRACES) else None)

    # ---- forwards: both return the residual ``[batch, pos, d_model]`` entering block ``stop``
    #      (after the last block when ``stop == n_layers``), never logits
    @abstractmethod
    def forward(self, tokens: Int[Tensor, "batch pos"], *, stop: int) -> Float[Tensor, "batch pos d_model"]:
        """From token ids ``[batch, pos]`` to the residual entering block ``stop``."""

    @abstractmethod
    def forward_from(self, x: Float[Tensor, "batch pos d_model"], *, start: int, stop: int
                     ) -> Float[Tensor, "batch pos d_model"]:
        """From the residual ``x`` entering block ``start``; hooks of earlier blocks may fire
        on placeholder values on backends that cannot skip them (no ``Capability.START_MID_STACK``)."""

    @abstractmethod
    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]) -> AbstractContextManager:
        """Add forward hooks by legacy name for a ``with`` block; removed on exit, also on errors."""

    @abstractmethod
    def has_hook(self, name: str) -> bool:
        """Whether the legacy hook ``name`` is a site of this model."""

    def explain_missing(self, name: str) -> str | None:
        """A sentence saying why ``name`` is not a site of this model, where the backend knows more
        than that it does not exist (None otherwise)."""
        return None

    def why_no_hook(self, name: str) -> str | None:
        """Why ``name`` is not a site of this model (a sentence naming the site and the model), or None."""
        if self.has_hook(name):
            return None
        return self.explain_missing(name) or f"hook {name!r} does not exist on this model"

    @abstractmethod
    def has_user_hooks(self) -> bool:
        """Whether hooks the backend does not own (a user's, TransformerLens's or plain PyTorch
        ones) are attached to the model."""

    # ---- readout (both TransformerLens model classes expose these under the same names)
    def final_norm(self, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        """``ln_final`` on ``[batch, pos, d_model]``."""
        return self.model.ln_final(x)

    @abstractmethod
    def final_norm_weights(self) -> tuple[Float[Tensor, " d_model"] | None, Float[Tensor, " d_model"] | None]:
        """``(weight, bias)`` of the final norm (None where it has none)."""

    def unembed(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        """Normed ``[batch, pos, d_model]`` -> logits ``[batch, pos, d_vocab]`` (no soft cap)."""
        return self.model.unembed(x)

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.model.W_U

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"]:
        return self.model.b_U

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.model.W_E

    # ---- block weights (head-level decomposition, figures, the fast patching engine)
    @abstractmethod
    def block(self, layer: int) -> BlockWeights:
        """``layer``'s weights in TransformerLens's layout."""

    @abstractmethod
    def attn_scale(self, layer: int) -> float:
        """What attention scores are divided by in ``layer``."""

    def kv_weights(
        self, layer: int
    ) -> tuple[Float[Tensor, "kv_head d_model d_head"], Float[Tensor, "kv_head d_model d_head"],
               Float[Tensor, "kv_head d_head"], Float[Tensor, "kv_head d_head"]]:
        """``(W_K, W_V, b_K, b_V)`` of ``layer`` with one entry per key/value head
        (``[kv_head, d_model, d_head]``, ``[kv_head, d_head]``): not expanded under
        grouped-query attention, where query head ``h`` reads key/value head
        ``h // (n_heads // kv_head)``. The default expands nothing only when ``block`` does not."""
        w = self.block(layer)
        return w.W_K, w.W_V, w.b_K, w.b_V

    def rotary_tables(self, layer: int
                      ) -> tuple[Float[Tensor, "n_ctx rotary_dim"], Float[Tensor, "n_ctx rotary_dim"]] | None:
        """``(sin, cos)`` ``[n_ctx, rotary_dim]`` of a rotary layer, as its attention applies them
        (``x_rot * cos + rotate(x_rot) * sin``), or None where the backend does not expose them."""
        return None

    def fast_unsupported(self) -> list[str]:
        """Backend-specific reasons the fast patching engine cannot run this model."""
        if self.supports(Capability.RECOMPUTE_BLOCKS):
            return []
        return [f"the {self.name} backend (it does not recompute blocks from their weights)"]


class RecomputesBlocks(ABC):
    """The methods of ``Capability.RECOMPUTE_BLOCKS``: a block's pieces on token rows ``[n, d_model]``."""

    @abstractmethod
    def block_norm(self, layer: int, which: str, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        """``ln1`` or ``ln2`` of ``layer`` on token rows ``[n, d_model]``."""

    @abstractmethod
    def mlp(self, layer: int, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        """The MLP of ``layer`` on normed token rows ``[n, d_model]``."""

    @abstractmethod
    def norm_params(self, layer: int, which: str) -> tuple[Float[Tensor, " d_model"] | None, float]:
        """``(weight, eps)`` of ``ln1``/``ln2`` of ``layer`` (weight None for LNPre/RMSPre or no norm);
        the kind is ``cfg.normalization_type``."""


class GemmaBlocks(ABC):
    """The methods of ``Capability.GEMMA_BLOCKS``: Gemma 2/3's extra block pieces."""

    @abstractmethod
    def post_norm(self, layer: int, which: str, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        """``ln1_post``/``ln2_post`` of ``layer`` (the norm after attention or the MLP, before the
        residual add) on rows ``[n, d_model]``."""

    @abstractmethod
    def qk_norm(self, layer: int, which: str, x: Float[Tensor, "*rows d_head"]) -> Float[Tensor, "*rows d_head"]:
        """The per-head RMS norm of queries (``"q"``) or keys (``"k"``) on ``[..., d_head]``."""

    @abstractmethod
    def attn_window(self, layer: int) -> int | None:
        """How far back ``layer``'s queries see (a sliding-window local layer), or None (global)."""


#: the mixin holding each capability's methods (a backend declaring the capability subclasses it)
_METHODS_OF: dict[Capability, type] = {Capability.RECOMPUTE_BLOCKS: RecomputesBlocks,
                                       Capability.GEMMA_BLOCKS: GemmaBlocks}


@dataclass(frozen=True)
class Meter:
    """Traces a backend ran since ``backend.meter()``, for a recipe's metadata.

    A recipe takes a meter when it starts and stamps its metadata when it ends; ``stamp``
    adds ``"traces"`` (how many traces the recipe ran) where the backend declares
    ``Capability.TRACES`` and returns the metadata unchanged otherwise.

    Example:
        >>> from lensarith.core.backends import backend_of
        >>> meter = backend_of(model).meter()
        >>> meter.stamp({"recipe": "x"})  # a TransformerLens model counts no traces
        {'recipe': 'x'}
    """

    backend: Backend
    start: int | None

    def stamp(self, meta: dict) -> dict:
        """``meta`` plus ``"traces"`` run since the meter started (``meta`` itself where none are counted)."""
        if self.start is None:
            return meta
        return {**meta, "traces": self.backend.traces - self.start}
