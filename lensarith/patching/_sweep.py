"""The sweeps: ``activation_patch`` (both engines) and ``attribution_patch``; their results."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from .._errors import LensarithError
from .._types import Model
from ..core import Result, Site, provenance, readout, register_recipe, run
from ..core.backends import Backend, backend_of
from ..core.progress import progress_bar
from ._atp import BUDGET, Trace, check_method, estimate, method_unsupported, node_key, qk_block, qk_costs
from ._fast import FastEngine, fast_unsupported
from ._grid import HEAD_SITES, PatchConfig, build_grid, grid_labels, hook
from ._hooks import HookEngine
from ._metrics import Metric, resolve_metric
from ._pairs import PromptPairs, as_pairs
from ._runs import score, unpatched

__all__ = ["PatchResult", "AttributionPatchResult", "activation_patch", "attribution_patch"]


# --------------------------------------------------------------------------- results


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


class AttributionPatchResult(PatchResult):
    """``PatchResult`` from ``attribution_patch``: a first-order estimate of patching."""

    kind = "attribution_patch"


# --------------------------------------------------------------------------- the sweeps


def _config(config) -> PatchConfig:
    if config is None:
        return PatchConfig()
    if not isinstance(config, PatchConfig):
        raise LensarithError(f"config must be a lensarith.PatchConfig (e.g. PatchConfig(engine='hooks')), got "
                             f"{type(config).__name__} {config!r:.80}")
    return config


def _setup(model, backend: Backend, clean, corrupted, site, metric, direction, by_position, layers, positions):
    pairs = as_pairs(model, clean, corrupted)
    if direction not in ("denoise", "noise"):
        raise LensarithError(f"direction must be 'denoise' (clean into corrupted) or 'noise' (corrupted into clean), "
                             f"got {direction!r}")
    grid = build_grid(backend, pairs, site, by_position, layers, positions)
    metric_ = resolve_metric(metric)
    bound = metric_.bind(model, pairs)
    base_b, src_b = (pairs.corrupted, pairs.clean) if direction == "denoise" else (pairs.clean, pairs.corrupted)
    return pairs, grid, metric_, bound, base_b, src_b


def _engine(cfg: PatchConfig, backend: Backend) -> type[FastEngine] | type[HookEngine]:
    """The engine a sweep runs on, chosen once: ``fast`` where the model allows it, else ``hooks``."""
    why = fast_unsupported(backend)
    if cfg.engine == "fast" and why is not None:
        raise LensarithError(f"engine='fast' does not support this model ({why}); use engine='hooks' or 'auto'")
    return HookEngine if cfg.engine == "hooks" or why is not None else FastEngine


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
    return cls(tensors, axes, grid_labels(model, pairs, grid), info)


@register_recipe("activation_patch")
def activation_patch(
    model: Model,
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
        >>> from lensarith.patching import pair_examples
        >>> pairs = pair_examples(model, build_prompts("capitals", n=40), n=4)
        >>> res = activation_patch(model, pairs, site="resid_pre", metric="recovery")
        >>> res.grid_axes, res.values.shape[0], res.meta["engine"]
        (('layer', 'pos'), 2, 'fast')
    """
    cfg = _config(config)
    backend = backend_of(model)  # resolved once: everything below takes the backend
    pairs, grid, metric_, bound, base_b, src_b = _setup(
        model, backend, clean, corrupted, site, metric, direction, by_position, layers, positions)
    meter = backend.meter()
    engine_cls = _engine(cfg, backend)
    read = pairs.read.to(backend.cfg.device)
    B = len(pairs)
    base_sites, src_sites = engine_cls.sites(backend, grid)
    base = unpatched(backend, base_b, base_sites, read)
    src = unpatched(backend, src_b, src_sites, read)
    with torch.no_grad():
        base_raw = score(backend, bound, base.final[None], cfg.max_logits)[0]
        src_raw = score(backend, bound, src.final[None], cfg.max_logits)[0]
    clean_raw, corrupt_raw = (src_raw, base_raw) if direction == "denoise" else (base_raw, src_raw)
    metric_.check(clean_raw, corrupt_raw)

    engine = engine_cls(backend, grid, base_b, base, src, read)
    chunks = engine.chunks(B, cfg.max_tokens)
    raw = torch.empty(len(grid.jobs), B, device=base.final.device)
    with torch.no_grad(), progress_bar(total=len(grid.jobs), desc=f"patching {grid.site}", unit="site", show=progress,
                                       enough=len(chunks) > 3) as bar:
        for chunk in chunks:
            final = engine.run(chunk)
            raw[torch.tensor(chunk, device=raw.device)] = score(backend, bound, final, cfg.max_logits).to(raw.dtype)
            bar.update(len(chunk))
    meta = {"recipe": "activation_patch", "direction": direction, "engine": engine.name,
            "hooks": [hook(grid.site, layer) for layer in grid.layers]}
    meta = meter.stamp(meta)  # where traces are counted: the sweep's (one per chunk of sites, plus two)
    return _result(PatchResult, model, pairs, grid, metric_, raw, clean_raw, corrupt_raw, meta)


