"""Layer sweeps: one vector kind at every layer and scale, with its same-norm random baseline.

``sweep_layers`` -> ``SweepResult`` runs ``apply_vectors`` with one ``Application`` per (layer,
scale) and its random baselines, in shared forwards; ``best()`` picks the layer and scale,
``curve()`` and ``table()`` lay the sweep out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._errors import LensarithError, check_choice
from ..core import Result, check_layers, provenance
from ._apply_vector import Application, apply_vectors, check_scale, kind_of
from .._types import Model

__all__ = ["sweep_layers", "SweepResult"]


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
    model: Model,
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
    scales = [check_scale(s, "scales") for s in scales]
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
