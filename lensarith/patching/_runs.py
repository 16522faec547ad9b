"""The unpatched runs a sweep starts from, and scoring read residuals with a metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._types import Model
from ..core import Batch, Site, readout, run
from ._metrics import BoundMetric

__all__ = ["Run", "unpatched", "score"]


@dataclass
class Run:
    """Activations of one unpatched run: hook name -> ``[batch, pos, ...]``; final residual at the read."""

    acts: dict[str, Tensor]
    final: Tensor


def unpatched(model: Model, batch: Batch, sites: Sequence[Site], read: Int[Tensor, " batch"], *, grad: bool = False) -> Run:
    """One forward of ``batch`` recording the whole activations at ``sites`` (with the graph when ``grad``)."""
    out = run(model, batch, capture=list(dict.fromkeys(sites)), read=read, grad=grad)
    return Run({s.hook_name: t for s, t in out.captured.items()}, out.final)


def score(model: Model, bound: BoundMetric, resid: Float[Tensor, "variant batch d_model"], max_logits: int
          ) -> Float[Tensor, "variant batch"]:
    """Final norm, unembedding (only the metric's columns when it names them) and the metric."""
    x = readout.final_norm(model, resid)
    if bound.columns is not None:
        return bound.score(readout.unembed(model, x, bound.columns))
    step = max(1, max_logits // (x.shape[1] * model.cfg.d_vocab))
    return torch.cat([bound.score(readout.unembed(model, x[i : i + step])) for i in range(0, x.shape[0], step)])