@register_recipe("attribution_patch")
def _with_grad(fn):
    """Run ``fn`` with gradients on, also under a caller's ``torch.no_grad()`` or ``torch.inference_mode()``."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            return fn(*args, **kwargs)

    return wrapper


def _check_grads(names: Sequence[str], grads: Sequence[Tensor | None], value: Tensor) -> None:
    """Raise where the metric's gradient first turns non-finite, going back from the metric."""
    for name, g in reversed(list(zip(names, grads))):
        if g is not None and not bool(torch.isfinite(g).all()):
            raise LensarithError(
                f"the gradient of the metric is not finite at {name} (the first swept activation it reaches going back "
                f"from the metric) although the metric's value is {'finite' if bool(torch.isfinite(value).all()) else 'not'}"
                "; attribution would be NaN there: use a metric with a finite gradient (no sqrt, log or division at 0)")


def _check_method_config(cfg: PatchConfig, method: str) -> None:
    if cfg.engine != "auto":
        how = ("takes one gradient of the whole model" if method == "atp" else
               "recomputes the blocks from the weights itself")
        raise LensarithError(f"config.engine={cfg.engine!r} has no effect on attribution_patch(method={method!r}), which "
                             f"{how}; leave engine at 'auto' (engine chooses activation_patch's engine)")


