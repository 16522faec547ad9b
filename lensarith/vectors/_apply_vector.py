"""One operator for every vector kind: put it at a site (replace or add, scaled, one layer or a
range), run control rows, vector rows and same-norm random rows in shared forwards, and score
them with the paper's reciprocal ranks and top-k accuracy, with bootstrap intervals.

- ``Application``: a vector and where/how it goes in (site, layers, mode, scale, positions).
- ``vector_interventions``: the interventions of an application (compose them freely), built
  by ``interventions_of``, the one intervention builder.
- ``apply_vectors`` / ``apply_vector`` -> ``VectorResult``: every application (and its random
  baseline) on every context, one copy of each chunk per application in one forward
  (``lensarith.core.run`` groups via ``evaluate``).
- ``bootstrap_ci``: the mean and a percentile interval over contexts (lensarith's one bootstrap,
  ``lensarith.paper.stats.bootstrap_ci``, resampled with torch's generator).

Built on this operator: ``transplant`` (``_transplant``: an o-vector at ``mlp_out``) and
``sweep_layers`` (``_sweep``: one application per layer and scale).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import LensarithError, check_choice, check_int, check_seed
from .._stats import bootstrap_ci as _one_bootstrap_ci
from ..core import Add, Intervention, Replace, Result, Site, check_layers, provenance
from ._function_task import FunctionVector, TaskVector
from ._ovector import OVector, as_o
from ._scoring import context_batch, evaluate
from .._types import Model

__all__ = ["Application", "vector_interventions", "same_norm_random", "apply_vectors", "apply_vector", "VectorResult",
           "bootstrap_ci", "kind_of", "interventions_of", "check_scale", "APPLY_SITES", "APPLY_MODES"]

#: where a vector can go: the residual stream, a layer's MLP or attention output, or (function
#: vectors) the outputs ``z`` of their own heads
APPLY_SITES = ("resid_pre", "resid_mid", "resid_post", "mlp_out", "attn_out", "z")
APPLY_MODES = ("add", "replace")
_POSITIONS = ("last", "all")


def kind_of(vector) -> str:
    """``fv``, ``tv`` or ``o`` (any other OVector, e.g. ``OVector.from_tensor``: ``custom``)."""
    if isinstance(vector, FunctionVector):
        return "fv"
    if isinstance(vector, TaskVector):
        return "tv"
    if isinstance(vector, OVector):
        return "o" if vector.meta.get("recipe") == "extract_o_vector" else "custom"
    raise LensarithError(f"vector must be an OVector, FunctionVector or TaskVector (or a tensor [d_model]), "
                         f"got {type(vector).__name__}")


def _native_site(vector: OVector) -> str:
    if isinstance(vector, TaskVector):
        return vector.site
    if isinstance(vector, FunctionVector):
        return "resid_pre"
    return "mlp_out"


def check_scale(scale, name: str = "scale") -> float:
    """``scale`` as a float; raises unless it is a finite number (not a bool)."""
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
        raise LensarithError(f"{name} must be a finite number, got {scale!r}")
    return float(scale)


@dataclass(frozen=True)
class Application:
    """A vector and how it goes into the forward pass.

    Attributes:
        vector: an ``OVector``, ``FunctionVector`` or ``TaskVector`` (or a tensor ``[d_model]``).
        site: ``resid_pre`` / ``resid_mid`` / ``resid_post`` / ``mlp_out`` / ``attn_out`` (the
            vector, ``[d_model]``, at that hook), or ``z`` (function vectors only: each chosen
            head's mean output at its own layer). Default: the vector's own site (o-vectors
            ``mlp_out``, task vectors where they were taken, function vectors ``resid_pre``).
        layers: an int, range or list (not for ``z``). Default: the vector's own layer
            (o-vectors, task vectors); function vectors need it.
        mode: ``add`` (``+ scale * v``; a negative scale subtracts) or ``replace`` (the slice
            becomes ``scale * v``).
        scale: multiplies the vector.
        positions: ``last`` (each row's last real token) or ``all``.
    """

    vector: Any
    site: Any = None
    layers: Any = None
    mode: Any = "add"
    scale: Any = 1.0
    positions: Any = "last"

    def __post_init__(self) -> None:
        if self.site is not None:
            check_choice(self.site, APPLY_SITES, "site")
        check_choice(self.mode, APPLY_MODES, "mode")
        check_choice(self.positions, _POSITIONS, "positions")
        object.__setattr__(self, "scale", check_scale(self.scale))

    def resolved(self, model: Model) -> Application:
        """The application with the vector checked against ``model`` and defaults filled in."""
        vec = as_o(model, self.vector, name="vector") if not isinstance(self.vector, OVector) else self.vector
        vec.check(model, name="vector")
        site = self.site or _native_site(vec)
        if site == "z":
            if not isinstance(vec, FunctionVector) or vec.head_means is None:
                raise LensarithError("site='z' puts a function vector's head means into its own heads; "
                                     f"this vector is a {type(vec).__name__} without head means: use a d_model site "
                                     f"({', '.join(s for s in APPLY_SITES if s != 'z')})")
            if self.layers is not None:
                raise LensarithError(f"layers={self.layers!r}: with site='z' each head goes in at its own layer; "
                                     "leave layers at None")
            return Application(vec, site, None, self.mode, self.scale, self.positions)
        if site == "mlp_out" and model.cfg.attn_only:
            raise LensarithError("site='mlp_out': the model is attention-only: it has no MLP outputs")
        if self.layers is None:
            if vec.layer is None:
                raise LensarithError(f"layers is needed: this {type(vec).__name__} has no source layer "
                                     "(function vectors go in at a layer you choose; sweep_layers finds one)")
            layers = [int(vec.layer)]
        else:
            layers = check_layers(model, self.layers)
        return Application(vec, site, tuple(layers), self.mode, self.scale, self.positions)

    def describe(self) -> dict[str, Any]:
        layers = None if self.layers is None else (list(self.layers) if not isinstance(self.layers, int) else [self.layers])
        return {"kind": kind_of(self.vector) if isinstance(self.vector, OVector) else "custom", "site": self.site,
                "layers": layers, "mode": self.mode, "scale": self.scale, "positions": self.positions}


def vector_interventions(model: Model, vector, *, site=None, layers=None, mode="add", scale=1.0,
                         positions="last") -> list[Intervention]:
    """The interventions that put a vector into the forward pass (see ``Application``).

    Example:
        >>> from lensarith.vectors import extract_o_vector
        >>> o = extract_o_vector(model, build_prompts("capitals", n=1), layer=1)
        >>> [iv.site.hook_name for iv in vector_interventions(model, o, site="resid_pre", layers=[0, 1])]
        ['blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre']
    """
    app = Application(vector, site, layers, mode, scale, positions).resolved(model)
    return interventions_of(app)


def interventions_of(app: Application) -> list[Intervention]:
    """The one intervention builder: a resolved ``Application``'s interventions (every kind, every
    site; ``transplant_interventions`` and ``vector_interventions`` both come here)."""
    pos = "last" if app.positions == "last" else None
    vec = app.vector
    if app.site == "z":
        out: list[Intervention] = []
        for (layer, head), mean in zip(vec.heads, vec.head_means):
            site = Site("z", layer, pos, head=head)
            out.append(Replace(site, app.scale * mean) if app.mode == "replace" else Add(site, mean, app.scale))
        return out
    v = vec.single()
    if app.mode == "replace":
        return [Replace(Site(app.site, layer, pos), app.scale * v) for layer in app.layers]
    return [Add(Site(app.site, layer, pos), v, app.scale) for layer in app.layers]


def same_norm_random(vector, *, seed: int = 0):
    """A random vector of the same kind and norm (Gaussian direction, seeded): the baseline.

    For a function vector the head means are replaced too (each by a random vector of its
    own norm), so ``site="z"`` has a baseline as well.
    """
    if not isinstance(vector, OVector):
        raise LensarithError(f"vector must be an OVector, FunctionVector or TaskVector, got {type(vector).__name__}")
    check_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    def rand_like(t: Tensor) -> Tensor:
        r = torch.randn(t.shape, generator=gen, dtype=torch.float32)
        norm = t.float().norm(dim=-1, keepdim=True)
        return (r / r.norm(dim=-1, keepdim=True) * norm).to(t.dtype)

    tensors = dict(vector.tensors)
    tensors["vector"] = rand_like(vector.vector)
    if "head_means" in tensors:
        tensors["head_means"] = rand_like(tensors["head_means"])
    meta = {**vector.meta, "random_of": kind_of(vector), "random_seed": seed, "sources": []}
    return type(vector)(tensors, dict(vector.axes), {}, meta)


def bootstrap_ci(values: Tensor, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval over the last axis of ``values`` (contexts).

    A thin wrapper of lensarith's one bootstrap (``lensarith.paper.stats.bootstrap_ci``) that
    keeps this module's signature: per-context scores as a tensor (flattened), ``n_boot``
    resamples drawn with a seeded ``torch.Generator`` (``generator="torch"``, as these
    intervals were always drawn), and the mean returned in front of the interval.

    Returns ``(mean, low, high)``; ``low == high == mean`` for a single value.
    """
    if not isinstance(values, Tensor):
        raise LensarithError(f"values must be a tensor of per-context scores, got {type(values).__name__}")
    check_int(n_boot, "n_boot", minimum=1)
    check_seed(seed)
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise LensarithError(f"level must lie between 0 and 1, got {level!r}")
    x = values.detach().double().flatten().cpu()
    n = x.numel()
    if n == 0:
        raise LensarithError("bootstrap_ci needs at least one value")
    bad = (~torch.isfinite(x)).nonzero().flatten().tolist()
    if bad:
        raise LensarithError(f"values hold {len(bad)} non-finite value{'s' if len(bad) > 1 else ''} (NaN or inf), first at "
                             f"index {bad[0]} of {n} (flattened); an interval over them would be NaN: drop or fix them")
    mean = float(x.mean())
    if n == 1:
        return mean, mean, mean
    lo, hi = _one_bootstrap_ci(x.numpy(), n=n_boot, seed=seed, level=level, generator="torch")
    return mean, lo, hi


class VectorResult(Result):
    """Ranks of the answer (and argument) with and without vectors, per run and context.

    Tensors: ``rank_answer`` / ``rank_argument`` ``[run, layer, batch]`` (logit lens at the
    readout layers' ``resid_post``, last real token; rank 0 = top-1; the last layer is the
    model's output), ``top1`` ``[run, batch]``, ``answer_ids`` ``[batch]``. Runs (``labels["run"]``):
    ``control``, one per application, and ``<name>:random`` for its same-norm random baseline.
    """

    kind = "vector_apply"

    @property
    def runs(self) -> list[str]:
        return list(self.labels["run"])

    def _run(self, run: str) -> int:
        check_choice(run, self.runs, "run")
        return self.runs.index(run)

    def rank(self, run: str, which: str = "answer") -> Int[Tensor, " batch"]:
        """Final-layer rank of the answer (or argument) per context (0 = top-1)."""
        check_choice(which, ("answer", "argument"), "which")
        key = f"rank_{which}"
        if key not in self.tensors:
            raise LensarithError(f"which={which!r}: the contexts carried no {which}s")
        return self.tensors[key][self._run(run), -1]

    def reciprocal_rank(self, run: str, which: str = "answer") -> Float[Tensor, " batch"]:
        """The paper's ``1 / (rank + 1)`` per context, at the model's output."""
        return 1.0 / (self.rank(run, which).float() + 1.0)

    def mrr(self, run: str, which: str = "answer") -> float:
        return float(self.reciprocal_rank(run, which).mean())

    def topk(self, run: str, k: int = 1, which: str = "answer") -> float:
        """Top-k accuracy (the answer among the k highest logits)."""
        check_int(k, "k", minimum=1)
        return float((self.rank(run, which) < k).float().mean())

    def metric(self, run: str, metric: str = "rr") -> Float[Tensor, " batch"]:
        """Per-context values of ``rr`` (reciprocal rank) or ``top<k>`` (0/1), e.g. ``top1``, ``top5``."""
        if metric == "rr":
            return self.reciprocal_rank(run)
        if isinstance(metric, str) and metric.startswith("top") and metric[3:].isdigit() and int(metric[3:]) >= 1:
            return (self.rank(run) < int(metric[3:])).float()
        raise LensarithError(f"metric must be 'rr' or 'top<k>' such as 'top1' or 'top5', got {metric!r}")

    def ci(self, run: str, metric: str = "rr", *, minus: str | None = None, n_boot: int = 1000, seed: int = 0
           ) -> tuple[float, float, float]:
        """Mean and bootstrap 95% interval of a metric over contexts (paired with ``minus``)."""
        values = self.metric(run, metric)
        if minus is not None:
            values = values - self.metric(minus, metric)
        return bootstrap_ci(values, n_boot=n_boot, seed=seed)

    def summary(self, ks: Sequence[int] = (1, 5)) -> dict[str, dict[str, float]]:
        """Per run: MRR and top-k accuracy of the answer at the model's output."""
        return {run: {"mrr": self.mrr(run), **{f"top{k}": self.topk(run, k) for k in ks}} for run in self.runs}

    def table(self, ks: Sequence[int] = (1, 5), *, n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
        """One row per run: MRR and top-k with bootstrap 95% intervals."""
        rows = []
        for run in self.runs:
            row: dict[str, Any] = {"run": run, "n": int(self.tensors["rank_answer"].shape[-1])}
            for metric in ["rr"] + [f"top{k}" for k in ks]:
                m, lo, hi = self.ci(run, metric, n_boot=n_boot, seed=seed)
                name = "mrr" if metric == "rr" else metric
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = m, lo, hi
            rows.append(row)
        return rows


def _as_applications(applications) -> dict[str, Application]:
    if isinstance(applications, Application):
        applications = {"vector": applications}
    if not isinstance(applications, Mapping) or not applications:
        raise LensarithError("applications must be a non-empty mapping of name -> Application "
                             f"(or one Application), got {type(applications).__name__}")
    out = {}
    for name, app in applications.items():
        if not isinstance(name, str) or not name or name == "control" or name.endswith(":random"):
            raise LensarithError(f"application names must be non-empty strings other than 'control' and '*:random', got {name!r}")
        if not isinstance(app, Application):
            raise LensarithError(f"applications[{name!r}] must be an Application, got {type(app).__name__}")
        out[name] = app
    return out


def apply_vectors(
    model: Model,
    applications,
    contexts,
    *,
    baseline: bool = True,
    seed: int = 0,
    readout_layers: str = "final",
    batch_size: int = 32,
    drop_multi_token: bool = False,
    progress: bool | None = None,
) -> VectorResult:
    """Run every application (and its same-norm random baseline) on every context.

    Each forward carries one copy of a chunk of contexts per run: the control (no
    intervention), each application, and — with ``baseline`` — each application with
    ``same_norm_random(vector, seed=seed + i)`` in place of its vector.

    Args:
        model: a HookedTransformer.
        applications: ``{name: Application}`` (or one ``Application``, named ``vector``).
        contexts: ``Example`` objects with the answer to score (random-token contexts,
            zero-shot prompts ...) or a ``Batch``.
        baseline: add a same-norm random run per application.
        seed: seeds the random baselines.
        readout_layers: ``final`` (the model's output) or ``all`` (the logit lens at every
            layer's ``resid_post``).
        batch_size: contexts per forward (each forward has ``runs x batch_size`` rows).
        drop_multi_token: drop contexts whose answer or argument is not one token (else they raise).
        progress: show a progress bar.

    Returns:
        A ``VectorResult``: ``mrr(run)``, ``topk(run, k)``, ``ci(run, metric)``, ``table()``.

    Example:
        >>> from lensarith.vectors import extract_o_vector, transplant_contexts
        >>> o = extract_o_vector(model, build_prompts("capitals", n=1), layer=1)
        >>> ctx = transplant_contexts("capitals", n=4, model=model)
        >>> res = apply_vectors(model, {"o": Application(o, scale=0.0)}, ctx)
        >>> res.runs, bool((res.rank("o") == res.rank("control")).all())
        (['control', 'o', 'o:random'], True)
    """
    apps = {name: app.resolved(model) for name, app in _as_applications(applications).items()}
    check_seed(seed)
    check_int(batch_size, "batch_size", minimum=1)
    check_choice(readout_layers, ("final", "all"), "readout_layers")
    if not isinstance(baseline, bool):
        raise LensarithError(f"baseline must be True or False, got {baseline!r}")
    if not isinstance(drop_multi_token, bool):
        raise LensarithError(f"drop_multi_token must be True or False, got {drop_multi_token!r}")
    batch = context_batch(model, contexts, drop_multi_token=drop_multi_token)
    runs = ["control"]
    groups: list[list[Intervention]] = [[]]
    for name, app in apps.items():
        runs.append(name)
        groups.append(interventions_of(app))
    if baseline:
        for i, (name, app) in enumerate(apps.items()):
            rand = Application(same_norm_random(app.vector, seed=seed + i), app.site, app.layers, app.mode, app.scale,
                               app.positions)
            runs.append(f"{name}:random")
            groups.append(interventions_of(rand))
    got = evaluate(model, batch, groups, batch_size=batch_size, readout_layers=readout_layers, progress=progress,
                   desc="vectors")
    n = model.cfg.n_layers
    tensors: dict[str, Tensor] = dict(got)
    axes = {"rank_answer": ("run", "layer", "batch"), "rank_argument": ("run", "layer", "batch"), "top1": ("run", "batch")}
    axes = {k: axes[k] for k in tensors}
    tensors["answer_ids"], axes["answer_ids"] = batch.answer_ids.cpu(), ("batch",)
    layers = list(range(n)) if readout_layers == "all" else [n - 1]
    meta = provenance(model, recipe="apply_vectors", applications={k: a.describe() for k, a in apps.items()},
                      baseline="same-norm Gaussian direction" if baseline else None, seed=seed,
                      readout_layers=layers, report=batch.report,
                      vectors={k: {m: v for m, v in a.vector.meta.items() if m not in ("sources", "shuffled_sources")}
                               for k, a in apps.items()})
    prompts = [e.prompt for e in batch.examples] if batch.examples else []
    labels = {"run": runs, "layer": [f"L{layer}" for layer in layers], "batch": prompts}
    return VectorResult(tensors, axes, labels, meta)


def apply_vector(model: Model, vector, contexts, *, site=None, layers=None, mode="add", scale=1.0, positions="last",
                 **options) -> VectorResult:
    """``apply_vectors`` for one vector (run ``vector``, baseline ``vector:random``).

    Example:
        >>> from lensarith.vectors import extract_o_vector, transplant_contexts
        >>> o = extract_o_vector(model, build_prompts("capitals", n=1), layer=1)
        >>> res = apply_vector(model, o, transplant_contexts("capitals", n=4, model=model), scale=2.0)
        >>> sorted(res.summary())
        ['control', 'vector', 'vector:random']
    """
    valid = ("baseline", "seed", "readout_layers", "batch_size", "drop_multi_token", "progress")
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise LensarithError(f"{unknown[0]!r} is not an option of apply_vector; valid: site, layers, mode, scale, positions, "
                             f"{', '.join(valid)}")
    return apply_vectors(model, {"vector": Application(vector, site, layers, mode, scale, positions)}, contexts, **options)
