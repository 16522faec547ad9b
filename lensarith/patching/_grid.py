"""The sites of a patching sweep: which layers, positions and heads, as a grid of jobs; and its config."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from .._errors import LensarithError, check_int
from .._types import Model
from ..core import Site, check_layer
from ..core.backends import Backend
from ._pairs import PromptPairs

__all__ = ["PatchConfig", "Grid", "build_grid", "chunk_jobs", "grid_labels", "hook", "POSITION_SITES", "HEAD_SITES",
           "PATCH_SITES"]

POSITION_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_SITES = ("z", "result")
PATCH_SITES: tuple[str, ...] = POSITION_SITES + HEAD_SITES


def hook(site: str, layer: int) -> str:
    """The TransformerLens hook name of a site kind at a layer."""
    return Site(site, layer).hook_name


@dataclass(frozen=True)
class PatchConfig:
    """Engine and memory settings of a patching sweep.

    Attributes:
        max_tokens: token positions processed per forward (the memory budget: activations
            scale with it; a GPT-2-small forward of 8192 positions needs about 0.5 GB).
        engine: ``"fast"`` (recompute only what a patch changes), ``"hooks"`` (a patching
            hook per forward; any architecture; honours hooks already on the model) or
            ``"auto"`` (fast where supported).
        max_logits: logit elements materialised at once for metrics that need the whole
            vocabulary (probabilities, ranks, callables).
    """

    max_tokens: int = 8192
    engine: Literal["auto", "fast", "hooks"] = "auto"
    max_logits: int = 1 << 24

    def __post_init__(self) -> None:
        check_int(self.max_tokens, "PatchConfig.max_tokens", minimum=1)
        if self.engine not in ("auto", "fast", "hooks"):
            raise LensarithError(f"PatchConfig.engine must be 'auto', 'fast' or 'hooks', got {self.engine!r}")
        check_int(self.max_logits, "PatchConfig.max_logits", minimum=1)


@dataclass(frozen=True)
class Grid:
    """The sites of a sweep: ``jobs[i] = (layer, head, pos)`` in row-major grid order."""

    site: str
    axes: tuple[str, ...]
    shape: tuple[int, ...]
    layers: list[int]
    heads: list[int] | None
    positions: list[int] | None
    jobs: list[tuple[int, int | None, int | None]]

    @property
    def all_positions(self) -> bool:
        return self.positions is None


def build_grid(backend: Backend, pairs: PromptPairs, site: str, by_position: bool | None, layers, positions) -> Grid:
    """The jobs ``(layer, head, pos)`` of a sweep, validated against the model (its backend) and the pairs."""
    cfg = backend.cfg
    if site not in PATCH_SITES:
        raise LensarithError(f"site={site!r} is not patchable; valid sites: {', '.join(PATCH_SITES)}")
    Site(site, 0).resolve(cfg)  # raises for 'result' without use_attn_result
    if site == "resid_mid" and cfg.parallel_attn_mlp:
        raise LensarithError("site='resid_mid' does not exist on this model: its attention and MLP run in parallel "
                             "from resid_pre (patch resid_pre, attn_out, mlp_out or resid_post)")
    if not backend.has_hook(Site(site, 0).hook_name) or (cfg.attn_only and site in ("resid_mid", "mlp_out")):
        why = backend.explain_missing(Site(site, 0).hook_name)
        raise LensarithError(why or f"site={site!r} does not exist on this model (attention-only models have no MLP sites)")
    if site in POSITION_SITES and by_position is False:
        raise LensarithError(f"site={site!r} is patched by position; by_position=False applies to head sites (z, result)")
    per_pos = site in POSITION_SITES or bool(by_position)
    if layers is None:
        layer_list = list(range(cfg.n_layers))
    else:
        layer_list = [check_layer(backend, layer, name="layers") for layer in layers]
        if not layer_list:
            raise LensarithError("layers is empty: give at least one layer, or None for all")
    width = pairs.clean.tokens.shape[1]
    pos_list = None
    if per_pos:
        if positions is None:
            pos_list = list(range(width))
        else:
            pos_list = []
            for p in positions:
                if not isinstance(p, int) or isinstance(p, bool) or not -width <= p < width:
                    raise LensarithError(
                        f"positions: {p!r} is out of range for prompts of {width} tokens; valid is 0..{width - 1} "
                        f"(or -{width}..-1 from the end)"
                    )
                pos_list.append(p % width)
            if not pos_list:
                raise LensarithError("positions is empty: give at least one position, or None for all")
    elif positions is not None:
        raise LensarithError("positions applies to by-position sweeps; pass by_position=True for heads by position")
    heads = list(range(cfg.n_heads)) if site in HEAD_SITES else None
    if site in POSITION_SITES:
        axes, dims = ("layer", "pos"), [layer_list, pos_list]
        jobs = [(layer, None, p) for layer, p in itertools.product(layer_list, pos_list)]
    elif per_pos:
        axes, dims = ("layer", "head", "pos"), [layer_list, heads, pos_list]
        jobs = list(itertools.product(layer_list, heads, pos_list))
    else:
        axes, dims = ("layer", "head"), [layer_list, heads]
        jobs = [(layer, h, None) for layer, h in itertools.product(layer_list, heads)]
    return Grid(site, axes, tuple(len(d) for d in dims), layer_list, heads, pos_list, jobs)


def chunk_jobs(ids: list[int], cost: Callable[[int], int], budget: int, same: Callable[[int], object]
               ) -> list[list[int]]:
    """Consecutive jobs ``ids`` in chunks whose summed ``cost`` stays within ``budget`` (a chunk has at
    least one job) and whose jobs agree on ``same``."""
    chunks: list[list[int]] = []
    used = 0
    for i in ids:
        c = cost(i)
        if chunks and used + c <= budget and same(chunks[-1][0]) == same(i):
            chunks[-1].append(i)
            used += c
        else:
            chunks.append([i])
            used = c
    return chunks


def grid_labels(model: Model, pairs: PromptPairs, grid: Grid) -> dict[str, list]:
    """Axis labels of a sweep's result: layers, heads, positions (with the first pair's tokens), prompts."""
    labels: dict[str, list] = {"layer": [str(layer) for layer in grid.layers]}
    if grid.heads is not None:
        labels["head"] = [str(h) for h in grid.heads]
    if grid.positions is not None:
        toks = pairs.clean.tokens[0].tolist()
        try:
            strs = model.to_str_tokens(torch.tensor(toks)) if model.tokenizer is not None else None
        except Exception:  # noqa: BLE001 - labels are cosmetic
            strs = None
        labels["pos"] = [f"{p}" if strs is None else f"{p} {strs[p]!s}".replace("\n", "\\n") for p in grid.positions]
    if pairs.clean.examples is not None:
        labels["batch"] = [e.prompt for e in pairs.clean.examples]
    return labels