@_with_grad
def attribution_patch(
    model: Model,
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
    method: str = "atp",
) -> AttributionPatchResult:
    """Attribution patching: a cheap estimate of ``activation_patch`` for a whole sweep.

    ``metric(patched) ~ metric(base) + (source - base) . grad``, with the gradient of the
    metric taken on the base run: two forwards and one backward, whatever the sweep size.
    Arguments are as for ``activation_patch``; the metric must be differentiable
    (``reciprocal_rank`` is not).

    Args:
        method: ``"atp"`` (the plain gradient, above); ``"atp+qk"`` (AtP*'s QK fix: the
            attention block a patch feeds first is recomputed exactly with the patched
            queries, keys and values, linear thereafter); ``"atp*"`` (AtP*, Kramar et al.
            2024: the QK fix and GradDrop, which repeats the backward with groups of
            downstream blocks dropped and reports ``sign * mean |estimate|`` to expose
            cancelling paths; a screening score, not a closer estimate); ``"relp"`` (relevance
            patching: the gradient through a modified backward with LRP's rules: norm scales
            constant, identity rule on MLP activations, attention patterns frozen, half rule on
            gated products); ``"relp+qk"`` (relevance patching with the QK fix's exact first
            attention block). Each costs at most 5 forward-equivalents
            (``meta["forward_equivalents"]``); all but ``atp`` recompute blocks from the
            weights and support the fast engine's families.

    Gradients are switched on inside, also under a caller's ``torch.no_grad()`` or
    ``torch.inference_mode()``. ``config.engine`` must stay ``"auto"`` (no method uses
    ``activation_patch``'s engines); a metric whose gradient is not finite is refused, naming
    the swept activation where the backward first meets it.

    Returns:
        An ``AttributionPatchResult`` on the same grid as ``activation_patch`` would give.

    Example:
        >>> from lensarith.patching import pair_examples
        >>> pairs = pair_examples(model, build_prompts("capitals", n=40), n=4)
        >>> attribution_patch(model, pairs, site="z", metric="logit_diff").values.shape  # [layer, head]
        torch.Size([2, 4])
    """
    cfg = _config(config)
    check_method(method)
    _check_method_config(cfg, method)
    pairs, grid, metric_, bound, base_b, src_b = _setup(
        model, backend_of(model), clean, corrupted, site, metric, direction, by_position, layers, positions)
    if not metric_.differentiable:
        raise LensarithError(f"metric={metric_.describe()!r} is piecewise constant, so its gradient is zero; use "
                             "'logit_diff', 'recovery' or 'answer_prob' for attribution_patch")
    if method != "atp":
        return _attribution_methods(model, cfg, pairs, grid, metric_, bound, base_b, src_b, direction, method)
    read = pairs.read.to(model.cfg.device)
    sites = [Site(grid.site, layer) for layer in grid.layers]
    names = [s.hook_name for s in sites]
    src = unpatched(model, src_b, sites, read)
    base = unpatched(model, base_b, sites, read, grad=True)
    base_raw = score(model, bound, base.final[None], cfg.max_logits)[0]
    acts = [base.acts[name] for name in names]
    if not base_raw.requires_grad:
        raise LensarithError(f"the metric {metric_.describe()!r} does not depend on the logits (its value has no "
                             "gradient); attribution_patch needs a differentiable function of the logits")
    grads = torch.autograd.grad(base_raw.sum(), acts, allow_unused=True)
    _check_grads(names, grads, base_raw)
    with torch.no_grad():
        src_raw = score(model, bound, src.final[None], cfg.max_logits)[0]
        attrs = {}
        for name, act, g in zip(names, acts, grads):
            g = torch.zeros_like(act) if g is None else g
            attrs[name] = ((src.acts[name] - act.detach()) * g).sum(-1)  # [B, W] or [B, W, H]
        B = len(pairs)
        est = torch.empty(len(grid.jobs), B, device=base_raw.device)
        for i, (layer, head, pos) in enumerate(grid.jobs):
            a = attrs[hook(grid.site, layer)]
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
    meta = {"recipe": "attribution_patch", "direction": direction, "engine": "gradient", "hooks": names,
            "method": "atp", "forward_equivalents": 3.0}
    return _result(AttributionPatchResult, model, pairs, grid, metric_, raw, clean_raw, corrupt_raw, meta)


def _readout_score(model, bound, final: Tensor, *, frozen: bool, max_logits: int) -> Tensor:
    """The metric of final residuals ``[batch, d_model]`` (the final norm's scale a constant when ``frozen``)."""
    if not frozen:
        return score(model, bound, final[None], max_logits)[0]
    normed, bias = readout.frozen_final_norm(model, final[None], final.detach())
    x = normed + bias
    logits = readout.unembed(model, x, bound.columns) if bound.columns is not None else readout.unembed(model, x)
    return bound.score(logits)[0]


