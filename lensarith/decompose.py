"""Residual-stream decomposition: the residual at one point is the sum of its writers.

``resid = embed + pos_embed + sum(attention outputs) + sum(MLP outputs)``, split per
layer, per head (plus each layer's ``b_O``) or per neuron (plus each layer's ``b_out``).
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from ._errors import LensarithError
from ._types import Model
from .core import Batch, Result, Site, as_batch, check_layer, collect, provenance, register_recipe
from .core.backends import backend_of

__all__ = ["decompose_resid", "DecompositionResult", "Granularity"]

Granularity = Literal["layer", "head", "neuron"]
ResidStream = Literal["resid_pre", "resid_mid", "resid_post"]


class DecompositionResult(Result):
    """Components ``[component, batch, d_model]`` that sum to ``resid`` ``[batch, d_model]``."""

    kind = "decomposition"

    @property
    def components(self) -> Float[Tensor, "component batch d_model"]:
        return self.tensors["components"]

    @property
    def resid(self) -> Float[Tensor, "batch d_model"]:
        return self.tensors["resid"]

    @property
    def component_labels(self) -> list[str]:
        return self.labels["component"]

    def relative_error(self) -> float:
        """``|sum(components) - resid| / |resid|``, the largest over the batch."""
        diff = (self.components.sum(0) - self.resid).norm(dim=-1)
        return float((diff / self.resid.norm(dim=-1).clamp_min(1e-12)).max())


def _n_blocks(stream: str, layer: int) -> tuple[int, int]:
    """How many attention and MLP layers have written to ``stream`` at ``layer``."""
    if stream == "resid_pre":
        return layer, layer
    if stream == "resid_mid":
        return layer + 1, layer
    if stream == "resid_post":
        return layer + 1, layer + 1
    raise LensarithError(f"stream must be 'resid_pre', 'resid_mid' or 'resid_post', got {stream!r}")


def components(
    model: Model, batch: Batch, *, n_attn: int, n_mlp: int, granularity: str, position, batch_size: int,
    read: Site, progress: bool | None = None,
) -> tuple[Float[Tensor, "component batch d_model"], list[str], Float[Tensor, "batch d_model"]]:
    """The writers to the residual at ``read``: (stack [C, B, d_model], labels, resid [B, d_model])."""
    cfg = model.cfg
    if granularity not in ("layer", "head", "neuron"):
        raise LensarithError(f"granularity must be 'layer', 'head' or 'neuron', got {granularity!r}")
    if cfg.positional_embedding_type not in ("standard", "rotary", "shortformer", "alibi"):
        raise LensarithError(f"unsupported positional embedding {cfg.positional_embedding_type!r}")
    has_pos = cfg.positional_embedding_type == "standard"
    sites = [Site("embed", None, position)] + ([Site("pos_embed", None, position)] if has_pos else [])
    attn_site = "z" if granularity == "head" else "attn_out"
    mlp_site = "mlp_post" if granularity == "neuron" else "mlp_out"
    sites += [Site(attn_site, layer, position) for layer in range(n_attn)]
    if not cfg.attn_only:
        sites += [Site(mlp_site, layer, position) for layer in range(n_mlp)]
    sites.append(read)
    stop = min(max(n_attn, n_mlp, read.layer + 1 if read.layer is not None else 0), cfg.n_layers)
    got = collect(model, batch, sites, stop_at_layer=stop, batch_size=batch_size, progress=progress, desc="decompose")

    parts: list[Tensor] = [got[sites[0]]]
    labels = ["embed"]
    if has_pos:
        parts.append(got[sites[1]])
        labels.append("pos_embed")
    backend = backend_of(model)
    writers: list[tuple[int, str]] = sorted(
        [(layer, "attn") for layer in range(n_attn)] + ([] if cfg.attn_only else [(layer, "mlp") for layer in range(n_mlp)]),
        key=lambda t: (t[0], t[1] == "mlp"),
    )
    with torch.no_grad():
        for layer, kind in writers:
            if kind == "attn":
                act = got[Site(attn_site, layer, position)]
                if granularity == "head":
                    weights = backend.block(layer)
                    W_O, b_O = weights.W_O, weights.b_O
                    heads = torch.einsum("bhd,hdm->hbm", act, W_O)
                    parts += list(heads) + [b_O.expand_as(heads[0])]
                    labels += [f"L{layer}H{h}" for h in range(cfg.n_heads)] + [f"L{layer}_attn_bias"]
                else:
                    parts.append(act)
                    labels.append(f"L{layer}_attn")
            else:
                act = got[Site(mlp_site, layer, position)]
                if granularity == "neuron":
                    weights = backend.block(layer)
                    W_out, b_out = weights.W_out, weights.b_out
                    neurons = torch.einsum("bn,nm->nbm", act, W_out)
                    parts += list(neurons) + [b_out.expand_as(neurons[0])]
                    labels += [f"L{layer}N{n}" for n in range(neurons.shape[0])] + [f"L{layer}_mlp_bias"]
                else:
                    parts.append(act)
                    labels.append(f"L{layer}_mlp")
    return torch.stack(parts).detach(), labels, got[read]


@register_recipe("decompose_resid")
def decompose_resid(
    model: Model,
    prompts,
    *,
    layer: int | None = None,
    stream: str = "resid_pre",
    granularity: str = "layer",
    position: int | str = "last",
    batch_size: int = 32,
    progress: bool | None = None,
) -> DecompositionResult:
    """Split the residual stream at ``(stream, layer)`` into the contributions of its writers.

    Args:
        model: a HookedTransformer (standard, rotary or attention-only).
        prompts: strings, ``Example`` objects, token ids or a ``Batch``.
        layer: the block; ``None`` means the final residual (``resid_post`` of the last
            layer). Negative counts from the end.
        stream: ``resid_pre``, ``resid_mid`` or ``resid_post`` of ``layer``.
        granularity: ``layer`` (one attention and one MLP term per layer), ``head`` (each
            head's ``z @ W_O`` and the layer's ``b_O``) or ``neuron`` (each neuron's
            ``post * W_out`` and the layer's ``b_out``).
        position: ``"last"``, a negative offset from each prompt's last token, or absolute.
        batch_size: prompts per forward.
        progress: show a progress bar.

    Returns:
        A ``DecompositionResult``: ``components`` sum to ``resid`` (float rounding only).

    Example:
        >>> dec = decompose_resid(model, build_prompts("capitals", n=4), granularity="head")
        >>> dec.component_labels[:4], dec.relative_error() < 1e-5
        (['embed', 'pos_embed', 'L0H0', 'L0H1'], True)
    """
    batch = as_batch(model, prompts)
    batch.positions(position)
    n = model.cfg.n_layers
    if layer is None:
        layer, stream = n - 1, "resid_post"
    layer = check_layer(model, layer)
    n_attn, n_mlp = _n_blocks(stream, layer)
    read = Site(stream, layer, position)
    stack, labels, resid = components(model, batch, n_attn=n_attn, n_mlp=n_mlp, granularity=granularity,
                                      position=position, batch_size=batch_size, read=read, progress=progress)
    meta = provenance(model, recipe="decompose_resid", layer=layer, stream=stream, granularity=granularity,
                      position=position, hook=read.hook_name)
    return DecompositionResult({"components": stack.float().cpu(), "resid": resid.float().cpu()},
                               {"components": ("component", "batch", "d_model"), "resid": ("batch", "d_model")},
                               {"component": labels}, meta)
