"""FFN ablation (Merullo et al. 2023, Fig 7): remove MLPs from the top down, compare prompt sets.

The paper's contrast: when the answer is in the context (extractive prompts) the upper
FFNs are not needed, so removing them hurts extractive accuracy far less than abstractive
accuracy (answers recalled from pretraining memory).

Speed: every step is a group of the same chunked forward (``lensarith.core.run``): the
clean run caches ``resid_pre`` where ablated ranges begin and each ablated run starts
there, so removing the top k of n MLPs costs k/n of a forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ._errors import LensarithError, check_choice, check_int
from ._types import Model
from .core.backends import backend_of
from .core import Ablate, Batch, Group, Result, Site, provenance, readout, register_recipe, run, tokenize
from .tasks import Example, build_prompts

__all__ = ["ffn_ablation", "AblationResult", "removal_counts"]


def removal_counts(n_layers: int, steps: int = 6) -> list[int]:
    """How many top MLPs are removed at each step: ``round(i * n_layers / steps)`` for i = 0..steps.

    Example:
        >>> removal_counts(24)
        [0, 4, 8, 12, 16, 20, 24]
    """
    check_int(steps, "steps", minimum=1, hint="(the paper removes one sixth at a time: 6)")
    check_int(n_layers, "n_layers", minimum=1)
    return sorted({int(i * n_layers / steps + 0.5) for i in range(steps + 1)})


class AblationResult(Result):
    """Accuracy as MLPs are removed from the top down, per prompt set.

    Tensors: ``accuracy``, ``mrr`` (mean reciprocal rank of the answer) and ``retained``
    (the fraction of the examples answered correctly without ablation that stay correct)
    ``[set, removed]``; ``n_removed`` ``[removed]``; ``correct.<set>`` ``[removed, batch]``
    per example. Labels: ``set`` names, ``removed`` the ablated layers of each step.
    """

    kind = "ffn_ablation"

    @property
    def sets(self) -> list[str]:
        return self.labels["set"]

    @property
    def n_removed(self) -> list[int]:
        return self.tensors["n_removed"].tolist()

    def _set(self, name: str) -> int:
        if name not in self.sets:
            raise LensarithError(f"set={name!r} is unknown; sets: {', '.join(self.sets)}")
        return self.sets.index(name)

    def accuracy_of(self, name: str) -> Float[Tensor, " removed"]:
        """Top-1 accuracy of one set at each step."""
        return self.tensors["accuracy"][self._set(name)]

    def drop(self, name: str, removed: int | None = None) -> float:
        """Accuracy lost between no ablation and the step that removed ``removed`` MLPs
        (default: the last step, every MLP removed), in absolute accuracy.

        Example:
            >>> res = ffn_ablation(model, "capitals", n=12, steps=2)
            >>> res.drop("abstractive", removed=1) == float(res.accuracy_of("abstractive")[0] - res.accuracy_of("abstractive")[1])
            True
        """
        acc = self.accuracy_of(name)
        if removed is None:
            return float(acc[0] - acc[-1])
        check_int(removed, "removed", minimum=0)
        if removed not in self.n_removed:
            raise LensarithError(f"removed={removed} is not a step of this result; steps removed {self.n_removed} MLPs")
        return float(acc[0] - acc[self.n_removed.index(removed)])

    def table(self) -> list[dict[str, Any]]:
        """One row per step: MLPs removed, their layers, and each set's accuracy and retained share."""
        rows = []
        for j, k in enumerate(self.n_removed):
            row: dict[str, Any] = {"removed": k, "layers": self.labels["removed"][j]}
            for i, name in enumerate(self.sets):
                row[f"{name}_accuracy"] = float(self.tensors["accuracy"][i, j])
                row[f"{name}_retained"] = float(self.tensors["retained"][i, j])
            rows.append(row)
        return rows


def _prompt_sets(model, prompts, n: int | None) -> dict[str, Batch]:
    if isinstance(prompts, str):
        if prompts not in ("capitals", "us_capitals", "uppercase"):
            raise LensarithError(
                f"prompts={prompts!r}: extractive prompts exist for capitals, us_capitals and uppercase; "
                "for another task pass a mapping {name: examples}"
            )
        sets: Mapping[str, Any] = {"abstractive": build_prompts(prompts, n=n), "extractive": build_prompts(prompts, format="extractive", n=n)}
        drop = True
    elif isinstance(prompts, Mapping):
        sets, drop = prompts, False
    elif isinstance(prompts, (Sequence, Batch)) and not isinstance(prompts, str):
        sets, drop = {"prompts": prompts}, False
    else:
        raise LensarithError(f"prompts must be a task name, a mapping {{name: examples}} or a list of Examples, got {type(prompts).__name__}")
    if not sets:
        raise LensarithError("prompts is an empty mapping: give at least one prompt set")
    out = {}
    for name, examples in sets.items():
        if isinstance(examples, Batch):
            batch = examples
        else:
            if not isinstance(examples, Sequence) or len(examples) == 0:
                raise LensarithError(f"prompt set {name!r} is empty: give at least one Example")
            if not all(isinstance(e, Example) for e in examples):
                raise LensarithError(f"prompt set {name!r} must hold lensarith.Example objects (with answers)")
            batch = tokenize(model, list(examples), drop_multi_token=drop)
        if batch.answer_ids is None or bool((batch.answer_ids < 0).any()):
            raise LensarithError(f"prompt set {name!r}: every example needs an answer to score")
        out[str(name)] = batch
    return out


