"""Watch the located FFN: a detector of the model's own wrong answers, read from its internals.

``fit_monitor`` labels a relation's prompts with the model's own correctness (top-1 ==
answer), splits them by **argument** (no argument is in both halves), fits on one half and
reports on the other:

- ``confidence``: the model's output probability of its prediction (the baseline, not fitted;
  score = -confidence);
- ``o_projection``: the located MLP's output at the last token projected on the relation's
  o-direction (the mean MLP output of correctly answered fit prompts, normalised);
- ``dla``: that output's direct logit attribution to the predicted token;
- ``lens_agreement``: the share of the late layers (after the located one, before the last)
  whose logit-lens top-1 already equals the prediction;
- ``probe``: a logistic-regression probe on the residual after the located layer;

plus user rules (a callable ``rule(example, predicted_text) -> bool`` or a set of allowed
answers). The fitted features' signs are set on the fit half (higher = more likely wrong).
Each gets AUROC, and precision / recall at an alert rate whose threshold is set on the fit
half, with bootstrap intervals, on held-out arguments; prompts whose answer appears in their
own context (``answer in prompt``: the leakage control) are scored as a separate group.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from .._errors import LensarithError, LensarithWarning, check_int
from .._types import Model
from ..core import Batch, Result, Site, as_batch, check_layer, provenance, readout, run, tokenize
from ..models import config_hash
from ..tasks import TASKS, Example, build_prompts
from ._metrics import detection_metrics, roc_curve

__all__ = ["FEATURES", "MonitorConfig", "Monitor", "MonitorResult", "fit_monitor", "internals", "leaked",
           "split_by_argument"]

FEATURES: tuple[str, ...] = ("confidence", "o_projection", "dla", "lens_agreement", "probe")
FORMATS_TRIED = ("one_shot", "zero_shot", "extractive")

Rule = Callable[[Example, str], bool] | set | frozenset


@dataclass(frozen=True)
class MonitorConfig:
    """How ``fit_monitor`` builds, fits and reports.

    Attributes:
        formats: prompt formats of the relation to label (those a task lacks are skipped;
            ``extractive`` prompts have the answer in the context and feed the leakage control).
        fit_fraction: share of the arguments in the fit half.
        alert_rate: the share of fit prompts flagged; its score threshold is applied to the held-out half.
        n: first ``n`` examples per format (None: all).
        probe_l2: L2 penalty of the logistic probe.
        seed: the argument split and the bootstrap.
        batch_size: prompts per forward.
    """

    formats: tuple[str, ...] = FORMATS_TRIED
    fit_fraction: float = 0.5
    alert_rate: float = 0.1
    n: int | None = None
    probe_l2: float = 1e-2
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not self.formats or any(f not in ("one_shot", "zero_shot", "extractive", "counterfactual") for f in self.formats):
            raise LensarithError(f"MonitorConfig formats must be a non-empty subset of one_shot, zero_shot, extractive, "
                                 f"counterfactual; got {self.formats!r}")
        for name in ("fit_fraction", "alert_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise LensarithError(f"MonitorConfig {name} must be a number strictly between 0 and 1, got {v!r}")
        check_int(self.n, "MonitorConfig n", minimum=1, allow_none=True)
        check_int(self.seed, "MonitorConfig seed")
        check_int(self.batch_size, "MonitorConfig batch_size", minimum=1)
        if isinstance(self.probe_l2, bool) or not isinstance(self.probe_l2, (int, float)) or self.probe_l2 < 0:
            raise LensarithError(f"MonitorConfig probe_l2 must be a number >= 0, got {self.probe_l2!r}")


def leaked(example: Example) -> bool:
    """Whether the answer appears (as a whole word) in the prompt's own context: the leakage control."""
    ans = example.answer.strip()
    return bool(ans) and re.search(rf"(?<!\w){re.escape(ans)}(?!\w)", example.prompt) is not None


def split_by_argument(examples: Sequence[Example], fit_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask: True for rows in the fit half. Arguments (not prompts) are split, so a
    held-out row's argument never appears in the fit half."""
    args = sorted({e.argument.strip() for e in examples})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(args))
    n_fit = max(1, min(len(args) - 1, int(round(fit_fraction * len(args))))) if len(args) > 1 else len(args)
    fit_args = {args[i] for i in order[:n_fit]}
    return np.array([e.argument.strip() in fit_args for e in examples])


