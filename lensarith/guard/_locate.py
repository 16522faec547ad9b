"""Locate the FFN that carries a relation, both ways: where it is *needed* and where it *can write* it.

- **Necessity** (is the relation lost without this MLP?): each MLP alone removed — zero and
  mean ablation, at the last position and at every position — on the task's prompts;
  per-example correctness and answer log-prob, paired against the clean run, with bootstrap
  intervals.
- **Sufficiency** (can this MLP's output write the relation into a context that lacks it?):
  ``lensarith.vectors.find_layers``' transplant sweep (each layer's o added at that layer in
  random-token contexts; the gain in the answer's MRR over the control), every layer eligible.
- **DLA**: each MLP's direct logit attribution to answer - argument on the task prompts.

A verdict per layer follows from stated criteria (``LocateConfig``): *necessary* when one of
the four ablations drops accuracy by at least ``necessary_drop`` with the interval's lower end
above zero; *sufficient* when the transplant gain is at least ``sufficient_gain``; *both* or
*neither* otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._errors import LensarithError, check_int
from .._types import Model
from ..core import Ablate, Batch, Group, Result, Site, provenance, readout, run
from ..paper.stats import bootstrap_ci
from ..vectors import SearchConfig, find_layers
from ..vectors._search import task_batch

__all__ = ["LocateConfig", "LocateResult", "locate", "CONDITIONS", "mlp_means"]

#: the four necessity conditions: (mode, position)
CONDITIONS: tuple[tuple[str, str], ...] = (("zero", "last"), ("zero", "all"), ("mean", "last"), ("mean", "all"))


@dataclass(frozen=True)
class LocateConfig:
    """How ``locate`` measures and decides.

    Attributes:
        n: task prompts for necessity and DLA.
        n_contexts: random-token contexts for the sufficiency sweep.
        necessary_drop: accuracy drop (clean - ablated, absolute) at or above which, with the
            95% interval's lower end above 0, a layer counts as necessary.
        sufficient_gain: answer-MRR gain over the control (transplant) at or above which a
            layer counts as sufficient.
        seed: prompt shuffle, contexts and bootstrap seed.
        batch_size: prompts per forward.
    """

    n: int = 64
    n_contexts: int = 32
    necessary_drop: float = 0.1
    sufficient_gain: float = 0.1
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        check_int(self.n, "LocateConfig n", minimum=2)
        check_int(self.n_contexts, "LocateConfig n_contexts", minimum=1)
        check_int(self.seed, "LocateConfig seed")
        check_int(self.batch_size, "LocateConfig batch_size", minimum=1)
        for name in ("necessary_drop", "sufficient_gain"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise LensarithError(f"LocateConfig {name} must be a number in (0, 1], got {v!r}")


class LocateResult(Result):
    """Necessity next to sufficiency and DLA, per MLP layer.

    Tensors: ``accuracy`` / ``logp`` ``[condition, layer]`` (ablated), ``drop`` / ``drop_lo`` /
    ``drop_hi`` ``[condition, layer]`` (clean - ablated accuracy, 95% paired bootstrap),
    ``logp_drop`` / ``logp_drop_lo`` / ``logp_drop_hi`` (the same for the answer log-prob),
    ``transplant_gain`` ``[layer]`` (sufficiency; NaN where not evaluated), ``dla`` ``[layer]``,
    ``clean_correct`` ``[batch]``. Labels: ``condition`` (``zero@last`` ...), ``layer``,
    ``verdict`` (one per layer).
    """

    kind = "guard_locate"

    @property
    def verdicts(self) -> list[str]:
        return self.labels["verdict"]

    @property
    def necessary_layers(self) -> list[int]:
        return [i for i, v in enumerate(self.verdicts) if v in ("necessary", "both")]

    @property
    def sufficient_layers(self) -> list[int]:
        return [i for i, v in enumerate(self.verdicts) if v in ("sufficient", "both")]

    @property
    def chosen_layer(self) -> int:
        """The FFN the rest of the loop watches and edits (``meta['chosen_layer']``; see ``locate``)."""
        return int(self.meta["chosen_layer"])

    def table(self) -> list[dict[str, Any]]:
        """One row per layer: accuracy drop per condition (with intervals), transplant gain, DLA, verdict."""
        rows = []
        conds = self.labels["condition"]
        for layer in range(len(self.verdicts)):
            row: dict[str, Any] = {"layer": layer}
            for c, name in enumerate(conds):
                row[f"drop {name}"] = float(self.tensors["drop"][c, layer])
                row[f"drop {name} CI"] = (f"[{float(self.tensors['drop_lo'][c, layer]):+.2f}, "
                                          f"{float(self.tensors['drop_hi'][c, layer]):+.2f}]")
            for c, name in enumerate(conds):
                row[f"dlogp {name}"] = float(self.tensors["logp_drop"][c, layer])
            gain = float(self.tensors["transplant_gain"][layer])
            row["transplant gain"] = None if math.isnan(gain) else gain
            row["dla"] = float(self.tensors["dla"][layer])
            row["verdict"] = self.verdicts[layer]
            rows.append(row)
        return rows


def mlp_means(model: Model, batch: Batch, batch_size: int) -> tuple[Tensor, Tensor]:
    """Each MLP's mean output at the last position and over every real position ``([layer, d], [layer, d])``."""
    n = model.cfg.n_layers
    sites = [Site("mlp_out", layer) for layer in range(n)]

    def sums(out, chunk: Batch) -> dict[str, Tensor]:
        width = chunk.tokens.shape[1]
        mask = (torch.arange(width)[None] < chunk.lengths[:, None]).to(model.cfg.device)
        rows = torch.arange(len(chunk))
        last = chunk.last.to(model.cfg.device)
        allpos = torch.stack([(out.captured[s] * mask[..., None]).sum(1) for s in sites], 1)
        lastpos = torch.stack([out.captured[s][rows, last] for s in sites], 1)
        return {"all": allpos.double().cpu(), "last": lastpos.double().cpu(), "count": chunk.lengths.clone()}

    got = run(model, batch, capture=sites, keep=sums, batch_size=batch_size, desc="MLP means").kept
    mean_all = got["all"].sum(0) / got["count"].sum()
    mean_last = got["last"].mean(0)
    return mean_last.to(model.cfg.dtype), mean_all.to(model.cfg.dtype)


