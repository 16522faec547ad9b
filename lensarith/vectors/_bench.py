"""o-vectors, function vectors and task vectors on one bench: extract, sweep, compare (``vector_bench``).

For one task (registered as the recipe ``"vector_bench"``):

1. the task's rows whose argument and answer are single tokens for the model are split
   (seeded, by argument) into *source* rows (extraction), *dev* rows (the layer and scale
   choice) and *test* rows (the scores);
2. from few-shot prompts over the source rows: o-vectors (each MLP's output at the last
   position, mean over prompts), task vectors (each layer's residual there) and a function
   vector (the heads ranked by indirect effect under shuffled labels, top ``n_heads`` summed);
3. for each context type (``random``-token contexts, ``zero_shot`` prompts) and kind, a sweep
   over layers and scales on the dev contexts, with a same-norm random vector at each point,
   picks the best layer (and scale) by the vector's MRR;
4. on the test contexts, one shared forward per chunk runs the control, each kind at its best
   point and each kind's same-norm random baseline; scores are the answer's reciprocal rank
   and top-k accuracy at the model's output, with bootstrap 95% intervals over contexts;
5. cosine similarities between the kinds' vectors in the residual stream (the o-vector and the
   function vector are writes into it; the task vector is a residual state, centred by the
   mean residual of the same contexts at its site so that it too is a displacement).

``compare_vectors`` runs it for several tasks; ``bench_table`` and ``bench_figure`` lay the
results out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from .._errors import LensarithError, check_choice, check_int, check_seed
from ..core import Result, check_layers, provenance, register_recipe, tokenize
from ..tasks import TASKS, Example, load_pairs, random_token_contexts
from ._apply_vector import Application, apply_vectors, bootstrap_ci
from ._fewshot import few_shot_prompts
from ._function_task import (RESID_SITES, HeadEffects, function_vector, head_effects, make_task_vector,
                             mlp_out_by_layer, resid_by_layer)
from ._ovector import OVector
from ._scoring import single_tokens
from ._sweep import sweep_layers
from .._types import Model

__all__ = ["BenchConfig", "BenchResult", "vector_bench", "compare_vectors", "bench_table", "single_token_counts",
           "KINDS", "CONTEXTS"]

KINDS = ("o", "fv", "tv")
CONTEXTS = ("random", "zero_shot")


def _scales(value, name: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)) or not isinstance(value, Sequence) or not value:
        raise LensarithError(f"BenchConfig {name} must be a non-empty tuple of numbers, got {value!r}")
    out = []
    for s in value:
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s):
            raise LensarithError(f"BenchConfig {name} must hold finite numbers, got {s!r} in {value!r}")
        out.append(float(s))
    return tuple(out)


@dataclass(frozen=True)
class BenchConfig:
    """Options of ``vector_bench``.

    Attributes:
        kinds: which vectors: ``o`` (Merullo et al.), ``fv`` (Todd et al.), ``tv`` (Hendel et al.).
        contexts: ``random`` (``w1 w2 w3 X w1 w2 w3 X ...``) and/or ``zero_shot`` (the task's
            query without demonstrations).
        n: test contexts per context type (at most: all test rows when there are fewer).
        n_dev: dev contexts for the layer and scale choice.
        n_sources: source rows; their few-shot prompts give every kind's vector.
        n_shots: demonstrations per few-shot prompt (Todd et al.: 10; the organism's 128-token
            context holds 5 of the Q/A tasks' demonstrations).
        n_heads: heads summed into the function vector (Todd et al.: 10).
        layers: layers swept (default: all).
        o_scales, fv_scales, tv_scales: scales swept per kind (``(1.0,)`` is each paper's own).
        o_mode, fv_mode, tv_mode: ``add`` or ``replace`` (the papers: o added or replacing the
            MLP output, the function vector added to the residual, the task vector patched over it).
        fv_site, tv_site: the residual site the function vector is added to and the task vector
            is taken from and patched into (``resid_pre`` of layer l is the output of block l-1).
        positions: ``last`` (the read position only) or ``all``.
        ks: the k of top-k accuracy.
        n_boot: bootstrap resamples for the intervals.
        seed: seeds the splits, prompts, random baselines and the bootstrap.
        batch_size: contexts per forward (sweeps hold up to ``1 + 2 x layers x scales`` copies).
    """

    kinds: tuple[str, ...] = KINDS
    contexts: tuple[str, ...] = CONTEXTS
    n: int = 64
    n_dev: int = 16
    n_sources: int = 16
    n_shots: int = 5
    n_heads: int = 10
    layers: tuple[int, ...] | None = None
    o_scales: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    fv_scales: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    tv_scales: tuple[float, ...] = (1.0,)
    o_mode: str = "add"
    fv_mode: str = "add"
    tv_mode: str = "replace"
    fv_site: str = "resid_pre"
    tv_site: str = "resid_pre"
    positions: str = "last"
    ks: tuple[int, ...] = (1, 5)
    n_boot: int = 1000
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        for name, valid in (("kinds", KINDS), ("contexts", CONTEXTS)):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence) or not value:
                raise LensarithError(f"BenchConfig {name} must be a non-empty tuple drawn from {valid}, got {value!r}")
            for v in value:
                check_choice(v, valid, f"BenchConfig {name}")
            if len(set(value)) != len(value):
                raise LensarithError(f"BenchConfig {name} repeats an entry: {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name, minimum in (("n", 1), ("n_dev", 1), ("n_sources", 2), ("n_shots", 1), ("n_heads", 1),
                              ("n_boot", 1), ("batch_size", 1)):
            check_int(getattr(self, name), f"BenchConfig {name}", minimum=minimum)
        check_seed(self.seed, "BenchConfig seed")
        if "fv" in self.kinds and self.n_shots < 2:
            raise LensarithError(f"BenchConfig n_shots={self.n_shots}: the function vector's heads are ranked on prompts "
                                 "with shuffled labels, which need n_shots >= 2; raise n_shots or drop 'fv' from kinds")
        if self.n_shots >= self.n_sources:
            raise LensarithError(f"BenchConfig n_shots={self.n_shots} needs n_sources > n_shots (a prompt's demonstrations "
                                 f"come from the other source rows), got n_sources={self.n_sources}")
        for name in ("o_scales", "fv_scales", "tv_scales"):
            object.__setattr__(self, name, _scales(getattr(self, name), name))
        for name in ("o_mode", "fv_mode", "tv_mode"):
            check_choice(getattr(self, name), ("add", "replace"), f"BenchConfig {name}")
        check_choice(self.fv_site, RESID_SITES, "BenchConfig fv_site")
        check_choice(self.tv_site, RESID_SITES, "BenchConfig tv_site")
        check_choice(self.positions, ("last", "all"), "BenchConfig positions")
        if isinstance(self.ks, int) or not isinstance(self.ks, Sequence) or not self.ks:
            raise LensarithError(f"BenchConfig ks must be a non-empty tuple of positive ints, got {self.ks!r}")
        for k in self.ks:
            check_int(k, "BenchConfig ks", minimum=1)
        object.__setattr__(self, "ks", tuple(self.ks))
        if self.layers is not None:
            if isinstance(self.layers, (int, str)) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                               for x in self.layers):
                raise LensarithError(f"BenchConfig layers must be None or a tuple of ints, got {self.layers!r}")
            object.__setattr__(self, "layers", tuple(self.layers))

    @classmethod
    def small_run(cls, **overrides) -> BenchConfig:
        """CI sizes: few contexts, two scales, 200 bootstrap resamples."""
        base = dict(n=8, n_dev=8, n_sources=8, n_shots=3, n_heads=4, o_scales=(1.0, 4.0), fv_scales=(1.0, 4.0),
                    n_boot=200)
        return cls(**{**base, **overrides})


class BenchResult(Result):
    """One task's comparison of o-vectors, function vectors and task vectors.

    Tensors (contexts and kinds in ``labels``):

    - ``rank_<context>`` ``[run, batch]``: the answer's final rank on the test contexts, runs
      ``control``, each kind (``o``, ``fv``, ``tv``) at its best point and ``<kind>:random``;
    - ``best_layer`` / ``best_scale`` ``[context, kind]``;
    - ``sweep_mrr`` ``[context, kind, variant, layer]`` (dev MRR at the best scale; variant
      ``vector`` / ``random``), ``sweep_control_mrr`` ``[context]``;
    - ``norm`` ``[context, kind]``; ``cosine`` ``[context, kind, kind]`` at the best layers;
      ``cosine_by_layer`` ``[pair, layer]`` (``o~fv``, ``tv~fv``, ``o~tv``, same layer,
      zero-shot centring for the task vector);
    - ``indirect_effect`` ``[layer, head]`` (the function vector's head ranking).
    """

    kind = "vector_bench"

    def validate(self, where: str) -> None:
        """Raise unless the fields every method reads are there (a hand-edited or truncated save)."""
        for key in ("task", "runs", "config"):
            if key not in self.meta:
                raise LensarithError(f"{where} lacks meta[{key!r}]: it is not a complete vector_bench result; run the "
                                     "bench again and save it")
        for key in ("n_boot", "seed"):
            if key not in self.meta["config"]:
                raise LensarithError(f"{where} lacks meta['config'][{key!r}]; run the bench again and save it")
        for key in ("kind", "context"):
            if key not in self.labels:
                raise LensarithError(f"{where} lacks labels[{key!r}]; run the bench again and save it")
        needed = ["best_layer", "best_scale"] + [f"rank_{c}" for c in self.labels["context"]]
        missing = [k for k in needed if k not in self.tensors]
        if missing:
            raise LensarithError(f"{where} lacks the tensors {missing}; run the bench again and save it")

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def kinds(self) -> list[str]:
        return list(self.labels["kind"])

    @property
    def contexts(self) -> list[str]:
        return list(self.labels["context"])

    def _ranks(self, context: str, run: str) -> Tensor:
        check_choice(context, self.contexts, "context")
        runs = self.meta["runs"]
        check_choice(run, runs, "run")
        return self.tensors[f"rank_{context}"][runs.index(run)]

    def values(self, context: str, run: str, metric: str = "rr") -> Tensor:
        """Per test context: ``rr`` (reciprocal rank) or ``top<k>`` (0/1) of ``run``."""
        ranks = self._ranks(context, run)
        if metric == "rr":
            return 1.0 / (ranks.float() + 1.0)
        if isinstance(metric, str) and metric.startswith("top") and metric[3:].isdigit() and int(metric[3:]) >= 1:
            return (ranks < int(metric[3:])).float()
        raise LensarithError(f"metric must be 'rr' or 'top<k>' such as 'top1', got {metric!r}")

    def ci(self, context: str, run: str, metric: str = "rr", *, minus: str | None = None) -> tuple[float, float, float]:
        """Mean and bootstrap 95% interval over test contexts (paired difference with ``minus``)."""
        v = self.values(context, run, metric)
        if minus is not None:
            v = v - self.values(context, minus, metric)
        return bootstrap_ci(v, n_boot=int(self.meta["config"]["n_boot"]), seed=int(self.meta["config"]["seed"]))

    def best(self, context: str, kind: str) -> tuple[int, float]:
        """The (layer, scale) chosen on the dev contexts."""
        check_choice(context, self.contexts, "context")
        check_choice(kind, self.kinds, "kind")
        c, k = self.contexts.index(context), self.kinds.index(kind)
        return int(self.tensors["best_layer"][c, k]), float(self.tensors["best_scale"][c, k])

    def table(self, metrics: Sequence[str] = ("rr", "top1")) -> list[dict[str, Any]]:
        """One row per (context, kind): best layer and scale, then for each metric the vector,
        its same-norm random baseline and the control (mean, 95% low, high), and the paired
        gains over the random baseline (``gain``) and over the control (``gain_control``). With
        ``replace`` (the task vector's mode) a random vector wipes the state it replaces, so the
        gain over the control is the telling one there."""
        rows = []
        for context in self.contexts:
            for kind in self.kinds:
                layer, scale = self.best(context, kind)
                row: dict[str, Any] = {"task": self.task, "context": context, "kind": kind, "layer": layer,
                                       "scale": scale, "n": int(self.tensors[f"rank_{context}"].shape[-1])}
                for metric in metrics:
                    name = "mrr" if metric == "rr" else metric
                    for label, run, minus in (("vector", kind, None), ("random", f"{kind}:random", None),
                                              ("control", "control", None), ("gain", kind, f"{kind}:random"),
                                              ("gain_control", kind, "control")):
                        m, lo, hi = self.ci(context, run, metric, minus=minus)
                        row[f"{name}_{label}"], row[f"{name}_{label}_lo"], row[f"{name}_{label}_hi"] = m, lo, hi
                rows.append(row)
        return rows

    def cosines(self, context: str | None = None) -> list[dict[str, Any]]:
        """Pairwise cosine similarities of the kinds' vectors (best layers) per context type."""
        rows = []
        for c, ctx in enumerate(self.contexts):
            if context is not None and ctx != context:
                continue
            for i, a in enumerate(self.kinds):
                for j, b in enumerate(self.kinds):
                    if i < j:
                        rows.append({"task": self.task, "context": ctx, "pair": f"{a}~{b}",
                                     "cosine": float(self.tensors["cosine"][c, i, j])})
        return rows


def single_token_counts(model: Model, tasks: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """Per task: its rows and how many have a single-token argument and answer for ``model``."""
    if isinstance(tasks, str) or (tasks is not None and not isinstance(tasks, Sequence)):
        raise LensarithError(f"tasks must be None or a list of task names, got {tasks!r}")
    tasks = sorted(TASKS) if tasks is None else list(tasks)
    out = {}
    for task in tasks:
        if task not in TASKS:
            raise LensarithError(f"task={task!r} is unknown; valid tasks: {', '.join(sorted(TASKS))}")
        rows = load_pairs(task)
        ok = sum(single_tokens(model, Example("", " " + r["answer"], " " + r["argument"])) for r in rows)
        out[task] = {"rows": len(rows), "single_token": ok}
    return out


def _rows(model, task: str, config: BenchConfig) -> tuple[list[dict], list[dict], list[dict], dict[str, int]]:
    rows = load_pairs(task)
    seen: dict[str, dict] = {}
    for r in rows:
        seen.setdefault(r["argument"], r)
    usable = [r for r in seen.values() if single_tokens(model, Example("", " " + r["answer"], " " + r["argument"]))]
    need = config.n_sources + config.n_dev + 1
    counts = {"rows": len(rows), "arguments": len(seen), "single_token": len(usable)}
    if len(usable) < need:
        raise LensarithError(
            f"task={task!r}: {len(usable)} of {len(rows)} rows have a single-token argument and answer for this model, "
            f"fewer than n_sources + n_dev + 1 = {need}; lower BenchConfig n_sources / n_dev or pick another task")
    random.Random(config.seed).shuffle(usable)
    src = usable[:config.n_sources]
    dev = usable[config.n_sources:config.n_sources + config.n_dev]
    test = usable[config.n_sources + config.n_dev:][:config.n]
    return src, dev, test, counts


def _contexts(task: str, rows: Sequence[dict], kind: str, seed: int) -> list[Example]:
    zero = few_shot_prompts(task, n_shots=0, queries=rows, seed=seed)
    if kind == "zero_shot":
        return zero
    return random_token_contexts(zero, seed=seed)


def _cos(a: Tensor, b: Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    den = float(a.norm() * b.norm())
    return float(a @ b) / den if den > 0 else float("nan")


def vector_bench(model: Model, task, config=BenchConfig(), *, progress: bool | None = None) -> BenchResult:
    """Compare o-vectors, function vectors and task vectors on one task (see the module docstring).

    Args:
        model: a HookedTransformer (with MLPs for ``o``).
        task: a task name (``TASKS``: the paper's relational tasks and the function-vector
            tasks such as ``antonyms``, ``singular_plural``, ``country_continent``).
        config: a ``BenchConfig``.
        progress: show progress bars.

    Returns:
        A ``BenchResult``: ``table()`` (each kind at its best layer, per context type, against
        the same-norm random baseline and the control, with bootstrap 95% intervals),
        ``cosines()``, the sweeps and the head ranking.

    Example:
        >>> res = vector_bench(model, "capitals", BenchConfig.small_run(n=4, n_dev=4, n_sources=4, n_shots=2))
        >>> sorted({row["kind"] for row in res.table()})
        ['fv', 'o', 'tv']
    """
    if not isinstance(config, BenchConfig):
        raise LensarithError(f"config must be a lensarith.vectors.BenchConfig, got {type(config).__name__} {config!r:.80}")
    if not isinstance(task, str) or task not in TASKS:
        raise LensarithError(f"task={task!r} is unknown; valid tasks: {', '.join(sorted(TASKS))}")
    if "o" in config.kinds and model.cfg.attn_only:
        raise LensarithError("BenchConfig kinds has 'o' but the model is attention-only (no MLP outputs); drop it")
    n_layers = model.cfg.n_layers
    if "fv" in config.kinds:
        from ._function_task import _no_nnsight

        _no_nnsight(model, "vector_bench with kinds 'fv'")
        if config.n_heads > n_layers * model.cfg.n_heads:
            raise LensarithError(f"BenchConfig n_heads={config.n_heads} is more than the model's "
                                 f"{n_layers * model.cfg.n_heads} heads")
    layers = list(range(n_layers)) if config.layers is None else check_layers(model, list(config.layers), name="BenchConfig layers")
    seed = config.seed
    src, dev, test, counts = _rows(model, task, config)
    clean = few_shot_prompts(task, n_shots=config.n_shots, queries=src, demos=src, seed=seed)
    try:
        clean_b = tokenize(model, clean)
    except LensarithError as exc:
        if "n_ctx" not in str(exc):
            raise
        raise LensarithError(f"BenchConfig n_shots={config.n_shots}: prompts of {config.n_shots} demonstrations do not fit "
                             f"the model: {exc}; lower n_shots") from None
    bs = config.batch_size

    # ---- extraction: every kind, every layer
    vectors: dict[str, dict[int, OVector]] = {}
    effects: HeadEffects | None = None
    if "o" in config.kinds:
        mlp = mlp_out_by_layer(model, clean_b, layers, batch_size=bs, progress=progress)
        vectors["o"] = {}
        for i, layer in enumerate(layers):
            vec = mlp[i].mean(0)
            meta = provenance(model, recipe="extract_o_vector", layer=layer, hook=f"blocks.{layer}.hook_mlp_out",
                              position="last", reduce="mean", task=task, sources=[e.prompt for e in clean],
                              n_sources=len(clean), n_shots=config.n_shots, seed=seed,
                              norm=float(vec.float().norm()), dtype=str(vec.dtype).removeprefix("torch."))
            vectors["o"][layer] = OVector({"vector": vec}, {"vector": ("d_model",)}, {}, meta)
    if "tv" in config.kinds:
        res = resid_by_layer(model, clean_b, config.tv_site, layers, batch_size=bs, progress=progress)
        vectors["tv"] = {layer: make_task_vector(model, res[i], clean_b, site=config.tv_site, layer=layer, reduce="mean",
                                                 task=task, n_shots=config.n_shots, seed=seed)
                         for i, layer in enumerate(layers)}
    if "fv" in config.kinds:
        shuffled = few_shot_prompts(task, n_shots=config.n_shots, queries=src, demos=src, shuffle_labels=True,
                                    seed=seed + 1)
        effects = head_effects(model, clean, shuffled, n_shots=config.n_shots, seed=seed, batch_size=bs,
                               progress=progress)
        fv = function_vector(model, effects, n_heads=config.n_heads)
        fv.meta["task"] = task
        vectors["fv"] = {layer: fv for layer in layers}

    modes = {"o": config.o_mode, "fv": config.fv_mode, "tv": config.tv_mode}
    sites = {"o": "mlp_out", "fv": config.fv_site, "tv": config.tv_site}
    scales = {"o": config.o_scales, "fv": config.fv_scales, "tv": config.tv_scales}
    kinds = list(config.kinds)
    n_ctx, n_kind = len(config.contexts), len(kinds)
    best_layer = torch.zeros(n_ctx, n_kind, dtype=torch.long)
    best_scale = torch.zeros(n_ctx, n_kind)
    sweep_mrr = torch.full((n_ctx, n_kind, 2, len(layers)), float("nan"))
    sweep_control = torch.zeros(n_ctx)
    norms = torch.zeros(n_ctx, n_kind)
    cosine = torch.full((n_ctx, n_kind, n_kind), float("nan"))
    tensors: dict[str, Tensor] = {}
    axes: dict[str, tuple[str, ...]] = {}
    sweeps_meta: dict[str, dict[str, list]] = {}
    runs = None
    centred_cache: dict[str, Tensor] = {}
    for c, context in enumerate(config.contexts):
        dev_ctx = _contexts(task, dev, context, seed)
        test_ctx = _contexts(task, test, context, seed + 7)
        apps: dict[str, Application] = {}
        chosen: dict[str, Tensor] = {}
        dev_b = tokenize(model, dev_ctx)
        if "tv" in kinds:  # the mean residual of the contexts the task vector replaces: its centring
            centred_cache[context] = resid_by_layer(model, dev_b, config.tv_site, layers, batch_size=bs).mean(1)
        sweeps_meta[context] = {}
        for k, kind in enumerate(kinds):
            sw = sweep_layers(model, vectors[kind], dev_b, layers=layers, scales=scales[kind], site=sites[kind],
                              mode=modes[kind], positions=config.positions, seed=seed + 100 * (k + 1), batch_size=bs,
                              progress=progress)
            layer, scale = sw.best("mrr")
            best_layer[c, k], best_scale[c, k] = layer, scale
            si = sw.scales.index(scale)
            sweep_mrr[c, k] = sw.tensors["mrr"][:, si]
            sweep_control[c] = float(sw.tensors["control_mrr"][0])
            sweeps_meta[context][kind] = sw.table()
            vec = vectors[kind][layer]
            apps[kind] = Application(vec, sites[kind], [layer], modes[kind], scale, config.positions)
            norms[c, k] = float(vec.vector.float().norm())
            chosen[kind] = vec.vector.float() - (centred_cache[context][layers.index(layer)] if kind == "tv" else 0.0)
        for i, a in enumerate(kinds):
            for j, b in enumerate(kinds):
                cosine[c, i, j] = _cos(chosen[a], chosen[b])
        got = apply_vectors(model, apps, test_ctx, baseline=True, seed=seed + 1000, batch_size=bs, progress=progress)
        runs = got.runs
        tensors[f"rank_{context}"] = got.tensors["rank_answer"][:, -1]
        axes[f"rank_{context}"] = ("run", "batch")
        if context == config.contexts[0]:
            test_prompts = {context: got.labels["batch"]}
        else:
            test_prompts[context] = got.labels["batch"]

    pairs = [("o", "fv"), ("tv", "fv"), ("o", "tv")]
    by_layer = torch.full((len(pairs), len(layers)), float("nan"))
    centring = centred_cache.get("zero_shot", next(iter(centred_cache.values()), None))
    for p, (a, b) in enumerate(pairs):
        if a not in vectors or b not in vectors:
            continue
        for li, layer in enumerate(layers):
            va = vectors[a][layer].vector.float() - (centring[li] if a == "tv" else 0.0)
            vb = vectors[b][layer].vector.float() - (centring[li] if b == "tv" else 0.0)
            by_layer[p, li] = _cos(va, vb)
    tensors.update(best_layer=best_layer, best_scale=best_scale, sweep_mrr=sweep_mrr, sweep_control_mrr=sweep_control,
                   norm=norms, cosine=cosine, cosine_by_layer=by_layer)
    axes.update(best_layer=("context", "kind"), best_scale=("context", "kind"),
                sweep_mrr=("context", "kind", "variant", "layer"), sweep_control_mrr=("context",),
                norm=("context", "kind"), cosine=("context", "kind", "kind"), cosine_by_layer=("pair", "layer"))
    if effects is not None:
        tensors["indirect_effect"], axes["indirect_effect"] = effects.indirect_effect, ("layer", "head")
    meta = provenance(
        model, recipe="vector_bench", task=task, config=asdict(config), runs=runs, counts=counts,
        splits={"source": [r["argument"] for r in src], "dev": [r["argument"] for r in dev],
                "test": [r["argument"] for r in test]},
        source_prompts=[e.prompt for e in clean], test_prompts=test_prompts, sweeps=sweeps_meta,
        applications={"o": "o_l (mean MLP-l output at the last position of the source prompts) at mlp_out of layer l",
                      "fv": f"the function vector at {config.fv_site} of layer l", "tv": f"tv_l at {config.tv_site} of layer l"},
        modes=modes, fv_heads=vectors["fv"][layers[0]].meta["heads"] if "fv" in vectors else None,
        fv_head_effect=vectors["fv"][layers[0]].meta["head_effect"] if "fv" in vectors else None,
        random_cosine_scale=1.0 / math.sqrt(model.cfg.d_model),
        cosine_note="o and fv are writes into the residual stream; tv is a residual state, centred by the mean "
                    "residual of the same context type's dev contexts at its site and layer",
        selection="best (layer, scale) by the vector's dev MRR; ties by the gain over the random baseline",
        n_test=len(test))
    labels = {"context": list(config.contexts), "kind": kinds, "variant": ["vector", "random"],
              "layer": [f"L{layer}" for layer in layers], "pair": [f"{a}~{b}" for a, b in pairs]}
    if effects is not None:
        labels["head"] = [f"H{i}" for i in range(model.cfg.n_heads)]
    return BenchResult(tensors, axes, labels, meta)


register_recipe("vector_bench")(vector_bench)


def compare_vectors(model: Model, tasks, config=BenchConfig(), *, skip_small: bool = False,
                    progress: bool | None = None, log=None) -> dict[str, BenchResult]:
    """``vector_bench`` for several tasks.

    Args:
        model: a HookedTransformer.
        tasks: task names.
        config: one ``BenchConfig`` for all.
        skip_small: leave out tasks with too few single-token rows for this model (their reason
            is logged) instead of raising.
        progress: show progress bars.
        log: a callable for one line per task (e.g. ``print``).

    Returns:
        ``{task: BenchResult}`` in the given order.
    """
    if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
        raise LensarithError(f"tasks must be a non-empty list of task names, got {tasks!r}")
    for t in tasks:
        if not isinstance(t, str) or t not in TASKS:
            raise LensarithError(f"tasks: {t!r} is unknown; valid tasks: {', '.join(sorted(TASKS))}")
    out: dict[str, BenchResult] = {}
    for task in tasks:
        try:
            out[task] = vector_bench(model, task, config, progress=progress)
        except LensarithError as exc:
            if not skip_small or "single-token argument and answer" not in str(exc):
                raise
            if log:
                log(f"{task}: skipped ({exc})")
            continue
        if log:
            best = ", ".join(f"{r['context']}/{r['kind']} L{r['layer']} MRR {r['mrr_vector']:.2f} (random {r['mrr_random']:.2f})"
                             for r in out[task].table(("rr",)))
            log(f"{task}: {best}")
    return out


def bench_table(results: Mapping[str, BenchResult] | BenchResult, metrics: Sequence[str] = ("rr", "top1")
                ) -> list[dict[str, Any]]:
    """The rows of every task's ``table()``, task by task."""
    if isinstance(results, BenchResult):
        results = {results.task: results}
    if not isinstance(results, Mapping) or not all(isinstance(r, BenchResult) for r in results.values()):
        raise LensarithError(f"results must be a BenchResult or a mapping of task -> BenchResult, got {type(results).__name__}")
    rows = []
    for res in results.values():
        rows.extend(res.table(metrics))
    return rows
