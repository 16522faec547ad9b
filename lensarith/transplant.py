"""FFN-output transplantation (Merullo, Eickhoff & Pavlick 2023): o-vectors and what they do.

An *o-vector* is the output of one MLP ("FFN") at the last token of a source prompt, e.g.
MLP 19 of GPT2-Medium on ``... capital of Poland?\\nA:``. The paper's claim is that it is
largely content-independent: put into an unrelated context where the model represents
`` China``, it promotes `` Beijing``. This module

- extracts o-vectors with provenance (``extract_o_vector`` -> ``OVector``, saved and
  loaded as safetensors + JSON),
- transplants them (``transplant``: replace a range of MLP outputs, add, or subtract) and
  scores control and transplanted runs with the logit lens in one batched pass,
- finds the application layer and the replaced range for a new model (``find_layers``),
- explains a vector (``decode_o_vector``, ``o_vector_consistency``, ``o_vector_analogy``),
- runs the whole recipe for a task (``transplant_experiment``, recipe ``"transplant"``).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ._errors import LensarithError
from ._run import collect
from .interventions import Add, Capture, Intervention, Replace, compile_hooks, intervene
from .models import check_layer
from .recipes import register_recipe
from .result import Result, provenance
from .sites import Site
from .tasks import Batch, Example, as_batch, build_prompts, random_token_contexts, tokenize

__all__ = [
    "OVector",
    "extract_o_vector",
    "transplant_interventions",
    "transplant",
    "TransplantResult",
    "transplant_contexts",
    "SearchConfig",
    "LayerSearchResult",
    "find_layers",
    "DecodeResult",
    "decode_o_vector",
    "ConsistencyResult",
    "o_vector_consistency",
    "AnalogyResult",
    "o_vector_analogy",
    "TransplantConfig",
    "transplant_experiment",
]

MODES = ("replace", "add", "subtract")
POSITIONS = ("all", "last")
RUNS = ("control", "transplant")


# --------------------------------------------------------------------------- o-vectors


class OVector(Result):
    """An MLP output taken from source prompt(s), with provenance.

    Tensors: ``vector`` ``[d_model]`` (one vector) or ``[source, d_model]`` (one per source
    prompt). ``meta`` holds the model name and config hash, ``n_layers``/``d_model``, the
    ``layer`` and ``hook``, ``position``, ``task``, ``sources`` (the prompts), ``norm`` and
    ``dtype``. Save with ``o.save(path)``; load with ``OVector.load(path, model=model)``.
    """

    kind = "o_vector"

    @property
    def vector(self) -> Float[Tensor, "*source d_model"]:
        return self.tensors["vector"]

    @property
    def layer(self) -> int | None:
        """The MLP layer the vector was taken from (None for a hand-made vector)."""
        return self.meta.get("layer")

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[-1])

    @property
    def n_sources(self) -> int:
        """How many vectors it holds (1 for a ``[d_model]`` vector)."""
        return 1 if self.vector.ndim == 1 else int(self.vector.shape[0])

    @property
    def norm(self) -> Float[Tensor, "*source"]:
        return self.vector.float().norm(dim=-1)

    def single(self) -> Float[Tensor, " d_model"]:
        """The one vector it holds; raises when it holds several (use ``mean`` or ``select``)."""
        if self.vector.ndim == 1:
            return self.vector
        if self.vector.shape[0] == 1:
            return self.vector[0]
        raise LensarithError(
            f"o holds {self.vector.shape[0]} source vectors (shape {tuple(self.vector.shape)}); "
            "pick one with o.select(i) or average them with o.mean()"
        )

    def mean(self) -> OVector:
        """The average over source prompts, as a ``[d_model]`` OVector."""
        vec = self.vector if self.vector.ndim == 1 else self.vector.mean(0)
        meta = {**self.meta, "reduce": "mean", "norm": float(vec.float().norm())}
        return OVector({"vector": vec}, {"vector": ("d_model",)}, {}, meta)

    def select(self, index: int) -> OVector:
        """The vector of one source prompt, as a ``[d_model]`` OVector."""
        if self.vector.ndim == 1:
            if index not in (0, -1):
                raise LensarithError(f"index={index} is out of range: o holds one vector")
            return self
        n = self.vector.shape[0]
        if not -n <= index < n:
            raise LensarithError(f"index={index} is out of range: o holds {n} source vectors (valid -{n}..{n - 1})")
        vec = self.vector[index]
        sources = self.meta.get("sources") or []
        meta = {**self.meta, "reduce": "select", "sources": sources[index:index + 1] if sources else [],
                "norm": float(vec.float().norm())}
        return OVector({"vector": vec}, {"vector": ("d_model",)}, {}, meta)

    def check(self, model, *, name: str = "o") -> None:
        """Raise unless the vector fits ``model`` (same width; same depth when recorded)."""
        if self.d_model != model.cfg.d_model:
            raise LensarithError(
                f"{name} has d_model={self.d_model} but the model has d_model={model.cfg.d_model}: "
                f"the vector comes from another model ({self.meta.get('model', 'unknown')!r}); "
                "extract it from this model with extract_o_vector"
            )
        n_layers = self.meta.get("n_layers")
        if n_layers is not None and n_layers != model.cfg.n_layers:
            raise LensarithError(
                f"{name} was extracted from a model with {n_layers} layers ({self.meta.get('model', 'unknown')!r}) "
                f"but this model has {model.cfg.n_layers}; use a vector from this model, or wrap the raw "
                "tensor with OVector.from_tensor(o.vector) to transplant it anyway"
            )

    @classmethod
    def from_tensor(cls, vector: Float[Tensor, "*source d_model"], *, model=None, layer: int | None = None,
                    label: str = "custom") -> OVector:
        """Wrap a hand-made vector (e.g. ``model.W_U[:, token]``) as an OVector.

        Args:
            vector: ``[d_model]`` or ``[source, d_model]``.
            model: when given, the vector is checked against it and its provenance recorded.
            layer: a default application layer for ``transplant`` (optional).
            label: a name for ``meta["task"]``.
        """
        if not isinstance(vector, Tensor) or vector.ndim not in (1, 2) or not vector.is_floating_point():
            got = f"shape {tuple(vector.shape)} dtype {vector.dtype}" if isinstance(vector, Tensor) else type(vector).__name__
            raise LensarithError(f"vector must be a float tensor [d_model] or [source, d_model], got {got}")
        vector = vector.detach().clone()
        meta: dict[str, Any] = {"task": label, "layer": layer, "reduce": "custom",
                                "dtype": str(vector.dtype).removeprefix("torch."),
                                "norm": vector.float().norm(dim=-1).tolist()}
        if model is not None:
            if layer is not None:
                meta["layer"] = check_layer(model, layer)
            meta = provenance(model, **meta)
        axes = ("d_model",) if vector.ndim == 1 else ("source", "d_model")
        out = cls({"vector": vector}, {"vector": axes}, {}, meta)
        if model is not None:
            out.check(model, name="vector")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], model=None) -> OVector:
        """Load a saved OVector; with ``model``, check that it fits that model."""
        out = super().load(path)
        if not isinstance(out, OVector):
            raise LensarithError(f"{str(path)!r} holds a {out.kind!r} result, not an o-vector")
        if model is not None:
            out.check(model)
        return out

    def __repr__(self) -> str:
        norm = self.norm
        shown = f"{float(norm):.3g}" if norm.ndim == 0 else f"{norm.mean():.3g} (mean of {norm.numel()})"
        return (f"OVector(layer={self.layer}, task={self.meta.get('task')!r}, shape={tuple(self.vector.shape)}, "
                f"norm={shown}, model={self.meta.get('model')!r})")


def extract_o_vector(
    model,
    prompts,
    layer: int,
    *,
    position: int | str = "last",
    reduce: str = "none",
    task: str | None = None,
    batch_size: int = 32,
) -> OVector:
    """Take the MLP output at ``layer`` and ``position`` of source prompt(s) as an o-vector.

    Args:
        model: a HookedTransformer with MLPs.
        prompts: the source prompt(s): strings, ``Example`` objects, token ids or a ``Batch``.
        layer: the MLP layer (negative counts from the end); the paper's GPT2-Medium used 19
            for capitals and uppercasing, 18 for past tense.
        position: ``"last"`` / ``-1`` (each prompt's last real token), another negative
            offset from it, or an absolute position.
        reduce: ``"none"`` keeps one vector per prompt (``[source, d_model]``); ``"mean"``
            averages them (``[d_model]``).
        task: recorded in the provenance (default: the examples' common task, if any).
        batch_size: prompts per forward.

    Returns:
        An ``OVector`` with provenance (model, config hash, layer, hook, task, source
        prompts, norm, dtype).

    Example:
        >>> o = extract_o_vector(model, build_prompts("capitals", n=1), layer=1)  # doctest: +SKIP
        >>> o.vector.shape  # doctest: +SKIP
        torch.Size([1, 32])
    """
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLP outputs to extract")
    layer = check_layer(model, layer)
    if reduce not in ("none", "mean"):
        raise LensarithError(f"reduce must be 'none' (one vector per prompt) or 'mean', got {reduce!r}")
    batch = as_batch(model, prompts)
    batch.positions(position)
    site = Site("mlp_out", layer, position)
    vecs = collect(model, batch, [site], stop_at_layer=layer + 1, batch_size=batch_size, desc="extract")[site]
    vecs = vecs.detach().cpu()
    sources = [e.prompt for e in batch.examples] if batch.examples else []
    if task is None and batch.examples:
        tasks = {e.task for e in batch.examples}
        task = tasks.pop() if len(tasks) == 1 else None
    if reduce == "mean":
        vecs, axes = vecs.mean(0), ("d_model",)
    else:
        axes = ("source", "d_model")
    meta = provenance(model, recipe="extract_o_vector", layer=layer, hook=site.hook_name, position=position,
                      reduce=reduce, task=task, sources=sources, n_sources=len(batch),
                      norm=vecs.float().norm(dim=-1).tolist(), dtype=str(vecs.dtype).removeprefix("torch."))
    labels = {"source": sources} if reduce == "none" and sources else {}
    return OVector({"vector": vecs}, {"vector": axes}, labels, meta)


def _as_o(model, o, name: str = "o") -> OVector:
    if isinstance(o, Tensor):
        o = OVector.from_tensor(o)
    if not isinstance(o, OVector):
        raise LensarithError(f"{name} must be an OVector (extract_o_vector) or a tensor [d_model], got {type(o).__name__}")
    o.check(model, name=name)
    return o


# --------------------------------------------------------------------------- interventions


def _layers(model, layers, *, name: str = "layers") -> list[int]:
    if isinstance(layers, bool):
        raise LensarithError(f"{name} must be an int, a range or a list of ints, got {layers!r}")
    if isinstance(layers, int):
        layers = [layers]
    if not isinstance(layers, (Sequence, range)) or isinstance(layers, str):
        raise LensarithError(f"{name} must be an int, a range or a list of ints, got {layers!r}")
    if len(layers) == 0:
        raise LensarithError(f"{name} is empty: give at least one layer (valid 0..{model.cfg.n_layers - 1})")
    out: list[int] = []
    for layer in layers:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise LensarithError(f"{name} must hold ints, got {layer!r} in {list(layers)!r}")
        n = model.cfg.n_layers
        if not -n <= layer < n:
            raise LensarithError(
                f"{name}={list(layers)!r}: layer {layer} is out of range for a model with {n} layers: valid is {-n}..{n - 1}"
            )
        if layer % n not in out:
            out.append(layer % n)
    return out


def _check_choice(value, valid: Sequence[str], name: str) -> None:
    if value not in valid:
        raise LensarithError(f"{name} must be one of {', '.join(repr(v) for v in valid)}, got {value!r}")


def _default_layers(model, o: OVector, mode: str) -> list[int]:
    if o.layer is None:
        raise LensarithError("layers is needed: o has no source layer (it was built with OVector.from_tensor)")
    layer = check_layer(model, o.layer, name="o.layer")
    return list(range(layer, model.cfg.n_layers)) if mode == "replace" else [layer]


def transplant_interventions(model, o, *, layers=None, mode: str = "replace", positions: str = "all",
                             scale: float = 1.0) -> list[Intervention]:
    """The interventions that put an o-vector into MLP outputs (compose them freely).

    Args:
        model: the target model (checked against the vector's width and depth).
        o: an ``OVector`` or a tensor ``[d_model]``.
        layers: an int, range or list of MLP layers. Default: ``o.layer`` to the last layer
            for ``replace``, ``[o.layer]`` for ``add``/``subtract``.
        mode: ``replace`` (the MLP output becomes ``scale * o``), ``add`` (``+ scale * o``)
            or ``subtract`` (``- scale * o``).
        positions: ``all`` (every position, as the paper's code) or ``last`` (each row's last
            real token).
        scale: multiplies the vector.

    Returns:
        ``Replace``/``Add`` interventions at ``Site("mlp_out", layer, position)``.
    """
    _check_choice(mode, MODES, "mode")
    _check_choice(positions, POSITIONS, "positions")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
        raise LensarithError(f"scale must be a finite number, got {scale!r}")
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLP outputs to transplant into")
    o = _as_o(model, o)
    vec = o.single()
    layers = _default_layers(model, o, mode) if layers is None else _layers(model, layers)
    pos = None if positions == "all" else "last"
    if mode == "replace":
        return [Replace(Site("mlp_out", layer, pos), scale * vec) for layer in layers]
    sign = 1.0 if mode == "add" else -1.0
    return [Add(Site("mlp_out", layer, pos), vec, sign * scale) for layer in layers]


# --------------------------------------------------------------------------- batched evaluation


def _tile(batch: Batch, k: int) -> Batch:
    """``k`` copies of a batch stacked on the row axis."""
    rep = lambda t: None if t is None else t.repeat(k)  # noqa: E731
    return Batch(batch.tokens.repeat(k, 1), batch.lengths.repeat(k), rep(batch.answer_ids), rep(batch.argument_ids))


def _on_rows(fn, start: int, stop: int):
    """Restrict a hook function to rows ``start:stop`` of the activation."""

    def hook(act: Tensor, hook) -> Tensor:
        part = fn(act[start:stop], hook)
        if part is None:
            return act
        out = act.clone()
        out[start:stop] = part
        return out

    return hook


def _logits_last(model, resid: Tensor) -> Tensor:
    """Logits ``[rows, d_vocab]`` of residuals ``[rows, d_model]`` (final LN, unembedding)."""
    x = resid[:, None]
    if model.cfg.normalization_type is not None:
        x = model.ln_final(x)
    return model.unembed(x)[:, 0].float()


def _rank(logits: Tensor, ids: Tensor) -> Tensor:
    """How many tokens score strictly higher than ``ids`` (-1 where an id is missing)."""
    safe = ids.clamp_min(0)
    target = logits.gather(1, safe[:, None])
    rank = (logits > target).sum(-1)
    return torch.where(ids >= 0, rank, torch.full_like(rank, -1))


def _evaluate(model, batch: Batch, groups: Sequence[Sequence[Intervention]], *, batch_size: int,
              readout: str = "all", progress: bool | None = None, desc: str = "transplant") -> dict[str, Tensor]:
    """Run every group of interventions on every context in shared forwards.

    Each forward carries ``len(groups)`` copies of up to ``batch_size`` contexts; group
    ``g``'s hooks touch only its copy. Returns ``rank_answer``/``rank_argument``
    ``[group, layer, batch]`` (logit lens at each layer's ``resid_post``, last real token)
    and ``top1`` ``[group, batch]`` (the model's prediction).
    """
    n = model.cfg.n_layers
    read = list(range(n)) if readout == "all" else [n - 1]
    sites = [Site("resid_post", layer, "last") for layer in read]
    k = len(groups)
    device = model.cfg.device
    parts: dict[str, list[Tensor]] = {"rank_answer": [], "rank_argument": [], "top1": []}
    chunks = list(batch.chunks(batch_size))
    show = len(chunks) > 4 if progress is None else progress
    with torch.no_grad():
        for chunk in tqdm(chunks, desc=desc, disable=not show, leave=False):
            b = len(chunk)
            tiled = _tile(chunk, k)
            hooks = []
            for g, ivs in enumerate(groups):
                hooks += [(name, _on_rows(fn, g * b, (g + 1) * b)) for name, fn in compile_hooks(model, ivs, chunk)]
            cap = Capture(sites)
            with intervene(model, (), tiled, extra_hooks=hooks + cap.hooks(tiled)):
                model(tiled.tokens.to(device), stop_at_layer=n)
            ans = tiled.answer_ids.to(device) if tiled.answer_ids is not None else None
            arg = tiled.argument_ids.to(device) if tiled.argument_ids is not None else None
            r_ans, r_arg = [], []
            for i, site in enumerate(sites):
                logits = _logits_last(model, cap.captured[site])
                if ans is not None:
                    r_ans.append(_rank(logits, ans))
                if arg is not None:
                    r_arg.append(_rank(logits, arg))
                if i == len(sites) - 1:
                    parts["top1"].append(logits.argmax(-1).view(k, b).cpu())
            for key, ranks in (("rank_answer", r_ans), ("rank_argument", r_arg)):
                if ranks:
                    parts[key].append(torch.stack(ranks).view(len(sites), k, b).transpose(0, 1).cpu())
    return {key: torch.cat(v, dim=-1) for key, v in parts.items() if v}


def _multi_token_error(model, batch: Batch, name: str) -> None:
    report = batch.report
    bad = sorted(set(report.get("multi_token_answer", [])) | set(report.get("multi_token_argument", [])))
    if not bad or batch.examples is None:
        return
    items = []
    for i in bad:
        ex = batch.examples[i]
        for field_name in ("argument", "answer"):
            text = getattr(ex, field_name)
            n_tok = len(model.to_tokens(text, prepend_bos=False)[0]) if text else 0
            if n_tok > 1:
                items.append(f"{text!r} ({field_name}, {n_tok} tokens)")
    shown = ", ".join(items[:6]) + (f" and {len(items) - 6} more" if len(items) > 6 else "")
    raise LensarithError(
        f"{name}: {len(bad)} of {len(batch)} examples have a multi-token argument or answer: {shown}; "
        "the paper scores single tokens: pass drop_multi_token=True to drop them"
    )


def _context_batch(model, contexts, *, drop_multi_token: bool, name: str = "contexts") -> Batch:
    if isinstance(contexts, Batch):
        batch = contexts
    else:
        if isinstance(contexts, (str, Example)):
            contexts = [contexts]
        if not isinstance(contexts, Sequence) or len(contexts) == 0:
            raise LensarithError(
                f"{name} is empty: give at least one Example (e.g. transplant_contexts('capitals')), got {contexts!r}"
            )
        plain = [c for c in contexts if isinstance(c, str)]
        if plain:
            raise LensarithError(
                f"{name} must be lensarith.Example objects carrying the answer (and argument) to score, "
                f"got {len(plain)} plain strings, e.g. {plain[0]!r}; wrap them: Example(prompt, ' Beijing', ' China')"
            )
        batch = tokenize(model, list(contexts), drop_multi_token=drop_multi_token)
        if not drop_multi_token:
            _multi_token_error(model, batch, name)
    if batch.answer_ids is None or bool((batch.answer_ids < 0).any()):
        raise LensarithError(f"{name}: every context needs an answer to score (Example.answer), some have none")
    return batch


# --------------------------------------------------------------------------- transplant


class TransplantResult(Result):
    """Logit-lens ranks of answer and argument, control vs transplanted, per layer and context.

    Tensors: ``rank_answer`` and ``rank_argument`` ``[run, layer, batch]`` (run 0 is the
    control, run 1 the transplanted run; rank 0 = top-1; the last layer is the model's
    output), ``top1`` ``[run, batch]`` (predicted token ids), ``answer_ids`` and
    ``argument_ids`` ``[batch]``.

    "No real effect": a context where the transplant does not improve the answer's rank at
    the model's output (final-layer rank transplanted >= rank control).
    """

    kind = "transplant"

    def _run(self, run: str) -> int:
        _check_choice(run, RUNS, "run")
        return RUNS.index(run)

    def rank(self, which: str = "answer", run: str = "transplant") -> Int[Tensor, "layer batch"]:
        """Rank of the answer or argument per layer (0 = top-1)."""
        _check_choice(which, ("answer", "argument"), "which")
        key = f"rank_{which}"
        if key not in self.tensors:
            raise LensarithError(f"which={which!r}: the contexts carried no {which}s")
        return self.tensors[key][self._run(run)]

    def reciprocal_rank(self, which: str = "answer", run: str = "transplant") -> Float[Tensor, "layer batch"]:
        """The paper's metric ``1 / (rank + 1)`` per layer and context."""
        return 1.0 / (self.rank(which, run).float() + 1.0)

    def mrr(self, which: str = "answer", run: str = "transplant") -> Float[Tensor, " layer"]:
        """Mean reciprocal rank per layer (the curves of the paper's Fig 5)."""
        return self.reciprocal_rank(which, run).mean(-1)

    def accuracy(self, which: str = "answer", run: str = "transplant") -> float:
        """Top-1 accuracy of the answer (or argument) at the model's output."""
        return float((self.rank(which, run)[-1] == 0).float().mean())

    @property
    def no_effect(self) -> Tensor:
        """``[batch]`` bool: the transplant did not improve the answer's final-layer rank."""
        return self.rank("answer", "transplant")[-1] >= self.rank("answer", "control")[-1]

    def no_effect_rate(self) -> float:
        return float(self.no_effect.float().mean())

    def summary(self) -> dict[str, Any]:
        """Aggregates at the model's output: MRR, top-1 and median rank, control vs transplant."""
        out: dict[str, Any] = {"n": int(self.tensors["rank_answer"].shape[-1])}
        for which in ("answer", "argument"):
            if f"rank_{which}" not in self.tensors:
                continue
            for run in RUNS:
                out[f"{which}_mrr_{run}"] = float(self.mrr(which, run)[-1])
                out[f"{which}_top1_{run}"] = self.accuracy(which, run)
                out[f"{which}_median_rank_{run}"] = float(self.rank(which, run)[-1].float().median())
        out["no_effect_rate"] = self.no_effect_rate()
        return out

    def per_example(self) -> list[dict[str, Any]]:
        """One dict per context: prompt, final-layer ranks and predictions, no-effect flag."""
        prompts = self.labels.get("batch") or [None] * self.tensors["rank_answer"].shape[-1]
        top = self.meta.get("top1_tokens", {})
        rows = []
        for i, prompt in enumerate(prompts):
            row: dict[str, Any] = {"prompt": prompt}
            for which in ("answer", "argument"):
                if f"rank_{which}" in self.tensors:
                    for run in RUNS:
                        row[f"{which}_rank_{run}"] = int(self.rank(which, run)[-1, i])
            for run in RUNS:
                if run in top:
                    row[f"top1_{run}"] = top[run][i]
            row["no_effect"] = bool(self.no_effect[i])
            rows.append(row)
        return rows


def transplant(
    model,
    o,
    contexts,
    *,
    layers=None,
    mode: str = "replace",
    positions: str = "all",
    scale: float = 1.0,
    batch_size: int = 32,
    drop_multi_token: bool = False,
    progress: bool | None = None,
) -> TransplantResult:
    """Put an o-vector into the MLP outputs of ``contexts`` and score control vs transplant.

    Each forward carries a chunk of ``batch_size`` contexts twice (control rows and
    transplanted rows), so N contexts take about N / batch_size forwards. The model is left
    unchanged (hooks are removed, also on errors).

    Args:
        model: a HookedTransformer with MLPs.
        o: an ``OVector`` (from ``extract_o_vector``) or a tensor ``[d_model]``.
        contexts: ``Example`` objects with the answer (and argument) to score, or a ``Batch``
            — random-token contexts (``transplant_contexts(task)``), zero-shot prompts
            (``transplant_contexts(task, kind="zero_shot")``) or your own.
        layers: MLP layers to intervene on (int, range or list). Default: ``o.layer`` to the
            last layer for ``replace`` (the paper replaced 18-23 of GPT2-Medium's 24 with the
            o from 19), ``[o.layer]`` for ``add``/``subtract``.
        mode: ``replace`` the MLP outputs with ``scale * o``; ``add`` ``scale * o`` to them;
            ``subtract`` it (the paper's check that Warsaw turns back into Poland).
        positions: ``all`` positions (the paper's code) or only the ``last`` real token.
        scale: multiplies the vector.
        batch_size: contexts per forward (each forward has 2 x batch_size rows).
        drop_multi_token: drop contexts whose answer or argument is not one token (otherwise
            they raise, naming them).
        progress: show a progress bar (default: more than 4 chunks).

    Returns:
        A ``TransplantResult``: per-layer reciprocal ranks of answer and argument for the
        control and transplanted runs (``mrr``, ``reciprocal_rank``), top-1 ``accuracy``,
        the ``no_effect_rate`` (contexts whose final-layer answer rank did not improve),
        ``summary()`` and ``per_example()``.

    Example:
        >>> o = extract_o_vector(model, build_prompts("capitals", n=1), layer=1)  # doctest: +SKIP
        >>> out = transplant(model, o, transplant_contexts("capitals", n=50), layers=range(1, 2))  # doctest: +SKIP
        >>> out.summary()["answer_mrr_transplant"]  # doctest: +SKIP
    """
    ivs = transplant_interventions(model, o, layers=layers, mode=mode, positions=positions, scale=scale)
    o = _as_o(model, o)
    batch = _context_batch(model, contexts, drop_multi_token=drop_multi_token)
    got = _evaluate(model, batch, [[], ivs], batch_size=batch_size, progress=progress)
    n = model.cfg.n_layers
    tensors: dict[str, Tensor] = {k: v for k, v in got.items()}
    axes = {"rank_answer": ("run", "layer", "batch"), "rank_argument": ("run", "layer", "batch"),
            "top1": ("run", "batch")}
    axes = {k: axes[k] for k in tensors}
    for key, ids in (("answer_ids", batch.answer_ids), ("argument_ids", batch.argument_ids)):
        if ids is not None:
            tensors[key], axes[key] = ids.cpu(), ("batch",)
    top1_tokens = {run: [model.to_single_str_token(int(t)) for t in got["top1"][i]] for i, run in enumerate(RUNS)}
    meta = provenance(
        model, recipe="transplant", mode=mode, positions=positions, scale=scale,
        layers=[iv.site.layer % n for iv in ivs], hooks=sorted({iv.site.hook_name for iv in ivs}),
        o={k: v for k, v in o.meta.items() if k != "sources"}, o_sources=o.meta.get("sources", []),
        report=batch.report, top1_tokens=top1_tokens,
        no_effect="final-layer answer rank with the transplant >= rank in the control run",
    )
    prompts = [e.prompt for e in batch.examples] if batch.examples else []
    labels = {"run": list(RUNS), "layer": [f"L{layer}" for layer in range(n)], "batch": prompts}
    return TransplantResult(tensors, axes, labels, meta)


def transplant_contexts(task, *, kind: str = "random", n: int | None = None, seed: int = 0,
                        exclude: Sequence[str] = ()) -> list[Example]:
    """Target contexts for a task's arguments.

    Args:
        task: a task name (``capitals``, ``uppercase``, ``past`` ...) or a list of
            ``Example`` objects (their arguments and answers are used).
        kind: ``random`` (the paper's ``w1 w2 w3 X w1 w2 w3 X w1 w2 w3`` contexts, seeded) or
            ``zero_shot`` (the task's question without a demonstration; task names only).
        n: keep the first ``n`` (after a seeded shuffle when ``n`` is given).
        seed: seeds the shuffle and the filler words.
        exclude: arguments to leave out (e.g. the source prompt's).

    Returns:
        ``Example`` objects whose answer is the relation's answer for the argument.
    """
    _check_choice(kind, ("random", "zero_shot"), "kind")
    if isinstance(task, str):
        examples = build_prompts(task, format="zero_shot" if kind == "zero_shot" else "one_shot",
                                 seed=seed, shuffle=n is not None)
    else:
        if kind == "zero_shot":
            raise LensarithError("kind='zero_shot' needs a task name; for your own examples build the prompts yourself")
        if not isinstance(task, Sequence) or not task or not all(isinstance(e, Example) for e in task):
            raise LensarithError(f"task must be a task name or a non-empty list of Examples, got {task!r}")
        examples = list(task)
    skip = {a.strip() for a in exclude}
    examples = [e for e in examples if e.argument.strip() not in skip]
    if n is not None:
        if n < 1:
            raise LensarithError(f"n must be a positive number of contexts, got {n!r}")
        examples = examples[:n]
    if not examples:
        raise LensarithError("no contexts left: every example was excluded")
    return random_token_contexts(examples, seed=seed) if kind == "random" else examples


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
        _check_choice(self.method, ("sweep", "dla"), "SearchConfig method")
        _check_choice(self.apply_mode, ("add", "replace"), "SearchConfig apply_mode")
        _check_choice(self.positions, POSITIONS, "SearchConfig positions")
        if self.screen is not None and (not isinstance(self.screen, int) or self.screen < 1):
            raise LensarithError(f"SearchConfig screen must be None or a positive int, got {self.screen!r}")
        for name in ("n_prompts", "n_contexts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise LensarithError(f"SearchConfig {name} must be a positive int, got {value!r}")


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


def _task_batch(model, task, *, n: int | None, seed: int, name: str = "task") -> Batch:
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


def _choose_source(correct: Tensor, source: int | None) -> int:
    """The source prompt's row: ``source``, or the first prompt answered correctly."""
    n = len(correct)
    if source is None:
        hits = correct.nonzero()
        return int(hits[0]) if len(hits) else 0
    if not isinstance(source, int) or isinstance(source, bool) or not -n <= source < n:
        raise LensarithError(f"source={source!r} is out of range: there are {n} usable task prompts")
    return source % n


def _pick_source(model, batch: Batch, source: int | None, batch_size: int) -> tuple[int, Tensor]:
    """The source prompt's row (first correct one by default) and the correctness mask."""
    got = _evaluate(model, batch, [[]], batch_size=batch_size, readout="final", desc="task prompts")
    correct = got["rank_answer"][0, -1] == 0
    return _choose_source(correct, source), correct


def _mlp_dla(model, batch: Batch, batch_size: int) -> Tensor:
    from .attribution import direct_logit_attribution

    dla = direct_logit_attribution(model, batch, "answer", "argument", granularity="layer", batch_size=batch_size)
    idx = [dla.component_labels.index(f"L{layer}_mlp") for layer in range(model.cfg.n_layers)]
    return dla.attributions[idx].mean(-1)


def _gradient_screen(model, batch: Batch, o_layers: Tensor, cfg: SearchConfig, batch_size: int) -> Tensor:
    """First-order estimate, per layer l, of the change in log p(answer) from the sweep's edit."""
    n = model.cfg.n_layers
    sites = [Site("mlp_out", layer) for layer in range(n)]
    gsum = torch.zeros(n, model.cfg.d_model)
    gact = torch.zeros(n)

    def leaf(act: Tensor, hook) -> Tensor:
        return act.detach().requires_grad_(True)

    device = model.cfg.device
    for chunk in batch.chunks(batch_size):
        acts: list[Tensor] = []

        def keep(act: Tensor, hook) -> None:  # the activation itself: a slice of it would not be in the graph
            acts.append(act)

        hooks = [("hook_embed", leaf)] + [(s.hook_name, keep) for s in sites]
        with torch.enable_grad(), intervene(model, (), chunk, extra_hooks=hooks):
            resid = model(chunk.tokens.to(device), stop_at_layer=n)
            rows = torch.arange(len(chunk), device=resid.device)
            logp = _logits_last(model, resid[rows, chunk.last.to(resid.device)]).log_softmax(-1)
            metric = logp[rows, chunk.answer_ids.to(resid.device)].sum()
            grads = torch.autograd.grad(metric, acts)
        mask = torch.arange(chunk.tokens.shape[1])[None] < chunk.lengths[:, None]
        if cfg.positions == "last":
            mask = torch.arange(chunk.tokens.shape[1])[None] == chunk.last[:, None]
        mask = mask.to(device)[..., None].float()
        for layer, (g, a) in enumerate(zip(grads, acts)):
            gsum[layer] += (g * mask).sum((0, 1)).detach().float().cpu()
            gact[layer] += float((g * a.detach() * mask).sum())
    o = o_layers.float()
    if cfg.apply_mode == "add":
        est = cfg.scale * (gsum * o).sum(-1)
    else:
        est = torch.stack([(cfg.scale * gsum[l:] @ o[l] - gact[l:]).sum() for l in range(n)])
    return est / len(batch)


def find_layers(model, task, *, source: int | None = None, contexts=None, config: SearchConfig = SearchConfig(),
                batch_size: int = 8, progress: bool | None = None) -> LayerSearchResult:
    """Find the application layer and the start of the replaced range for a model and task.

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
        source: index of the source prompt among the usable (single-token) task prompts.
        contexts: target contexts (default: random-token contexts for the other prompts).
        config: a ``SearchConfig``.
        batch_size: contexts per forward; a forward carries one copy per swept layer.
        progress: show progress bars.

    Returns:
        A ``LayerSearchResult`` with ``application_layer``, ``start_layer``, ``layers``
        (the range to replace) and ``table()``.
    """
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLPs to search")
    n = model.cfg.n_layers
    prompts = _task_batch(model, task, n=config.n_prompts, seed=config.seed)
    lens = _evaluate(model, prompts, [[]], batch_size=batch_size, readout="all", desc="task prompts")
    correct = lens["rank_answer"][0, -1] == 0
    src = _choose_source(correct, source)
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
    ctx = _context_batch(model, contexts, drop_multi_token=True)
    dla = _mlp_dla(model, _rows(prompts, use), batch_size)
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
        res = _evaluate(model, ctx, groups, batch_size=batch_size, readout="final", progress=progress, desc="apply sweep")
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
    res = _evaluate(model, ctx, groups, batch_size=batch_size, readout="final", progress=progress, desc="range sweep")
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
    axes = {k: ("layer",) for k in tensors}
    return LayerSearchResult(tensors, axes, {"layer": [f"L{layer}" for layer in range(n)]}, meta)


def _rows(batch: Batch, keep: Tensor) -> Batch:
    """The rows of a batch where ``keep`` is true."""
    idx = keep.nonzero().flatten()
    lengths = batch.lengths[idx]
    width = int(lengths.max())
    pick = lambda t: None if t is None else t[idx]  # noqa: E731
    examples = None if batch.examples is None else tuple(batch.examples[i] for i in idx.tolist())
    return Batch(batch.tokens[idx, :width], lengths, pick(batch.answer_ids), pick(batch.argument_ids), examples, batch.report)


# --------------------------------------------------------------------------- explain


class DecodeResult(Result):
    """What an o-vector writes into vocabulary space.

    Tensors: ``scores`` ``[d_vocab]`` (the vector through the final LayerNorm's centring
    and weight, scaled to unit RMS, then ``W_U``; biases left out), ``promoted_ids`` and
    ``demoted_ids`` ``[k]``; labels ``promoted`` / ``demoted`` hold the token strings.
    """

    kind = "o_decode"

    @property
    def promoted(self) -> list[tuple[str, float]]:
        """The tokens the vector pushes up most, with their scores."""
        return [(s, float(self.tensors["scores"][i])) for s, i in zip(self.labels["promoted"], self.tensors["promoted_ids"])]

    @property
    def demoted(self) -> list[tuple[str, float]]:
        """The tokens the vector pushes down most, with their scores."""
        return [(s, float(self.tensors["scores"][i])) for s, i in zip(self.labels["demoted"], self.tensors["demoted_ids"])]

    def rank_of(self, token_id: int) -> int:
        """Rank of a token among the promoted ones (0 = promoted most)."""
        scores = self.tensors["scores"]
        return int((scores > scores[token_id]).sum())


def decode_o_vector(model, o, *, k: int = 10, through_ln: bool = True) -> DecodeResult:
    """Decode an o-vector: the tokens it promotes and demotes.

    Args:
        model: the model the vector belongs to.
        o: an ``OVector`` holding one vector (or a tensor ``[d_model]``).
        k: how many tokens to list each way.
        through_ln: apply the final LayerNorm's centring and weight (with the vector's own
            scale; LayerNorm and unembedding biases are left out, they do not depend on o).
            False projects on ``W_U`` directly.

    Returns:
        A ``DecodeResult`` with ``promoted``, ``demoted`` and ``scores``.
    """
    o = _as_o(model, o)
    vec = o.single().to(model.cfg.device, model.W_U.dtype)
    if not isinstance(k, int) or not 1 <= k <= model.cfg.d_vocab:
        raise LensarithError(f"k must be an int in 1..{model.cfg.d_vocab}, got {k!r}")
    with torch.no_grad():
        if through_ln and model.cfg.normalization_type is not None:
            norm = model.cfg.normalization_type
            x = vec - vec.mean() if norm in ("LN", "LNPre") else vec
            x = x / (x.pow(2).mean() + model.cfg.eps).sqrt()
            if norm in ("LN", "RMS"):
                x = x * model.ln_final.w
        else:
            x = vec
        scores = (x @ model.W_U).float().cpu()
    up = scores.topk(k).indices
    down = (-scores).topk(k).indices
    labels = {"promoted": [model.to_single_str_token(int(i)) for i in up],
              "demoted": [model.to_single_str_token(int(i)) for i in down]}
    meta = provenance(model, recipe="decode_o_vector", through_ln=through_ln, o={k_: v for k_, v in o.meta.items() if k_ != "sources"})
    return DecodeResult({"scores": scores, "promoted_ids": up, "demoted_ids": down},
                        {"scores": ("d_vocab",), "promoted_ids": ("promoted",), "demoted_ids": ("demoted",)}, labels, meta)


class ConsistencyResult(Result):
    """Cosine similarity of o-vectors, one by one and by group (task).

    Tensors: ``cosine`` ``[source, source]``; ``group_mean`` ``[group, group]`` (mean cosine
    between the groups' vectors; the diagonal leaves out each vector with itself, NaN for a
    group of one); ``mean_share`` ``[group]`` = |mean o| / mean |o|: near 1 when a group's
    vectors agree, near 1/sqrt(n) when they are unrelated.
    """

    kind = "o_consistency"

    def within(self, group: str) -> float:
        i = self._group(group)
        return float(self.tensors["group_mean"][i, i])

    def between(self, a: str, b: str) -> float:
        return float(self.tensors["group_mean"][self._group(a), self._group(b)])

    def _group(self, group: str) -> int:
        groups = self.labels["group"]
        if group not in groups:
            raise LensarithError(f"group={group!r} is unknown; groups: {', '.join(groups)}")
        return groups.index(group)

    def summary(self) -> dict[str, Any]:
        groups = self.labels["group"]
        out: dict[str, Any] = {f"within:{g}": self.within(g) for g in groups}
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                out[f"between:{a}|{b}"] = self.between(a, b)
        out.update({f"mean_share:{g}": float(s) for g, s in zip(groups, self.tensors["mean_share"])})
        return out


def o_vector_consistency(vectors) -> ConsistencyResult:
    """Cosine similarity of o-vectors from different source examples and tasks.

    Args:
        vectors: an ``OVector`` with several sources (``extract_o_vector(..., reduce="none")``),
            a mapping ``{task: OVector}`` (compared within and across tasks), or a list of
            OVectors (grouped by ``meta["task"]``).

    Returns:
        A ``ConsistencyResult``: ``cosine``, ``group_mean``, ``within(task)``,
        ``between(a, b)``, ``summary()``.
    """
    if isinstance(vectors, OVector):
        items = [(str(vectors.meta.get("task") or "o"), vectors)]
    elif isinstance(vectors, Mapping):
        items = [(str(k), v) for k, v in vectors.items()]
    elif isinstance(vectors, Sequence) and not isinstance(vectors, str):
        items = [(str(v.meta.get("task") or f"o{i}") if isinstance(v, OVector) else f"o{i}", v) for i, v in enumerate(vectors)]
    else:
        raise LensarithError(f"vectors must be an OVector, a mapping of name to OVector or a list, got {type(vectors).__name__}")
    if not items:
        raise LensarithError("vectors is empty: give at least one OVector")
    rows, groups, sources = [], [], []
    for name, v in items:
        if not isinstance(v, OVector):
            raise LensarithError(f"vectors[{name!r}] must be an OVector, got {type(v).__name__}")
        mat = v.vector.reshape(-1, v.d_model).float()
        if rows and mat.shape[-1] != rows[0].shape[-1]:
            raise LensarithError(f"vectors[{name!r}] has d_model={mat.shape[-1]}, the others {rows[0].shape[-1]}")
        rows.append(mat)
        groups += [name] * mat.shape[0]
        srcs = v.meta.get("sources") or []
        sources += srcs if len(srcs) == mat.shape[0] else [f"{name}[{i}]" for i in range(mat.shape[0])]
    mat = torch.cat(rows)
    unit = mat / mat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.T
    names = list(dict.fromkeys(groups))
    gid = torch.tensor([names.index(g) for g in groups])
    gm = torch.full((len(names), len(names)), float("nan"))
    share = torch.zeros(len(names))
    eye = torch.eye(len(mat), dtype=torch.bool)
    for i in range(len(names)):
        share[i] = mat[gid == i].mean(0).norm() / mat[gid == i].norm(dim=-1).mean().clamp_min(1e-12)
        for j in range(len(names)):
            sel = (gid[:, None] == i) & (gid[None, :] == j) & ~eye
            if bool(sel.any()):
                gm[i, j] = cos[sel].mean()
    return ConsistencyResult({"cosine": cos, "group_mean": gm, "mean_share": share},
                             {"cosine": ("source", "source"), "group_mean": ("group", "group"), "mean_share": ("group",)},
                             {"source": sources, "group": names, "source_group": groups}, {"recipe": "o_vector_consistency"})


class AnalogyResult(Result):
    """The word2vec test: does o point along answer - argument?

    Tensors: ``cosine`` ``[batch]`` = cos(o, v[answer_i] - v[argument_i]); ``shuffled``
    ``[shuffle, batch]`` = cos(o, v[answer_pi(i)] - v[argument_i]) for random pairings pi
    (the control: does the pairing matter?); ``mean_difference_cosine`` (scalar) = cos(o, mean_i of
    the differences), to compare with ``random_cosine_scale`` = 1/sqrt(d_model), the typical
    |cos| of unrelated directions;
    with ``space="unembed"`` also ``logit_diff`` ``[batch]`` = o . (u_answer - u_argument),
    the direct effect of o on the logit difference (before the final LayerNorm).
    """

    kind = "o_analogy"

    def summary(self) -> dict[str, float]:
        cos, shuf = self.tensors["cosine"], self.tensors["shuffled"]
        out = {"cosine_mean": float(cos.mean()), "shuffled_mean": float(shuf.mean()),
               "fraction_above_shuffled": float((cos > shuf.mean(0)).float().mean()),
               "mean_difference_cosine": float(self.tensors["mean_difference_cosine"]),
               "random_cosine_scale": 1.0 / math.sqrt(int(self.meta.get("d_model", 1)))}
        if "logit_diff" in self.tensors:
            out["logit_diff_mean"] = float(self.tensors["logit_diff"].mean())
        return out


def o_vector_analogy(model, o, examples, *, space: str = "unembed", n_shuffles: int = 20, seed: int = 0) -> AnalogyResult:
    """Compare o with the differences ``answer - argument`` of embedding or unembedding vectors.

    Args:
        model: the model the vector belongs to.
        o: an ``OVector`` holding one vector (or a tensor ``[d_model]``).
        examples: a task name, ``Example`` objects or a ``Batch``; multi-token and unknown
            items are dropped (the report is in ``meta``).
        space: ``unembed`` (columns of ``W_U``) or ``embed`` (rows of ``W_E``).
        n_shuffles: random re-pairings of answers and arguments for the control.
        seed: seeds the shuffles.

    Returns:
        An ``AnalogyResult`` (``summary()``: mean cosine vs the shuffled control).
    """
    _check_choice(space, ("unembed", "embed"), "space")
    if not isinstance(n_shuffles, int) or n_shuffles < 1:
        raise LensarithError(f"n_shuffles must be a positive int, got {n_shuffles!r}")
    o = _as_o(model, o)
    vec = o.single().float().cpu()
    batch = _task_batch(model, examples, n=None, seed=seed, name="examples")
    if batch.answer_ids is None or batch.argument_ids is None or bool((batch.argument_ids < 0).any()):
        raise LensarithError("examples need both answers and arguments (Example.answer, Example.argument)")
    with torch.no_grad():
        table = (model.W_U.T if space == "unembed" else model.W_E).detach().float().cpu()
    ans, arg = table[batch.answer_ids], table[batch.argument_ids]

    def cos(x: Tensor) -> Tensor:
        return (x @ vec) / (x.norm(dim=-1) * vec.norm()).clamp_min(1e-12)

    gen = random.Random(seed)
    shuffled = []
    for _ in range(n_shuffles):
        perm = list(range(len(batch)))
        gen.shuffle(perm)
        shuffled.append(cos(ans[perm] - arg))
    diff = ans - arg
    tensors = {"cosine": cos(diff), "shuffled": torch.stack(shuffled),
               "mean_difference_cosine": cos(diff.mean(0, keepdim=True))[0]}
    axes = {"cosine": ("batch",), "shuffled": ("shuffle", "batch"), "mean_difference_cosine": ()}
    if space == "unembed":
        tensors["logit_diff"], axes["logit_diff"] = diff @ vec, ("batch",)
    meta = provenance(model, recipe="o_vector_analogy", space=space, n_shuffles=n_shuffles, seed=seed,
                      report=batch.report, o={k: v for k, v in o.meta.items() if k != "sources"})
    prompts = [e.prompt for e in batch.examples] if batch.examples else []
    return AnalogyResult(tensors, axes, {"batch": prompts}, meta)


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class TransplantConfig:
    """The paper's transplant experiment for one task (``transplant_experiment``).

    Attributes:
        mode, positions, scale: as in ``transplant``.
        layer: the application layer o is taken from (None: ``find_layers``).
        layers: the MLP layers intervened on (None: the search's range for ``replace``
            when the layer was searched, else ``layer``..last; ``(layer,)`` for
            ``add``/``subtract``).
        source: index of the source prompt among the usable task prompts (None: the first
            one the model answers correctly).
        contexts: ``random`` (random-token contexts for the other arguments) or
            ``zero_shot`` prompts.
        n_contexts: how many contexts (None: all).
        seed: seeds contexts and the search.
    """

    mode: str = "replace"
    positions: str = "all"
    scale: float = 1.0
    layer: int | None = None
    layers: Sequence[int] | None = None
    source: int | None = None
    contexts: str = "random"
    n_contexts: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice(self.mode, MODES, "TransplantConfig mode")
        _check_choice(self.positions, POSITIONS, "TransplantConfig positions")
        _check_choice(self.contexts, ("random", "zero_shot"), "TransplantConfig contexts")
        if self.layers is not None:
            if isinstance(self.layers, int) or not all(isinstance(x, int) for x in self.layers):
                raise LensarithError(f"TransplantConfig layers must be None or a sequence of ints, got {self.layers!r}")
            object.__setattr__(self, "layers", tuple(self.layers))
        if self.n_contexts is not None and (not isinstance(self.n_contexts, int) or self.n_contexts < 1):
            raise LensarithError(f"TransplantConfig n_contexts must be None or a positive int, got {self.n_contexts!r}")


@register_recipe("transplant")
def transplant_experiment(model, prompts, config: TransplantConfig = TransplantConfig(), *,
                          search: SearchConfig | None = None, batch_size: int = 32,
                          progress: bool | None = None) -> TransplantResult:
    """The paper's o-vector experiment for a task: source prompt -> o -> random-token contexts.

    Args:
        model: a HookedTransformer with MLPs.
        prompts: a task name (``capitals``, ``uppercase``, ``past`` ...) or the task's
            ``Example`` prompts. Multi-token and unknown items are dropped (see ``meta``).
        config: a ``TransplantConfig`` (mode, layers, source, contexts ...).
        search: the ``SearchConfig`` used when ``config.layer`` is None.
        batch_size: contexts per forward.
        progress: show progress bars.

    Returns:
        A ``TransplantResult``; ``meta`` adds the source prompt, the chosen layers and, when
        searched, the search table.

    Example:
        >>> out = run_recipe("transplant", model, "capitals", TransplantConfig(n_contexts=50))  # doctest: +SKIP
    """
    prompts_batch = _task_batch(model, prompts, n=None, seed=config.seed, name="prompts")
    search_meta = None
    if config.layer is None:
        found = find_layers(model, prompts_batch, source=config.source, config=search or SearchConfig(seed=config.seed),
                            batch_size=max(1, batch_size // 4), progress=progress)
        layer = found.application_layer
        default_layers = found.layers if config.mode == "replace" else [layer]
        search_meta = {"application_layer": layer, "start_layer": found.start_layer, "table": found.table(),
                       "method": found.meta["method"]}
        source_prompt = found.meta["source"]
        src = next(i for i, e in enumerate(prompts_batch.examples) if e.prompt == source_prompt)
    else:
        layer = check_layer(model, config.layer, name="config.layer")
        default_layers = list(range(layer, model.cfg.n_layers)) if config.mode == "replace" else [layer]
        src, _ = _pick_source(model, prompts_batch, config.source, batch_size)
    layers = list(config.layers) if config.layers is not None else default_layers
    source = prompts_batch.examples[src]
    o = extract_o_vector(model, [source], layer, reduce="mean")
    others = [e for i, e in enumerate(prompts_batch.examples) if i != src]
    if not others:
        raise LensarithError("prompts: need at least two usable task prompts (one source, one or more contexts)")
    if config.contexts == "random":
        ctx = transplant_contexts(others, n=config.n_contexts, seed=config.seed)
    else:
        if not isinstance(prompts, str):
            raise LensarithError("TransplantConfig contexts='zero_shot' needs a task name as prompts")
        keep = {e.argument for e in others}
        ctx = [e for e in build_prompts(prompts, format="zero_shot") if e.argument in keep][: config.n_contexts]
    out = transplant(model, o, ctx, layers=layers, mode=config.mode, positions=config.positions, scale=config.scale,
                     batch_size=batch_size, drop_multi_token=True, progress=progress)
    out.meta.update(recipe="transplant_experiment", task=prompts if isinstance(prompts, str) else source.task,
                    source=source.prompt, source_answer=source.answer, application_layer=layer,
                    config=config.__dict__, search=search_meta, task_report=prompts_batch.report)
    return out
