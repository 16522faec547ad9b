"""Fig 5 with its baselines: control, o transplanted, same-norm random vectors, zeroed MLPs.

A lift of the answer's MRR when o replaces the upper MLP outputs means little on its own:
replacing those outputs with *anything* changes the prediction. ``transplant_baselines``
runs, in one shared forward per chunk (``lensarith.core.run`` groups, one copy of the chunk
per run),

- ``control``: the contexts as they are;
- ``transplant``: o replacing the MLP outputs of ``layers`` at every position (the paper);
- ``random<k>``: a seeded random vector of o's norm in o's place (``n_random`` of them,
  averaged per context into the ``random`` baseline);
- ``zeroed``: the same MLPs zero-ablated instead of replaced.

and keeps only the logit-lens ranks of the answer and the argument at every layer's
``resid_post`` (last real token), with the readout ``lensarith.vectors.transplant`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._errors import LensarithError, check_int
from ..core import Ablate, Batch, Group, Result, Site, provenance, tokenize
from ..tasks import Example
from ..vectors import OVector, TransplantResult, transplant_interventions
from ..vectors._scoring import evaluate
from .stats import N_RESAMPLES, bootstrap_ci, bootstrap_columns
from .._types import Model

__all__ = ["BaselineResult", "transplant_baselines", "random_vectors", "summarize", "to_transplant_result", "BASELINES"]

#: the baselines a transplant is compared with, in the order the report lists them
BASELINES = ("control", "random", "zeroed")


def random_vectors(like: Tensor, k: int, seed: int) -> list[Tensor]:
    """``k`` Gaussian directions scaled to ``like``'s norm (seeded; independent of torch's global RNG)."""
    check_int(k, "n_random", minimum=1)
    gen = torch.Generator().manual_seed(int(seed))
    norm = like.detach().float().norm()
    out = []
    for _ in range(k):
        v = torch.randn(like.shape[-1], generator=gen, dtype=torch.float32)
        out.append((v * (norm / v.norm())).to(like.dtype).to(like.device))
    return out


def _vector(o) -> Tensor:
    if isinstance(o, OVector):
        return o.single()
    if isinstance(o, Tensor) and o.ndim == 1:
        return o
    raise LensarithError(f"o must be an OVector or a tensor [d_model], got {type(o).__name__}")


def _groups(model, o, layers: Sequence[int], n_random: int, seed: int) -> tuple[list[Group], list[str]]:
    """The runs as ``Group`` objects, and their names."""
    def put(vec) -> Group:
        return Group(tuple(transplant_interventions(model, vec, layers=list(layers), mode="replace", positions="all")))

    groups, names = [Group(()), put(o)], ["control", "transplant"]
    for i, vec in enumerate(random_vectors(_vector(o), n_random, seed)):
        groups.append(put(vec))
        names.append(f"random{i}")
    groups.append(Group(tuple(Ablate(Site("mlp_out", layer)) for layer in layers)))
    names.append("zeroed")
    return groups, names


class BaselineResult(Result):
    """Ranks of the answer and argument per run, layer and context (Fig 5 with baselines).

    Tensors: ``rank_answer``, ``rank_argument`` ``[run, layer, batch]`` (rank 0 = top-1; the
    last layer is the model's output) and ``top1`` ``[run, batch]``. Runs (``labels["run"]``):
    ``control``, ``transplant``, ``random0..k-1``, ``zeroed``.
    """

    kind = "transplant_baselines"

    @property
    def runs(self) -> list[str]:
        return list(self.labels["run"])

    def _rows(self, run: str) -> list[int]:
        names = self.runs
        if run == "random":
            rows = [i for i, r in enumerate(names) if r.startswith("random")]
        else:
            rows = [i for i, r in enumerate(names) if r == run]
        if not rows:
            raise LensarithError(f"run={run!r} is unknown; runs: control, transplant, random, zeroed")
        return rows

    def reciprocal_rank(self, run: str, which: str = "answer") -> Tensor:
        """``[layer, batch]`` RR per context; ``random`` averages the random vectors per context."""
        if which not in ("answer", "argument"):
            raise LensarithError(f"which must be 'answer' or 'argument', got {which!r}")
        ranks = self.tensors[f"rank_{which}"][self._rows(run)]
        return (1.0 / (ranks.float() + 1.0)).mean(0)

    def top1(self, run: str) -> Tensor:
        """``[batch]`` share of the run's vectors (1 for single runs) putting the answer on top."""
        return (self.tensors["rank_answer"][self._rows(run), -1] == 0).float().mean(0)

    def no_effect(self) -> Tensor:
        """``[batch]`` 1.0 where the transplant does not improve the answer's output rank."""
        ranks = self.tensors["rank_answer"]
        return (ranks[self._rows("transplant")[0], -1] >= ranks[self._rows("control")[0], -1]).float()


def transplant_baselines(model: Model, o, contexts: Sequence[Example] | Batch, *, layers: Sequence[int], n_random: int = 5,
                         seed: int = 0, batch_size: int = 32, progress: bool | None = None) -> BaselineResult:
    """Control, transplant, same-norm random vectors and zeroed MLPs on the same contexts, one forward per chunk.

    Args:
        model: a HookedTransformer with MLPs.
        o: an ``OVector`` (one vector) or a tensor ``[d_model]``.
        contexts: ``Example`` objects with answer and argument (multi-token ones are dropped),
            or a ``Batch``.
        layers: the MLPs replaced (and zeroed for the ``zeroed`` baseline).
        n_random: random vectors of o's norm (seeded by ``seed``).
        seed: seeds the random vectors.
        batch_size: contexts per forward (each forward carries ``3 + n_random`` copies).
        progress: show a progress bar.

    Returns:
        A ``BaselineResult``.
    """
    check_int(batch_size, "batch_size", minimum=1)
    check_int(seed, "seed")
    if not layers:
        raise LensarithError("layers is empty: give the MLP layers the transplant replaces, e.g. [5, 6, 7]")
    batch = contexts if isinstance(contexts, Batch) else tokenize(model, list(contexts), drop_multi_token=True)
    if batch.answer_ids is None or bool((batch.answer_ids < 0).any()):
        raise LensarithError("contexts: every context needs an answer to score (Example.answer)")
    groups, names = _groups(model, o, layers, n_random, seed)
    tensors = evaluate(model, batch, groups, batch_size=batch_size, readout_layers="all", progress=progress,
                       desc="fig 5 baselines")
    axes = {k: ("run", "layer", "batch") for k in tensors if k != "top1"}
    axes["top1"] = ("run", "batch")
    meta: dict[str, Any] = provenance(model, recipe="transplant_baselines", layers=list(layers), n_random=n_random,
                                      seed=seed, mode="replace", positions="all", report=batch.report)
    prompts = [e.prompt for e in batch.examples] if batch.examples else []
    labels = {"run": names, "layer": [f"L{layer}" for layer in range(model.cfg.n_layers)], "batch": prompts}
    return BaselineResult(tensors, axes, labels, meta)


def _ci(values: Tensor, seed: int, n_boot: int) -> list[float]:
    lo, hi = bootstrap_ci(values.double(), n=n_boot, seed=seed)
    return [round(lo, 4), round(hi, 4)]


def summarize(res: BaselineResult, *, seed: int = 0, n_boot: int = N_RESAMPLES) -> dict[str, Any]:
    """Fig 5's numbers for one set: curves with 95% intervals, output-layer MRR and top-1 per run,
    the paired lifts of o over each baseline and the no-effect rate.

    Returns:
        ``n``, ``layers``, ``n_random``; per run (``control``, ``transplant``, ``random``,
        ``zeroed``) the MRR per layer and ``<run>_ci``; ``final[run]`` = ``{"mrr", "mrr_ci",
        "top1", "top1_ci"}``; ``lift[baseline]`` = ``{"diff", "ci"}`` (output-layer RR with o
        minus the baseline's, paired per context); ``no_effect_rate`` and
        ``no_effect_ci``; and the keys ``TransplantResult.summary`` gave (``control_rank`` =
        1 / MRR, ``*_top1``, ``*_median_rank`` (1 = top), ``argument_top1_control``).
    """
    rr = {run: res.reciprocal_rank(run) for run in ("control", "transplant", "random", "zeroed")}  # [layer, batch]
    out: dict[str, Any] = {"n": int(res.tensors["rank_answer"].shape[-1]), "layers": list(res.labels["layer"]),
                           "n_random": sum(r.startswith("random") for r in res.runs), "final": {}, "lift": {}}
    for run, values in rr.items():
        mrr = values.mean(-1)
        lo, hi = bootstrap_columns(values.T.double(), n=n_boot, seed=seed)
        out[run] = [round(float(x), 4) for x in mrr]
        out[f"{run}_ci"] = [[round(float(a), 4), round(float(b), 4)] for a, b in zip(lo, hi)]
        top = res.top1(run)
        out["final"][run] = {"mrr": round(float(mrr[-1]), 4), "mrr_ci": _ci(values[-1], seed, n_boot),
                             "top1": round(float(top.mean()), 4), "top1_ci": _ci(top, seed, n_boot)}
    for base in BASELINES:
        diff = rr["transplant"][-1] - rr[base][-1]
        out["lift"][base] = {"diff": round(float(diff.mean()), 4), "ci": _ci(diff, seed, n_boot)}
    ranks = res.tensors["rank_answer"]
    for run in ("control", "transplant"):
        final = ranks[res.runs.index(run), -1]
        mrr_last = float(rr[run][-1].mean())
        out[f"{run}_mrr_last"] = round(mrr_last, 4)
        out[f"{run}_rank"] = round(1.0 / mrr_last, 2) if mrr_last > 0 else None
        out[f"{run}_top1"] = round(float((final == 0).float().mean()), 4)
        out[f"{run}_median_rank"] = float(final.float().median()) + 1
    no_effect = res.no_effect()
    out["no_effect_rate"] = round(float(no_effect.mean()), 4)
    out["no_effect_ci"] = _ci(no_effect, seed, n_boot)
    if "rank_argument" in res.tensors:
        arg = (res.tensors["rank_argument"][res.runs.index("control"), -1] == 0).float()
        out["argument_top1_control"] = round(float(arg.mean()), 4)
        out["argument_top1_control_ci"] = _ci(arg, seed, n_boot)
    return out


def to_transplant_result(model: Model, res: BaselineResult, batch: Batch, o: OVector) -> TransplantResult:
    """The control and transplant runs of ``res`` as the ``TransplantResult`` that
    ``lensarith.vectors.transplant`` returns for the same contexts (same tensors and labels)."""
    rows = [res.runs.index("control"), res.runs.index("transplant")]
    tensors = {k: res.tensors[k][rows] for k in ("rank_answer", "rank_argument", "top1") if k in res.tensors}
    axes = {k: res.axes[k] for k in tensors}
    for key, ids in (("answer_ids", batch.answer_ids), ("argument_ids", batch.argument_ids)):
        if ids is not None:
            tensors[key], axes[key] = ids.cpu(), ("batch",)
    top1_tokens = {run: [model.to_single_str_token(int(t)) for t in tensors["top1"][i]]
                   for i, run in enumerate(("control", "transplant"))}
    layers = res.meta["layers"]
    meta = provenance(model, recipe="transplant", mode="replace", positions="all", scale=1.0, layers=list(layers),
                      hooks=sorted({Site("mlp_out", layer).hook_name for layer in layers}),
                      o={k: v for k, v in o.meta.items() if k != "sources"}, o_sources=o.meta.get("sources", []),
                      report=batch.report, top1_tokens=top1_tokens,
                      no_effect="final-layer answer rank with the transplant >= rank in the control run")
    labels = {"run": ["control", "transplant"], "layer": list(res.labels["layer"]), "batch": list(res.labels["batch"])}
    return TransplantResult(tensors, axes, labels, meta)
