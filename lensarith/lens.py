"""The logit lens: decode the residual stream of every layer through the final LN and unembedding."""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ._errors import LensarithError, check_int
from ._types import Model
from .core import Result, Site, as_batch, collect, provenance, readout, register_recipe, token_ids
from .models import config_hash

__all__ = ["logit_lens", "LensResult", "stream_sites"]

Stream = Literal["resid_pre", "resid_mid", "resid_post", "all"]


def stream_sites(n_layers: int, stream: str, position="last") -> tuple[list[Site], list[str]]:
    """The residual sites a lens reads, in depth order, with their labels.

    ``all`` gives ``0_pre, 0_mid, 1_pre, ..., {n-1}_mid, {n-1}_post`` (resid_post of a
    layer equals resid_pre of the next, so it is not repeated).
    """
    if stream == "all":
        sites, labels = [], []
        for layer in range(n_layers):
            sites += [Site("resid_pre", layer, position), Site("resid_mid", layer, position)]
            labels += [f"{layer}_pre", f"{layer}_mid"]
        return sites + [Site("resid_post", n_layers - 1, position)], labels + [f"{n_layers - 1}_post"]
    if stream not in ("resid_pre", "resid_mid", "resid_post"):
        raise LensarithError(f"stream must be 'resid_pre', 'resid_mid', 'resid_post' or 'all', got {stream!r}")
    suffix = stream.removeprefix("resid_")
    return [Site(stream, layer, position) for layer in range(n_layers)], [f"{layer}_{suffix}" for layer in range(n_layers)]


class LensResult(Result):
    """Per-layer decoded residuals at one position per prompt.

    Tensors: ``normed`` ``[layer, batch, d_model]`` (after the final LayerNorm), and, when
    the prompts carried them, ``answer_ids`` / ``argument_ids`` ``[batch]``. A loaded result
    needs ``attach(model)``.

    Vocabulary-space readouts (``rank``, ``reciprocal_rank``, ``accuracy``, ``logits``/``probs``/
    ``log_probs`` of given tokens, ``top_tokens``) share one pass over the vocabulary per layer
    (``readout.scan``: column chunks of bounded memory) that computes every statistic of the
    answer, the argument and the ids asked for, the softmax normaliser and the top
    ``TOP_K`` tokens; later readouts of the same result reuse it and unembed nothing.
    """

    kind = "logit_lens"
    #: top tokens the shared pass keeps per layer and prompt (``top_tokens(k)`` with more rescans)
    TOP_K = 10

    def attach(self, model: Model) -> LensResult:
        """Give the result the model's unembedding (needed after ``load``)."""
        if self.meta.get("config_hash") not in (None, config_hash(model)):
            raise LensarithError("this lens result was computed on a different model architecture (config hash differs)")
        self._model = model
        self._stats: dict = {}  # statistics of the shared vocabulary pass, valid for this model
        return self

    @property
    def normed(self) -> Float[Tensor, "layer batch d_model"]:
        return self.tensors["normed"]

    @property
    def layers(self) -> list[str]:
        return self.labels["layer"]

    def _require_model(self):
        model = getattr(self, "_model", None)
        if model is None:
            raise LensarithError("this lens result has no model attached: call result.attach(model) after loading")
        return model

    def _unembed(self, x: Tensor) -> Tensor:
        model = self._require_model()
        with torch.no_grad():
            return readout.unembed(model, x.to(model.cfg.device)).float().cpu()

    def _ids(self, ids) -> Int[Tensor, " batch"]:
        if isinstance(ids, str) and ids in ("answer", "argument"):
            key = f"{ids}_ids"
            if key not in self.tensors or bool((self.tensors[key] < 0).any()):
                raise LensarithError(f"ids={ids!r}: the prompts carried no {ids}s; pass token ids or strings, one per prompt")
            return self.tensors[key]
        model = self._require_model()
        out = token_ids(model, ids, name="ids")
        if out.shape == (1,) and self.normed.shape[1] != 1:
            out = out.expand(self.normed.shape[1])  # one token for every prompt
        if out.shape != (self.normed.shape[1],):
            raise LensarithError(f"ids needs one token per prompt ({self.normed.shape[1]}), got shape {tuple(out.shape)}")
        return out

    def _key(self, ids) -> tuple:
        if isinstance(ids, str) and ids in ("answer", "argument"):
            return ("named", ids)
        return ("ids", tuple(self._ids(ids).tolist()))

    def _stat(self, ids, what: str) -> Tensor:
        """``what`` ("ranks", "logits", "probs") of ``ids`` per layer ``[layer, batch]``, from the shared pass."""
        key = self._key(ids)
        stats = self._stats_for(self._require_model())
        if key not in stats["ids"]:
            self._scan(extra=[(key, self._ids(ids))])
        return stats["ids"][key][what]

    def _stats_for(self, model) -> dict:
        if not hasattr(self, "_stats") or not self._stats:
            self._stats = {"ids": {}, "logsumexp": None, "top": None}
        return self._stats

    def _scan(self, extra=(), k: int = 0) -> None:
        """One pass over the vocabulary per layer: every id set not yet scanned (the answer and
        argument when the prompts carried them, and ``extra``), the normaliser, the top tokens."""
        model = self._require_model()
        stats = self._stats_for(model)
        todo = [(key, ids) for key, ids in extra if key not in stats["ids"]]
        for name in ("answer", "argument"):
            key = ("named", name)
            t = self.tensors.get(f"{name}_ids")
            if t is not None and not bool((t < 0).any()) and key not in stats["ids"] and key not in dict(todo):
                todo.append((key, t))
        have_top = 0 if stats["top"] is None else stats["top"].shape[-1]
        k_new = max(k, self.TOP_K) if max(k, 1) > have_top else 0
        k_new = min(k_new, model.cfg.d_vocab)
        per = {key: {"ranks": [], "logits": [], "probs": []} for key, _ in todo}
        lse, tops = [], []
        with torch.no_grad():
            for layer, x in zip(self.layers, self.normed):
                got = readout.scan(model, x.to(model.cfg.device), [ids for _, ids in todo], k=k_new,
                                   where=f"the logit lens at {layer}")
                for (key, _), r, lg, p in zip(todo, got.ranks, got.logits, got.probs):
                    per[key]["ranks"].append(r.cpu())
                    per[key]["logits"].append(lg.cpu())
                    per[key]["probs"].append(p.cpu())
                lse.append(got.logsumexp.cpu())
                if k_new:
                    tops.append(got.top.cpu())
        for key, v in per.items():
            stats["ids"][key] = {name: torch.stack(t) for name, t in v.items()}
        if stats["logsumexp"] is None:
            stats["logsumexp"] = torch.stack(lse)
        if k_new:
            stats["top"] = torch.stack(tops)

    def logits(self, ids=None) -> Float[Tensor, "layer batch *vocab"]:
        """Logits ``[layer, batch]`` of per-prompt ``ids`` ("answer", "argument", ids or
        strings), or the full ``[layer, batch, d_vocab]`` when ``ids`` is None."""
        if ids is None:
            return torch.stack([self._unembed(x) for x in self.normed])
        return self._stat(ids, "logits")

    def rank(self, ids="answer") -> Int[Tensor, "layer batch"]:
        """Rank of each prompt's token per layer (0 = top-1): how many tokens score higher."""
        return self._stat(ids, "ranks")

    def reciprocal_rank(self, ids="answer") -> Float[Tensor, "layer batch"]:
        """The paper's metric, ``1 / (rank + 1)``."""
        return readout.reciprocal_rank(self.rank(ids))

    def probs(self, ids="answer") -> Float[Tensor, "layer batch"]:
        """Softmax probability of each prompt's token per layer."""
        return self._stat(ids, "probs")

    def log_probs(self, ids="answer") -> Float[Tensor, "layer batch"]:
        """Log-probability of each prompt's token per layer (``logit - logsumexp``)."""
        out = self._stat(ids, "logits")
        return out - self._stats["logsumexp"]

    def top_ids(self, k: int = 5) -> Int[Tensor, "layer batch k"]:
        """Top-k token ids per layer and prompt, highest first."""
        model = self._require_model()
        check_int(k, "k", minimum=1)
        if k > model.cfg.d_vocab:
            raise LensarithError(f"k={k} is more than the vocabulary ({model.cfg.d_vocab} tokens)")
        stats = self._stats_for(model)
        if stats["top"] is None or stats["top"].shape[-1] < k:
            self._scan(k=k)
        return stats["top"][..., :k]

    def top_tokens(self, k: int = 5) -> tuple[Int[Tensor, "layer batch k"], list[list[list[str]]]]:
        """Top-k token ids per layer and prompt, and their strings."""
        ids = self.top_ids(k)
        strings = [[self._model.to_str_tokens(row) for row in layer] for layer in ids]
        return ids, strings

    def accuracy(self, ids="answer") -> Float[Tensor, " layer"]:
        """Top-1 accuracy per layer."""
        return (self.rank(ids) == 0).float().mean(-1)