def alert_threshold(scores: np.ndarray, rate: float) -> float:
    """The lowest score ``t`` such that flagging ``score >= t`` flags at most ``rate`` of ``scores``
    (ties stay together; above the maximum, so nothing is flagged, when even the top tie is too many).

    Example:
        >>> alert_threshold(np.array([0.0, 0.0, 0.0, 1.0]), 0.5)
        1.0
    """
    values = np.unique(scores)[::-1]
    best = float(values[0]) + 1.0
    for t in values:
        if float(np.mean(scores >= t)) <= rate:
            best = float(t)
        else:
            break
    return best


def _late_layers(n_layers: int, layer: int) -> list[int]:
    late = list(range(layer + 1, n_layers - 1))
    return late or [layer]


def monitor_sites(model: Model, layer: int) -> tuple[Site, Site, list[Site]]:
    """The sites the monitor reads: the MLP output and the residual after ``layer`` at the last
    token, and the late layers' residuals for the logit-lens agreement."""
    late = _late_layers(model.cfg.n_layers, layer)
    return (Site("mlp_out", layer, "last"), Site("resid_post", layer, "last"),
            [Site("resid_post", l, "last") for l in late])


@torch.no_grad()
def monitor_features(model: Model, out, sites: tuple[Site, Site, list[Site]]) -> dict[str, Tensor]:
    """What the monitor reads from one forward's ``Outputs`` (captures of ``monitor_sites``, ``final``
    at the last token): ``mlp`` / ``resid`` ``[batch, d_model]``; ``pred``, ``confidence``, ``dla``,
    ``lens_agreement`` ``[batch]``."""
    mlp_site, res_site, lens_sites = sites
    final = out.final
    probs = readout.logits(model, final).float().softmax(-1)
    conf, pred = probs.max(-1)
    agree = torch.stack([readout.logits(model, out.captured[s]).argmax(-1) == pred for s in lens_sites]).float().mean(0)
    mlp = out.captured[mlp_site]
    normed, _ = readout.frozen_final_norm(model, mlp[None], final)
    direction, _ = readout.directions(model, pred)
    dla = (normed[0] * direction).sum(-1)
    return {"mlp": mlp.float().cpu(), "resid": out.captured[res_site].float().cpu(), "pred": pred.cpu(),
            "confidence": conf.cpu(), "dla": dla.float().cpu(), "lens_agreement": agree.cpu()}


def internals(model: Model, batch: Batch, layer: int, *, batch_size: int = 32, progress: bool | None = None) -> dict[str, Tensor]:
    """What the monitor reads, per prompt, in one chunked forward: the MLP output and the residual
    after ``layer`` at the last token, the prediction, its probability, the MLP's DLA to it and
    the late layers' logit-lens agreement with it.

    Returns:
        ``mlp`` / ``resid`` ``[batch, d_model]``; ``pred``, ``confidence``, ``dla``,
        ``lens_agreement`` ``[batch]``.
    """
    sites = monitor_sites(model, layer)
    capture = list(dict.fromkeys([sites[0], sites[1]] + sites[2]))
    return run(model, batch, capture=capture, read="last", keep=lambda out, chunk: monitor_features(model, out, sites),
               batch_size=batch_size, progress=progress, desc="monitor internals").kept


def _fit_probe(x: Tensor, y: Tensor, l2: float) -> tuple[Tensor, Tensor]:
    """Logistic regression (L-BFGS, mean log-loss + l2 * |w|^2) on standardised features."""
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    xd, yd = x.double(), y.double()
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xd @ w + b, yd) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().float(), b.detach().float()


