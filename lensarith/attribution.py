"""Direct logit attribution: each component's share of a logit or logit difference.

The final LayerNorm is linear once its scale is frozen from the run:
``LN(x) = (x - mean(x)) / scale * w + b``. Each component ``c`` contributes
``((c - mean(c)) / scale * w) @ W_U[:, t]``; the ``final_bias`` component holds
``b @ W_U[:, t] + b_U[t]``. The contributions sum exactly to the model's logit (or
logit difference). Unlike ``ActivationCache.logit_attrs``, the LayerNorm weight ``w`` is
applied, so unfolded models attribute correctly too.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ._types import Model
from .core import Result, Site, as_batch, provenance, readout, register_recipe, resolve_ids
from .decompose import Granularity, components

__all__ = ["direct_logit_attribution", "DLAResult"]


class DLAResult(Result):
    """``attributions`` ``[component, batch]`` summing to ``total`` ``[batch]``."""

    kind = "dla"

    @property
    def attributions(self) -> Float[Tensor, "component batch"]:
        return self.tensors["attributions"]

    @property
    def total(self) -> Float[Tensor, " batch"]:
        return self.tensors["total"]

    @property
    def component_labels(self) -> list[str]:
        return self.labels["component"]

    def mean(self) -> dict[str, float]:
        """Mean attribution per component label."""
        return dict(zip(self.component_labels, self.attributions.mean(-1).tolist()))

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` components with the largest mean absolute attribution."""
        means = self.attributions.mean(-1)
        order = means.abs().argsort(descending=True)[:k]
        return [(self.component_labels[i], float(means[i])) for i in order]


@register_recipe("direct_logit_attribution")
def direct_logit_attribution(
    model: Model,
    prompts,
    answers=None,
    baselines=None,
    *,
    granularity: Granularity = "layer",
    position: int | str = "last",
    batch_size: int = 32,
    progress: bool | None = None,
) -> DLAResult:
    """Attribute ``logit(answer)`` or ``logit(answer) - logit(baseline)`` to components.

    Args:
        model: a HookedTransformer.
        prompts: strings, ``Example`` objects, token ids or a ``Batch``.
        answers: one token per prompt (strings, ids, a tensor ``[batch]``); default: the
            prompts' answers. ``"argument"`` uses the prompts' arguments.
        baselines: one token per prompt to subtract (e.g. ``"argument"`` for the paper's
            answer - argument direction), or None for the plain logit.
        granularity: ``layer``, ``head`` or ``neuron`` (see ``decompose_resid``).
        position: the position read (default each prompt's last token).
        batch_size: prompts per forward.
        progress: show a progress bar.

    Returns:
        A ``DLAResult``: ``attributions [component, batch]`` (the last component is
        ``final_bias``: LayerNorm bias and unembedding bias) summing to ``total`` — the
        model's actual logit (difference) at that position.

    Example:
        >>> dla = direct_logit_attribution(model, build_prompts("capitals", n=4), baselines="argument")
        >>> dla.component_labels, bool((dla.attributions.sum(0) - dla.total).abs().max() < 1e-4)
        (['embed', 'pos_embed', 'L0_attn', 'L0_mlp', 'L1_attn', 'L1_mlp', 'final_bias'], True)
    """
    batch = as_batch(model, prompts)
    batch.positions(position)
    dev = model.cfg.device
    ans = resolve_ids(model, batch, "answer" if answers is None else answers, "answers").to(dev)
    base = None if baselines is None else resolve_ids(model, batch, baselines, "baselines").to(dev)
    n = model.cfg.n_layers
    read = Site("resid_post", n - 1, position)
    stack, labels, resid = components(model, batch, n_attn=n, n_mlp=n, granularity=granularity, position=position,
                                      batch_size=batch_size, read=read, progress=progress)
    with torch.no_grad():
        normed, bias = readout.frozen_final_norm(model, stack, resid)
        direction, b_u = readout.directions(model, ans)
        if base is not None:
            d_base, b_base = readout.directions(model, base)
            direction, b_u = direction - d_base, b_u - b_base
        attrs = (normed * direction).sum(-1)
        final_bias = (bias * direction).sum(-1) + b_u
        attrs = torch.cat([attrs, final_bias[None]])
        logits = readout.unembed(model, readout.final_norm(model, resid), capped=False)  # DLA is linear before a soft cap
        rows = torch.arange(len(batch))
        total = logits[rows, ans] - (logits[rows, base] if base is not None else 0.0)
    meta = provenance(model, recipe="direct_logit_attribution", granularity=granularity, position=position,
                      difference=base is not None)
    return DLAResult({"attributions": attrs.float().cpu(), "total": total.float().cpu(),
                      "answer_ids": ans.cpu(), **({"baseline_ids": base.cpu()} if base is not None else {})},
                     {"attributions": ("component", "batch"), "total": ("batch",), "answer_ids": ("batch",),
                      **({"baseline_ids": ("batch",)} if base is not None else {})},
                     {"component": labels + ["final_bias"]}, meta)