@register_recipe("logit_lens")
def logit_lens(
    model: Model,
    prompts,
    *,
    stream: str = "resid_post",
    position: int | str = "last",
    batch_size: int = 32,
    progress: bool | None = None,
) -> LensResult:
    """Decode the residual stream at every layer (final LayerNorm, then unembedding).

    Args:
        model: a HookedTransformer.
        prompts: strings, ``Example`` objects, token ids ``[batch, pos]`` or a ``Batch``.
        stream: which residual points to read (``all`` interleaves pre, mid and post).
        position: ``"last"`` (each prompt's last real token), a negative offset from it, or
            an absolute position.
        batch_size: prompts per forward.
        progress: show a progress bar (default: when there are more than 4 chunks).

    Returns:
        A ``LensResult``: ``rank``, ``reciprocal_rank``, ``probs``, ``top_tokens``,
        ``accuracy`` per layer.

    Example:
        >>> lens = logit_lens(model, build_prompts("capitals", n=8))
        >>> lens.layers, lens.reciprocal_rank("answer").shape
        (['0_post', '1_post'], torch.Size([2, 8]))
    """
    batch = as_batch(model, prompts)
    batch.positions(position)  # validates
    sites, labels = stream_sites(model.cfg.n_layers, stream, position)
    got = collect(model, batch, sites, batch_size=batch_size, progress=progress, desc="logit lens")
    stack = torch.stack([got[s.resolve(model.cfg)] for s in sites])
    with torch.no_grad():
        normed = readout.final_norm(model, stack)
    tensors = {"normed": normed.float().cpu()}
    axes = {"normed": ("layer", "batch", "d_model")}
    for key, ids in (("answer_ids", batch.answer_ids), ("argument_ids", batch.argument_ids)):
        if ids is not None:
            tensors[key] = ids
            axes[key] = ("batch",)
    meta = provenance(model, recipe="logit_lens", stream=stream, position=position,
                      hooks=[s.hook_name for s in sites], report=batch.report)
    prompts_ = [e.prompt for e in batch.examples] if batch.examples else None
    result = LensResult(tensors, axes, {"layer": labels, "batch": prompts_ or []}, meta)
    return result.attach(model)
