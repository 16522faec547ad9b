"""Hand-off to a serving engine: the chosen read-out and edit as a declarative JSON spec.

A spec (``export_spec``) names the site by TransformerLens's legacy hook name
(``blocks.{layer}.hook_mlp_out``), the layer, the positions, one operation and its vector:

============  ==========================================  ============================
policy        spec operation                              meaning at the site
============  ==========================================  ============================
zero          ``scale`` with ``factor`` 0                 ``x <- 0 * x``
mean          ``set`` with ``vector`` (the mean)          ``x <- v``
subtract_o    ``add`` with ``vector`` = -scale * o        ``x <- x + v``
add_o         ``add`` with ``vector`` = scale * o         ``x <- x + v``
none          ``suppress`` with ``enabled`` false         nothing
============  ==========================================  ============================

plus an optional ``gate`` (a relation gate: its centroids and target, decided at the prompt's
last token; a monitor gate: the probe's weights, bias, standardisation and threshold) and the
monitor's read-out (site, o-direction, threshold) for the engine to log. ``replay_spec`` applies
a spec through ``lensarith.core`` and gives the same logits as the live policy (tested).

Engine mapping (not run here: these machines have no GPU serving engine). TransformerLens 4's
remote/vLLM bridge and nnsight's vLLM wrapper both edit a named module's output at positions:
the ``hook`` maps to the bridge's ``blocks.{layer}.hook_mlp_out`` (TransformerLens 4 keeps the
legacy name) or nnsight's ``model.model.layers[layer].mlp.output``; ``add`` / ``set`` /
``scale`` are the edits ``x + v``, ``v`` and ``factor * x`` at the listed positions
(``last`` = the prompt's last token and every decode step's token). Gates are conditional
edits: an engine that takes only unconditional edits cannot apply a gated spec as is; it needs
an engine-side hook that computes the gate from the same site's output first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._errors import LensarithError
from .._io import atomic_write_text
from .._types import Model
from ..models import config_hash
from ._monitor import Monitor
from ._policies import MonitorGate, Policy, RelationGate, policy_logits

__all__ = ["SPEC_VERSION", "export_spec", "save_spec", "load_spec", "spec_policy", "replay_spec"]

SPEC_VERSION = 1


def _vec(t: Tensor) -> list[float]:
    return [float(x) for x in t.detach().float().cpu().tolist()]


def export_spec(model: Model, policy: Policy, *, monitor: Monitor | None = None, feature: str = "probe") -> dict[str, Any]:
    """The policy (and the monitor's read-out) as a JSON-serialisable spec (see the module docstring).

    Example:
        >>> spec = export_spec(model, Policy("zero", 1))
        >>> spec["intervention"]["operation"], spec["intervention"]["factor"], spec["intervention"]["hook"]
        ('scale', 0.0, 'blocks.1.hook_mlp_out')
    """
    policy.check(model)
    iv: dict[str, Any] = {"site": "mlp_out", "hook": f"blocks.{policy.layer}.hook_mlp_out", "layer": policy.layer,
                          "position": policy.position, "policy": policy.operation}
    if policy.operation == "zero":
        iv.update(operation="scale", factor=0.0)
    elif policy.operation == "mean":
        iv.update(operation="set", vector=_vec(policy.vector))
    elif policy.operation in ("subtract_o", "add_o"):
        sign = -1.0 if policy.operation == "subtract_o" else 1.0
        iv.update(operation="add", vector=_vec(sign * policy.scale * policy.vector.float()))
    else:
        iv.update(operation="suppress", enabled=False)
    gate = policy.gate
    if gate is None:
        iv["gate"] = None
    elif isinstance(gate, RelationGate):
        iv["gate"] = {"kind": "relation", "site": "mlp_out", "layer": gate.layer, "position": "prompt_last",
                      "rule": "cosine-nearest centroid == target", "names": list(gate.names), "target": gate.target,
                      "centroids": [_vec(c) for c in gate.centroids]}
    else:
        m = gate.monitor
        iv["gate"] = {"kind": "monitor", "feature": gate.feature, **_probe(m),
                      "threshold": m.threshold(gate.feature) if gate.threshold is None else float(gate.threshold)}
    spec: dict[str, Any] = {"format": "lensarith.guard.spec", "version": SPEC_VERSION,
                            "model": {"name": getattr(model.cfg, "model_name", "unknown"), "config_hash": config_hash(model),
                                      "n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model},
                            "intervention": iv, "readout": None}
    if monitor is not None:
        monitor.check(model)
        spec["readout"] = {"site": "mlp_out", "hook": f"blocks.{monitor.layer}.hook_mlp_out", "layer": monitor.layer,
                           "position": "last", "o_direction": _vec(monitor.tensors["o_direction"]),
                           "o_projection_threshold": monitor.threshold("o_projection"),
                           "o_projection_sign": float(monitor.tensors["signs"][monitor.features.index("o_projection")]),
                           "probe": _probe(monitor), "probe_threshold": monitor.threshold("probe")}
    return spec


def _probe(m: Monitor) -> dict[str, Any]:
    return {"probe_site": "resid_post", "probe_hook": f"blocks.{m.layer}.hook_resid_post", "probe_layer": m.layer,
            "w": _vec(m.tensors["probe_w"]), "b": float(m.tensors["probe_b"][0]), "mu": _vec(m.tensors["mu"]),
            "sd": _vec(m.tensors["sd"])}


def save_spec(spec: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a spec as JSON (atomically)."""
    return atomic_write_text(path, json.dumps(spec, indent=1))


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a spec written by ``save_spec``."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LensarithError(f"cannot read the spec at {str(path)!r}: {exc}") from None
    if not isinstance(spec, dict) or spec.get("format") != "lensarith.guard.spec":
        raise LensarithError(f"{str(path)!r} is not a lensarith guard spec (no format: lensarith.guard.spec)")
    return spec


def spec_policy(model: Model, spec: dict[str, Any]) -> Policy:
    """The ``Policy`` a spec describes, checked against ``model`` (config hash and width)."""
    if spec.get("version") != SPEC_VERSION:
        raise LensarithError(f"spec version {spec.get('version')!r} is not supported (this lensarith reads {SPEC_VERSION})")
    if spec["model"]["config_hash"] != config_hash(model):
        raise LensarithError(f"the spec was exported for {spec['model']['name']!r} (config hash {spec['model']['config_hash']}) "
                             f"but the model's config hash is {config_hash(model)}")
    iv = spec["intervention"]
    op, layer, position = iv["operation"], int(iv["layer"]), iv["position"]
    vec = torch.tensor(iv["vector"], dtype=torch.float32) if "vector" in iv else None
    gate = _gate(model, iv.get("gate"))
    if op == "scale":
        if float(iv["factor"]) != 0.0:
            raise LensarithError(f"replay supports scale with factor 0 (zero ablation), got {iv['factor']!r}")
        return Policy("zero", layer, position=position, gate=gate)
    if op == "set":
        return Policy("mean", layer, vector=vec, position=position, gate=gate)
    if op == "add":
        return Policy("add_o", layer, vector=vec, scale=1.0, position=position, gate=gate)
    if op == "suppress":
        return Policy("none", layer, position=position, gate=gate)
    raise LensarithError(f"unknown spec operation {op!r}; valid: add, scale, set, suppress")


def _gate(model, g):
    if g is None:
        return None
    if g["kind"] == "relation":
        return RelationGate(int(g["layer"]), torch.tensor(g["centroids"]), tuple(g["names"]), g["target"])
    if g["kind"] == "monitor":
        d = model.cfg.d_model
        feats = ["confidence", "o_projection", "dla", "lens_agreement", "probe"]
        thr = torch.zeros(len(feats))
        thr[feats.index(g["feature"])] = float(g["threshold"])
        m = Monitor({"o_direction": torch.zeros(d), "probe_w": torch.tensor(g["w"]), "probe_b": torch.tensor([g["b"]]),
                     "mu": torch.tensor(g["mu"]), "sd": torch.tensor(g["sd"]), "signs": torch.ones(len(feats)),
                     "thresholds": thr},
                    {"o_direction": ("d_model",), "probe_w": ("d_model",), "probe_b": ("one",), "mu": ("d_model",),
                     "sd": ("d_model",), "signs": ("feature",), "thresholds": ("feature",)},
                    {"feature": feats}, {"layer": int(g["probe_layer"]), "config_hash": config_hash(model), "d_model": d})
        if g["feature"] != "probe":
            raise LensarithError(f"replay supports monitor gates on the probe, got feature {g['feature']!r}")
        return MonitorGate(m, "probe")
    raise LensarithError(f"unknown gate kind {g.get('kind')!r}; valid: relation, monitor")


def replay_spec(model: Model, spec: dict[str, Any], prompts, *, batch_size: int = 32) -> Tensor:
    """Logits ``[batch, d_vocab]`` at each prompt's last token with the spec applied through lensarith."""
    logits, _ = policy_logits(model, prompts, spec_policy(model, spec), batch_size=batch_size)
    return logits
