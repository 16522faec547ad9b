"""Batched forwards that keep only the slices a readout needs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .interventions import Capture, Intervention, intervene
from .sites import Site
from .tasks import Batch


def collect(
    model,
    batch: Batch,
    sites: Sequence[Site],
    *,
    interventions: Sequence[Intervention] = (),
    stop_at_layer: int | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
    desc: str = "forward",
) -> dict[Site, Tensor]:
    """Run ``batch`` in chunks and return the captured slices, concatenated over rows.

    Sites must have a position (per-row slices concatenate; whole activations would not).
    The forward stops at ``stop_at_layer`` (default: after the last block, before the
    unembedding, which no readout here needs for every position).
    """
    sites = [s.resolve(model.cfg) for s in sites]
    parts: dict[Site, list[Tensor]] = {s: [] for s in sites}
    stop = model.cfg.n_layers if stop_at_layer is None else stop_at_layer
    # Sort rows by length so each chunk carries little padding; undo the order at the end.
    order = torch.argsort(batch.lengths, stable=True)
    chunks = list(batch.take(order).chunks(batch_size))
    show = len(chunks) > 4 if progress is None else progress
    with torch.no_grad():
        for chunk in tqdm(chunks, desc=desc, disable=not show, leave=False):
            cap = Capture(sites)
            with intervene(model, interventions, chunk, extra_hooks=cap.hooks(chunk)):
                model(chunk.tokens.to(model.cfg.device), stop_at_layer=stop)
            for s in sites:
                parts[s].append(cap.captured[s])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    return {s: torch.cat(v)[inverse.to(v[0].device)] for s, v in parts.items()}
