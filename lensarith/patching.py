"""Activation patching between clean and corrupted prompts: exact, batched; and attribution patching.

``activation_patch`` moves one activation from a source run into a base run, for every site
of a sweep (layer x position, layer x head, layer x head x position), and scores the
patched runs with a metric read at each example's last real token. Denoising patches
clean activations into the corrupted run; noising patches corrupted activations into the
clean run.

Two engines compute the same numbers:

- ``"fast"`` (the default where the architecture allows it) puts many sites on the batch
  axis and recomputes only what a patch can change. A patch at layer ``L`` and position
  ``p`` leaves every position before ``p`` and every layer before ``L`` as in the base run,
  so a patched run starts at layer ``L`` from the base run's residual, computes positions
  ``p..`` only (their attention reads the base run's keys and values for earlier
  positions), runs the last layer for the read position only (other positions contribute
  keys and values), and unembeds only the logit columns the metric reads. Sites that
  start at different layers share forwards: a site joins the batch at its layer.
  Patches after the attention of layer ``L`` (``attn_out``, ``resid_mid``, ``mlp_out``,
  ``resid_post``, heads) change only their own positions in that layer, so they enter as
  a patched residual at layer ``L + 1``.
- ``"hooks"``: a patching hook on a batch of sites per forward, started at the patched
  layer; it works for every TransformerLens architecture and honours hooks already on the
  model (``"auto"`` falls back to it when the fast engine does not apply).

``attribution_patch`` is the gradient approximation (two forwards and one backward for the
whole sweep): ``metric(patched) ~ metric(base) + (source - base) . d metric / d activation``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from ._errors import LensarithError
from ._patch_engine import (
    HEAD_SITES,
    POSITION_SITES,
    _fast_unsupported,
    _forward,
    _Grid,
    _FastEngine,
    _hook,
    _HookEngine,
    _score,
)
from .metrics import Metric, resolve_metric
from .models import check_layer
from .pairs import PromptPairs, _as_pairs, make_pairs, pair_examples
from .recipes import register_recipe
from .result import Result, provenance
from .sites import Site

__all__ = [
    "PromptPairs",
    "make_pairs",
    "pair_examples",
    "PatchConfig",
    "PatchResult",
    "AttributionPatchResult",
    "activation_patch",
    "attribution_patch",
    "PATCH_SITES",
]

PATCH_SITES: tuple[str, ...] = POSITION_SITES + HEAD_SITES


# --------------------------------------------------------------------------- config, grid, result


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
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise LensarithError(f"PatchConfig.max_tokens must be a positive int, got {self.max_tokens!r}")
        if self.engine not in ("auto", "fast", "hooks"):
            raise LensarithError(f"PatchConfig.engine must be 'auto', 'fast' or 'hooks', got {self.engine!r}")
        if not isinstance(self.max_logits, int) or self.max_logits < 1:
            raise LensarithError(f"PatchConfig.max_logits must be a positive int, got {self.max_logits!r}")


def _grid(model, pairs: PromptPairs, site: str, by_position: bool | None, layers, positions) -> _Grid:
    cfg = model.cfg
    if site not in PATCH_SITES:
        raise LensarithError(f"site={site!r} is not patchable; valid sites: {', '.join(PATCH_SITES)}")
    Site(site, 0).resolve(cfg)  # raises for 'result' without use_attn_result
    if Site(site, 0).hook_name not in model.hook_dict:
        raise LensarithError(f"site={site!r} does not exist on this model (attention-only models have no MLP sites)")
    if site in POSITION_SITES and by_position is False:
        raise LensarithError(f"site={site!r} is patched by position; by_position=False applies to head sites (z, result)")
    per_pos = site in POSITION_SITES or bool(by_position)
    if layers is None:
        layer_list = list(range(cfg.n_layers))
    else:
        layer_list = [check_layer(model, layer, name="layers") for layer in layers]
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
    return _Grid(site, axes, tuple(len(d) for d in dims), layer_list, heads, pos_list, jobs)


class PatchResult(Result):
    """Activation patching results on a labelled grid.

    Tensors:
        values: the metric per site, ``[layer, pos]``, ``[layer, head]`` or
            ``[layer, head, pos]`` (mean over pairs; ``recovery`` normalises the mean).
        per_example: the same with a trailing ``batch`` axis, one value per pair.
        clean, corrupted: ``[batch]`` the (base) metric on the unpatched clean and corrupted runs.
    """

    kind = "activation_patch"

    @property
    def values(self) -> Float[Tensor, "*grid"]:
        return self.tensors["values"]

    @property
    def per_example(self) -> Float[Tensor, "*grid batch"]:
        return self.tensors["per_example"]

    @property
    def clean(self) -> Float[Tensor, " batch"]:
        return self.tensors["clean"]

    @property
    def corrupted(self) -> Float[Tensor, " batch"]:
        return self.tensors["corrupted"]

    @property
    def grid_axes(self) -> tuple[str, ...]:
        return self.axes["values"]

    def top(self, k: int = 10) -> list[tuple[dict[str, str], float]]:
        """The ``k`` sites with the largest absolute value: ``({axis: label}, value)``."""
        flat = self.values.flatten()
        order = flat.abs().nan_to_num(-1.0).argsort(descending=True)[:k]
        out = []
        for i in order.tolist():
            idx = torch.unravel_index(torch.tensor(i), self.values.shape)
            where = {ax: str(self.labels.get(ax, list(range(n)))[int(j)]) for ax, j, n in
                     zip(self.grid_axes, idx, self.values.shape)}
            out.append((where, float(flat[i])))
        return out

    def plot(self, path=None, **kwargs):
        """A heatmap of ``values`` (see ``lensarith.viz.heatmap``); writes a PNG to ``path``."""
        from .viz.heatmap import heatmap

        return heatmap(self, path=path, **kwargs)


class AttributionPatchResult(PatchResult):
    """``PatchResult`` from ``attribution_patch``: a first-order estimate of patching."""

    kind = "attribution_patch"


def _labels(model, pairs: PromptPairs, grid: _Grid) -> dict[str, list]:
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


# --------------------------------------------------------------------------- the sweeps


def _setup(model, clean, corrupted, site, metric, direction, by_position, layers, positions):
    pairs = _as_pairs(model, clean, corrupted)
    if direction not in ("denoise", "noise"):
        raise LensarithError(f"direction must be 'denoise' (clean into corrupted) or 'noise' (corrupted into clean), "
                             f"got {direction!r}")
    grid = _grid(model, pairs, site, by_position, layers, positions)
    metric_ = resolve_metric(metric)
    bound = metric_.bind(model, pairs)
    dev = model.cfg.device
    clean_t, corrupt_t = pairs.clean.tokens.to(dev), pairs.corrupted.tokens.to(dev)
    base_t, src_t = (corrupt_t, clean_t) if direction == "denoise" else (clean_t, corrupt_t)
    return pairs, grid, metric_, bound, base_t, src_t


def _chunks(ids: list[int], cost: Callable[[int], int], budget: int, same: Callable[[int], object]) -> list[list[int]]:
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


def _result(cls, model, pairs, grid, metric_: Metric, raw, clean_raw, corrupt_raw, meta: dict) -> PatchResult:
    values, per_example = metric_.aggregate(raw, clean_raw, corrupt_raw)
    B = len(pairs)
    tensors = {
        "values": values.reshape(grid.shape).float().cpu(),
        "per_example": per_example.reshape(*grid.shape, B).float().cpu(),
        "clean": clean_raw.float().cpu(),
        "corrupted": corrupt_raw.float().cpu(),
    }
    axes = {"values": grid.axes, "per_example": (*grid.axes, "batch"), "clean": ("batch",), "corrupted": ("batch",)}
    info = provenance(model, site=grid.site, metric=metric_.describe(), layers=grid.layers, positions=grid.positions,
                      heads=grid.heads, n_pairs=B, pairs=pairs.report, **meta)
    return cls(tensors, axes, _labels(model, pairs, grid), info)


@register_recipe("activation_patch")
def activation_patch(
    model,
    clean,
    corrupted=None,
    *,
    site: str = "resid_pre",
    metric: Metric | str | Callable[[Tensor], Tensor] = "logit_diff",
    direction: str = "denoise",
    by_position: bool | None = None,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    progress: bool | None = None,
    config: PatchConfig | None = None,
) -> PatchResult:
    """Patch activations between clean and corrupted prompts at every site of a sweep.

    Args:
        model: a HookedTransformer.
        clean: the clean prompts (strings, ``Example`` objects, token ids, a ``Batch``), or
            ``PromptPairs`` from ``make_pairs`` / ``pair_examples`` (then ``corrupted=None``).
        corrupted: the corrupted prompts, aligned token by token with ``clean``.
        site: ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out``
            (swept over layer x position) or ``z`` / ``result`` (attention heads, swept over
            layer x head, or layer x head x position with ``by_position=True``).
        metric: ``"logit_diff"`` (clean answer minus corrupted answer), ``"recovery"``
            (0 = corrupted run, 1 = clean run), ``"answer_prob"``, ``"reciprocal_rank"``, a
            ``Metric`` or a callable ``logits [batch, d_vocab] -> [batch]``. Metrics read
            each pair's last real token.
        direction: ``"denoise"`` patches clean activations into the corrupted run;
            ``"noise"`` patches corrupted activations into the clean run.
        by_position: for head sites, sweep heads at each position (``[layer, head, pos]``)
            instead of all positions at once (``[layer, head]``).
        layers: the layers to sweep (default all; negative counts from the end).
        positions: the positions to sweep (default all of the prompts' width).
        progress: show a progress bar (default: for sweeps of more than a few forwards).
        config: ``PatchConfig`` (memory budget, engine).

    Returns:
        A ``PatchResult``: ``values`` on the grid, ``per_example`` with a trailing batch
        axis, and the metric on the unpatched ``clean`` and ``corrupted`` runs.

    Raises:
        LensarithError: misaligned prompts, an unknown site or metric, positions or layers
            out of range, a metric returning the wrong shape.

    Example:
        >>> pairs = pair_examples(model, build_prompts("capitals", n=40), n=8)  # doctest: +SKIP
        >>> res = activation_patch(model, pairs, site="resid_pre", metric="recovery")  # doctest: +SKIP
        >>> res.values.shape  # [layer, pos]  # doctest: +SKIP
    """
    cfg = config or PatchConfig()
    if not isinstance(cfg, PatchConfig):
        raise LensarithError(f"config must be a PatchConfig, got {type(cfg).__name__}")
    pairs, grid, metric_, bound, base_t, src_t = _setup(
        model, clean, corrupted, site, metric, direction, by_position, layers, positions)
    why = _fast_unsupported(model)
    if cfg.engine == "fast" and why is not None:
        raise LensarithError(f"engine='fast' does not support this model ({why}); use engine='hooks' or 'auto'")
    engine_name = "hooks" if cfg.engine == "hooks" or why is not None else "fast"
    read = pairs.read.to(model.cfg.device)
    B, width = len(pairs), base_t.shape[1]
    engine_cls = _FastEngine if engine_name == "fast" else _HookEngine
    base_names, src_names = engine_cls.hook_names(model, grid)
    base = _forward(model, base_t, base_names, read)
    src = _forward(model, src_t, src_names, read)
    with torch.no_grad():
        base_raw = _score(model, bound, base.final[None], cfg.max_logits)[0]
        src_raw = _score(model, bound, src.final[None], cfg.max_logits)[0]
    clean_raw, corrupt_raw = (src_raw, base_raw) if direction == "denoise" else (base_raw, src_raw)
    metric_.check(clean_raw, corrupt_raw)

    ids = list(range(len(grid.jobs)))
    if engine_name == "fast":
        engine = _FastEngine(model, grid, base, src, read, width)
        ids.sort(key=lambda i: (engine.start_layer(grid.jobs[i]), grid.jobs[i][2] or 0))
        chunks = _chunks(ids, lambda i: engine.tokens(grid.jobs[i], B), cfg.max_tokens, lambda i: 0)
    else:
        engine = _HookEngine(model, grid, base_t, base, src, read)
        chunks = _chunks(ids, lambda i: engine.tokens_per_job(B), cfg.max_tokens, lambda i: grid.jobs[i][0])
    raw = torch.empty(len(grid.jobs), B, device=base.final.device)
    show = len(chunks) > 3 if progress is None else progress
    with torch.no_grad(), tqdm(total=len(ids), desc=f"patching {grid.site}", unit="site", disable=not show,
                               leave=False) as bar:
        for chunk in chunks:
            final = engine.run(chunk)
            if engine_name == "fast" and not grid.all_positions:
                # A patch after the read position cannot change it (causal attention).
                late = torch.tensor([grid.jobs[i][2] for i in chunk], device=read.device)[:, None] > read[None]
                final = torch.where(late[..., None], base.final[None], final)
            raw[torch.tensor(chunk, device=raw.device)] = _score(model, bound, final, cfg.max_logits)
            bar.update(len(chunk))
    meta = {"recipe": "activation_patch", "direction": direction, "engine": engine_name,
            "hooks": [_hook(grid.site, layer) for layer in grid.layers]}
    return _result(PatchResult, model, pairs, grid, metric_, raw, clean_raw, corrupt_raw, meta)


@register_recipe("attribution_patch")
def attribution_patch(
    model,
    clean,
    corrupted=None,
    *,
    site: str = "resid_pre",
    metric: Metric | str | Callable[[Tensor], Tensor] = "logit_diff",
    direction: str = "denoise",
    by_position: bool | None = None,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    config: PatchConfig | None = None,
) -> AttributionPatchResult:
    """Attribution patching: the first-order estimate of ``activation_patch`` for a whole sweep.

    ``metric(patched) ~ metric(base) + (source - base) . grad``, with the gradient of the
    metric taken on the base run: two forwards and one backward, whatever the sweep size.
    Arguments are as for ``activation_patch``; the metric must be differentiable
    (``reciprocal_rank`` is not).

    Returns:
        An ``AttributionPatchResult`` on the same grid as ``activation_patch`` would give.

    Example:
        >>> att = attribution_patch(model, pairs, site="z", metric="logit_diff")  # [layer, head]  # doctest: +SKIP
    """
    cfg = config or PatchConfig()
    pairs, grid, metric_, bound, base_t, src_t = _setup(
        model, clean, corrupted, site, metric, direction, by_position, layers, positions)
    if not metric_.differentiable:
        raise LensarithError(f"metric={metric_.describe()!r} is piecewise constant, so its gradient is zero; use "
                             "'logit_diff', 'recovery' or 'answer_prob' for attribution_patch")
    read = pairs.read.to(model.cfg.device)
    names = [_hook(grid.site, layer) for layer in grid.layers]
    src = _forward(model, src_t, names, read)
    base = _forward(model, base_t, names, read, grad=True)
    base_raw = _score(model, bound, base.final[None], cfg.max_logits)[0]
    acts = [base.acts[name] for name in names]
    grads = torch.autograd.grad(base_raw.sum(), acts, allow_unused=True)
    with torch.no_grad():
        src_raw = _score(model, bound, src.final[None], cfg.max_logits)[0]
        attrs = {}
        for name, act, g in zip(names, acts, grads):
            g = torch.zeros_like(act) if g is None else g
            attrs[name] = ((src.acts[name] - act.detach()) * g).sum(-1)  # [B, W] or [B, W, H]
        B = len(pairs)
        est = torch.empty(len(grid.jobs), B, device=base_raw.device)
        for i, (layer, head, pos) in enumerate(grid.jobs):
            a = attrs[_hook(grid.site, layer)]
            if head is None:
                est[i] = a[:, pos]
            elif pos is None:
                est[i] = a[:, :, head].sum(1)
            else:
                est[i] = a[:, pos, head]
        base_raw = base_raw.detach()
        raw = base_raw[None] + est
    clean_raw, corrupt_raw = (src_raw, base_raw) if direction == "denoise" else (base_raw, src_raw)
    metric_.check(clean_raw, corrupt_raw)
    meta = {"recipe": "attribution_patch", "direction": direction, "engine": "gradient", "hooks": names}
    return _result(AttributionPatchResult, model, pairs, grid, metric_, raw, clean_raw, corrupt_raw, meta)
