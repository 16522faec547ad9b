"""FFN ablation (Merullo et al. 2023, Fig 7): remove MLPs from the top down, compare prompt sets.

The paper's contrast: when the answer is in the context (extractive prompts) the upper
FFNs are not needed, so removing them hurts extractive accuracy far less than abstractive
accuracy (answers recalled from pretraining memory).

Speed: each chunk runs once clean, caching ``resid_pre`` at the layers where ablated
ranges begin; each ablated run starts there (``start_at_layer``), so removing the top k
of n MLPs costs k/n of a forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from ._errors import LensarithError
from .interventions import Ablate, Capture, compile_hooks
from .recipes import register_recipe
from .result import Result, provenance
from .sites import Site
from .tasks import Batch, Example, build_prompts, tokenize

__all__ = ["ffn_ablation", "AblationResult", "removal_counts"]


def removal_counts(n_layers: int, steps: int = 6) -> list[int]:
    """How many top MLPs are removed at each step: ``round(i * n_layers / steps)`` for i = 0..steps.

    Example:
        >>> removal_counts(24)
        [0, 4, 8, 12, 16, 20, 24]
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise LensarithError(f"steps must be a positive int (the paper removes one sixth at a time: 6), got {steps!r}")
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

    def drop(self, name: str) -> float:
        """Accuracy lost between no ablation and the last step (absolute)."""
        acc = self.accuracy_of(name)
        return float(acc[0] - acc[-1])

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
    total = torch.zeros(n, model.cfg.d_model, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for batch in sets.values():
            for chunk in batch.chunks(batch_size):
                cap = Capture(sites)
                with model.hooks(fwd_hooks=cap.hooks(chunk)):
                    model(chunk.tokens.to(model.cfg.device), stop_at_layer=n)
                mask = (torch.arange(chunk.tokens.shape[1])[None] < chunk.lengths[:, None]).to(model.cfg.device)
                for layer, site in enumerate(sites):
                    total[layer] += (cap.captured[site] * mask[..., None]).sum((0, 1)).double().cpu()
                count += int(chunk.lengths.sum())
    return (total / count).to(model.cfg.dtype)


def _scores(model, resid: Tensor, chunk: Batch) -> tuple[Tensor, Tensor]:
    """Top-1 correctness and answer rank at each row's last token."""
    rows = torch.arange(len(chunk), device=resid.device)
    x = resid[rows, chunk.last.to(resid.device)][:, None]
    if model.cfg.normalization_type is not None:
        x = model.ln_final(x)
    logits = model.unembed(x)[:, 0].float()
    ans = chunk.answer_ids.to(logits.device)
    rank = (logits > logits.gather(1, ans[:, None])).sum(-1)
    return (rank == 0).cpu(), rank.cpu()


@register_recipe("ffn_ablation")
def ffn_ablation(
    model,
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
        >>> out = ffn_ablation(model, "capitals", n=50)  # doctest: +SKIP
        >>> out.table()[-1]  # doctest: +SKIP
    """
    if mode not in ("zero", "mean"):
        raise LensarithError(f"mode must be 'zero' or 'mean', got {mode!r}")
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLPs to ablate")
    L = model.cfg.n_layers
    counts = removal_counts(L, steps)
    sets = _prompt_sets(model, prompts, n)
    means = _mlp_means(model, sets, batch_size) if mode == "mean" else None
    starts = sorted({L - k for k in counts if k > 0})
    # start_at_layer cannot rebuild shortformer positional embeddings: run those from the tokens
    resume = model.cfg.positional_embedding_type != "shortformer"
    device = model.cfg.device

    def ablations(k: int) -> list[Ablate]:
        return [Ablate(Site("mlp_out", layer), mode, None if means is None else means[layer]) for layer in range(L - k, L)]

    correct: dict[str, Tensor] = {}
    ranks: dict[str, Tensor] = {}
    total_chunks = sum(len(range(0, len(b), batch_size)) for b in sets.values())
    bar = tqdm(total=total_chunks, desc="ffn ablation", disable=not (total_chunks > 4 if progress is None else progress), leave=False)
    with torch.no_grad():
        for name, batch in sets.items():
            c_parts, r_parts = [], []
            for chunk in batch.chunks(batch_size):
                tokens = chunk.tokens.to(device)
                cap = Capture([Site("resid_pre", s) for s in starts] if resume else [])
                with model.hooks(fwd_hooks=cap.hooks(chunk)):
                    clean = model(tokens, stop_at_layer=L)
                c_row, r_row = [], []
                for k in counts:
                    if k == 0:
                        resid = clean
                    else:
                        hooks = compile_hooks(model, ablations(k), chunk)
                        with model.hooks(fwd_hooks=hooks):
                            if resume:
                                resid = model(cap.captured[Site("resid_pre", L - k)], start_at_layer=L - k, stop_at_layer=L)
                            else:
                                resid = model(tokens, stop_at_layer=L)
                    ok, rank = _scores(model, resid, chunk)
                    c_row.append(ok)
                    r_row.append(rank)
                c_parts.append(torch.stack(c_row))
                r_parts.append(torch.stack(r_row))
                bar.update(1)
            correct[name] = torch.cat(c_parts, dim=-1)
            ranks[name] = torch.cat(r_parts, dim=-1)
    bar.close()
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
    return AblationResult(tensors, axes, {"set": names, "removed": removed}, meta)