def _necessity(model, batch: Batch, cfg: LocateConfig, progress) -> dict[str, Tensor]:
    L = model.cfg.n_layers
    mean_last, mean_all = mlp_means(model, batch, cfg.batch_size)
    groups = [Group()]
    for mode, pos in CONDITIONS:
        for layer in range(L):
            site = Site("mlp_out", layer, "last" if pos == "last" else None)
            mean = None if mode == "zero" else (mean_last if pos == "last" else mean_all)[layer]
            groups.append(Group([Ablate(site, mode, mean)], start_layer=layer))

    @torch.no_grad()
    def score(out, chunk: Batch) -> dict[str, Tensor]:
        correct, lp = [], []
        for final in out.final:  # one group at a time: [row, vocab] stays small for big vocabularies
            logp = readout.logits(model, final).float().log_softmax(-1)
            ans = chunk.answer_ids.to(logp.device)
            correct.append((logp.argmax(-1) == ans).cpu())
            lp.append(logp[torch.arange(len(chunk), device=logp.device), ans].cpu())
        return {"correct": torch.stack(correct), "logp": torch.stack(lp)}

    got = run(model, batch, groups=groups, read="last", keep=score, batch_size=cfg.batch_size, progress=progress,
              desc="necessity").kept
    return got


def locate(model: Model, task, config: LocateConfig = LocateConfig(), *, progress: bool | None = None) -> LocateResult:
    """Per-layer necessity (single-MLP ablations) next to sufficiency (transplant) and DLA, with verdicts.

    The two questions differ: ``find_layers`` and DLA answer *which MLP can write the
    relation* (sufficiency: its output, transplanted, makes other contexts produce the
    answer); the ablations answer *which MLP the model needs* for it (necessity: without it the
    answers are lost). On the bundled ``organism`` they disagree: the relation is written
    mid-stack but only MLP 0 is needed.

    The chosen layer (``meta['chosen_layer']``) for the monitor and the policies is the
    necessary layer with the largest accuracy drop after the argument's logit-lens peak if
    there is one, else the layer ``find_layers`` picks (sufficiency), and ``meta['chosen_by']``
    says which.

    Args:
        model: a HookedTransformer (or bridge) with MLPs.
        task: a task name (``capitals``, ``past`` ...) or a list of ``Example``.
        config: a ``LocateConfig`` (sizes and the verdict criteria).
        progress: show progress bars.

    Returns:
        A ``LocateResult`` (``table()``, ``verdicts``, ``chosen_layer``).

    Example:
        >>> res = locate(model, "capitals", LocateConfig(n=8, n_contexts=4))
        >>> len(res.verdicts) == model.cfg.n_layers and set(res.verdicts) <= {"necessary", "sufficient", "both", "neither"}
        True
    """
    if not isinstance(config, LocateConfig):
        raise LensarithError(f"config must be a lensarith.guard.LocateConfig, got {type(config).__name__}")
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLPs to locate")
    batch = task_batch(model, task, n=config.n, seed=config.seed)
    if len(batch) < 2:
        raise LensarithError(f"task {task!r} has {len(batch)} usable single-token prompts for this model; locate needs at least 2")
    L = model.cfg.n_layers
    got = _necessity(model, batch, config, progress)
    correct, logp = got["correct"], got["logp"]  # [group, batch]
    clean_c, clean_lp = correct[0].float(), logp[0].double()
    k = len(CONDITIONS)
    acc = correct[1:].float().mean(-1).view(k, L)
    lp = logp[1:].double().mean(-1).view(k, L)
    drop, lo, hi = torch.zeros(k, L), torch.zeros(k, L), torch.zeros(k, L)
    ldrop, llo, lhi = torch.zeros(k, L), torch.zeros(k, L), torch.zeros(k, L)
    for g in range(k * L):
        c, layer = divmod(g, L)
        d = (clean_c - correct[1 + g].float()).numpy()
        drop[c, layer] = float(d.mean())
        lo[c, layer], hi[c, layer] = bootstrap_ci(d, seed=config.seed)
        dl = (clean_lp - logp[1 + g].double()).numpy()
        ldrop[c, layer] = float(dl.mean())
        llo[c, layer], lhi[c, layer] = bootstrap_ci(dl, seed=config.seed)
    search = find_layers(model, batch, config=SearchConfig(n_prompts=config.n, n_contexts=config.n_contexts,
                                                           after_argument=False, seed=config.seed),
                         batch_size=config.batch_size, progress=progress)
    gain = search.tensors["apply_gain"].float()
    dla = search.tensors["dla"].float()
    necessary = ((drop >= config.necessary_drop) & (lo > 0)).any(0)
    sufficient = torch.nan_to_num(gain, nan=-1.0) >= config.sufficient_gain
    verdict = ["both" if n and s else "necessary" if n else "sufficient" if s else "neither"
               for n, s in zip(necessary.tolist(), sufficient.tolist())]
    peak = _argument_peak(search)
    late_necessary = [l for l in range(L) if necessary[l] and l >= peak]
    if late_necessary:
        chosen = max(late_necessary, key=lambda l: float(drop[:, l].max()))
        chosen_by = f"necessity (largest accuracy drop among necessary MLPs at or after the argument peak, layer {peak})"
    else:
        chosen = search.application_layer
        chosen_by = (f"sufficiency (no MLP at or after the argument peak, layer {peak}, is necessary by the criterion; "
                     "find_layers' application layer)")
    tensors = {"accuracy": acc, "logp": lp.float(), "drop": drop, "drop_lo": lo, "drop_hi": hi, "logp_drop": ldrop,
               "logp_drop_lo": llo, "logp_drop_hi": lhi, "transplant_gain": gain, "dla": dla,
               "clean_correct": clean_c, "clean_logp": clean_lp.float()}
    axes = {name: ("condition", "layer") for name in ("accuracy", "logp", "drop", "drop_lo", "drop_hi", "logp_drop",
                                                      "logp_drop_lo", "logp_drop_hi")}
    axes.update({"transplant_gain": ("layer",), "dla": ("layer",), "clean_correct": ("batch",), "clean_logp": ("batch",)})
    meta = provenance(model, recipe="guard.locate", task=task if isinstance(task, str) else None, n=len(batch),
                      config=config.__dict__, chosen_layer=int(chosen), chosen_by=chosen_by, argument_peak=peak,
                      find_layers_application=search.application_layer, clean_accuracy=float(clean_c.mean()),
                      criteria={"necessary": f"some ablation (zero/mean x last/all) drops accuracy by >= "
                                             f"{config.necessary_drop} with the 95% paired bootstrap interval's lower "
                                             "end > 0",
                                "sufficient": f"find_layers' transplant gain (answer MRR over control, o_l added at l in "
                                              f"random-token contexts) >= {config.sufficient_gain}"},
                      questions={"necessity": "which MLP the model needs for the relation (ablate it alone)",
                                 "sufficiency": "which MLP's output can write the relation elsewhere (transplant)",
                                 "dla": "which MLP pushes the answer over the argument directly at the output"})
    return LocateResult(tensors, axes, {"condition": [f"{m}@{p}" for m, p in CONDITIONS],
                                        "layer": [f"L{l}" for l in range(L)], "verdict": verdict}, meta)


