"""The hooks engine: a patching hook on a batch of sites per forward, started at the patched layer.

It works for every TransformerLens architecture and honours hooks already on the model;
``"auto"`` falls back to it when the fast engine does not apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from .._errors import LensarithError
from ..core import Batch, Hook, Site, run
from ..core.backends import Backend
from ..core.run import can_resume
from ._grid import HEAD_SITES, Grid, chunk_jobs
from ._runs import Run

__all__ = ["HookEngine"]


class HookEngine:
    """Patching hooks on a batch of sites per forward, started at the patched layer."""

    #: what ``activation_patch`` records in ``meta["engine"]``
    name = "hooks"

    def __init__(self, backend: Backend, grid: Grid, base_batch: Batch, base: Run, src: Run, read: Tensor) -> None:
        self.backend, self.grid, self.base, self.src = backend, grid, base, src
        self.batch, self.read = base_batch, read.to(backend.cfg.device)
        # A cached residual can seed the run unless the model's own hooks would apply twice.
        self.from_resid = can_resume(backend)

    @staticmethod
    def sites(backend: Backend, grid: Grid) -> tuple[list[Site], list[Site]]:
        """Sites to record in the base run and in the source run."""
        return [Site("resid_pre", layer) for layer in grid.layers], [Site(grid.site, layer) for layer in grid.layers]

    def tokens_per_job(self, n_batch: int) -> int:
        return n_batch * self.batch.tokens.shape[1]

    def chunks(self, n_batch: int, budget: int) -> list[list[int]]:
        """The grid's jobs in forwards of at most ``budget`` token positions: a chunk starting mid-stack
        holds one layer; from the tokens (hooks already on the model, a backend that cannot start
        mid-stack) any layers share a forward, so a sweep takes fewer forwards."""
        grid = self.grid
        same = (lambda i: grid.jobs[i][0]) if self.from_resid else (lambda i: 0)  # noqa: E731
        return chunk_jobs(list(range(len(grid.jobs))), lambda i: self.tokens_per_job(n_batch), budget, same)

    def run(self, ids: Sequence[int]) -> Float[Tensor, "job batch d_model"]:
        """One forward for the jobs ``ids``: one layer when the run starts from the cached residual,
        any mix of layers otherwise (each layer's hook edits its own jobs' rows)."""
        grid = self.grid
        layers = sorted({grid.jobs[i][0] for i in ids})
        if len(layers) > 1 and self.from_resid:
            raise LensarithError("internal: a hooks-engine chunk that starts mid-stack must hold one layer")  # pragma: no cover
        B, J = len(self.batch), len(ids)
        dev = self.read.device
        hooks = [Hook(Site(grid.site, layer), self._patch(ids, [j for j, i in enumerate(ids) if grid.jobs[i][0] == layer],
                                                          layer, J * B)) for layer in layers]
        tiled = self.batch.tile(J)
        layer = layers[0]
        start = (layer, self.base.acts[Site("resid_pre", layer).hook_name].repeat(J, 1, 1)) if self.from_resid else None
        out = run(self.backend, tiled, interventions=hooks, start=start, read=self.read.repeat(J))
        return out.final.view(J, B, -1)

    def _patch(self, ids: Sequence[int], chosen: list[int], layer: int, n_rows: int):
        """The hook patching the rows of jobs ``chosen`` (indices into ``ids``) at ``layer``."""
        grid, B, dev = self.grid, len(self.batch), self.read.device
        heads = torch.tensor([grid.jobs[i][1] if grid.jobs[i][1] is not None else 0 for i in ids], device=dev)
        pos = torch.tensor([grid.jobs[i][2] if grid.jobs[i][2] is not None else 0 for i in ids], device=dev)
        sel = torch.tensor(chosen, device=dev)
        rows = (sel[:, None] * B + torch.arange(B, device=dev)).flatten()
        job_of, ex_of = rows // B, rows % B
        site = Site(grid.site, layer)
        source = self.src.acts[site.hook_name]
        per_head, all_pos = grid.site in HEAD_SITES, grid.all_positions
        J = n_rows // B

        def patch(act: Tensor, hook) -> Tensor:
            if act.shape[0] != J * B:
                raise LensarithError(f"patching hook at {site.hook_name}: expected {J * B} rows, got {tuple(act.shape)}")
            act = act.clone()
            src = source.to(act.dtype)
            if per_head and all_pos:
                act[rows, :, heads[job_of]] = src[ex_of, :, heads[job_of]]
            elif per_head:
                act[rows, pos[job_of], heads[job_of]] = src[ex_of, pos[job_of], heads[job_of]]
            else:
                act[rows, pos[job_of]] = src[ex_of, pos[job_of]]
            return act

        return patch
