"""What the core asks of a model, whatever TransformerLens class it is."""

from __future__ import annotations

import weakref

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from torch import Tensor

__all__ = ["Backend", "BlockWeights", "HookFn"]

HookFn = Callable[..., Tensor | None]


@dataclass(frozen=True)
class BlockWeights:
    """One block's weights in TransformerLens's layout (``HookedTransformer`` shapes).

    Attention: ``W_Q/W_K/W_V [head, d_model, d_head]`` (K and V expanded to every query
    head under grouped-query attention), ``W_O [head, d_head, d_model]``, biases
    ``b_Q/b_K/b_V [head, d_head]`` and ``b_O [d_model]`` (zeros where the model has none).
    MLP: ``W_in [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``, ``b_in``, ``b_out``
    (zeros where absent), ``W_gate`` for gated MLPs; all None for attention-only models.
    """

    W_Q: Tensor
    W_K: Tensor
    W_V: Tensor
    W_O: Tensor
    b_Q: Tensor
    b_K: Tensor
    b_V: Tensor
    b_O: Tensor
    W_in: Tensor | None = None
    b_in: Tensor | None = None
    W_out: Tensor | None = None
    b_out: Tensor | None = None
    W_gate: Tensor | None = None


class Backend:
    """The few calls the core makes on a model; one subclass per TransformerLens model class.

    Attributes:
        name: ``"hooked-3.9"`` (``HookedTransformer``) or ``"bridge-4.3"`` (``TransformerBridge``),
            with the installed TransformerLens version.
        can_start_at_layer_cheaply: a forward from a residual at layer ``l`` costs only the
            layers from ``l`` on (``HookedTransformer``); on a bridge every block runs.
    """

    name: str = "?"
    can_start_at_layer_cheaply: bool = False

    def __init__(self, model) -> None:
        try:  # a weak reference: the per-model cache must not keep the model alive
            ref = weakref.ref(model)
            self._model = lambda: ref()
        except TypeError:
            self._model = lambda: model

    @property
    def model(self):
        return self._model()

    # ---- forwards: both return the residual ``[batch, pos, d_model]`` entering block ``stop``
    #      (after the last block when ``stop == n_layers``), never logits
    def forward(self, tokens: Tensor, *, stop: int) -> Tensor:
        raise NotImplementedError

    def forward_from(self, x: Tensor, *, start: int, stop: int) -> Tensor:
        """From the residual ``x`` entering block ``start``; hooks of earlier blocks may fire
        on placeholder values on backends that cannot skip them."""
        raise NotImplementedError

    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]) -> AbstractContextManager:
        """Add forward hooks by legacy name for a ``with`` block; removed on exit, also on errors."""
        raise NotImplementedError

    def has_hook(self, name: str) -> bool:
        raise NotImplementedError

    def why_no_hook(self, name: str) -> str | None:
        """Why ``name`` is not a site of this model (a sentence naming the site and the model), or None."""
        return None if self.has_hook(name) else f"hook {name!r} does not exist on this model"

    def has_user_hooks(self) -> bool:
        """Whether hooks the backend does not own (a user's, TransformerLens's or plain PyTorch
        ones) are attached to the model."""
        raise NotImplementedError

    # ---- readout (both TransformerLens model classes expose these under the same names)
    def final_norm(self, x: Tensor) -> Tensor:
        """``ln_final`` on ``[batch, pos, d_model]``."""
        return self.model.ln_final(x)

    def final_norm_weights(self) -> tuple[Tensor | None, Tensor | None]:
        """``(weight, bias)`` of the final norm (None where it has none)."""
        raise NotImplementedError

    def unembed(self, x: Tensor) -> Tensor:
        """Normed ``[batch, pos, d_model]`` -> logits ``[batch, pos, d_vocab]`` (no soft cap)."""
        return self.model.unembed(x)

    @property
    def W_U(self) -> Tensor:
        return self.model.W_U

    @property
    def b_U(self) -> Tensor:
        return self.model.b_U

    @property
    def W_E(self) -> Tensor:
        return self.model.W_E

    # ---- block internals (decomposition, the fast patching engine)
    def block(self, layer: int) -> BlockWeights:
        raise NotImplementedError

    def attn_scale(self, layer: int) -> float:
        """What attention scores are divided by in ``layer``."""
        raise NotImplementedError

    def block_norm(self, layer: int, which: str, x: Tensor) -> Tensor:
        """``ln1`` or ``ln2`` of ``layer`` on token rows ``[n, d_model]``."""
        raise NotImplementedError

    def mlp(self, layer: int, x: Tensor) -> Tensor:
        """The MLP of ``layer`` on normed token rows ``[n, d_model]``."""
        raise NotImplementedError

    def norm_params(self, layer: int, which: str) -> tuple[Tensor | None, float]:
        """``(weight, eps)`` of ``ln1``/``ln2`` of ``layer`` (weight None for LNPre/RMSPre or no norm);
        the kind is ``cfg.normalization_type``."""
        raise NotImplementedError

    def kv_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(W_K, W_V, b_K, b_V)`` of ``layer`` with one entry per key/value head
        (``[kv_head, d_model, d_head]``, ``[kv_head, d_head]``): not expanded under
        grouped-query attention, where query head ``h`` reads key/value head
        ``h // (n_heads // kv_head)``. The default expands nothing only when ``block`` does not."""
        w = self.block(layer)
        return w.W_K, w.W_V, w.b_K, w.b_V

    #: whether ``post_norm``, ``qk_norm`` and ``attn_window`` read the model (Gemma 2/3 blocks)
    gemma_blocks: bool = False

    def post_norm(self, layer: int, which: str, x: Tensor) -> Tensor:
        """``ln1_post``/``ln2_post`` of ``layer`` (the norm after attention or the MLP, before the
        residual add) on rows ``[n, d_model]``."""
        raise NotImplementedError

    def qk_norm(self, layer: int, which: str, x: Tensor) -> Tensor:
        """The per-head RMS norm of queries (``"q"``) or keys (``"k"``) on ``[..., d_head]``."""
        raise NotImplementedError

    def attn_window(self, layer: int) -> int | None:
        """How far back ``layer``'s queries see (a sliding-window local layer), or None (global)."""
        return None

    def rotary_tables(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """``(sin, cos)`` ``[n_ctx, rotary_dim]`` of a rotary layer, as its attention applies them
        (``x_rot * cos + rotate(x_rot) * sin``), or None where the backend does not expose them."""
        return None

    def fast_unsupported(self) -> list[str]:
        """Backend-specific reasons the fast patching engine cannot run this model."""
        return []