def _argument_peak(search) -> int:
    arg = search.tensors["argument_mrr"]
    if bool(torch.isnan(arg).all()) or arg.numel() < 2:
        return 0
    return int(torch.nan_to_num(arg[:-1], nan=-1.0).argmax())


def locate_figure(res: LocateResult, *, title: str = ""):
    """Necessity (accuracy drop per condition, 95% intervals) above sufficiency (transplant gain) and DLA."""
    from ..viz.plots import _figure

    fig = _figure((9.0, 5.5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    L = len(res.verdicts)
    xs = np.arange(L)
    width = 0.2
    for c, name in enumerate(res.labels["condition"]):
        d = res.tensors["drop"][c].numpy()
        err = np.stack([d - res.tensors["drop_lo"][c].numpy(), res.tensors["drop_hi"][c].numpy() - d])
        ax1.bar(xs + (c - 1.5) * width, d, width, yerr=np.clip(err, 0, None), label=name, capsize=2)
    ax1.axhline(float(res.meta["config"]["necessary_drop"]), color="k", ls=":", lw=1, label="criterion")
    ax1.set_ylabel("accuracy drop\n(that MLP alone removed)")
    ax1.legend(fontsize=7, ncol=5)
    ax1.set_title(title or f"necessity vs sufficiency: {res.meta.get('task')} on {res.meta.get('model')}", fontsize=10)
    gain = np.nan_to_num(res.tensors["transplant_gain"].numpy())
    ax2.bar(xs - 0.2, gain, 0.4, label="transplant gain (MRR)", color="tab:green")
    ax2.axhline(float(res.meta["config"]["sufficient_gain"]), color="k", ls=":", lw=1)
    ax2b = ax2.twinx()
    ax2b.bar(xs + 0.2, res.tensors["dla"].numpy(), 0.4, label="DLA (answer - argument)", color="tab:purple", alpha=0.7)
    ax2b.axhline(0, color="tab:purple", lw=0.6)
    ax2.set_ylabel("sufficiency")
    ax2b.set_ylabel("DLA")
    ax2.set_xticks(xs)
    ax2.set_xticklabels([f"L{l}\n{v}" for l, v in enumerate(res.verdicts)], fontsize=7)
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax2b.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left", framealpha=0.9)
    return fig
