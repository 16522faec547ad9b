"""What an intervention costs: the side-effect panel and the generation overhead.

``side_effects`` scores each policy against the unmodified model, paired, on

- the target relation (one-shot prompts);
- every other shipped task the model *knows* (stated criterion: at least ``min_rows``
  single-token one-shot rows and clean top-1 accuracy of at least ``min_known_accuracy``; tasks
  built from the target's data files are the same relation and are left out);
- the target's extractive counterpart (the answer is in the context), where the task has one;
- the language-model loss (mean next-token NLL, nats) on held-out text
  (``data/text/held_out.txt``, card beside it), edited at every position as a decode hook would
  edit every generated token; a relation gate decides at each position there.

Each cell: clean value, value under the policy, the paired difference with a 95% bootstrap
interval over examples (text windows for the loss), and how often the policy fired.
``generation_overhead`` times plain generation, generation watched by the monitor and
generation under each policy in one run (interleaved repeats, median) and gives ratios.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._errors import LensarithError, check_int
from .._paths import data_dir
from .._types import Model
from ..core import Batch, Result, Site, provenance, readout, run, tokenize
from ..paper.stats import bootstrap_ci
from ..tasks import TASKS, build_prompts
from ._monitor import Monitor
from ._policies import Policy, _edit_for, generate, score_policy

__all__ = ["same_relation", "EffectsConfig", "SideEffectResult", "side_effects", "known_tasks", "text_windows", "lm_loss",
           "generation_overhead", "held_out_text"]


@dataclass(frozen=True)
class EffectsConfig:
    """Sizes and criteria of the side-effect panel.

    Attributes:
        n: prompts per task (first ``n`` single-token rows, shuffled with ``seed``).
        min_rows: a task counts as known only with at least this many single-token rows.
        min_known_accuracy: ... and clean top-1 accuracy at least this.
        window_words: words per held-out text window (sentences are kept whole).
        n_windows: text windows used (None: all).
        seed: shuffles and bootstrap.
        batch_size: prompts per forward.
        tasks: the other tasks to score (None: every shipped task the model knows).
    """

    n: int = 48
    min_rows: int = 16
    min_known_accuracy: float = 0.5
    window_words: int = 60
    n_windows: int | None = None
    seed: int = 0
    batch_size: int = 16
    tasks: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_int(self.n, "EffectsConfig n", minimum=1)
        if self.tasks is not None and (isinstance(self.tasks, str) or any(t not in TASKS for t in self.tasks)):
            raise LensarithError(f"EffectsConfig tasks must be a tuple of shipped task names, got {self.tasks!r}")
        check_int(self.min_rows, "EffectsConfig min_rows", minimum=1)
        check_int(self.window_words, "EffectsConfig window_words", minimum=5)
        check_int(self.n_windows, "EffectsConfig n_windows", minimum=2, allow_none=True)
        check_int(self.seed, "EffectsConfig seed")
        check_int(self.batch_size, "EffectsConfig batch_size", minimum=1)
        v = self.min_known_accuracy
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise LensarithError(f"EffectsConfig min_known_accuracy must be in [0, 1], got {v!r}")


class SideEffectResult(Result):
    """Tensors ``[policy, set]``: ``clean``, ``after``, ``delta`` (after - clean), ``delta_lo`` /
    ``delta_hi`` (95% paired bootstrap), ``fired`` (share of examples, or of text positions, where
    the policy acted), ``n``. Sets are task names, ``<task>:extractive`` and ``lm_loss`` (nats per
    token; lower is better). ``meta['overhead']``: generation timings and ratios."""

    kind = "guard_side_effects"

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for p, pol in enumerate(self.labels["policy"]):
            for s, name in enumerate(self.labels["set"]):
                rows.append({"policy": pol, "set": name, "metric": "loss" if name == "lm_loss" else "accuracy",
                             "clean": float(self.tensors["clean"][p, s]), "after": float(self.tensors["after"][p, s]),
                             "delta": float(self.tensors["delta"][p, s]),
                             "delta 95% CI": f"[{float(self.tensors['delta_lo'][p, s]):+.3f}, "
                                             f"{float(self.tensors['delta_hi'][p, s]):+.3f}]",
                             "fired": float(self.tensors["fired"][p, s]), "n": int(self.tensors["n"][p, s])})
        return rows


def held_out_text() -> list[str]:
    """The held-out prose's paragraphs (``data/text/held_out.txt``)."""
    path = data_dir() / "text" / "held_out.txt"
    if not path.is_file():
        raise LensarithError(f"the held-out text is missing at {str(path)!r}; reinstall lensarith or set LENSARITH_DATA")
    return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def text_windows(paragraphs: Sequence[str], window_words: int) -> list[str]:
    """Whole sentences grouped into windows of at most ``window_words`` words, never across paragraphs."""
    out = []
    for para in paragraphs:
        cur: list[str] = []
        for sent in re.split(r"(?<=[.!?])\s+", para):
            if cur and len(" ".join(cur + [sent]).split()) > window_words:
                out.append(" ".join(cur))
                cur = []
            cur.append(sent)
        if cur:
            out.append(" ".join(cur))
    return out


