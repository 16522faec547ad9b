"""Function vectors (Todd et al. 2024) and task vectors (Hendel et al. 2023), with provenance.

Both are ``OVector`` subclasses: a ``[d_model]`` (or ``[source, d_model]``) vector with
provenance in ``meta`` (model, config hash, site, layer, source prompts, seed), saved as
safetensors + JSON and loaded with ``FunctionVector.load(path, model=model)``, which
refuses a model of another architecture.

- ``head_effects``: the average indirect effect of every attention head. Each head's mean
  output ``z`` at the last position of clean few-shot prompts is patched into prompts whose
  demonstrations have shuffled labels; the effect is the gain in the correct answer's
  probability. The ranking is a ``HeadEffects`` result (draw it with
  ``lensarith.viz.heatmap(effects, tensor="indirect_effect")``).
- ``function_vector`` / ``extract_function_vector``: the sum of the top heads' mean outputs
  projected to the residual stream, ``sum_(l,h) mean_z[l,h] @ W_O[l,h]`` (no ``b_O``: it
  belongs to no head).
- ``extract_task_vector``: the residual at the last position of few-shot prompts (their query
  is a dummy: its answer does not matter), at a layer.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from .._errors import LensarithError, check_choice, check_int, check_seed
from ..core import Batch, Group, Replace, Result, Site, as_batch, check_layer, collect, provenance, readout, run
from ._fewshot import few_shot_prompts
from ._ovector import OVector
from .._types import Model

__all__ = ["FunctionVector", "TaskVector", "HeadEffects", "head_effects", "function_vector",
           "extract_function_vector", "extract_task_vector", "RESID_SITES", "resid_by_layer", "mlp_out_by_layer",
           "sources_of"]

#: residual-stream sites a task vector can be taken from (and patched into)
RESID_SITES = ("resid_pre", "resid_mid", "resid_post")


class _Kind(OVector):
    """Shared machinery: keep the subclass through ``mean``/``select``; ``load`` checks the kind."""

    kind = "_vector_kind"

    def _rewrap(self, other: OVector):
        extra = {k: v for k, v in self.tensors.items() if k != "vector"}
        tensors = {"vector": other.vector, **extra}
        axes = {"vector": other.axes["vector"], **{k: self.axes[k] for k in extra}}
        labels = {k: v for k, v in other.labels.items()}
        return type(self)(tensors, axes, labels, dict(other.meta))

    def mean(self):
        """The average over source prompts, as a ``[d_model]`` vector of the same kind."""
        if self.vector.ndim == 1:
            return self
        return self._rewrap(OVector.mean(self))

    def select(self, index: int):
        """The vector of one source prompt, as a ``[d_model]`` vector of the same kind."""
        if self.vector.ndim == 1:
            OVector.select(self, index)  # checks the index
            return self
        return self._rewrap(OVector.select(self, index))

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Model=None):
        """Load a saved vector; with ``model``, check that it fits that model (width, depth and
        architecture hash)."""
        out = Result.load(path)
        if not isinstance(out, cls):
            raise LensarithError(f"{str(path)!r} holds a {out.kind!r} result, not a {cls.kind!r}")
        if model is not None:
            out.check(model, name=cls.kind)
        return out


class FunctionVector(_Kind):
    """A function vector: the summed mean outputs of the heads with the largest indirect effect.

    Tensors: ``vector`` ``[d_model]`` (in the residual stream), ``head_means``
    ``[head, d_head]`` (each chosen head's mean ``z`` at the last position of the clean
    prompts), ``heads`` ``[head, 2]`` (layer, head index) and ``head_effect`` ``[head]``
    (their average indirect effect). ``meta`` adds ``heads``, ``n_heads``, ``sources`` (the
    clean prompts), ``shuffled_sources``, ``n_shots``, ``seed`` and ``task``. There is no
    source layer: apply it at a layer you choose (``sweep_layers`` finds one), or at its
    heads (``site="z"``).
    """

    kind = "function_vector"

    @property
    def heads(self) -> list[tuple[int, int]]:
        """The chosen heads as ``(layer, head)``, largest effect first."""
        return [tuple(int(x) for x in row) for row in self.tensors["heads"].tolist()] if "heads" in self.tensors else []

    @property
    def head_means(self) -> Float[Tensor, "head d_head"] | None:
        return self.tensors.get("head_means")

    def __repr__(self) -> str:
        return (f"FunctionVector(task={self.meta.get('task')!r}, heads={self.heads[:4]}{'...' if len(self.heads) > 4 else ''}, "
                f"norm={float(self.vector.float().norm()):.3g}, model={self.meta.get('model')!r})")


class TaskVector(_Kind):
    """A task vector: the residual at the last position of few-shot prompts, at one layer.

    Tensors: ``vector`` ``[d_model]`` (``reduce="mean"``) or ``[source, d_model]``. ``meta``
    adds ``site`` (``resid_pre`` ...), ``layer``, ``hook``, ``sources`` (the prompts),
    ``n_shots``, ``seed`` and ``task``. Patch it over a zero-shot query's residual at the
    same site and layer (``apply_vector(..., mode="replace")``).
    """

    kind = "task_vector"

    @property
    def site(self) -> str:
        return self.meta.get("site", "resid_pre")

    def __repr__(self) -> str:
        return (f"TaskVector(site={self.site!r}, layer={self.layer}, task={self.meta.get('task')!r}, "
                f"shape={tuple(self.vector.shape)}, model={self.meta.get('model')!r})")


class HeadEffects(Result):
    """Average indirect effect of each attention head (Todd et al. 2024).

    Tensors: ``indirect_effect`` ``[layer, head]`` (mean over prompts of the gain in the
    answer's probability when the head's mean output is patched into a shuffled-label
    prompt's last position), ``effect`` ``[layer, head, batch]`` (per prompt), ``mean_z``
    ``[layer, head, d_head]``, ``clean_prob`` / ``shuffled_prob`` (the answer's probability
    on the clean and shuffled prompts, ``[clean]`` and ``[batch]``).
    """

    kind = "head_effects"

    @property
    def indirect_effect(self) -> Float[Tensor, "layer head"]:
        return self.tensors["indirect_effect"]

    def top(self, k: int = 10) -> list[tuple[tuple[int, int], float]]:
        """The ``k`` heads with the largest average indirect effect: ``((layer, head), effect)``."""
        check_int(k, "k", minimum=1)
        ie = self.indirect_effect
        k = min(k, ie.numel())
        vals, idx = ie.flatten().topk(k)
        n_heads = ie.shape[1]
        return [((int(i) // n_heads, int(i) % n_heads), float(v)) for v, i in zip(vals, idx)]

    def table(self, k: int = 10) -> list[dict[str, Any]]:
        """The top ``k`` heads as rows: ``head`` (``L3H1``), ``layer``, ``index``, ``effect``."""
        return [{"head": f"L{layer}H{h}", "layer": layer, "index": h, "effect": v} for (layer, h), v in self.top(k)]


def sources_of(batch: Batch) -> list[str]:
    return [e.prompt for e in batch.examples] if batch.examples else []


def _scored_batch(model, prompts, name: str) -> Batch:
    batch = as_batch(model, prompts)
    if batch.answer_ids is None or bool((batch.answer_ids < 0).any()):
        raise LensarithError(f"{name}: every prompt needs an answer (lensarith.Example with .answer) to score its probability")
    return batch


def _task_prompts(model, task: str, *, n: int, n_shots: int, seed: int, shuffle_labels: bool):
    """``n`` few-shot prompts of a task, queries and demonstrations from its single-token rows."""
    from ..tasks import Example, load_pairs
    from ._scoring import single_tokens

    rows = [r for r in load_pairs(task) if single_tokens(model, Example("", " " + r["answer"], " " + r["argument"]))]
    if len(rows) <= n_shots:
        raise LensarithError(f"task={task!r}: {len(rows)} rows have a single-token argument and answer for this model, "
                             f"too few for n_shots={n_shots} demonstrations plus a query")
    queries = list(rows)
    random.Random(seed).shuffle(queries)
    return few_shot_prompts(task, n_shots=n_shots, demos=rows, queries=queries[:n], shuffle_labels=shuffle_labels,
                            seed=seed)


def _answer_prob(model):
    @torch.no_grad()
    def keep(out, chunk: Batch) -> dict[str, Tensor]:
        logits = readout.logits(model, out.final).float()  # [(group,) batch, d_vocab]
        readout.check_finite(logits, "the logits")
        probs = logits.softmax(-1)
        ids = chunk.answer_ids.to(probs.device)
        if probs.ndim == 3:
            ids = ids.expand(probs.shape[0], -1)
        return {"prob": probs.gather(-1, ids[..., None])[..., 0].cpu()}

    return keep


def head_effects(
    model: Model,
    clean,
    shuffled=None,
    *,
    n_prompts: int = 32,
    n_shots: int = 5,
    seed: int = 0,
    batch_size: int = 16,
    heads_per_forward: int = 64,
    progress: bool | None = None,
) -> HeadEffects:
    """The average indirect effect of every head under shuffled labels (Todd et al. 2024).

    For each head (l, h): its mean output ``z`` at the last position of the ``clean``
    prompts is put into the last position of every ``shuffled`` prompt (its demonstrations'
    answers permuted), and the effect is the gain in the probability of the query's correct
    answer over the unpatched shuffled prompt. Each patched run starts at the head's layer
    from the shuffled prompt's residual, and many heads share one forward on the batch axis.

    Args:
        model: a HookedTransformer.
        clean: few-shot prompts with correct demonstrations (``Example`` objects or a
            ``Batch``), or a task name (then ``n_prompts`` prompts of ``n_shots`` shots are
            built from its single-token rows).
        shuffled: the shuffled-label prompts (default for a task name: built with another
            seed; required otherwise).
        n_prompts, n_shots, seed: for prompts built from a task name.
        batch_size: prompts per forward (each forward holds up to ``heads_per_forward``
            patched copies of them).
        heads_per_forward: heads patched in one forward.
        progress: show progress bars.

    Returns:
        A ``HeadEffects`` result (``top(k)``, ``table(k)``; ``indirect_effect [layer, head]``).

    Example:
        >>> eff = head_effects(model, "capitals", n_prompts=4, n_shots=2)
        >>> eff.indirect_effect.shape == (model.cfg.n_layers, model.cfg.n_heads)
        True
    """
    check_int(batch_size, "batch_size", minimum=1)
    check_int(heads_per_forward, "heads_per_forward", minimum=1)
    check_int(n_prompts, "n_prompts", minimum=1)
    check_int(n_shots, "n_shots", minimum=1)
    check_seed(seed)
    task = None
    if isinstance(clean, str):
        task = clean
        if shuffled is None:
            shuffled = _task_prompts(model, task, n=n_prompts, n_shots=n_shots, seed=seed + 1, shuffle_labels=True)
        clean = _task_prompts(model, task, n=n_prompts, n_shots=n_shots, seed=seed, shuffle_labels=False)
    elif shuffled is None:
        raise LensarithError("shuffled is needed: the shuffled-label prompts (few_shot_prompts(..., shuffle_labels=True)), "
                             "or pass a task name as clean")
    clean_b = _scored_batch(model, clean, "clean")
    shuf_b = _scored_batch(model, shuffled, "shuffled")
    cfg = model.cfg
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    z_sites = [Site("z", layer, "last") for layer in range(n_layers)]
    got = collect(model, clean_b, z_sites, batch_size=batch_size, progress=progress, desc="head means")
    mean_z = torch.stack([got[s].float().mean(0) for s in z_sites])  # [layer, head, d_head]
    clean_prob = run(model, clean_b, read="last", keep=_answer_prob(model), batch_size=batch_size,
                     progress=progress, desc="clean").kept["prob"]
    heads = [(layer, h) for layer in range(n_layers) for h in range(n_heads)]
    probs = torch.empty(len(heads), len(shuf_b))
    base = None
    for start in range(0, len(heads), heads_per_forward):
        part = heads[start:start + heads_per_forward]
        # group 0 is the unpatched shuffled run: the baseline, and the residual each patched run starts from
        groups = [Group()] + [Group([Replace(Site("z", layer, "last", head=h), mean_z[layer, h].to(cfg.dtype))],
                                    start_layer=layer) for layer, h in part]
        out = run(model, shuf_b, groups=groups, read="last", keep=_answer_prob(model), batch_size=batch_size,
                  progress=progress, desc="head effects").kept["prob"]
        base = out[0] if base is None else base
        probs[start:start + len(part)] = out[1:]
    effect = (probs - base[None]).reshape(n_layers, n_heads, len(shuf_b))
    meta = provenance(model, recipe="head_effects", task=task or _common_task(clean_b), metric="answer probability gain",
                      sources=sources_of(clean_b), shuffled_sources=sources_of(shuf_b), n_shots=n_shots, seed=seed,
                      n_clean=len(clean_b), n_shuffled=len(shuf_b), position="last", hook="blocks.{layer}.attn.hook_z")
    labels = {"layer": [f"L{i}" for i in range(n_layers)], "head": [f"H{i}" for i in range(n_heads)]}
    return HeadEffects({"indirect_effect": effect.mean(-1), "effect": effect, "mean_z": mean_z,
                        "clean_prob": clean_prob, "shuffled_prob": base},
                       {"indirect_effect": ("layer", "head"), "effect": ("layer", "head", "batch"),
                        "mean_z": ("layer", "head", "d_head"), "clean_prob": ("clean",), "shuffled_prob": ("batch",)},
                       labels, meta)


def _no_nnsight(model, what: str) -> None:
    from ..core.backends import Capability, backend_of

    if not backend_of(model).supports(Capability.TL_MODULES):  # reads model.blocks[l].attn.W_O below
        raise LensarithError(f"{what} reads each head's output weights (W_O) from a TransformerLens model; the nnsight "
                             "backend does not expose them: load the model without backend='nnsight' for function vectors")


def _common_task(batch: Batch) -> str | None:
    if not batch.examples:
        return None
    tasks = {e.task for e in batch.examples}
    return tasks.pop() if len(tasks) == 1 else None


def function_vector(model: Model, effects: HeadEffects, *, n_heads: int = 10) -> FunctionVector:
    """The function vector of the ``n_heads`` heads with the largest indirect effect.

    ``vector = sum over the chosen (l, h) of mean_z[l, h] @ W_O[l, h]`` (each head's mean
    output written into the residual stream).

    Args:
        model: the model the effects were measured on (checked).
        effects: a ``HeadEffects`` result (``head_effects``).
        n_heads: how many heads (Todd et al.: 10 of GPT-J's 448).
    """
    if not isinstance(effects, HeadEffects):
        raise LensarithError(f"effects must be a HeadEffects result (head_effects), got {type(effects).__name__}")
    check_int(n_heads, "n_heads", minimum=1)
    total = model.cfg.n_layers * model.cfg.n_heads
    if n_heads > total:
        raise LensarithError(f"n_heads={n_heads} is more than the model's {total} heads")
    _no_nnsight(model, "function_vector")
    here = provenance(model)
    if effects.meta.get("config_hash") is not None and effects.meta["config_hash"] != here["config_hash"]:
        raise LensarithError("effects were measured on another architecture than this model; run head_effects on it")
    if effects.meta.get("weights") is not None and here["weights"] is not None and effects.meta["weights"] != here["weights"]:
        raise LensarithError(f"effects were measured on another model ({effects.meta.get('model')!r}, weights "
                             f"{effects.meta['weights']}) than this one ({here['model']!r}, weights {here['weights']}): "
                             "the heads' mean outputs belong to that model; run head_effects on this one")
    top = effects.top(n_heads)
    means = torch.stack([effects.tensors["mean_z"][layer, h] for (layer, h), _ in top])
    with torch.no_grad():
        vec = sum(means[i].to(model.cfg.dtype) @ model.blocks[layer].attn.W_O[h].detach().cpu().to(model.cfg.dtype)
                  for i, ((layer, h), _) in enumerate(top))
    vec = vec.detach().cpu()
    heads = torch.tensor([[layer, h] for (layer, h), _ in top], dtype=torch.long)
    meta = {k: v for k, v in effects.meta.items() if k not in ("recipe",)}
    meta.update(provenance(model), recipe="function_vector", kind="function_vector", layer=None, site="z",
                hooks=[f"blocks.{layer}.attn.hook_z" for (layer, _), _ in top], heads=[[l_, h] for (l_, h), _ in top],
                n_heads=n_heads, head_effect=[v for _, v in top], reduce="mean",
                norm=float(vec.float().norm()), dtype=str(vec.dtype).removeprefix("torch."))
    return FunctionVector({"vector": vec, "head_means": means, "heads": heads,
                           "head_effect": torch.tensor([v for _, v in top])},
                          {"vector": ("d_model",), "head_means": ("head", "d_head"), "heads": ("head", "index"),
                           "head_effect": ("head",)},
                          {"head": [f"L{layer}H{h}" for (layer, h), _ in top]}, meta)


def extract_function_vector(model: Model, clean, shuffled=None, *, n_heads: int = 10, n_prompts: int = 32, n_shots: int = 5,
                            seed: int = 0, batch_size: int = 16, progress: bool | None = None) -> FunctionVector:
    """Rank the heads (``head_effects``) and sum the top ``n_heads`` (``function_vector``).

    Args: as ``head_effects`` (``clean`` is a task name or clean few-shot prompts), plus
    ``n_heads``. The ranking is kept in ``meta["head_effect"]``; for the whole ranking call
    ``head_effects`` yourself and then ``function_vector``.

    Example:
        >>> fv = extract_function_vector(model, "capitals", n_heads=3, n_prompts=4, n_shots=2)
        >>> fv.vector.shape, len(fv.heads)
        (torch.Size([32]), 3)
    """
    _no_nnsight(model, "extract_function_vector")
    eff = head_effects(model, clean, shuffled, n_prompts=n_prompts, n_shots=n_shots, seed=seed, batch_size=batch_size,
                       progress=progress)
    return function_vector(model, eff, n_heads=n_heads)


def resid_by_layer(model: Model, batch: Batch, site: str, layers: Sequence[int], *, batch_size: int = 32,
                   progress: bool | None = None) -> Float[Tensor, "layer source d_model"]:
    """The residual at ``site`` and each prompt's last position, for every layer in one pass."""
    check_choice(site, RESID_SITES, "site")
    sites = [Site(site, layer, "last") for layer in layers]
    got = collect(model, batch, sites, stop_at_layer=max(layers) + 1, batch_size=batch_size, progress=progress,
                  desc="residuals")
    return torch.stack([got[s].detach().cpu() for s in sites])


def mlp_out_by_layer(model: Model, batch: Batch, layers: Sequence[int], *, batch_size: int = 32,
                     progress: bool | None = None) -> Float[Tensor, "layer source d_model"]:
    """Each MLP's output at each prompt's last position (the o-vectors of every layer), in one pass."""
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLP outputs")
    sites = [Site("mlp_out", layer, "last") for layer in layers]
    got = collect(model, batch, sites, stop_at_layer=max(layers) + 1, batch_size=batch_size, progress=progress,
                  desc="mlp outputs")
    return torch.stack([got[s].detach().cpu() for s in sites])


def extract_task_vector(
    model: Model,
    prompts,
    layer: int,
    *,
    site: str = "resid_pre",
    reduce: str = "mean",
    n_prompts: int = 16,
    n_shots: int = 5,
    seed: int = 0,
    task: str | None = None,
    batch_size: int = 32,
) -> TaskVector:
    """The residual at the last position of few-shot prompts, at ``site`` and ``layer``.

    Args:
        model: a HookedTransformer.
        prompts: few-shot prompts ending in a (dummy) query: ``Example`` objects, strings, or a
            ``Batch``; or a task name (``n_prompts`` prompts of ``n_shots`` shots are built).
        layer: the layer (negative counts from the end).
        site: ``resid_pre`` (the input of block ``layer``), ``resid_mid`` or ``resid_post``.
        reduce: ``mean`` (one vector, averaged over prompts) or ``none`` (one per prompt).
        n_prompts, n_shots, seed: for prompts built from a task name.
        task: recorded in the provenance (default: the prompts' common task).
        batch_size: prompts per forward.

    Returns:
        A ``TaskVector`` with provenance.

    Example:
        >>> tv = extract_task_vector(model, "capitals", 1, n_prompts=3, n_shots=2)
        >>> tv.vector.shape, tv.meta["hook"]
        (torch.Size([32]), 'blocks.1.hook_resid_pre')
    """
    check_choice(site, RESID_SITES, "site")
    check_choice(reduce, ("mean", "none"), "reduce")
    layer = check_layer(model, layer)
    check_int(batch_size, "batch_size", minimum=1)
    if isinstance(prompts, str) and prompts in _task_names():
        task = task or prompts
        check_int(n_prompts, "n_prompts", minimum=1)
        check_int(n_shots, "n_shots", minimum=1)
        prompts = _task_prompts(model, prompts, n=n_prompts, n_shots=n_shots, seed=seed, shuffle_labels=False)
    elif isinstance(prompts, str) and len(prompts.split()) == 1:
        import difflib

        close = difflib.get_close_matches(prompts, sorted(_task_names()), n=1)
        if close:
            raise LensarithError(f"prompts={prompts!r} is not a task name (did you mean {close[0]!r}?); give a task name or "
                                 "few-shot prompts")
    batch = as_batch(model, prompts)
    vecs = resid_by_layer(model, batch, site, [layer], batch_size=batch_size)[0]
    return make_task_vector(model, vecs, batch, site=site, layer=layer, reduce=reduce, task=task, n_shots=n_shots,
                            seed=seed)


def _task_names() -> set[str]:
    from ..tasks import TASKS

    return set(TASKS)


def make_task_vector(model: Model, vecs: Tensor, batch: Batch, *, site: str, layer: int, reduce: str, task: str | None,
                     n_shots: int | None, seed: int | None) -> TaskVector:
    """Wrap per-prompt residuals ``[source, d_model]`` as a ``TaskVector`` with provenance."""
    sources = sources_of(batch)
    task = task or _common_task(batch)
    if reduce == "mean":
        vecs, axes = vecs.mean(0), ("d_model",)
    else:
        axes = ("source", "d_model")
    meta = provenance(model, recipe="extract_task_vector", kind="task_vector", site=site, layer=layer,
                      hook=Site(site, layer).hook_name, position="last", reduce=reduce, task=task, sources=sources,
                      n_sources=len(batch), n_shots=n_shots, seed=seed, norm=vecs.float().norm(dim=-1).tolist(),
                      dtype=str(vecs.dtype).removeprefix("torch."))
    labels = {"source": sources} if reduce == "none" and sources else {}
    return TaskVector({"vector": vecs}, {"vector": axes}, labels, meta)
