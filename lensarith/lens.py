"""The logit lens: decode the residual stream of every layer through the final LN and unembedding."""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ._errors import LensarithError, check_int
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
    the prompts carried them, ``answer_ids`` / ``argument_ids`` ``[batch]``. Vocabulary-space
    methods unembed on demand, one layer at a time; a loaded result needs ``attach(model)``.
    """

    kind = "logit_lens"

    def attach(self, model) -> LensResult:
        """Give the result the model's unembedding (needed after ``load``)."""
        if self.meta.get("config_hash") not in (None, config_hash(model)):
            raise LensarithError("this lens result was computed on a different model architecture (config hash differs)")
        self._model = model
        return self

    @property
    def normed(self) -> Float[Tensor, "layer batch d_model"]:
        return self.tensors["normed"]

    @property
    def layers(self) -> list[str]:
        return self.labels["layer"]

    def _unembed(self, x: Tensor) -> Tensor:
        model = getattr(self, "_model", None)
        if model is None:
            raise LensarithError("this lens result has no model attached: call result.attach(model) after loading")
        with torch.no_grad():
            return readout.unembed(model, x.to(model.cfg.device)).float().cpu()

    def _ids(self, ids) -> Int[Tensor, " batch"]:
        if isinstance(ids, str) and ids in ("answer", "argument"):
            key = f"{ids}_ids"
            if key not in self.tensors or bool((self.tensors[key] < 0).any()):
                raise LensarithError(f"ids={ids!r}: the prompts carried no {ids}s; pass token ids or strings, one per prompt")
            return self.tensors[key]
        model = getattr(self, "_model", None)
        if model is None:
            raise LensarithError("this lens result has no model attached: call result.attach(model) after loading")
        out = token_ids(model, ids, name="ids")
        if out.shape == (1,) and self.normed.shape[1] != 1:
            out = out.expand(self.normed.shape[1])  # one token for every prompt
        if out.shape != (self.normed.shape[1],):
            raise LensarithError(f"ids needs one token per prompt ({self.normed.shape[1]}), got shape {tuple(out.shape)}")
        return out

    def logits(self, ids=None) -> Float[Tensor, "layer batch *vocab"]:
        """Logits ``[layer, batch]`` of per-prompt ``ids`` ("answer", "argument", ids or
        strings), or the full ``[layer, batch, d_vocab]`` when ``ids`` is None."""
        if ids is None:
            return torch.stack([self._unembed(x) for x in self.normed])
        idx = self._ids(ids)
        rows = torch.arange(len(idx))
        return torch.stack([self._unembed(x)[rows, idx] for x in self.normed])

    def rank(self, ids="answer") -> Int[Tensor, "layer batch"]:
        """Rank of each prompt's token per layer (0 = top-1): how many tokens score higher."""
        idx = self._ids(ids)
        return torch.stack([readout.rank(self._unembed(x), idx, where=f"the logit lens at {layer}")
                            for layer, x in zip(self.layers, self.normed)])

    def reciprocal_rank(self, ids="answer") -> Float[Tensor, "layer batch"]:
        """The paper's metric, ``1 / (rank + 1)``."""
        return readout.reciprocal_rank(self.rank(ids))

    def probs(self, ids="answer") -> Float[Tensor, "layer batch"]:
        idx = self._ids(ids)
        rows = torch.arange(len(idx))
        return torch.stack([self._unembed(x).softmax(-1)[rows, idx] for x in self.normed])

    def top_tokens(self, k: int = 5) -> tuple[Int[Tensor, "layer batch k"], list[list[list[str]]]]:
        """Top-k token ids per layer and prompt, and their strings."""
        model = getattr(self, "_model", None)
        if model is None:
            raise LensarithError("this lens result has no model attached: call result.attach(model) after loading")
        check_int(k, "k", minimum=1)
        if k > model.cfg.d_vocab:
            raise LensarithError(f"k={k} is more than the vocabulary ({model.cfg.d_vocab} tokens)")
        ids = torch.stack([self._unembed(x).topk(k, dim=-1).indices for x in self.normed])
        model = self._model
        strings = [[model.to_str_tokens(row) for row in layer] for layer in ids]
        return ids, strings

    def accuracy(self, ids="answer") -> Float[Tensor, " layer"]:
        """Top-1 accuracy per layer."""
        return (self.rank(ids) == 0).float().mean(-1)


@register_recipe("logit_lens")
def logit_lens(
    model,
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