def _attribution_methods(model, cfg: PatchConfig, pairs, grid, metric_: Metric, bound, base_b, src_b, direction: str,
                         method: str) -> AttributionPatchResult:
    """``atp*`` and ``relp`` (see ``lensarith.patching._atp``)."""
    why = method_unsupported(model)
    if why is not None:
        raise LensarithError(f"method={method!r} recomputes the model's blocks and does not support this model "
                             f"({why}); use method='atp'")
    n, lo = model.cfg.n_layers, min(grid.layers)
    read = pairs.read.to(model.cfg.device)
    relp, star, drop = method in ("relp", "relp+qk"), method in ("atp*", "atp+qk", "relp+qk"), method == "atp*"
    src_sites = [Site("z" if grid.site in HEAD_SITES else grid.site, layer) for layer in grid.layers]
    src = unpatched(model, src_b, src_sites, read)
    src_nodes = {node_key(grid.site, layer): src.acts[site.hook_name] for layer, site in zip(grid.layers, src_sites)}
    start = run(model, base_b, capture=[Site("resid_pre", lo)], stop_at_layer=lo + 1)
    x0 = start.captured[Site("resid_pre", lo)]
    with torch.enable_grad():
        trace = Trace(model, x0, lo, relp=relp, qk=star)
        base_raw = _readout_score(model, bound, trace.final(read), frozen=relp, max_logits=cfg.max_logits)
        keys = list(dict.fromkeys(node_key(grid.site, layer) for layer in grid.layers))
        if star:
            keys += [(kind, qk_block(grid.site, layer)) for layer in grid.layers for kind in ("xq", "xv", "z")
                     if qk_block(grid.site, layer) < n]
        B, W = len(pairs), base_b.tokens.shape[1]
        forward = n * B * W * trace.token_flops()
        cost = (lo + 1) / n + (n - lo) / n + 1.0 + (n - lo) / n  # start, recomputed base, source, backward
        if drop:  # where GradDrop groups may end
            keys += [("resid_pre", b) for b in range(lo + 1, n + 1)]
        keys = list(dict.fromkeys(keys))
        got = torch.autograd.grad(base_raw.sum(), [trace.nodes[k] for k in keys], allow_unused=True,
                                  retain_graph=drop)
        _check_grads([hook(grid.site, k[1]) if k == node_key(grid.site, k[1]) else f"{k[0]} of block {k[1]}"
                      for k in keys], got, base_raw)
        full = {k: torch.zeros_like(trace.nodes[k]) if g is None else g for k, g in zip(keys, got)}
        fix, groups = None, []
        if star:  # the QK fix on every job, or on the jobs with the largest plain estimates that the budget allows
            costs = qk_costs(trace, grid, src_nodes) / forward
            allowed = BUDGET - cost - (0.5 if drop else 0.0)
            if float(costs.sum()) <= allowed:
                fix = torch.ones(len(grid.jobs), dtype=torch.bool)
            else:
                with torch.no_grad():
                    plain = estimate(trace, grid, src_nodes, [full], [None], read,
                                     fix=torch.zeros(len(grid.jobs), dtype=torch.bool))[0].abs().sum(-1).cpu()
                order = plain.argsort(descending=True)
                take = order[torch.cumsum(costs[order], 0) <= allowed]
                fix = torch.zeros(len(grid.jobs), dtype=torch.bool)
                fix[take] = True
            cost += float(costs[fix].sum())
        if drop:
            for k in range(n - lo, 0, -1):  # as many GradDrop groups as the budget allows
                bounds = [lo + (n - lo) * i // k for i in range(k + 1)]
                cand = list(zip(bounds[:-1], bounds[1:]))
                extra = sum(a - lo for a, _ in cand) / n
                if cost + extra <= BUDGET:
                    groups, cost = cand, cost + extra
                    break
        grads, affected = [full], [None]
        for i, (a, b) in enumerate(groups):  # GradDrop: blocks a..b-1 pass the gradient along the residual only
            below = [k for k in keys if k[1] < a or k == ("resid_pre", a)]
            if not below:  # no swept node below this group: its estimates are the full ones
                grads.append({})
                affected.append(set())
                continue
            got = torch.autograd.grad(trace.nodes["resid_pre", a], [trace.nodes[k] for k in below],
                                      grad_outputs=full["resid_pre", b], allow_unused=True,
                                      retain_graph=True)
            grads.append({k: torch.zeros_like(trace.nodes[k]) if g is None else g for k, g in zip(below, got)})
            affected.append(set(below))
    with torch.no_grad():
        est = estimate(trace, grid, src_nodes, grads, affected, read, fix)
        effect = est[0]
        if groups:
            effect = torch.sign(est[0]) * est[1:].abs().mean(0)
        base_raw = base_raw.detach()
        raw = base_raw[None] + effect
        src_raw = score(model, bound, src.final[None], cfg.max_logits)[0]
    clean_raw, corrupt_raw = (src_raw, base_raw) if direction == "denoise" else (base_raw, src_raw)
    metric_.check(clean_raw, corrupt_raw)
    meta = {"recipe": "attribution_patch", "direction": direction, "engine": "recomputed blocks", "method": method,
            "forward_equivalents": round(cost, 2), "hooks": [hook(grid.site, layer) for layer in grid.layers]}
    if star:
        meta["qk_fixed_sites"] = f"{int(fix.sum())} of {len(grid.jobs)}"
    if drop:
        meta["graddrop_groups"] = [[a, b] for a, b in groups]
    return _result(AttributionPatchResult, model, pairs, grid, metric_, raw, clean_raw, corrupt_raw, meta)