def same_relation(a: str, b: str) -> bool:
    """Whether two shipped tasks are built from a common data file (``past`` and ``past_regular``,
    ``capitalize`` and ``uppercase_words``): the same relation in another phrasing, not another one.

    Example:
        >>> same_relation("past", "past_irregular"), same_relation("past", "capitals")
        (True, False)
    """
    return bool(set(TASKS[a].files) & set(TASKS[b].files))


def known_tasks(model: Model, target: str, config: EffectsConfig) -> dict[str, Batch]:
    """Every shipped task the model knows (see ``EffectsConfig``) that is another relation than ``target``
    (tasks sharing a data file with it are the same relation and are left out), as batches."""
    from ._policies import policy_logits

    out = {}
    for name in TASKS:
        if name == target or same_relation(name, target):
            continue
        try:
            batch = tokenize(model, build_prompts(name, seed=config.seed, shuffle=True), drop_multi_token=True)
        except LensarithError:
            continue
        if len(batch) < config.min_rows:
            continue
        batch = batch[0:config.n] if len(batch) > config.n else batch
        logits, _ = policy_logits(model, batch, None, batch_size=config.batch_size)
        if float((logits.argmax(-1) == batch.answer_ids).float().mean()) >= config.min_known_accuracy:
            out[name] = batch
    return out


def lm_loss(model: Model, batch: Batch, policy: Policy | None, *, batch_size: int = 16) -> tuple[Tensor, float]:
    """Mean next-token NLL per row ``[batch]`` under ``policy`` (edited at every position), and the
    share of positions where it acted."""
    n = model.cfg.n_layers
    site = Site("resid_post", n - 1)
    losses, edited, eligible = [], 0, 0
    for i in range(0, len(batch), batch_size):
        chunk = batch[i:i + batch_size]
        ivs = [] if policy is None else [_edit_for(model, policy, chunk, start=torch.zeros(len(chunk), dtype=torch.long),
                                                   per_position=True, batch_size=batch_size)]
        got = run(model, chunk, capture=[site], interventions=ivs)
        with torch.no_grad():
            resid = got.captured[site]
            tok = chunk.tokens.to(resid.device)
            for r in range(len(chunk)):  # one row's logits at a time: [pos, d_vocab] stays small for big vocabularies
                k = int(chunk.lengths[r])
                logp = readout.logits(model, resid[r, :k - 1]).float().log_softmax(-1)
                nll = -logp.gather(-1, tok[r, 1:k, None])[..., 0]
                losses.append(nll.mean().reshape(1).cpu() if k > 1 else torch.zeros(1))
        if ivs:
            edited += ivs[0].state.get("edited", 0)
            eligible += ivs[0].state.get("eligible", 0)
    return torch.cat(losses), (edited / eligible if eligible else 0.0)


