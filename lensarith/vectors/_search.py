"""Finding where an o-vector acts: the application layer and the replaced MLP range.

``find_layers`` (configured by ``SearchConfig``, returning ``LayerSearchResult``) picks the
source prompt, sweeps each eligible layer's o-vector through random-token contexts (or ranks
MLPs by direct logit attribution) and then the start of the range to replace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._errors import LensarithError, check_choice, check_int
from ..attribution import direct_logit_attribution
from ..core.backends import backend_of
from ..core import Batch, Intervention, Result, Site, collect, provenance, readout, run, tokenize
from ..tasks import Example, build_prompts
from ._scoring import context_batch, evaluate
from ._transplant import POSITIONS, transplant_contexts, transplant_interventions
from .._types import Model

__all__ = ["SearchConfig", "LayerSearchResult", "find_layers", "task_batch", "pick_source"]


# --------------------------------------------------------------------------- layer search


@dataclass(frozen=True)
class SearchConfig:
    """How ``find_layers`` searches.

    Attributes:
        method: ``sweep`` (transplant each layer's o and keep the layer that lifts the answer
            most) or ``dla`` (the MLP whose direct logit attribution to answer - argument
            peaks on the task prompts).
        apply_mode: how the application-layer sweep transplants o_l: ``add`` at layer l, or
            ``replace`` layers l..last.
        scale: multiplies the vectors in both sweeps.
        positions: ``all`` or ``last``, as in ``transplant``.
        screen: keep only the best ``screen`` layers of a first-order gradient estimate
            before the application-layer sweep (None: sweep every eligible layer).
        after_argument: only MLPs at or after the layer where the argument peaks in the
            logit lens of the task prompts are eligible (the paper's stages: argument
            formation, then function application); False makes every layer eligible.
            Without it MLP 0, which acts on the last token like an extra embedding, can win
            a noisy sweep by making random contexts look like a question.
        n_prompts: task prompts used for the source choice and DLA.
        n_contexts: random-token contexts per sweep.
        seed: seeds the prompts' shuffle and the contexts.
    """

    method: str = "sweep"
    apply_mode: str = "add"
    scale: float = 1.0
    positions: str = "all"
    screen: int | None = None
    after_argument: bool = True
    n_prompts: int = 64
    n_contexts: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.method, ("sweep", "dla"), "SearchConfig method")
        check_choice(self.apply_mode, ("add", "replace"), "SearchConfig apply_mode")
        check_choice(self.positions, POSITIONS, "SearchConfig positions")
        check_int(self.screen, "SearchConfig screen", minimum=1, allow_none=True)
        check_int(self.n_prompts, "SearchConfig n_prompts", minimum=1)
        check_int(self.n_contexts, "SearchConfig n_contexts", minimum=1)
        check_int(self.seed, "SearchConfig seed")
        if not isinstance(self.after_argument, bool):
            raise LensarithError(f"SearchConfig after_argument must be True or False, got {self.after_argument!r}")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or self.scale != self.scale \
                or abs(self.scale) == float("inf"):
            raise LensarithError(f"SearchConfig scale must be a finite number, got {self.scale!r}")


class LayerSearchResult(Result):
    """The chosen application layer and replaced range, with the sweep table.

    Tensors ``[layer]`` (NaN where a layer was not evaluated): ``argument_mrr`` (the
    argument's logit-lens MRR at resid_post of layer l on the task prompts), ``dla`` (mean
    DLA of MLP l to answer - argument on the task prompts), ``screen`` (first-order estimate of the gain in
    the answer's log-prob), ``apply_gain`` / ``apply_top1`` (answer MRR gain over control
    and top-1 when o_l is transplanted at l), ``start_gain`` / ``start_top1`` (the same when
    layers s..last are replaced by the application layer's o).
    """

    kind = "layer_search"

    @property
    def application_layer(self) -> int:
        return int(self.meta["application_layer"])

    @property
    def start_layer(self) -> int:
        return int(self.meta["start_layer"])

    @property
    def layers(self) -> list[int]:
        """The replaced range: ``start_layer`` to the last layer."""
        return list(range(self.start_layer, int(self.meta["n_layers"])))

    def table(self) -> list[dict[str, Any]]:
        """One row per layer with every sweep's numbers (None where not evaluated)."""
        keys = [k for k in ("argument_mrr", "dla", "screen", "apply_gain", "apply_top1", "start_gain", "start_top1") if k in self.tensors]
        rows = []
        for layer in range(self.tensors["dla"].shape[0]):
            row: dict[str, Any] = {"layer": layer}
            for key in keys:
                value = float(self.tensors[key][layer])
                row[key] = None if math.isnan(value) else value
            rows.append(row)
        return rows


def task_batch(model: Model, task, *, n: int | None, seed: int, name: str = "task") -> Batch:
    if isinstance(task, str):
        examples = build_prompts(task, n=None, seed=seed)
    elif isinstance(task, Batch):
        return task if n is None or len(task) <= n else task[0:n]
    elif isinstance(task, Sequence) and task and all(isinstance(e, Example) for e in task):
        examples = list(task)
    else:
        raise LensarithError(f"{name} must be a task name or a non-empty list of Examples, got {task!r}")
    batch = tokenize(model, examples, drop_multi_token=True)
    if n is not None and len(batch) > n:
        batch = batch[0:n]
    return batch


def _choose_source(correct: Tensor, source: int | str | None, batch: Batch | None = None) -> int:
    """The source prompt's row: ``source`` (an index, an argument such as ``" Poland"`` or a
    whole prompt), or the first prompt answered correctly."""
    n = len(correct)
    if source is None:
        hits = correct.nonzero()
        return int(hits[0]) if len(hits) else 0
    if isinstance(source, str):
        examples = batch.examples if batch is not None and batch.examples else ()
        for i, e in enumerate(examples):
            if source.strip() in (e.argument.strip(), e.prompt.strip()):
                return i
        shown = ", ".join(repr(e.argument) for e in examples[:6])
        raise LensarithError(f"source={source!r} matches no usable task prompt's argument or text; arguments include "
                             f"{shown} ({len(examples)} prompts)")
    if not isinstance(source, int) or isinstance(source, bool) or not -n <= source < n:
        raise LensarithError(f"source={source!r} is out of range: there are {n} usable task prompts (give an index, "
                             "or the argument, e.g. source=' Poland')")
    return source % n


def pick_source(model: Model, batch: Batch, source: int | None, batch_size: int) -> tuple[int, Tensor]:
    """The source prompt's row (first correct one by default) and the correctness mask."""
    got = evaluate(model, batch, [[]], batch_size=batch_size, readout_layers="final", desc="task prompts")
    correct = got["rank_answer"][0, -1] == 0
    return _choose_source(correct, source, batch), correct


def _mlp_dla(model, batch: Batch, batch_size: int) -> Tensor:
    dla = direct_logit_attribution(model, batch, "answer", "argument", granularity="layer", batch_size=batch_size)
    idx = [dla.component_labels.index(f"L{layer}_mlp") for layer in range(model.cfg.n_layers)]
    return dla.attributions[idx].mean(-1)


def _gradient_screen(model, batch: Batch, o_layers: Tensor, cfg: SearchConfig, batch_size: int) -> Tensor:
    """First-order estimate, per layer l, of the change in log p(answer) from the sweep's edit."""
    n = model.cfg.n_layers
    sites = [Site("mlp_out", layer) for layer in range(n)]

    def grads(out, chunk: Batch) -> dict[str, Tensor]:
        rows = torch.arange(len(chunk), device=out.final.device)
        logp = readout.logits(model, out.final).log_softmax(-1)
        metric = logp[rows, chunk.answer_ids.to(out.final.device)].sum()
        acts = [out.captured[s] for s in sites]
        g_all = torch.autograd.grad(metric, acts)
        width = chunk.tokens.shape[1]
        mask = torch.arange(width)[None] < chunk.lengths[:, None]
        if cfg.positions == "last":
            mask = torch.arange(width)[None] == chunk.last[:, None]
        mask = mask.to(model.cfg.device)[..., None].float()
        gsum = torch.stack([(g * mask).sum(1) for g in g_all], 1)  # [row, layer, d_model]
        gact = torch.stack([(g * a.detach() * mask).sum((1, 2)) for g, a in zip(g_all, acts)], 1)  # [row, layer]
        return {"gsum": gsum.detach().float().cpu(), "gact": gact.detach().float().cpu()}

    got = run(model, batch, capture=sites, read="last", grad=True, keep=grads, batch_size=batch_size).kept
    gsum, gact = got["gsum"].sum(0), got["gact"].sum(0)
    o = o_layers.float()
    if cfg.apply_mode == "add":
        est = cfg.scale * (gsum * o).sum(-1)
    else:
        est = torch.stack([(cfg.scale * gsum[l:] @ o[l] - gact[l:]).sum() for l in range(n)])
    return est / len(batch)


def find_layers(model: Model, task, *, source: int | str | None = None, contexts=None, config: SearchConfig = SearchConfig(),
                batch_size: int = 8, progress: bool | None = None) -> LayerSearchResult:
    """Find the application layer and the start of the replaced range for a model and task.

    Which question this answers: *sufficiency* — which MLP's output, transplanted, can write
    the relation into a context that lacks it (and the DLA method: which MLP pushes the answer
    directly at the output). It does not say which MLP the model *needs* (necessity: remove
    that MLP alone and see the answers go); on the bundled ``organism`` the two differ (the
    relation is written mid-stack, but only MLP 0 is necessary). ``lensarith.guard.locate``
    measures both per layer, side by side, with a verdict.

    1. The source prompt: ``source`` (an index into the usable task prompts) or the first
       prompt the model answers correctly; o_l is its MLP-l output at the last token.
    2. Application layer, among the eligible MLPs (at or after the argument's logit-lens
       peak on the task prompts, unless ``config.after_argument=False``):
       ``config.method="sweep"`` transplants each o_l into random-token contexts (``add``
       at l, or ``replace`` l..last) and keeps the layer with the largest gain in the
       answer's final-layer MRR over the control (optionally only the best
       ``config.screen`` layers of a gradient screen are swept); ``"dla"`` takes the MLP
       with the largest direct logit attribution to answer - argument on the task prompts.
    3. Start of the range: replace layers s..last with the application layer's o for every
       s up to the application layer and keep the best s.

    Args:
        model: a HookedTransformer with MLPs.
        task: a task name or a list of ``Example`` (the task's prompts).
        source: the source prompt: an index among the usable (single-token) task prompts, or
            its argument (``" Poland"``) or whole text.
        contexts: target contexts (default: random-token contexts for the other prompts).
        config: a ``SearchConfig``.
        batch_size: contexts per forward; a forward carries one copy per swept layer.
        progress: show progress bars.

    Returns:
        A ``LayerSearchResult`` with ``application_layer``, ``start_layer``, ``layers``
        (the range to replace) and ``table()``.
    """
    meter = backend_of(model).meter()
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLPs to search")
    if not isinstance(config, SearchConfig):
        raise LensarithError(f"config must be a lensarith.SearchConfig (e.g. SearchConfig(n_contexts=32)), got "
                             f"{type(config).__name__} {config!r:.80}")
    check_int(batch_size, "batch_size", minimum=1)
    n = model.cfg.n_layers
    prompts = task_batch(model, task, n=config.n_prompts, seed=config.seed)
    lens = evaluate(model, prompts, [[]], batch_size=batch_size, readout_layers="all", desc="task prompts")
    correct = lens["rank_answer"][0, -1] == 0
    src = _choose_source(correct, source, prompts)
    use = correct if bool(correct.any()) else torch.ones_like(correct)
    if "rank_argument" in lens and bool((lens["rank_argument"] >= 0).all()):
        arg_mrr = (1.0 / (lens["rank_argument"][0][:, use].float() + 1.0)).mean(-1)
        # the paper's stages: the function is applied after the argument forms (its logit-lens peak)
        peak = int(arg_mrr[:-1].argmax()) if n > 1 else 0
    else:  # prompts without arguments: no argument stage to anchor on
        arg_mrr, peak = torch.full((n,), float("nan")), 0
    eligible = list(range(peak, n)) if config.after_argument else list(range(n))
    src_batch = prompts[src:src + 1]
    sites = [Site("mlp_out", layer, "last") for layer in range(n)]
    got = collect(model, src_batch, sites)
    o_layers = torch.stack([got[s][0] for s in sites]).cpu()
    if contexts is None:
        others = [e for i, e in enumerate(prompts.examples) if i != src] or list(prompts.examples)
        contexts = transplant_contexts(others, n=config.n_contexts, seed=config.seed)
    ctx = context_batch(model, contexts, drop_multi_token=True)
    dla = _mlp_dla(model, prompts.take(use.nonzero().flatten()), batch_size)
    nan = torch.full((n,), float("nan"))
    tensors: dict[str, Tensor] = {"dla": dla.float().cpu(), "argument_mrr": arg_mrr}
    pos = "last" if config.positions == "last" else "all"

    def ivs(vec: Tensor, layers: list[int], mode: str) -> list[Intervention]:
        return transplant_interventions(model, vec, layers=layers, mode=mode, positions=pos, scale=config.scale)

    if config.method == "sweep":
        candidates = eligible
        if config.screen is not None:
            est = _gradient_screen(model, ctx, o_layers, config, batch_size)
            tensors["screen"] = est
            ranked = [l for l in est.argsort(descending=True).tolist() if l in eligible]
            candidates = sorted(ranked[: config.screen])
        groups = [[]] + [ivs(o_layers[l], [l] if config.apply_mode == "add" else list(range(l, n)), config.apply_mode)
                         for l in candidates]
        res = evaluate(model, ctx, groups, batch_size=batch_size, readout_layers="final", progress=progress,
                       desc="apply sweep")
        rr = 1.0 / (res["rank_answer"][:, -1].float() + 1.0)
        gain, top1 = nan.clone(), nan.clone()
        gain[candidates] = rr[1:].mean(-1) - rr[0].mean()
        top1[candidates] = (res["rank_answer"][1:, -1] == 0).float().mean(-1)
        tensors["apply_gain"], tensors["apply_top1"] = gain, top1
        application = int(candidates[int((rr[1:].mean(-1)).argmax())])
    else:
        application = eligible[int(dla[eligible].argmax())]
    starts = list(range(application + 1))
    groups = [[]] + [ivs(o_layers[application], list(range(s, n)), "replace") for s in starts]
    res = evaluate(model, ctx, groups, batch_size=batch_size, readout_layers="final", progress=progress,
                   desc="range sweep")
    rr = 1.0 / (res["rank_answer"][:, -1].float() + 1.0)
    start_gain, start_top1 = nan.clone(), nan.clone()
    start_gain[starts] = rr[1:].mean(-1) - rr[0].mean()
    start_top1[starts] = (res["rank_answer"][1:, -1] == 0).float().mean(-1)
    tensors["start_gain"], tensors["start_top1"] = start_gain, start_top1
    start = int(starts[int(rr[1:].mean(-1).argmax())])
    source_ex = src_batch.examples[0] if src_batch.examples else None
    meta = provenance(
        model, recipe="find_layers", application_layer=application, start_layer=start, method=config.method,
        argument_peak=peak, eligible=eligible,
        config=config.__dict__, source=source_ex.prompt if source_ex else None,
        source_answer=source_ex.answer if source_ex else None, source_correct=bool(correct[src]),
        task_accuracy=float(correct.float().mean()), n_prompts=len(prompts), n_contexts=len(ctx),
        control_mrr=float(rr[0].mean()), report=prompts.report,
    )
    meta = meter.stamp(meta)
    axes = {k: ("layer",) for k in tensors}
    return LayerSearchResult(tensors, axes, {"layer": [f"L{layer}" for layer in range(n)]}, meta)
