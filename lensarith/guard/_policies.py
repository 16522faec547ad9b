"""Limited interventions on one FFN: remove its output (zero / mean), subtract or add the o-vector,
each optionally gated by the monitor or by a relation detector; in batched scoring and in generation.

A ``Policy`` edits ``blocks.{layer}.hook_mlp_out``. Its positions: ``"last"`` edits the last
real token in scoring and, in generation, the prompt's last token and every generated token
(what a per-step decode hook does); ``"all"`` edits every real position. A gate decides per
prompt, once, from the prompt's last token (``RelationGate``: the MLP output there is nearest,
by cosine, to this relation's centroid among several relations'; ``MonitorGate``: the monitor
flags the prompt), and the decision holds for the whole generation. Rows the gate rejects are
left bit-for-bit unchanged.

Generation (``generate``) is greedy. ``engine="core"`` runs every step through
``lensarith.core.run`` (every backend: TransformerLens 3.9 and 4.x, nnsight), recomputing the
prefix; ``engine="model"`` calls the model's own ``generate`` with its KV cache under
``lensarith.core.intervene`` (TransformerLens models; relation gates and ungated policies).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import LensarithError, check_choice, check_int
from .._types import Model
from ..core import Batch, Intervention, Site, as_batch, check_layer, collect, readout, run, tokenize
from ..core.interventions import HookFn
from ..tasks import build_prompts
from ._monitor import Monitor, internals, monitor_features, monitor_sites

__all__ = ["OPERATIONS", "Policy", "RelationGate", "MonitorGate", "PolicyEdit", "relation_gate", "make_policy",
           "score_policy", "policy_logits", "generate", "Generation"]

OPERATIONS = ("none", "zero", "mean", "subtract_o", "add_o")


@dataclass(frozen=True, eq=False)
class RelationGate:
    """Act only where the located MLP's output at the prompt's last token is nearest (cosine) to
    ``target``'s centroid among ``names``' centroids ``[relation, d_model]``."""

    layer: int
    centroids: Tensor
    names: tuple[str, ...]
    target: str

    def __post_init__(self) -> None:
        if self.target not in self.names:
            raise LensarithError(f"RelationGate target {self.target!r} is not among its relations {self.names}")
        if self.centroids.ndim != 2 or self.centroids.shape[0] != len(self.names):
            raise LensarithError(f"RelationGate centroids must be [relation, d_model] with {len(self.names)} rows, "
                                 f"got {tuple(self.centroids.shape)}")

    def accepts(self, x: Float[Tensor, "*rows d_model"]) -> Tensor:
        c = torch.nn.functional.normalize(self.centroids.to(x.device, torch.float32), dim=-1)
        sims = torch.nn.functional.normalize(x.float(), dim=-1) @ c.T
        return sims.argmax(-1) == self.names.index(self.target)


@dataclass(frozen=True, eq=False)
class MonitorGate:
    """Act only where the monitor flags the prompt (``feature`` score >= ``threshold``; default
    the monitor's fitted alert threshold)."""

    monitor: Monitor
    feature: str = "probe"
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.monitor, Monitor):
            raise LensarithError(f"MonitorGate needs a fitted lensarith.guard.Monitor, got {type(self.monitor).__name__}")
        self.monitor.threshold(self.feature)  # raises for an unknown feature

    def rows(self, model: Model, batch: Batch, batch_size: int = 32) -> Tensor:
        scores = self.monitor.scores_from(internals(model, batch, self.monitor.layer, batch_size=batch_size))
        thr = self.monitor.threshold(self.feature) if self.threshold is None else self.threshold
        return scores[self.feature] >= thr