def _mlp_means(model, sets: dict[str, Batch], batch_size: int) -> Tensor:
    """Mean MLP output per layer over every real position of every prompt ``[layer, d_model]``."""
    n = model.cfg.n_layers
    sites = [Site("mlp_out", layer) for layer in range(n)]

    def sums(out, chunk: Batch) -> dict[str, Tensor]:
        width = out.captured[sites[0]].shape[1]  # padded to the batch's width, not the chunk's
        mask = (torch.arange(width)[None] < chunk.lengths[:, None]).to(model.cfg.device)
        per_row = torch.stack([(out.captured[s] * mask[..., None]).sum(1) for s in sites], 1)  # [row, layer, d]
        return {"sum": per_row.double().cpu(), "count": chunk.lengths.clone()}

    total = torch.zeros(n, model.cfg.d_model, dtype=torch.float64)
    count = 0
    for batch in sets.values():
        got = run(model, batch, capture=sites, keep=sums, batch_size=batch_size).kept
        total += got["sum"].sum(0)
        count += int(got["count"].sum())
    return (total / count).to(model.cfg.dtype)


def _scores(model, final: Tensor, answers: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 correctness and answer rank ``[step, row]`` from read residuals ``[step, row, d_model]``."""
    logits = readout.logits(model, final).float()
    rank = readout.rank(logits, answers.to(logits.device).expand(final.shape[0], -1), where="the ablated runs' logits")
    return (rank == 0).cpu(), rank.cpu()


@register_recipe("ffn_ablation")
def ffn_ablation(
    model: Model,
    prompts,
    *,
    mode: str = "zero",
    steps: int = 6,
    n: int | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
) -> AblationResult:
    """Remove MLPs from the top down and track accuracy per prompt set (the paper's Fig 7).

    Args:
        model: a HookedTransformer with MLPs.
        prompts: a task name with extractive prompts (``capitals``, ``us_capitals``,
            ``uppercase``: sets ``abstractive`` and ``extractive``; multi-token and unknown
            items are dropped), a mapping ``{name: [Example, ...]}``, or one list.
        mode: ``zero`` (the paper) or ``mean`` (each MLP's output replaced by its mean over
            every real position of every prompt in the sets).
        steps: the top ``round(i * n_layers / steps)`` MLPs are removed at step i (6: one
            sixth of the layers at a time).
        n: for a task name, the first ``n`` examples of each set.
        batch_size: prompts per forward.
        progress: show a progress bar.

    Returns:
        An ``AblationResult``: ``accuracy`` / ``mrr`` / ``retained`` ``[set, removed]``,
        ``table()``, ``drop(set)``.

    Example:
        >>> out = ffn_ablation(model, "capitals", n=20, steps=2)
        >>> out.sets, out.n_removed
        (['abstractive', 'extractive'], [0, 1, 2])
    """
    meter = backend_of(model).meter()
    if mode not in ("zero", "mean") or isinstance(mode, bool):
        raise LensarithError(f"mode must be 'zero' or 'mean', got {mode!r}")
    check_int(n, "n", minimum=1, allow_none=True)
    check_int(batch_size, "batch_size", minimum=1)
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLPs to ablate")
    L = model.cfg.n_layers
    counts = removal_counts(L, steps)
    sets = _prompt_sets(model, prompts, n)
    means = _mlp_means(model, sets, batch_size) if mode == "mean" else None

    def ablations(k: int) -> list[Ablate]:
        return [Ablate(Site("mlp_out", layer), mode, None if means is None else means[layer]) for layer in range(L - k, L)]

    # one group per step: step k starts at layer L - k from the clean run's residual
    groups = [Group(ablations(k), start_layer=L - k if k else None) for k in counts]

    def score(out, chunk: Batch) -> dict[str, Tensor]:
        ok, rank = _scores(model, out.final, chunk.answer_ids)
        return {"correct": ok, "rank": rank}

    correct: dict[str, Tensor] = {}
    ranks: dict[str, Tensor] = {}
    for name, batch in sets.items():
        got = run(model, batch, groups=groups, read="last", keep=score, batch_size=batch_size, progress=progress,
                  desc=f"ffn ablation ({name})").kept
        correct[name], ranks[name] = got["correct"], got["rank"]
    names = list(sets)
    acc = torch.stack([correct[s].float().mean(-1) for s in names])
    mrr = torch.stack([(1.0 / (ranks[s].float() + 1.0)).mean(-1) for s in names])
    retained = []
    for s in names:
        base = correct[s][0]
        retained.append((correct[s] & base).float().sum(-1) / base.float().sum().clamp_min(1.0))
    tensors = {"accuracy": acc, "mrr": mrr, "retained": torch.stack(retained), "n_removed": torch.tensor(counts)}
    axes = {"accuracy": ("set", "removed"), "mrr": ("set", "removed"), "retained": ("set", "removed"), "n_removed": ("removed",)}
    for s in names:
        tensors[f"correct.{s}"] = correct[s]
        axes[f"correct.{s}"] = ("removed", "batch")
    removed = [f"L{L - k}-L{L - 1}" if k > 1 else (f"L{L - 1}" if k == 1 else "none") for k in counts]
    meta = provenance(model, recipe="ffn_ablation", mode=mode, steps=steps, task=prompts if isinstance(prompts, str) else None,
                      sizes={s: len(b) for s, b in sets.items()}, reports={s: b.report for s, b in sets.items()},
                      hooks=[Site("mlp_out", layer).hook_name for layer in range(L)])
    meta = meter.stamp(meta)
    return AblationResult(tensors, axes, {"set": names, "removed": removed}, meta)
