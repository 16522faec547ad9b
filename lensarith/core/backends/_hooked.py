"""TransformerLens 3.x ``HookedTransformer``: the calls the core always made, unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ._base import Backend, BlockWeights, Capability, GemmaBlocks, HookFn, RecomputesBlocks
from ...models._version import tl_version

__all__ = ["HookedBackend"]


class HookedBackend(Backend, RecomputesBlocks, GemmaBlocks):
    """``HookedTransformer``: native ``start_at_layer``/``stop_at_layer``, ``model.hooks``."""

    capabilities = frozenset({Capability.START_MID_STACK, Capability.GRADIENTS, Capability.RECOMPUTE_BLOCKS,
                              Capability.GEMMA_BLOCKS, Capability.TL_MODULES})

    def __init__(self, model) -> None:
        super().__init__(model)
        self.name = f"hooked-{tl_version()}"

    def forward(self, tokens: Int[Tensor, "batch pos"], *, stop: int) -> Float[Tensor, "batch pos d_model"]:
        return self.model(tokens, stop_at_layer=stop)

    def forward_from(self, x: Float[Tensor, "batch pos d_model"], *, start: int, stop: int
                     ) -> Float[Tensor, "batch pos d_model"]:
        return self.model(x, start_at_layer=start, stop_at_layer=stop)

    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]) -> AbstractContextManager:
        return self.model.hooks(fwd_hooks=list(fwd_hooks))

    def has_hook(self, name: str) -> bool:
        return name in self.model.hook_dict

    def has_user_hooks(self) -> bool:
        return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in self.model.modules())

    def unembed(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        # ``Unembed.forward`` on 3.9 copies ``W_U.T.contiguous()`` (d_model x d_vocab floats) on
        # every call, which made the logit lens's per-layer readout cost as much as the forward;
        # the same product without the copy (bit-equal on float32, tested against the module).
        unembed = self.model.unembed
        if any(m._forward_hooks or m._forward_pre_hooks for m in unembed.modules()):
            return unembed(x)
        return torch.matmul(x, unembed.W_U) + unembed.b_U

    def final_norm_weights(self) -> tuple[Float[Tensor, " d_model"] | None, Float[Tensor, " d_model"] | None]:
        ln = self.model.ln_final
        return getattr(ln, "w", None), getattr(ln, "b", None)

    def block(self, layer: int) -> BlockWeights:
        blk = self.model.blocks[layer]
        attn = blk.attn
        mlp = None if self.model.cfg.attn_only else blk.mlp
        return BlockWeights(
            attn.W_Q, attn.W_K, attn.W_V, attn.W_O, attn.b_Q, attn.b_K, attn.b_V, attn.b_O,
            W_in=getattr(mlp, "W_in", None), b_in=getattr(mlp, "b_in", None), W_out=getattr(mlp, "W_out", None),
            b_out=getattr(mlp, "b_out", None), W_gate=getattr(mlp, "W_gate", None))

    def kv_weights(
        self, layer: int
    ) -> tuple[Float[Tensor, "kv_head d_model d_head"], Float[Tensor, "kv_head d_model d_head"],
               Float[Tensor, "kv_head d_head"], Float[Tensor, "kv_head d_head"]]:
        attn = self.model.blocks[layer].attn
        if hasattr(attn, "_W_K") and not getattr(self.model.cfg, "ungroup_grouped_query_attention", False):
            return attn._W_K, attn._W_V, attn._b_K, attn._b_V  # grouped-query attention: one per key/value head
        return attn.W_K, attn.W_V, attn.b_K, attn.b_V

    def rotary_tables(self, layer: int
                      ) -> tuple[Float[Tensor, "n_ctx rotary_dim"], Float[Tensor, "n_ctx rotary_dim"]] | None:
        attn = self.model.blocks[layer].attn
        sin, cos = getattr(attn, "rotary_sin", None), getattr(attn, "rotary_cos", None)
        return None if sin is None or cos is None else (sin, cos)

    def attn_scale(self, layer: int) -> float:
        return self.model.blocks[layer].attn.attn_scale

    def post_norm(self, layer: int, which: str, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        return getattr(self.model.blocks[layer], which)(x[None])[0]

    def qk_norm(self, layer: int, which: str, x: Float[Tensor, "*rows d_head"]) -> Float[Tensor, "*rows d_head"]:
        module = getattr(self.model.blocks[layer].attn, f"{which}_norm")
        return module(x.reshape(-1, x.shape[-1])).reshape(x.shape)  # as ``_apply_qk_norm`` does

    def attn_window(self, layer: int) -> int | None:
        attn = self.model.blocks[layer].attn
        return self.model.cfg.window_size if getattr(attn, "attn_type", "global") == "local" else None

    def block_norm(self, layer: int, which: str, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        module = getattr(self.model.blocks[layer], which)
        name = type(module).__name__
        if name == "LayerNorm":
            return F.layer_norm(x, (x.shape[-1],), module.w, module.b, module.eps)
        if name == "LayerNormPre":
            return F.layer_norm(x, (x.shape[-1],), None, None, module.eps)
        return module(x[None])[0]

    def norm_params(self, layer: int, which: str) -> tuple[Float[Tensor, " d_model"] | None, float]:
        module = getattr(self.model.blocks[layer], which)
        return getattr(module, "w", None), float(getattr(module, "eps", self.model.cfg.eps))

    def mlp(self, layer: int, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        import torch

        from ._activations import ACTIVATIONS

        mlp = self.model.blocks[layer].mlp
        act = ACTIVATIONS.get(self.model.cfg.act_fn) if type(mlp).__name__ == "MLP" else None
        if act is None or self.model.cfg.is_layer_norm_activation():
            return mlp(x[None])[0]
        return torch.addmm(mlp.b_out, act(torch.addmm(mlp.b_in, x, mlp.W_in)), mlp.W_out)

    def fast_unsupported(self) -> list[str]:
        if any(type(b.attn).__name__ not in ("Attention", "GroupedQueryAttention") or getattr(b.attn, "attn_type", "global") not in ("global", "local")
               for b in self.model.blocks):
            return ["non-standard attention layers"]
        return []