class Monitor(Result):
    """A fitted detector of wrong answers at one MLP layer (save / load like every Result).

    Tensors: ``o_direction`` ``[d_model]``, ``probe_w`` ``[d_model]``, ``probe_b`` ``[one]``,
    ``mu`` / ``sd`` ``[d_model]`` (the probe's standardisation), ``signs`` ``[feature]``,
    ``thresholds`` ``[feature]`` (score at the fit half's alert rate). Meta: ``layer``,
    ``task``, the model's name and config hash.
    """

    kind = "guard_monitor"

    @property
    def layer(self) -> int:
        return int(self.meta["layer"])

    @property
    def features(self) -> list[str]:
        return self.labels["feature"]

    def check(self, model: Model) -> None:
        """Raise unless the monitor was fitted on this model's architecture."""
        if self.meta.get("config_hash") != config_hash(model) or self.meta.get("d_model") != model.cfg.d_model:
            raise LensarithError(
                f"this monitor was fitted on {self.meta.get('model')!r} (config hash {self.meta.get('config_hash')}) but the "
                f"model is {getattr(model.cfg, 'model_name', 'unknown')!r} ({config_hash(model)}): its directions and "
                "thresholds mean nothing there; fit one on this model with fit_monitor")

    def threshold(self, feature: str) -> float:
        return float(self.tensors["thresholds"][self._index(feature)])

    def _index(self, feature: str) -> int:
        if feature not in self.features:
            raise LensarithError(f"feature={feature!r} is unknown; features: {', '.join(self.features)}")
        return self.features.index(feature)

    def scores_from(self, got: dict[str, Tensor]) -> dict[str, Float[Tensor, " batch"]]:
        """Scores (higher = more likely wrong) from ``internals`` output."""
        s = self.tensors["signs"]
        o = self.tensors["o_direction"]
        z = (got["resid"] - self.tensors["mu"]) / self.tensors["sd"]
        raw = {"confidence": -got["confidence"], "o_projection": got["mlp"] @ o, "dla": got["dla"],
               "lens_agreement": got["lens_agreement"],
               "probe": torch.sigmoid(z @ self.tensors["probe_w"] + self.tensors["probe_b"])}
        return {f: raw[f] * s[i] if f != "probe" else raw[f] for i, f in enumerate(self.features)}

    def score(self, model: Model, prompts, *, batch_size: int = 32) -> dict[str, Float[Tensor, " batch"]]:
        """Score new prompts (strings, Examples or a Batch) with every feature (higher = more likely wrong);
        raises when the monitor was fitted on another model."""
        self.check(model)
        batch = as_batch(model, prompts)
        return self.scores_from(internals(model, batch, self.layer, batch_size=batch_size))

    def flags(self, scores: dict[str, Tensor], feature: str = "probe") -> Tensor:
        """Rows a feature flags at the fitted alert threshold."""
        return scores[feature] >= self.threshold(feature)


class MonitorResult(Result):
    """Held-out evaluation of a monitor: per feature and rule, AUROC / precision / recall with intervals.

    Tensors: ``scores`` ``[feature, batch]`` and ``wrong`` ``[batch]`` for every labelled prompt,
    ``fit`` / ``leaked`` ``[batch]`` masks. ``meta['metrics']``: rows of
    ``{group, feature, auroc, auroc_lo, auroc_hi, precision, ..., recall, ...}`` for the groups
    ``held_out`` (held-out arguments, answer not in the context) and ``leaked``.
    """

    kind = "guard_monitor_eval"

    def table(self, group: str = "held_out") -> list[dict[str, Any]]:
        return [r for r in self.meta["metrics"] if r["group"] == group]

    def auroc(self, feature: str, group: str = "held_out") -> float:
        for r in self.table(group):
            if r["feature"] == feature:
                return float(r["auroc"])
        raise LensarithError(f"no metrics for feature {feature!r} in group {group!r}")

    def roc(self, feature: str, group: str = "held_out") -> tuple[np.ndarray, np.ndarray]:
        feats = self.labels["feature"]
        mask = self._mask(group)
        s = self.tensors["scores"][feats.index(feature)].numpy()[mask]
        return roc_curve(s, self.tensors["wrong"].numpy()[mask].astype(bool))

    def _mask(self, group: str) -> np.ndarray:
        fit, leak = self.tensors["fit"].numpy().astype(bool), self.tensors["leaked"].numpy().astype(bool)
        return {"held_out": ~fit & ~leak, "leaked": ~fit & leak, "fit": fit}[group]


def _examples(task, config: MonitorConfig) -> list[Example]:
    if isinstance(task, str):
        if task not in TASKS:
            raise LensarithError(f"task={task!r} is unknown; tasks: {', '.join(sorted(TASKS))}")
        out: list[Example] = []
        for fmt in config.formats:
            try:
                out += build_prompts(task, format=fmt, n=config.n)
            except LensarithError:
                continue  # a format this task does not define (extractive for past, ...)
        return out
    if isinstance(task, Sequence) and all(isinstance(e, Example) for e in task):
        return list(task)
    raise LensarithError(f"task must be a task name or a list of lensarith.Example, got {type(task).__name__}")


