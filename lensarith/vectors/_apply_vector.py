"""One operator for every vector kind: put it at a site (replace or add, scaled, one layer or a
range), run control rows, vector rows and same-norm random rows in shared forwards, and score
them with the paper's reciprocal ranks and top-k accuracy, with bootstrap intervals.

- ``Application``: a vector and where/how it goes in (site, layers, mode, scale, positions).
- ``vector_interventions``: the interventions of an application (compose them freely).
- ``apply_vectors`` / ``apply_vector`` -> ``VectorResult``: every application (and its random
  baseline) on every context, one copy of each chunk per application in one forward
  (``lensarith.core.run`` groups via ``evaluate``).
- ``sweep_layers`` -> ``SweepResult``: the same vector (or one per layer) at each layer and
  scale, with the random baseline, in shared forwards; ``best()`` picks the layer.
- ``bootstrap_ci``: the mean and a percentile interval over contexts (lensarith's one bootstrap,
  ``lensarith.paper.stats.bootstrap_ci``, resampled with torch's generator).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._stats import bootstrap_ci as _one_bootstrap_ci
from .._errors import LensarithError, check_choice, check_int, check_seed
from ..core import Add, Intervention, Replace, Result, Site, check_layers, provenance
from ._function_task import FunctionVector, TaskVector
from ._ovector import OVector, as_o
from ._scoring import context_batch, evaluate

__all__ = ["Application", "vector_interventions", "same_norm_random", "apply_vectors", "apply_vector", "VectorResult",
           "sweep_layers", "SweepResult", "bootstrap_ci", "kind_of", "interventions_of", "APPLY_SITES", "APPLY_MODES"]

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


def _check_scale(scale, name: str = "scale") -> float:
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
        object.__setattr__(self, "scale", _check_scale(self.scale))

    def resolved(self, model) -> Application:
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


def vector_interventions(model, vector, *, site=None, layers=None, mode="add", scale=1.0,
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
    model,
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


def apply_vector(model, vector, contexts, *, site=None, layers=None, mode="add", scale=1.0, positions="last",
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


class SweepResult(Result):
    """A vector kind at every layer and scale, with its same-norm random baseline.

    Tensors: ``rank`` ``[variant, scale, layer, batch]`` (variant ``vector`` / ``random``;
    final-layer rank of the answer), ``control_rank`` ``[batch]``; ``mrr`` and ``top1``
    ``[variant, scale, layer]``, ``control_mrr`` / ``control_top1`` ``[1]``.
    """

    kind = "vector_sweep"

    @property
    def layers(self) -> list[int]:
        return list(self.meta["layers"])

    @property
    def scales(self) -> list[float]:
        return list(self.meta["scales"])

    def best(self, metric: str = "mrr") -> tuple[int, float]:
        """The (layer, scale) where the vector's ``mrr`` (or ``top1``) is highest (ties: the
        smaller gain over the random baseline loses, then the earlier layer and scale)."""
        check_choice(metric, ("mrr", "top1"), "metric")
        vals = self.tensors[metric][0]  # [scale, layer]
        gain = vals - self.tensors[metric][1]
        best = None
        for si, scale in enumerate(self.scales):
            for li, layer in enumerate(self.layers):
                key = (float(vals[si, li]), float(gain[si, li]))
                if best is None or key > best[0]:
                    best = (key, layer, scale)
        return best[1], best[2]

    def curve(self, variant: str = "vector", scale: float | None = None, metric: str = "mrr") -> list[float]:
        """``metric`` per layer at one scale (default: the best one)."""
        check_choice(variant, ("vector", "random"), "variant")
        check_choice(metric, ("mrr", "top1"), "metric")
        scale = self.best(metric)[1] if scale is None else scale
        if scale not in self.scales:
            raise LensarithError(f"scale={scale!r} was not swept; swept: {self.scales}")
        return self.tensors[metric][("vector", "random").index(variant), self.scales.index(scale)].tolist()

    def table(self) -> list[dict[str, Any]]:
        """One row per (scale, layer): MRR and top-1, vector vs random; control in every row."""
        rows = []
        for si, scale in enumerate(self.scales):
            for li, layer in enumerate(self.layers):
                rows.append({"scale": scale, "layer": layer,
                             "mrr": float(self.tensors["mrr"][0, si, li]), "random_mrr": float(self.tensors["mrr"][1, si, li]),
                             "top1": float(self.tensors["top1"][0, si, li]),
                             "random_top1": float(self.tensors["top1"][1, si, li]),
                             "control_mrr": float(self.tensors["control_mrr"][0])})
        return rows


def sweep_layers(
    model,
    vectors,
    contexts,
    *,
    layers=None,
    scales=(1.0,),
    site=None,
    mode="add",
    positions="last",
    baseline: bool = True,
    seed: int = 0,
    batch_size: int = 16,
    drop_multi_token: bool = False,
    progress: bool | None = None,
) -> SweepResult:
    """Apply a vector at each layer (and scale), with a same-norm random baseline, in shared forwards.

    Args:
        model: a HookedTransformer.
        vectors: one vector applied at every layer (a function vector), or ``{layer: vector}``
            (an o-vector or task vector taken from each layer, applied at its own layer).
        contexts: ``Example`` objects with answers, or a ``Batch``.
        layers: the layers to sweep (default: the mapping's keys, else every layer).
        scales: scales to try at each layer.
        site, mode, positions: as in ``Application`` (one layer per run; not ``z``).
        baseline: add the random runs (needed by ``best``'s tie-break; cheap).
        seed: seeds the random baselines (one per layer).
        batch_size: contexts per forward (each forward has ``1 + 2 x layers x scales`` copies).
        drop_multi_token, progress: as in ``apply_vectors``.

    Returns:
        A ``SweepResult`` (``best()``, ``curve()``, ``table()``).

    Example:
        >>> from lensarith.vectors import extract_o_vector, transplant_contexts
        >>> o = extract_o_vector(model, build_prompts("capitals", n=1), layer=1)
        >>> sw = sweep_layers(model, o, transplant_contexts("capitals", n=4, model=model), scales=(1.0, 2.0))
        >>> sw.tensors["mrr"].shape, sw.best()[0] in (0, 1)
        (torch.Size([2, 2, 2]), True)
    """
    if isinstance(vectors, Mapping):
        if not vectors:
            raise LensarithError("vectors is empty: give a vector or {layer: vector}")
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in vectors):
            raise LensarithError(f"vectors must map int layers to vectors, got keys {list(vectors)[:4]}")
        n = model.cfg.n_layers
        per_layer = {}
        for k, v in vectors.items():
            if not -n <= k < n:
                raise LensarithError(f"vectors has layer {k}, out of range for a model with {n} layers: valid keys are "
                                     f"{-n}..{n - 1} (negative ones count from the end)")
            if k % n in per_layer:
                raise LensarithError(f"vectors names layer {k % n} twice (as {k % n - n} and {k % n}); give each layer once")
            per_layer[k % n] = v
        layers = sorted(per_layer) if layers is None else check_layers(model, layers)
        missing = [layer for layer in layers if layer not in per_layer]
        if missing:
            raise LensarithError(f"layers={layers}: vectors has no vector for layers {missing}")
    else:
        layers = list(range(model.cfg.n_layers)) if layers is None else check_layers(model, layers)
        per_layer = {layer: vectors for layer in layers}
    if site == "z":
        raise LensarithError("site='z' has no layer to sweep (each head goes in at its own layer); use apply_vector")
    if isinstance(scales, (int, float)) or not isinstance(scales, Sequence) or not scales:
        raise LensarithError(f"scales must be a non-empty list of numbers, got {scales!r}")
    scales = [_check_scale(s, "scales") for s in scales]
    apps: dict[str, Application] = {}
    for si, scale in enumerate(scales):
        for layer in layers:
            apps[f"s{si}_L{layer}"] = Application(per_layer[layer], site, [layer], mode, scale, positions)
    res = apply_vectors(model, apps, contexts, baseline=baseline, seed=seed, batch_size=batch_size,
                        drop_multi_token=drop_multi_token, progress=progress)
    ranks = res.tensors["rank_answer"][:, -1]  # [run, batch]
    shape = (len(scales), len(layers), ranks.shape[-1])
    vec = torch.stack([res.rank(f"s{si}_L{layer}") for si in range(len(scales)) for layer in layers]).reshape(shape)
    if baseline:
        rnd = torch.stack([res.rank(f"s{si}_L{layer}:random") for si in range(len(scales)) for layer in layers]).reshape(shape)
    else:
        rnd = torch.full_like(vec, -1)
    rank = torch.stack([vec, rnd])
    control = res.rank("control")
    rr = 1.0 / (rank.float() + 1.0)
    top1 = (rank == 0).float()
    if not baseline:
        rr[1], top1[1] = float("nan"), float("nan")
    first = next(iter(apps.values()))
    meta = provenance(model, recipe="sweep_layers", kind=kind_of(first.vector), site=first.resolved(model).site,
                      mode=mode, positions=positions, layers=layers, scales=scales, seed=seed,
                      baseline="same-norm Gaussian direction" if baseline else None, report=res.meta.get("report"),
                      vector={m: v for m, v in first.vector.meta.items() if m not in ("sources", "shuffled_sources")})
    return SweepResult({"rank": rank, "control_rank": control, "mrr": rr.mean(-1), "top1": top1.mean(-1),
                        "control_mrr": (1.0 / (control.float() + 1.0)).mean()[None],
                        "control_top1": (control == 0).float().mean()[None]},
                       {"rank": ("variant", "scale", "layer", "batch"), "control_rank": ("batch",),
                        "mrr": ("variant", "scale", "layer"), "top1": ("variant", "scale", "layer"),
                        "control_mrr": ("one",), "control_top1": ("one",)},
                       {"variant": ["vector", "random"], "scale": [str(s) for s in scales],
                        "layer": [f"L{layer}" for layer in layers], "batch": res.labels["batch"]}, meta)