def side_effects(model: Model, task: str, policies: Mapping[str, Policy], config: EffectsConfig = EffectsConfig(), *,
                 tasks: Sequence[str] | None = None, progress: bool | None = None) -> SideEffectResult:
    """The side-effect panel of each policy against the unmodified model (see the module docstring).

    Args:
        model: a HookedTransformer (or bridge).
        task: the target relation (a task name).
        policies: name -> ``Policy``.
        config: an ``EffectsConfig``.
        tasks: other tasks to score (default: ``config.tasks``, else every shipped task the model knows).
        progress: unused (kept for a uniform signature).

    Returns:
        A ``SideEffectResult`` (``table()``).
    """
    if task not in TASKS:
        raise LensarithError(f"task={task!r} is unknown; tasks: {', '.join(sorted(TASKS))}")
    if not isinstance(policies, Mapping) or not policies or not all(isinstance(p, Policy) for p in policies.values()):
        raise LensarithError("policies must be a non-empty mapping name -> lensarith.guard.Policy")
    for p in policies.values():
        p.check(model)
    sets: dict[str, Batch] = {}
    target = tokenize(model, build_prompts(task, seed=config.seed, shuffle=True), drop_multi_token=True)
    sets[task] = target[0:config.n] if len(target) > config.n else target
    if task in ("capitals", "us_capitals", "uppercase"):
        ext = tokenize(model, build_prompts(task, format="extractive", seed=config.seed, shuffle=True), drop_multi_token=True)
        sets[f"{task}:extractive"] = ext[0:config.n] if len(ext) > config.n else ext
    tasks = config.tasks if tasks is None else tasks
    if tasks is None:
        sets.update(known_tasks(model, task, config))
    else:
        for name in tasks:
            if name not in TASKS:
                raise LensarithError(f"tasks: {name!r} is unknown; tasks: {', '.join(sorted(TASKS))}")
            b = tokenize(model, build_prompts(name, seed=config.seed, shuffle=True), drop_multi_token=True)
            sets[name] = b[0:config.n] if len(b) > config.n else b
    windows = text_windows(held_out_text(), config.window_words)
    if config.n_windows is not None:
        windows = windows[:config.n_windows]
    text = tokenize(model, windows)
    names = list(sets) + ["lm_loss"]
    P, S = len(policies), len(names)
    t = {k: torch.zeros(P, S) for k in ("clean", "after", "delta", "delta_lo", "delta_hi", "fired", "n")}
    clean_cache: dict[str, Tensor] = {}
    for name, batch in sets.items():
        clean_cache[name] = score_policy(model, batch, None, batch_size=config.batch_size)["correct"].float()
    clean_cache["lm_loss"], _ = lm_loss(model, text, None, batch_size=config.batch_size)
    for p, (pname, pol) in enumerate(policies.items()):
        for s, name in enumerate(names):
            if name == "lm_loss":
                after, fired = lm_loss(model, text, pol, batch_size=config.batch_size)
            else:
                got = score_policy(model, sets[name], pol, batch_size=config.batch_size)
                after, fired = got["correct"].float(), float(got["fired"].float().mean())
            clean = clean_cache[name]
            d = (after - clean).double().numpy()
            lo, hi = bootstrap_ci(d, seed=config.seed)
            for k, v in (("clean", clean.mean()), ("after", after.mean()), ("delta", float(d.mean())), ("delta_lo", lo),
                         ("delta_hi", hi), ("fired", fired), ("n", len(clean))):
                t[k][p, s] = float(v)
    meta = provenance(model, recipe="guard.side_effects", task=task, config=config.__dict__,
                      criterion_known=f">= {config.min_rows} single-token one-shot rows and clean top-1 accuracy >= "
                                      f"{config.min_known_accuracy}",
                      policies={k: _describe(v) for k, v in policies.items()}, n_text_windows=len(text),
                      d_vocab=model.cfg.d_vocab,
                      text="data/text/held_out.txt")
    axes = {k: ("policy", "set") for k in t}
    return SideEffectResult(t, axes, {"policy": list(policies), "set": names}, meta)


def _describe(p: Policy) -> dict[str, Any]:
    gate = None if p.gate is None else type(p.gate).__name__
    return {"operation": p.operation, "layer": p.layer, "scale": p.scale, "position": p.position, "gate": gate}


def generation_overhead(model: Model, prompts, policies: Mapping[str, Policy], *, monitor: Monitor | None = None,
                        max_new_tokens: int = 4, repeats: int = 3) -> list[dict[str, Any]]:
    """Median wall time of greedy generation (``engine="core"``) plain, watched by the monitor, and
    under each policy, in one run with interleaved repeats; each as a ratio to plain generation.

    Returns:
        Rows ``{condition, seconds, ratio}`` (ratio = seconds / plain seconds).
    """
    check_int(repeats, "repeats", minimum=1)
    conds: dict[str, dict[str, Any]] = {"plain": {}}
    if monitor is not None:
        conds["monitor"] = {"monitor": monitor}
    for name, pol in policies.items():
        conds[name] = {"policy": pol}
    times: dict[str, list[float]] = {k: [] for k in conds}
    generate(model, prompts, max_new_tokens=1)  # warm-up
    for _ in range(repeats):
        for name, kw in conds.items():
            times[name].append(generate(model, prompts, max_new_tokens=max_new_tokens, **kw).seconds)
    plain = statistics.median(times["plain"])
    return [{"condition": k, "seconds": statistics.median(v), "ratio": statistics.median(v) / plain,
             "repeats": repeats, "new_tokens": max_new_tokens} for k, v in times.items()]
