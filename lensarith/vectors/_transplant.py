"""Transplanting o-vectors into MLP outputs: the paper's recipe, as the one vector operator.

``transplant`` replaces a range of MLP outputs with o, adds it, or subtracts it, in
random-token (or any) contexts. It is ``apply_vectors`` with one o-vector ``Application`` at
``mlp_out`` (no random baseline, the logit lens at every layer), its control and vector runs
returned as a ``TransplantResult``; ``transplant_interventions`` is that application's
interventions (``interventions_of``). Every chunk runs the control rows and the transplanted
rows in one batched forward (``lensarith.core.run`` groups) and keeps only the logit-lens ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from .._errors import LensarithError, check_choice, check_int
from ..core import Intervention, Result, Site, check_layer, check_layers, provenance
from ..tasks import Example, build_prompts, random_token_contexts
from ._apply_vector import Application, apply_vectors, check_scale, interventions_of
from ._ovector import OVector, as_o
from ._scoring import context_batch, single_tokens
from .._types import Model

__all__ = ["transplant_interventions", "transplant", "TransplantResult", "transplant_contexts", "MODES", "POSITIONS",
           "RUNS"]

MODES = ("replace", "add", "subtract")
POSITIONS = ("all", "last")
RUNS = ("control", "transplant")


def _default_layers(model, o: OVector, mode: str) -> list[int]:
    if o.layer is None:
        raise LensarithError("layers is needed: o has no source layer (it was built with OVector.from_tensor)")
    layer = check_layer(model, o.layer, name="o.layer")
    return list(range(layer, model.cfg.n_layers)) if mode == "replace" else [layer]


def _application(model, o, *, layers, mode: str, positions: str, scale: float) -> Application:
    """The ``Application`` a transplant is, checked against ``model`` with the transplant's own messages:
    o at ``mlp_out``, ``replace`` with ``scale`` or ``add`` with ``+scale`` (``add``) / ``-scale`` (``subtract``)."""
    check_choice(mode, MODES, "mode")
    check_choice(positions, POSITIONS, "positions")
    check_scale(scale)
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLP outputs to transplant into")
    o = as_o(model, o)
    o.single()  # one vector: several sources raise here, naming o.select / o.mean
    layers = _default_layers(model, o, mode) if layers is None else check_layers(model, layers)
    if mode == "replace":
        return Application(o, "mlp_out", layers, "replace", scale, positions).resolved(model)
    sign = 1.0 if mode == "add" else -1.0
    return Application(o, "mlp_out", layers, "add", sign * scale, positions).resolved(model)


def transplant_interventions(model: Model, o, *, layers=None, mode: str = "replace", positions: str = "all",
                             scale: float = 1.0) -> list[Intervention]:
    """The interventions that put an o-vector into MLP outputs (compose them freely).

    The interventions of the ``Application`` that ``transplant`` runs (``vector_interventions``
    at ``site="mlp_out"``, with the transplant's defaults and its ``subtract`` mode).

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
    return interventions_of(_application(model, o, layers=layers, mode=mode, positions=positions, scale=scale))


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
        check_choice(run, RUNS, "run")
        return RUNS.index(run)

    def rank(self, which: str = "answer", run: str = "transplant") -> Int[Tensor, "layer batch"]:
        """Rank of the answer or argument per layer (0 = top-1)."""
        check_choice(which, ("answer", "argument"), "which")
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
    model: Model,
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

    The paper's recipe as the one vector operator: ``apply_vectors`` with one o-vector
    ``Application`` at ``mlp_out`` (``subtract`` = ``add`` with ``-scale``), no random baseline,
    the logit lens at every layer; its ``control`` and vector runs come back as a
    ``TransplantResult``.

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
        >>> from lensarith.vectors import extract_o_vector
        >>> o = extract_o_vector(model, build_prompts("capitals", n=1), layer=1)
        >>> ctx = transplant_contexts("capitals", n=20)
        >>> out = transplant(model, o, ctx, layers=range(1, 2), drop_multi_token=True)
        >>> out.rank("answer", "transplant").shape[0], 0.0 <= out.summary()["answer_mrr_transplant"] <= 1.0
        (2, True)
    """
    check_int(batch_size, "batch_size", minimum=1)
    if not isinstance(drop_multi_token, bool):
        raise LensarithError(f"drop_multi_token must be True or False, got {drop_multi_token!r}")
    app = _application(model, o, layers=layers, mode=mode, positions=positions, scale=scale)
    o = app.vector
    batch = context_batch(model, contexts, drop_multi_token=drop_multi_token)
    res = apply_vectors(model, {"transplant": app}, batch, baseline=False, readout_layers="all", batch_size=batch_size,
                        progress=progress)
    n = model.cfg.n_layers
    tensors: dict[str, Tensor] = {k: res.tensors[k] for k in ("rank_answer", "rank_argument", "top1") if k in res.tensors}
    axes = {k: res.axes[k] for k in tensors}
    for key, ids in (("answer_ids", batch.answer_ids), ("argument_ids", batch.argument_ids)):
        if ids is not None:
            tensors[key], axes[key] = ids.cpu(), ("batch",)
    top1_tokens = {run: [model.to_single_str_token(int(t)) for t in tensors["top1"][i]] for i, run in enumerate(RUNS)}
    meta = provenance(
        model, recipe="transplant", mode=mode, positions=positions, scale=scale,
        layers=[layer % n for layer in app.layers], hooks=sorted({Site("mlp_out", layer).hook_name for layer in app.layers}),
        o={k: v for k, v in o.meta.items() if k != "sources"}, o_sources=o.meta.get("sources", []),
        report=batch.report, top1_tokens=top1_tokens,
        no_effect="final-layer answer rank with the transplant >= rank in the control run",
    )
    prompts = [e.prompt for e in batch.examples] if batch.examples else []
    labels = {"run": list(RUNS), "layer": [f"L{layer}" for layer in range(n)], "batch": prompts}
    return TransplantResult(tensors, axes, labels, meta)


def transplant_contexts(task, *, kind: str = "random", n: int | None = None, seed: int = 0,
                        exclude: Sequence[str] = (), model: Model=None) -> list[Example]:
    """Target contexts for a task's arguments.

    Args:
        task: a task name (``capitals``, ``uppercase``, ``past`` ...) or a list of
            ``Example`` objects (their arguments and answers are used).
        kind: ``random`` (the paper's ``w1 w2 w3 X w1 w2 w3 X w1 w2 w3`` contexts, seeded) or
            ``zero_shot`` (the task's question without a demonstration; task names only).
        n: keep the first ``n`` (after a seeded shuffle when ``n`` is given).
        seed: seeds the shuffle and the filler words.
        exclude: arguments to leave out (e.g. the source prompt's).
        model: when given, examples whose argument or answer is not a single token of its
            vocabulary are left out *before* taking ``n``, so ``n`` contexts come back.

    Returns:
        ``Example`` objects whose answer is the relation's answer for the argument.
    """
    check_choice(kind, ("random", "zero_shot"), "kind")
    check_int(n, "n", minimum=1, allow_none=True)
    check_int(seed, "seed")
    if isinstance(exclude, str):
        exclude = [exclude]
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
    if model is not None:
        examples = [e for e in examples if single_tokens(model, e)]
    if n is not None:
        examples = examples[:n]
    if not examples:
        raise LensarithError("no contexts left: every example was excluded" + (" or is not single-token" if model else ""))
    return random_token_contexts(examples, seed=seed) if kind == "random" else examples
