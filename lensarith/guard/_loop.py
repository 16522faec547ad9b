"""The operator's loop in one call: locate -> monitor -> policies -> side effects -> spec.

``guard(model, task, config)`` returns a ``GuardResult`` that saves to and loads from a folder
(each part a ``Result`` subfolder, ``spec.json``, ``summary.json``); ``guard_report`` renders
the self-contained HTML page.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .._errors import LensarithError, LensarithWarning, check_int
from .._io import atomic_directory
from .._types import Model
from ..core import Result, Site, collect, tokenize
from ..tasks import TASKS, build_prompts
from ._effects import EffectsConfig, SideEffectResult, generation_overhead, known_tasks, side_effects
from ._locate import LocateConfig, LocateResult, locate, mlp_means
from ._monitor import Monitor, MonitorConfig, MonitorResult, fit_monitor
from ._policies import MonitorGate, Policy, make_policy, relation_gate
from ._spec import export_spec

__all__ = ["GuardConfig", "GuardResult", "guard"]


@dataclass(frozen=True)
class GuardConfig:
    """Every size of the loop (``GuardConfig.small_run()`` for CI).

    Attributes:
        locate / monitor / effects: the three stages' configs.
        layer: the FFN to watch and edit (None: ``locate``'s choice).
        n_gate: prompts per relation for the relation gate's centroids.
        gate_relations: other relations the gate tells the target from (None: the known tasks, at most 6).
        gen_prompts / gen_tokens / gen_repeats: the generation-overhead measurement.
        o_scale: scale of the subtracted o-vector.
    """

    locate: LocateConfig = LocateConfig()
    monitor: MonitorConfig = MonitorConfig()
    effects: EffectsConfig = EffectsConfig()
    layer: int | None = None
    n_gate: int = 32
    gate_relations: tuple[str, ...] | None = None
    gen_prompts: int = 8
    gen_tokens: int = 4
    gen_repeats: int = 3
    o_scale: float = 1.0

    def __post_init__(self) -> None:
        for name, cls in (("locate", LocateConfig), ("monitor", MonitorConfig), ("effects", EffectsConfig)):
            if not isinstance(getattr(self, name), cls):
                raise LensarithError(f"GuardConfig {name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        check_int(self.layer, "GuardConfig layer", minimum=0, allow_none=True)
        for name in ("n_gate", "gen_prompts", "gen_tokens", "gen_repeats"):
            check_int(getattr(self, name), f"GuardConfig {name}", minimum=1)

    @classmethod
    def small_run(cls, seed: int = 0) -> GuardConfig:
        """CI sizes: tens of prompts, 200 bootstrap-free-sized sets, 2 generation repeats."""
        return cls(locate=LocateConfig(n=24, n_contexts=12, seed=seed),
                   monitor=MonitorConfig(n=120, seed=seed, formats=("one_shot", "zero_shot", "extractive")),
                   effects=EffectsConfig(n=16, n_windows=12, seed=seed), n_gate=12, gen_prompts=4, gen_tokens=3,
                   gen_repeats=2)


@dataclass
class GuardResult:
    """The loop's parts: ``locate``, ``monitor`` / ``monitor_eval`` (None, with ``notes['monitor']``
    saying why, when no monitor could be fitted), ``effects`` (with the generation overhead in
    ``overhead``), ``spec`` and ``summary``."""

    locate: LocateResult
    monitor: Monitor | None
    monitor_eval: MonitorResult | None
    effects: SideEffectResult
    overhead: list[dict[str, Any]]
    spec: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write every part under ``path`` (replaced atomically as a whole)."""
        path = Path(path)
        with atomic_directory(path) as tmp:
            self.locate.save(tmp / "locate")
            if self.monitor is not None:
                self.monitor.save(tmp / "monitor")
                self.monitor_eval.save(tmp / "monitor_eval")
            self.effects.save(tmp / "effects")
            (tmp / "spec.json").write_text(json.dumps(self.spec, indent=1))
            (tmp / "summary.json").write_text(json.dumps({**self.summary, "overhead": self.overhead}, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GuardResult:
        path = Path(path)
        if not (path / "summary.json").is_file():
            raise LensarithError(f"{str(path)!r} is not a saved guard run (no summary.json); save one with result.save(path)")
        summary = json.loads((path / "summary.json").read_text())
        overhead = summary.pop("overhead", [])
        mon = Result.load(path / "monitor") if (path / "monitor").is_dir() else None
        ev = Result.load(path / "monitor_eval") if (path / "monitor_eval").is_dir() else None
        return cls(Result.load(path / "locate"), mon, ev, Result.load(path / "effects"), overhead,
                   json.loads((path / "spec.json").read_text()), summary)


def _o_vector(model, task: str, layer: int, n: int, seed: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The relation's o-vector (mean MLP-``layer`` output at the last token of correctly answered
    prompts) and the MLP's mean output at the last token over all of them."""
    from ._policies import policy_logits

    batch = tokenize(model, build_prompts(task, seed=seed, shuffle=True), drop_multi_token=True)
    batch = batch[0:n] if len(batch) > n else batch
    logits, _ = policy_logits(model, batch, None, batch_size=batch_size)
    ok = logits.argmax(-1) == batch.answer_ids
    site = Site("mlp_out", layer, "last")
    out = collect(model, batch, [site], stop_at_layer=layer + 1, batch_size=batch_size)[site].float().cpu()
    o = out[ok].mean(0) if bool(ok.any()) else out.mean(0)
    return o, out.mean(0)


def guard(model: Model, task: str, config: GuardConfig = GuardConfig(), *, rules=(), progress: bool | None = None,
          log=None) -> GuardResult:
    """Run the loop for one relation on one model.

    1. ``locate``: necessity and sufficiency per MLP, verdicts, the chosen layer.
    2. ``fit_monitor`` at that layer (skipped with a stated reason when the model makes too
       few mistakes on the relation to label both classes).
    3. Policies at that layer: ``zero``, ``mean``, ``subtract_o``, and the relation-gated
       ``zero`` and ``subtract_o``; a monitor-gated ``zero`` when a monitor exists.
    4. ``side_effects`` of each, and the generation overhead of the monitor and each policy.
    5. The spec of the relation-gated ``subtract_o`` with the monitor's read-out.

    Args:
        model: a HookedTransformer (or bridge) with MLPs.
        task: the relation (a shipped task name).
        config: a ``GuardConfig``.
        rules: user rules for the monitor (see ``fit_monitor``).
        progress: progress bars.
        log: a function taking one line of progress text (e.g. ``print``).

    Returns:
        A ``GuardResult``; render it with ``lensarith.guard.guard_report``.
    """
    say = log or (lambda s: None)
    if not isinstance(task, str) or task not in TASKS:
        raise LensarithError(f"task={task!r} is unknown; tasks: {', '.join(sorted(TASKS))}")
    if not isinstance(config, GuardConfig):
        raise LensarithError(f"config must be a lensarith.guard.GuardConfig, got {type(config).__name__}")
    say(f"locate: {task}, {model.cfg.n_layers} MLPs, n={config.locate.n}")
    loc = locate(model, task, config.locate, progress=progress)
    layer = loc.chosen_layer if config.layer is None else config.layer
    say(f"  verdicts: {', '.join(f'L{i} {v}' for i, v in enumerate(loc.verdicts))}; watching MLP {layer}")
    notes: dict[str, str] = {}
    monitor = monitor_eval = None
    try:
        monitor, monitor_eval = fit_monitor(model, task, layer, config.monitor, rules=rules, progress=progress)
        say(f"monitor: AUROC confidence {monitor_eval.auroc('confidence'):.2f}, probe {monitor_eval.auroc('probe'):.2f} "
            f"(held-out arguments, n={monitor_eval.meta['n_held_out']})")
    except LensarithError as exc:
        notes["monitor"] = f"no monitor fitted: {exc}"
        say(f"monitor: {notes['monitor']}")
    bs = config.effects.batch_size
    o, mean_last = _o_vector(model, task, layer, config.locate.n, config.locate.seed, bs)
    others = list(config.gate_relations) if config.gate_relations is not None else \
        list(known_tasks(model, task, replace(config.effects, n=config.n_gate)))[:6]
    gate = relation_gate(model, layer, task, others, n=config.n_gate, seed=config.locate.seed) if others else None
    if gate is None:
        notes["gate"] = "no other relation the model knows: the relation gate was not built"
    policies = {"zero": make_policy("zero", layer), "mean": make_policy("mean", layer, mean=mean_last),
                "subtract_o": make_policy("subtract_o", layer, o=o, scale=config.o_scale)}
    if gate is not None:
        policies["zero+relation_gate"] = make_policy("zero", layer, gate=gate, name="zero+relation_gate")
        policies["subtract_o+relation_gate"] = make_policy("subtract_o", layer, o=o, scale=config.o_scale, gate=gate,
                                                           name="subtract_o+relation_gate")
    if monitor is not None:
        policies["zero+monitor_gate"] = make_policy("zero", layer, gate=MonitorGate(monitor, "probe"),
                                                    name="zero+monitor_gate")
    say(f"side effects: {', '.join(policies)}")
    effects = side_effects(model, task, policies, config.effects, progress=progress)
    target = effects.labels["set"].index(task)
    for p, name in enumerate(effects.labels["policy"]):
        if "gate" in name and float(effects.tensors["fired"][p, target]) == 0.0:
            msg = f"the gate of {name!r} never fired on the target relation {task!r}: the policy did nothing there"
            warnings.warn(msg, LensarithWarning, stacklevel=2)
            notes[f"gate:{name}"] = msg
    gen = tokenize(model, build_prompts(task, seed=config.locate.seed), drop_multi_token=True)
    gen = gen[0:config.gen_prompts] if len(gen) > config.gen_prompts else gen
    say(f"generation overhead: {len(gen)} prompts x {config.gen_tokens} tokens, {config.gen_repeats} repeats")
    overhead = generation_overhead(model, gen, policies, monitor=monitor, max_new_tokens=config.gen_tokens,
                                   repeats=config.gen_repeats)
    chosen = policies.get("subtract_o+relation_gate", policies["subtract_o"])
    spec = export_spec(model, chosen, monitor=monitor)
    summary = _summary(model, task, loc, layer, monitor_eval, effects, overhead, notes)
    return GuardResult(loc, monitor, monitor_eval, effects, overhead, spec, summary)


def _summary(model, task, loc, layer, ev, effects, overhead, notes) -> dict[str, Any]:
    out: dict[str, Any] = {"model": getattr(model.cfg, "model_name", "unknown"), "task": task, "layer": layer,
                           "chosen_by": loc.meta["chosen_by"], "verdicts": loc.verdicts,
                           "necessary_layers": loc.necessary_layers, "sufficient_layers": loc.sufficient_layers,
                           "notes": notes}
    if ev is not None:
        out["monitor"] = {r["feature"]: {k: r[k] for k in ("auroc", "auroc_lo", "auroc_hi", "precision", "precision_lo",
                                                            "precision_hi", "recall", "recall_lo", "recall_hi", "alert_rate")}
                          for r in ev.table("held_out")}
        conf = out["monitor"]["confidence"]
        best = max((f for f in out["monitor"] if f != "confidence" and not f.startswith("rule")),
                   key=lambda f: out["monitor"][f]["auroc"])
        b = out["monitor"][best]
        out["monitor_verdict"] = (
            f"best internal read-out {best} AUROC {b['auroc']:.2f} [{b['auroc_lo']:.2f}, {b['auroc_hi']:.2f}] vs output "
            f"confidence {conf['auroc']:.2f} [{conf['auroc_lo']:.2f}, {conf['auroc_hi']:.2f}]: "
            + ("beats confidence (intervals do not overlap)" if b["auroc_lo"] > conf["auroc_hi"] else
               "does NOT beat confidence (negative result)" if b["auroc_hi"] < conf["auroc_lo"] or b["auroc"] <= conf["auroc"]
               else "not distinguishable from confidence (intervals overlap)"))
    out["side_effects"] = effects.table()
    return out
