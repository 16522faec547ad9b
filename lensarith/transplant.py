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

The first two live here; the search is in ``transplant_search``, the explanations in
``transplant_explain`` and the recipe in ``transplant_recipe``, all re-exported below.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ._errors import LensarithError
from ._run import collect
from .interventions import Add, Capture, Intervention, Replace, compile_hooks, intervene
from .models import check_layer
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


# --------------------------------------------------------------------------- re-exports
# The layer search, the explanation tools and the whole recipe live in their own modules,
# which import the core above; they are re-exported here (after the core is defined, so the
# imports are not circular) so ``from lensarith.transplant import X`` keeps working and
# importing this module still registers the recipe "transplant".

from .transplant_explain import (
    AnalogyResult,
    ConsistencyResult,
    DecodeResult,
    decode_o_vector,
    o_vector_analogy,
    o_vector_consistency,
)
from .transplant_recipe import TransplantConfig, transplant_experiment
from .transplant_search import LayerSearchResult, SearchConfig, find_layers