def _rule_flags(rules: Sequence[Rule], examples: Sequence[Example], preds: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for i, rule in enumerate(rules):
        if isinstance(rule, (set, frozenset)):
            allowed = {str(a).strip() for a in rule}
            flags = [p.strip() not in allowed for p in preds]
            name = f"rule{i}:allowed_set"
        elif callable(rule):
            flags = [bool(rule(e, p)) for e, p in zip(examples, preds)]
            name = f"rule{i}:{getattr(rule, '__name__', 'callable')}"
        else:
            raise LensarithError(f"rules[{i}] must be a callable (example, predicted_text) -> bool or a set of allowed "
                                 f"answers, got {type(rule).__name__}")
        out[name] = np.array(flags, dtype=bool)
    return out


def fit_monitor(model: Model, task, layer: int, config: MonitorConfig = MonitorConfig(), *, rules: Sequence[Rule] = (),
                progress: bool | None = None) -> tuple[Monitor, MonitorResult]:
    """Fit a wrong-answer detector on a relation's prompts at MLP ``layer``; evaluate it on held-out arguments.

    Args:
        model: a HookedTransformer (or bridge).
        task: a task name (its prompts in ``config.formats``) or a list of ``Example``.
        layer: the MLP layer to read (``locate(...).chosen_layer``).
        config: a ``MonitorConfig``.
        rules: user rules, each a callable ``(example, predicted_text) -> flag`` or a set of
            allowed answers (flag when the prediction is not in it).
        progress: show a progress bar.

    Returns:
        ``(Monitor, MonitorResult)``.

    Raises:
        LensarithError: an unknown task, no usable prompts, or a fit or held-out half with only
            right (or only wrong) answers — a detector of wrong answers needs both.
    """
    if not isinstance(config, MonitorConfig):
        raise LensarithError(f"config must be a lensarith.guard.MonitorConfig, got {type(config).__name__}")
    layer = check_layer(model, layer)
    examples = _examples(task, config)
    if not examples:
        raise LensarithError(f"the calibration set is empty: task {task!r} gave no prompts in formats {config.formats}")
    batch = tokenize(model, examples, drop_multi_token=True)
    examples = list(batch.examples)
    got = internals(model, batch, layer, batch_size=config.batch_size, progress=progress)
    wrong = (got["pred"] != batch.answer_ids).numpy()
    fit = split_by_argument(examples, config.fit_fraction, config.seed)
    leak = np.array([leaked(e) for e in examples])
    held = ~fit & ~leak
    for name, mask in (("fit", fit), ("held-out", held)):
        n_w, n_r = int(wrong[mask].sum()), int((~wrong[mask]).sum())
        if n_w == 0 or n_r == 0:
            raise LensarithError(
                f"the {name} half of the calibration set has {n_r} right and {n_w} wrong answers "
                f"({len(examples)} prompts of {task!r} in formats {config.formats}, split by argument): a detector of "
                "wrong answers needs both in each half; pick a relation or format where the model makes mistakes "
                "(e.g. past, or zero_shot prompts) or add prompts")
    fit_t = torch.from_numpy(fit)
    correct_fit = fit_t & torch.from_numpy(~wrong)
    o = got["mlp"][correct_fit].mean(0)
    o_dir = o / o.norm().clamp_min(1e-12)
    x = got["resid"]
    mu, sd = x[fit_t].mean(0), x[fit_t].std(0).clamp_min(1e-6)
    w, b = _fit_probe(((x - mu) / sd)[fit_t], torch.from_numpy(wrong)[fit_t].float(), config.probe_l2)
    signs = torch.ones(len(FEATURES))
    from ._metrics import auroc
    raw = {"o_projection": got["mlp"] @ o_dir, "dla": got["dla"], "lens_agreement": got["lens_agreement"]}
    for i, f in enumerate(FEATURES):
        if f == "confidence":
            signs[i] = 1.0  # the score is -confidence already: not fitted
        elif f in raw:
            a = auroc(raw[f][fit_t].numpy(), wrong[fit])
            signs[i] = -1.0 if a < 0.5 else 1.0
    monitor = Monitor({"o_direction": o_dir, "probe_w": w, "probe_b": b, "mu": mu, "sd": sd, "signs": signs,
                       "thresholds": torch.zeros(len(FEATURES))},
                      {"o_direction": ("d_model",), "probe_w": ("d_model",), "probe_b": ("one",), "mu": ("d_model",),
                       "sd": ("d_model",), "signs": ("feature",), "thresholds": ("feature",)},
                      {"feature": list(FEATURES)}, {})
    scores = monitor.scores_from(got)
    thr = torch.tensor([alert_threshold(scores[f][fit_t].numpy(), config.alert_rate) for f in FEATURES])
    monitor.tensors["thresholds"] = thr
    monitor.meta = provenance(model, recipe="guard.monitor", layer=layer, task=task if isinstance(task, str) else None,
                              alert_rate=config.alert_rate, late_layers=_late_layers(model.cfg.n_layers, layer))
    preds = [model.to_string(int(p)) if hasattr(model, "to_string") else str(int(p)) for p in got["pred"]]
    rule_flags = _rule_flags(rules, examples, preds)
    metrics: list[dict[str, Any]] = []
    for group, mask in (("held_out", held), ("leaked", ~fit & leak)):
        if not mask.any():
            continue
        for i, f in enumerate(FEATURES):
            s = scores[f].numpy()[mask]
            if not np.isfinite(s).all():
                raise LensarithError(f"feature {f!r} gave non-finite scores on {int((~np.isfinite(s)).sum())} prompts")
            metrics.append({"group": group, "feature": f, **detection_metrics(s, wrong[mask], float(thr[i]),
                                                                              seed=config.seed)})
        for name, flags in rule_flags.items():
            metrics.append({"group": group, "feature": name,
                            **detection_metrics(flags[mask].astype(float), wrong[mask], 0.5, seed=config.seed)})
    if not (~fit & leak).any():
        warnings.warn(f"no held-out prompt of {task!r} has its answer in the context: the leakage control is empty "
                      "(add the extractive format where the task has one)", LensarithWarning, stacklevel=2)
    all_feats = list(FEATURES) + list(rule_flags)
    score_mat = torch.stack([scores[f].float() for f in FEATURES] + [torch.from_numpy(v).float() for v in rule_flags.values()])
    fmt = [e.meta.get("format", "?") for e in examples]
    res = MonitorResult({"scores": score_mat, "wrong": torch.from_numpy(wrong).to(torch.uint8),
                         "fit": fit_t.to(torch.uint8), "leaked": torch.from_numpy(leak).to(torch.uint8)},
                        {"scores": ("feature", "batch"), "wrong": ("batch",), "fit": ("batch",), "leaked": ("batch",)},
                        {"feature": all_feats},
                        provenance(model, recipe="guard.monitor_eval", layer=layer, task=task if isinstance(task, str) else None,
                                   n=len(examples), n_wrong=int(wrong.sum()), n_fit=int(fit.sum()), n_held_out=int(held.sum()),
                                   n_leaked_held_out=int((~fit & leak).sum()), formats=sorted(set(fmt)),
                                   alert_rate=config.alert_rate, metrics=metrics, report=batch.report,
                                   split="by argument (no held-out argument appears in the fit half)"))
    return monitor, res


def monitor_figure(res: MonitorResult, *, title: str = ""):
    """ROC curves of every feature on held-out arguments (the baseline, confidence, dashed)."""
    from ..viz.plots import _figure

    fig = _figure((5.5, 5.0))
    ax = fig.subplots()
    for f in res.labels["feature"]:
        if f.startswith("rule"):
            continue
        fpr, tpr = res.roc(f)
        ax.plot(fpr, tpr, ls="--" if f == "confidence" else "-", lw=2 if f == "confidence" else 1.3,
                label=f"{f} (AUROC {res.auroc(f):.2f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlabel("false-positive rate (right answers flagged)")
    ax.set_ylabel("true-positive rate (wrong answers caught)")
    ax.set_title(title or f"monitor at MLP {res.meta['layer']}: held-out arguments (n={res.meta['n_held_out']})", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return fig
