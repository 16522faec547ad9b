"""TransformerLens 4.x ``TransformerBridge``.

What differs from ``HookedTransformer`` and how this backend handles it:

- ``bridge(x, stop_at_layer=n_layers)`` returns logits (there is no block ``n``), and a
  bridge's own stop fires ``hook_resid_pre`` of the stop block first. So the forward stops
  itself: a PyTorch pre-hook on ``blocks.{stop}.hook_resid_pre`` (or a hook on
  ``blocks.{n-1}.hook_resid_post``) raises with the residual, after every hook of the layers
  before and before any hook of the stop layer, as ``HookedTransformer`` stops.
- ``start_at_layer`` still runs the blocks before it (on a placeholder input), and for some
  architectures (BLOOM) its re-entry through ``inputs_embeds`` changes the numbers. So a
  forward from a residual runs placeholder tokens and swaps the residual in at the start
  block's ``hook_resid_pre`` (a pre-hook): exact, but no compute is saved
  (no ``Capability.START_MID_STACK``: the core then runs such groups from tokens).
- The bridge wires its own capture hooks on its norm modules during the first forward; they
  are not a user's hooks.
- ``attn.attn_scale`` does not exist, and missing biases are None: computed / zero-filled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ..._errors import LensarithError
from ...models._version import tl_version
from ._activations import ACTIVATIONS
from ._base import Backend, BlockWeights, Capability, HookFn, RecomputesBlocks

__all__ = ["BridgeBackend"]

#: architectures whose blocks the fast patching engine recomputes from TL-layout weights
#: (checked against the bridge's own forward in tests/test_backends.py)
FAST_ARCHITECTURES = ("TransformerLensNative", "GPT2LMHeadModel")


class _Stopped(Exception):
    """Raised by the stop hook with the residual; caught by ``BridgeBackend._run``."""

    def __init__(self, value: Tensor) -> None:
        super().__init__("lensarith stop")
        self.value = value


def _raise_with(value: Tensor) -> None:
    raise _Stopped(value)


#: a bridge's ``hook_resid_mid`` is the input of ``ln2``: what a hook writes there reaches the MLP
#: but not the residual the block adds the MLP output to
_RESID_MID = re.compile(r"blocks\.(\d+)\.hook_resid_mid")


def _carrying(fn: HookFn, deltas: list[Tensor]) -> HookFn:
    """``fn`` at ``hook_resid_mid``, remembering what it changed (for ``hook_resid_post``)."""

    def hook(act: Tensor, hook) -> Tensor | None:
        new = fn(act, hook)
        if new is not None and new is not act:
            deltas.append(new - act)
        return new

    return hook


def _add_carried(deltas: list[Tensor]) -> HookFn:
    """At ``hook_resid_post``: add what the ``hook_resid_mid`` hooks changed, so a write to
    ``resid_mid`` changes the residual stream as on ``HookedTransformer``."""

    def hook(act: Tensor, hook) -> Tensor | None:
        if not deltas:
            return None
        out = act + sum(deltas)
        deltas.clear()
        return out

    return hook


def _hook_fns(module: torch.nn.Module):
    for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
        table = getattr(module, attr, None) or {}
        for key, fn in table.items():
            yield table, key, fn


class BridgeBackend(Backend, RecomputesBlocks):
    """``TransformerBridge`` (TransformerLens 4.x) over a Hugging Face or a TL-native model."""

    capabilities = frozenset({Capability.GRADIENTS, Capability.RECOMPUTE_BLOCKS, Capability.TL_MODULES})

    def __init__(self, model) -> None:
        super().__init__(model)
        self.name = f"bridge-{tl_version()}"

    # ---- forwards
    def _run(self, tokens: Tensor, stop: int, start: tuple[int, Tensor] | None = None) -> Tensor:
        model, n = self.model, self.model.cfg.n_layers
        if not 0 <= stop <= n:
            raise LensarithError(f"stop layer {stop} is outside 0..{n}")
        handles = []
        try:
            if start is not None:
                layer, x = start
                if not 0 <= layer < stop:
                    raise LensarithError(f"start layer {layer} must be below the stop layer {stop}")
                point = model.hook_dict[f"blocks.{layer}.hook_resid_pre"]
                handles.append(point.register_forward_pre_hook(lambda m, args: (x, *args[1:])))
            if stop == n:
                point = model.hook_dict[f"blocks.{n - 1}.hook_resid_post"]
                handles.append(point.register_forward_hook(lambda m, args, out: _raise_with(out)))
            else:
                point = model.hook_dict[f"blocks.{stop}.hook_resid_pre"]
                handles.append(point.register_forward_pre_hook(lambda m, args: _raise_with(args[0])))
            try:
                model(tokens, return_type=None)
            except _Stopped as got:
                return got.value
        finally:
            for h in handles:
                h.remove()
        raise LensarithError(f"internal: the bridge's forward ended without reaching layer {stop}")  # pragma: no cover

    def forward(self, tokens: Int[Tensor, "batch pos"], *, stop: int) -> Float[Tensor, "batch pos d_model"]:
        return self._run(tokens, stop)

    def forward_from(self, x: Float[Tensor, "batch pos d_model"], *, start: int, stop: int
                     ) -> Float[Tensor, "batch pos d_model"]:
        placeholder = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
        return self._run(placeholder, stop, (start, x))

    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]) -> AbstractContextManager:
        """``model.hooks``; a hook that writes ``hook_resid_mid`` also moves the block's output by
        what it wrote (a carrier hook at ``hook_resid_post``, ahead of this call's other hooks there)."""
        carry: dict[int, list[Tensor]] = {}
        wrapped: list[tuple[str, HookFn]] = []
        for name, fn in fwd_hooks:
            match = _RESID_MID.fullmatch(name)
            if match is not None:
                fn = _carrying(fn, carry.setdefault(int(match.group(1)), []))
            wrapped.append((name, fn))
        carriers = [(f"blocks.{layer}.hook_resid_post", _add_carried(deltas)) for layer, deltas in carry.items()]
        return self.model.hooks(fwd_hooks=carriers + wrapped)

    def has_hook(self, name: str) -> bool:
        return name in self.model.hook_dict

    def _owned(self) -> set[tuple[int, int]]:
        """(hook table, key) of the capture hooks the bridge's blocks installed themselves."""
        owned = set()
        for module in self.model.modules():
            for handle in getattr(module, "_capture_hook_handles", None) or ():
                ref = getattr(handle, "hooks_dict_ref", None)
                table = ref() if callable(ref) else None
                if table is not None:
                    owned.add((id(table), handle.id))
        return owned

    def has_user_hooks(self) -> bool:
        from transformer_lens.hook_points import HookPoint

        owned = self._owned()
        for module in self.model.modules():
            for table, key, fn in _hook_fns(module):
                if (id(table), key) in owned:
                    continue
                if not isinstance(module, HookPoint) and str(getattr(fn, "__module__", "")).startswith(
                        "transformer_lens.model_bridge."):
                    continue  # the bridge's own wiring on its component modules
                return True
        return False

    # ---- readout
    def final_norm_weights(self) -> tuple[Float[Tensor, " d_model"] | None, Float[Tensor, " d_model"] | None]:
        return self._norm_params(self.model.ln_final)

    @staticmethod
    def _norm_params(module) -> tuple[Tensor | None, Tensor | None]:
        inner = getattr(module, "original_component", None) or module
        return getattr(inner, "weight", None), getattr(inner, "bias", None)

    # ---- block internals
    def block(self, layer: int) -> BlockWeights:
        cfg = self.model.cfg
        blk = self.model.blocks[layer]
        attn = blk.attn
        H, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model

        def heads(w: Tensor | None, shape: tuple[int, ...]) -> Tensor:
            if w is None:
                ref = attn.W_Q
                return torch.zeros(shape, dtype=ref.dtype, device=ref.device)
            if w.shape[0] != H:  # grouped-query attention: expand K/V to every query head
                w = torch.repeat_interleave(w, H // w.shape[0], dim=0)
            return w

        W_Q = attn.W_Q
        mlp = None if cfg.attn_only else blk.mlp

        def opt(name: str, size: int | None = None) -> Tensor | None:
            if mlp is None:
                return None
            try:
                w = getattr(mlp, name)
            except AttributeError:
                w = None
            if w is None and size is not None:
                w = torch.zeros(size, dtype=W_Q.dtype, device=W_Q.device)
            return w

        W_in = opt("W_in")
        d_mlp = W_in.shape[-1] if W_in is not None else None
        return BlockWeights(
            W_Q, heads(attn.W_K, (H, d, dh)), heads(attn.W_V, (H, d, dh)), attn.W_O,
            heads(attn.b_Q, (H, dh)), heads(attn.b_K, (H, dh)), heads(attn.b_V, (H, dh)),
            attn.b_O if attn.b_O is not None else torch.zeros(d, dtype=W_Q.dtype, device=W_Q.device),
            W_in=W_in, b_in=opt("b_in", d_mlp), W_out=opt("W_out"), b_out=opt("b_out", d) if mlp is not None else None,
            W_gate=opt("W_gate"))

    def attn_scale(self, layer: int) -> float:
        cfg = self.model.cfg
        scale = getattr(cfg, "attn_scale", -1.0)
        if scale is None or scale <= 0:
            scale = math.sqrt(cfg.d_head) if getattr(cfg, "use_attn_scale", True) else 1.0
        if getattr(cfg, "scale_attn_by_inverse_layer_idx", False):
            scale = scale * (layer + 1)
        return scale

    def block_norm(self, layer: int, which: str, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        module = getattr(self.model.blocks[layer], which)
        norm = self.model.cfg.normalization_type
        w, b = self._norm_params(module)
        inner = getattr(module, "original_component", None) or module
        eps = getattr(inner, "eps", None) or getattr(inner, "variance_epsilon", None) or self.model.cfg.eps
        if norm == "LN":
            return F.layer_norm(x, (x.shape[-1],), w, b, eps)
        if norm == "LNPre":
            return F.layer_norm(x, (x.shape[-1],), None, None, eps)
        if norm in ("RMS", "RMSPre"):
            out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            return out * w if norm == "RMS" and w is not None else out
        if norm is None:
            return x
        return module(x[None])[0]

    def norm_params(self, layer: int, which: str) -> tuple[Float[Tensor, " d_model"] | None, float]:
        module = getattr(self.model.blocks[layer], which)
        w, _ = self._norm_params(module)
        inner = getattr(module, "original_component", None) or module
        eps = getattr(inner, "eps", None) or getattr(inner, "variance_epsilon", None) or self.model.cfg.eps
        return (w if self.model.cfg.normalization_type in ("LN", "RMS") else None), float(eps)

    def mlp(self, layer: int, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
        blk = self.block(layer)
        act = ACTIVATIONS[self.model.cfg.act_fn]
        return torch.addmm(blk.b_out, act(torch.addmm(blk.b_in, x, blk.W_in)), blk.W_out)

    def fast_unsupported(self) -> list[str]:
        cfg = self.model.cfg
        arch = getattr(cfg, "architecture", None)
        out = []
        if arch not in FAST_ARCHITECTURES:
            out.append(f"a TransformerBridge over {arch or 'an unknown architecture'} (the fast engine recomputes "
                       f"blocks of {', '.join(FAST_ARCHITECTURES)} only)")
        if getattr(cfg, "gated_mlp", False) or (not cfg.attn_only and cfg.act_fn not in ACTIVATIONS):
            out.append("an MLP the fast engine does not recompute")
        if cfg.normalization_type not in ("LN", "LNPre", "RMS", "RMSPre", None):
            out.append(f"{cfg.normalization_type} block norms on a TransformerBridge")
        if getattr(self.model, "compatibility_mode", False):
            out.append("compatibility mode (processed weights)")
        if cfg.positional_embedding_type != "standard":  # no rotary tables or ALiBi checked on the bridge yet
            out.append(f"{cfg.positional_embedding_type} positions on a TransformerBridge")
        if getattr(cfg, "parallel_attn_mlp", False):
            out.append("parallel attention and MLP on a TransformerBridge")
        if getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads):
            out.append("grouped-query attention on a TransformerBridge")
        return out