@dataclass(frozen=True, eq=False)
class Policy:
    """An edit of one MLP's output.

    Attributes:
        operation: ``none`` (a no-op, for identities), ``zero``, ``mean`` (set to ``vector``,
            the MLP's mean output), ``subtract_o`` / ``add_o`` (``x -/+ scale * vector``).
        layer: the MLP.
        vector: ``[d_model]``: the mean (``mean``) or the o-vector (``subtract_o`` / ``add_o``).
        scale: multiplies the o-vector.
        position: ``last`` or ``all`` (see the module docstring).
        gate: None, a ``RelationGate`` or a ``MonitorGate``.
        name: a label for tables.
    """

    operation: str
    layer: int
    vector: Tensor | None = None
    scale: float = 1.0
    position: str = "last"
    gate: RelationGate | MonitorGate | None = None
    name: str = ""

    def __post_init__(self) -> None:
        check_choice(self.operation, OPERATIONS, "Policy operation")
        check_choice(self.position, ("last", "all"), "Policy position")
        check_int(self.layer, "Policy layer", minimum=0)
        if self.operation in ("mean", "subtract_o", "add_o"):
            if not isinstance(self.vector, Tensor) or self.vector.ndim != 1 or not self.vector.is_floating_point():
                raise LensarithError(f"Policy operation {self.operation!r} needs vector=<float tensor [d_model]>, got "
                                     f"{type(self.vector).__name__}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale):
            raise LensarithError(f"Policy scale must be a finite number, got {self.scale!r}")
        if self.gate is not None and not isinstance(self.gate, (RelationGate, MonitorGate)):
            raise LensarithError(f"Policy gate must be None, a RelationGate or a MonitorGate, got {type(self.gate).__name__}")
        if isinstance(self.gate, RelationGate) and self.gate.layer != self.layer:
            raise LensarithError(f"the RelationGate reads MLP {self.gate.layer} but the policy edits MLP {self.layer}: "
                                 "the gate decides from the edited MLP's own output; build it at the same layer")

    @property
    def label(self) -> str:
        return self.name or (self.operation + ("" if self.gate is None else f"+{type(self.gate).__name__}"))

    def check(self, model: Model) -> None:
        check_layer(model, self.layer)
        if self.vector is not None and self.vector.shape[0] != model.cfg.d_model:
            raise LensarithError(f"policy {self.label!r}: vector has {self.vector.shape[0]} entries but the model's "
                                 f"d_model is {model.cfg.d_model}")
        if isinstance(self.gate, MonitorGate):
            self.gate.monitor.check(model)

    def edit(self, x: Tensor) -> Tensor:
        """The edited activation (every position; the hook keeps only the masked ones)."""
        if self.operation == "zero":
            return torch.zeros_like(x)
        v = self.vector.to(x.device, x.dtype)
        if self.operation == "mean":
            return v.expand_as(x)
        sign = -1.0 if self.operation == "subtract_o" else 1.0
        return x + sign * self.scale * v


@dataclass(frozen=True, eq=False)
class PolicyEdit(Intervention):
    """The hook that applies a ``Policy`` at ``blocks.{layer}.hook_mlp_out``.

    Attributes:
        site: ``Site("mlp_out", layer)`` (whole activation).
        policy: the policy.
        rows: a fixed per-row gate decision ``[batch]`` (monitor gates, later generation steps).
        start: per-row first edited position (generation: the prompt's last token).
        per_position: decide a relation gate at every position (language-model text) instead of once per row.
        state: filled during the forward: ``fired`` ``[batch]`` (rows the gate accepted).
    """

    site: Site
    policy: Policy
    rows: Tensor | None = None
    start: Tensor | None = None
    per_position: bool = False
    state: dict = field(default_factory=dict)

    def hook(self, batch: Batch | None) -> tuple[str, HookFn]:
        policy = self.policy

        def fn(act: Tensor, hook) -> Tensor | None:
            b, width = act.shape[0], act.shape[1]
            dev = act.device
            if batch is not None:
                lengths = batch.lengths.to(dev)
            else:  # the model's own generate: no padding; a decode step sees the new token only
                lengths = torch.full((b,), width, device=dev)
            last = lengths - 1
            pos = torch.arange(width, device=dev)[None]
            if policy.position == "all":
                pmask = pos < lengths[:, None]
            else:
                first = last if self.start is None or width == 1 else self.start.to(dev)
                pmask = (pos >= first[:, None]) & (pos <= last[:, None])
            gate = policy.gate
            if self.rows is not None:
                g = self.rows.to(dev).bool()[:, None].expand(b, width)
            elif gate is None:
                g = torch.ones(b, width, dtype=torch.bool, device=dev)
            elif isinstance(gate, RelationGate):
                if self.per_position:
                    g = gate.accepts(act)
                elif width == 1 and "decided" in self.state:  # a decode step: the prompt's decision holds
                    g = self.state["decided"].to(dev)[:, None]
                else:
                    decided = gate.accepts(act[torch.arange(b, device=dev), last])
                    self.state["decided"] = decided
                    g = decided[:, None].expand(b, width)
            else:
                raise LensarithError("a MonitorGate policy needs its rows decided first: use score_policy or "
                                     "generate(engine='core'), which run the monitor before the edit")
            mask = pmask & g
            self.state["fired"] = (mask.any(1)).cpu()
            self.state["edited"] = self.state.get("edited", 0) + int(mask.sum())
            self.state["eligible"] = self.state.get("eligible", 0) + int(pmask.sum())
            if policy.operation == "none" or not bool(mask.any()):
                return None
            return torch.where(mask[..., None], policy.edit(act), act)

        return self.site.hook_name, fn


def _edit_for(model, policy: Policy, batch: Batch, *, start: Tensor | None = None, per_position: bool = False,
              batch_size: int = 32) -> PolicyEdit:
    rows = None
    if isinstance(policy.gate, MonitorGate):
        rows = policy.gate.rows(model, batch, batch_size)
    return PolicyEdit(Site("mlp_out", policy.layer), policy, rows=rows, start=start, per_position=per_position)


def relation_gate(model: Model, layer: int, target: str, others: Sequence[str], *, n: int = 32, seed: int = 0,
                  batch_size: int = 32) -> RelationGate:
    """A nearest-centroid relation detector at MLP ``layer``: each relation's centroid is its mean MLP
    output at the last token of its one-shot prompts (first ``n`` single-token rows).

    Example:
        >>> gate = relation_gate(model, 1, "capitals", ["past"], n=4)
        >>> gate.names
        ('capitals', 'past')
    """
    layer = check_layer(model, layer)
    names = tuple(dict.fromkeys([target, *others]))
    if len(names) < 2:
        raise LensarithError(f"a relation gate needs the target and at least one other relation to tell apart, got {names}")
    cents = []
    site = Site("mlp_out", layer, "last")
    for name in names:
        batch = tokenize(model, build_prompts(name, seed=seed, shuffle=True), drop_multi_token=True)
        batch = batch[0:n] if len(batch) > n else batch
        cents.append(collect(model, batch, [site], stop_at_layer=layer + 1, batch_size=batch_size)[site].float().mean(0).cpu())
    return RelationGate(layer, torch.stack(cents), names, target)


def make_policy(operation: str, layer: int, *, o: Tensor | None = None, mean: Tensor | None = None, scale: float = 1.0,
                position: str = "last", gate=None, name: str = "") -> Policy:
    """A ``Policy`` from an operation name and the vectors it needs (``o`` for subtract_o / add_o,
    ``mean`` for mean)."""
    vector = mean if operation == "mean" else o if operation in ("subtract_o", "add_o") else None
    return Policy(operation, layer, vector=None if vector is None else vector.detach().float().cpu(), scale=scale,
                  position=position, gate=gate, name=name)


def _chunks(batch: Batch, size: int):
    for i in range(0, len(batch), size):
        yield batch[i:i + size]


def policy_logits(model: Model, prompts, policy: Policy | None, *, batch_size: int = 32
                  ) -> tuple[Float[Tensor, "batch d_vocab"], Tensor]:
    """Logits at each prompt's last token under ``policy`` (None: the plain model), and the rows
    where it fired ``[batch]``; chunked in the prompts' order."""
    batch = as_batch(model, prompts)
    check_int(batch_size, "batch_size", minimum=1)
    if policy is not None:
        policy.check(model)
    out, fired = [], []
    for chunk in _chunks(batch, batch_size):
        ivs = [] if policy is None else [_edit_for(model, policy, chunk, batch_size=batch_size)]
        got = run(model, chunk, interventions=ivs, read="last")
        with torch.no_grad():
            out.append(readout.logits(model, got.final).float().cpu())
        fired.append(ivs[0].state.get("fired", torch.zeros(len(chunk), dtype=torch.bool)) if ivs
                     else torch.zeros(len(chunk), dtype=torch.bool))
    return torch.cat(out), torch.cat(fired)


def score_policy(model: Model, prompts, policy: Policy | None, *, batch_size: int = 32) -> dict[str, Tensor]:
    """Per prompt under ``policy``: ``correct`` (top-1 == answer), ``logp`` (answer log-prob),
    ``pred`` and ``fired`` ``[batch]``."""
    batch = as_batch(model, prompts)
    if batch.answer_ids is None or bool((batch.answer_ids < 0).any()):
        raise LensarithError("score_policy needs prompts with answers (Examples)")
    logits, fired = policy_logits(model, batch, policy, batch_size=batch_size)
    logp = logits.log_softmax(-1)
    ans = batch.answer_ids.cpu()
    return {"correct": logp.argmax(-1) == ans, "logp": logp[torch.arange(len(batch)), ans], "pred": logp.argmax(-1),
            "fired": fired}


@dataclass
class Generation:
    """Greedy continuations: ``tokens`` ``[batch, new]``, ``fired`` ``[batch]``, monitor ``scores``
    per step (feature -> ``[step, batch]``) when a monitor watched, and wall ``seconds``."""

    tokens: Int[Tensor, "batch new"]
    fired: Tensor
    scores: dict[str, Tensor]
    seconds: float
    first_logits: Tensor | None = None


def _pad(rows: list[list[int]], pad: int) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.tensor(r)
    return tokens, torch.tensor([len(r) for r in rows])


def generate(model: Model, prompts, policy: Policy | None = None, *, max_new_tokens: int = 4, monitor: Monitor | None = None,
             engine: str = "core") -> Generation:
    """Greedy token-by-token generation under a policy (and, optionally, a monitor scoring every step).

    Args:
        model: a HookedTransformer, a TransformerBridge or (engine ``core``) an nnsight model.
        prompts: strings, Examples, token ids or a Batch.
        policy: the edit (None: plain generation).
        max_new_tokens: tokens to generate.
        monitor: a fitted Monitor scoring each step's newest token (its read-outs are captured
            in the same forward for ``engine="core"``).
        engine: ``core`` (every step through ``lensarith.core.run``) or ``model`` (the
            model's own ``generate`` with its KV cache; prompts of one length, no monitor or
            monitor gate).

    Returns:
        A ``Generation``. Its first token equals the argmax of ``policy_logits`` (tested).
    """
    check_choice(engine, ("core", "model"), "engine")
    check_int(max_new_tokens, "max_new_tokens", minimum=1)
    batch = as_batch(model, prompts)
    if policy is not None:
        policy.check(model)
    if monitor is not None:
        monitor.check(model)
    t0 = time.perf_counter()
    if engine == "model":
        out = _generate_model(model, batch, policy, max_new_tokens, monitor)
    else:
        out = _generate_core(model, batch, policy, max_new_tokens, monitor)
    out.seconds = time.perf_counter() - t0
    return out


def _generate_core(model, batch: Batch, policy, max_new_tokens: int, monitor) -> Generation:
    rows = [batch.tokens[i, :int(batch.lengths[i])].tolist() for i in range(len(batch))]
    start = batch.last.clone()
    pad = 0  # right padding: what follows a row's last token never reaches it
    decided: Tensor | None = None
    new: list[Tensor] = []
    scores: dict[str, list[Tensor]] = {}
    first_logits = None
    for step in range(max_new_tokens):
        tokens, lengths = _pad(rows, pad)
        cur = Batch(tokens, lengths)
        ivs: list[Intervention] = []
        if policy is not None:
            if decided is None and isinstance(policy.gate, MonitorGate):
                decided = policy.gate.rows(model, cur)
            ivs = [PolicyEdit(Site("mlp_out", policy.layer), policy, rows=decided, start=start)]
        if monitor is not None:
            got = _monitored_step(model, cur, ivs, monitor)
            final = got.pop("final")
            for f, s in monitor.scores_from(got).items():
                scores.setdefault(f, []).append(s)
        else:
            final = run(model, cur, interventions=ivs, read="last").final
        with torch.no_grad():
            logits = readout.logits(model, final).float().cpu()
        if step == 0:
            first_logits = logits
        if ivs and decided is None:
            decided = ivs[0].state.get("fired")
        nxt = logits.argmax(-1)
        new.append(nxt)
        for i, t in enumerate(nxt.tolist()):
            rows[i].append(t)
    fired = decided if decided is not None else torch.zeros(len(batch), dtype=torch.bool)
    if policy is not None and policy.gate is None:
        fired = torch.ones(len(batch), dtype=torch.bool)
    return Generation(torch.stack(new, 1), fired.bool().cpu(), {f: torch.stack(v) for f, v in scores.items()}, 0.0,
                      first_logits)


def _monitored_step(model, batch: Batch, ivs, monitor: Monitor) -> dict[str, Tensor]:
    """One forward with the policy's edit that also captures what the monitor reads."""
    sites = monitor_sites(model, monitor.layer)
    out = run(model, batch, capture=list(dict.fromkeys([sites[0], sites[1]] + sites[2])), interventions=ivs,
              read="last")
    return {"final": out.final, **monitor_features(model, out, sites)}


def _generate_model(model, batch: Batch, policy, max_new_tokens: int, monitor) -> Generation:
    from ..core import intervene

    if not hasattr(model, "generate"):
        raise LensarithError(f"engine='model' needs a model with .generate (TransformerLens); {type(model).__name__} "
                             "has none: use engine='core'")
    if monitor is not None or (policy is not None and isinstance(policy.gate, MonitorGate)):
        raise LensarithError("engine='model' cannot run the monitor before each edit: use engine='core' for a monitor "
                             "or a MonitorGate policy")
    if bool((batch.lengths != batch.lengths[0]).any()):
        raise LensarithError(f"engine='model' needs prompts of one token length (got {sorted(set(batch.lengths.tolist()))}): "
                             "the model's generate pads on its own; use engine='core' for mixed lengths")
    ivs = [] if policy is None else [PolicyEdit(Site("mlp_out", policy.layer), policy)]
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=False, verbose=False, stop_at_eos=False)
    with torch.no_grad(), intervene(model, ivs):
        try:
            out = model.generate(batch.tokens.to(model.cfg.device), use_past_kv_cache=True, return_type="tokens", **kwargs)
        except TypeError:  # a bridge's generate takes fewer arguments
            out = model.generate(batch.tokens.to(model.cfg.device), **kwargs)
    toks = out[:, batch.tokens.shape[1]:].cpu()
    fired = torch.ones(len(batch), dtype=torch.bool) if policy is not None and policy.gate is None else \
        ivs[0].state.get("decided", torch.zeros(len(batch), dtype=torch.bool)).cpu() if ivs else torch.zeros(len(batch), dtype=torch.bool)
    return Generation(toks, fired, {}, 0.0, None)
