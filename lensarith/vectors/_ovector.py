"""o-vectors: an MLP output taken from source prompt(s), with provenance; extraction.

An *o-vector* is the output of one MLP ("FFN") at the last token of a source prompt, e.g.
MLP 19 of GPT2-Medium on ``... capital of Poland?\\nA:``. The paper's claim is that it is
largely content-independent: put into an unrelated context where the model represents
`` China``, it promotes `` Beijing``.
"""

from __future__ import annotations

import os
from typing import Any

from jaxtyping import Float
from torch import Tensor

from .._errors import LensarithError, check_int
from ..core import Result, Site, as_batch, check_layer, collect, provenance
from ..models import config_hash
from .._types import Model

__all__ = ["OVector", "extract_o_vector", "as_o"]


class OVector(Result):
    """An MLP output taken from source prompt(s), with provenance.

    Tensors: ``vector`` ``[d_model]`` (one vector) or ``[source, d_model]`` (one per source
    prompt). ``meta`` holds the model name and config hash, ``n_layers``/``d_model``, the
    ``layer`` and ``hook``, ``position``, ``task``, ``sources`` (the prompts), ``norm`` and
    ``dtype``. Save with ``o.save(path)``; load with ``OVector.load(path, model=model)``.
    """

    kind = "o_vector"

    @property
    def vector(self) -> Float[Tensor, "*source d_model"]:
        return self.tensors["vector"]

    @property
    def layer(self) -> int | None:
        """The MLP layer the vector was taken from (None for a hand-made vector)."""
        return self.meta.get("layer")

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[-1])

    @property
    def n_sources(self) -> int:
        """How many vectors it holds (1 for a ``[d_model]`` vector)."""
        return 1 if self.vector.ndim == 1 else int(self.vector.shape[0])

    @property
    def norm(self) -> Float[Tensor, "*source"]:
        return self.vector.float().norm(dim=-1)

    def single(self) -> Float[Tensor, " d_model"]:
        """The one vector it holds; raises when it holds several (use ``mean`` or ``select``)."""
        if self.vector.ndim == 1:
            return self.vector
        if self.vector.shape[0] == 1:
            return self.vector[0]
        raise LensarithError(
            f"o holds {self.vector.shape[0]} source vectors (shape {tuple(self.vector.shape)}); "
            "pick one with o.select(i) or average them with o.mean()"
        )

    def mean(self) -> OVector:
        """The average over source prompts, as a ``[d_model]`` OVector."""
        vec = self.vector if self.vector.ndim == 1 else self.vector.mean(0)
        meta = {**self.meta, "reduce": "mean", "norm": float(vec.float().norm())}
        return OVector({"vector": vec}, {"vector": ("d_model",)}, {}, meta)

    def select(self, index: int) -> OVector:
        """The vector of one source prompt, as a ``[d_model]`` OVector."""
        if self.vector.ndim == 1:
            if index not in (0, -1):
                raise LensarithError(f"index={index} is out of range: o holds one vector")
            return self
        n = self.vector.shape[0]
        if not -n <= index < n:
            raise LensarithError(f"index={index} is out of range: o holds {n} source vectors (valid -{n}..{n - 1})")
        vec = self.vector[index]
        sources = self.meta.get("sources") or []
        meta = {**self.meta, "reduce": "select", "sources": sources[index:index + 1] if sources else [],
                "norm": float(vec.float().norm())}
        return OVector({"vector": vec}, {"vector": ("d_model",)}, {}, meta)

    def check(self, model: Model, *, name: str = "o") -> None:
        """Raise unless the vector fits ``model`` (same width; same depth when recorded)."""
        if self.d_model != model.cfg.d_model:
            raise LensarithError(
                f"{name} has d_model={self.d_model} but the model has d_model={model.cfg.d_model}: "
                f"the vector comes from another model ({self.meta.get('model', 'unknown')!r}); "
                "extract it from this model with extract_o_vector"
            )
        n_layers = self.meta.get("n_layers")
        if n_layers is not None and n_layers != model.cfg.n_layers:
            raise LensarithError(
                f"{name} was extracted from a model with {n_layers} layers ({self.meta.get('model', 'unknown')!r}) "
                f"but this model has {model.cfg.n_layers}; use a vector from this model, or wrap the raw "
                "tensor with OVector.from_tensor(o.vector) to transplant it anyway"
            )
        recorded = self.meta.get("config_hash")
        if recorded is not None and recorded != config_hash(model):
            raise LensarithError(
                f"{name} was extracted from another architecture ({self.meta.get('model', 'unknown')!r}, config hash "
                f"{recorded}) than this model ({getattr(model.cfg, 'model_name', 'unknown')!r}, {config_hash(model)}); "
                "use a vector from this model, or wrap the raw tensor with OVector.from_tensor(o.vector) to "
                "transplant it anyway"
            )

    @classmethod
    def from_tensor(cls, vector: Float[Tensor, "*source d_model"], *, model: Model=None, layer: int | None = None,
                    label: str = "custom") -> OVector:
        """Wrap a hand-made vector (e.g. ``model.W_U[:, token]``) as an OVector.

        Args:
            vector: ``[d_model]`` or ``[source, d_model]``.
            model: when given, the vector is checked against it and its provenance recorded.
            layer: a default application layer for ``transplant`` (optional).
            label: a name for ``meta["task"]``.
        """
        if not isinstance(vector, Tensor) or vector.ndim not in (1, 2) or not vector.is_floating_point():
            got = f"shape {tuple(vector.shape)} dtype {vector.dtype}" if isinstance(vector, Tensor) else type(vector).__name__
            raise LensarithError(f"vector must be a float tensor [d_model] or [source, d_model], got {got}")
        if not bool(vector.isfinite().all()):
            raise LensarithError(f"vector holds non-finite values (NaN or inf) at {(~vector.isfinite()).nonzero()[:4].tolist()}: "
                                 "a transplant of it would be meaningless")
        vector = vector.detach().clone()
        meta: dict[str, Any] = {"task": label, "layer": layer, "reduce": "custom",
                                "dtype": str(vector.dtype).removeprefix("torch."),
                                "norm": vector.float().norm(dim=-1).tolist()}
        if model is not None:
            if layer is not None:
                meta["layer"] = check_layer(model, layer)
            meta = provenance(model, **meta)
        axes = ("d_model",) if vector.ndim == 1 else ("source", "d_model")
        out = cls({"vector": vector}, {"vector": axes}, {}, meta)
        if model is not None:
            out.check(model, name="vector")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Model=None) -> OVector:
        """Load a saved OVector; with ``model``, check that it fits that model (width, depth and
        architecture hash)."""
        out = Result.load(path)
        if not isinstance(out, OVector):
            raise LensarithError(f"{str(path)!r} holds a {out.kind!r} result, not an o-vector")
        if model is not None:
            out.check(model)
        return out

    def __repr__(self) -> str:
        norm = self.norm
        if norm.ndim == 0:
            shown = f"{float(norm):.3g}"
        elif norm.numel() == 1:
            shown = f"{float(norm[0]):.3g} (1 source; o.single() is the [d_model] vector)"
        else:
            shown = f"{norm.mean():.3g} (mean over {norm.numel()} sources)"
        return (f"OVector(layer={self.layer}, task={self.meta.get('task')!r}, shape={tuple(self.vector.shape)}, "
                f"norm={shown}, model={self.meta.get('model')!r})")


def extract_o_vector(
    model: Model,
    prompts,
    layer: int,
    *,
    position: int | str = "last",
    reduce: str = "none",
    task: str | None = None,
    batch_size: int = 32,
) -> OVector:
    """Take the MLP output at ``layer`` and ``position`` of source prompt(s) as an o-vector.

    Args:
        model: a HookedTransformer with MLPs.
        prompts: the source prompt(s): strings, ``Example`` objects, token ids or a ``Batch``.
        layer: the MLP layer (negative counts from the end); the paper's GPT2-Medium used 19
            for capitals and uppercasing, 18 for past tense.
        position: ``"last"`` / ``-1`` (each prompt's last real token), another negative
            offset from it, or an absolute position.
        reduce: ``"none"`` keeps one vector per prompt (``[source, d_model]``); ``"mean"``
            averages them (``[d_model]``).
        task: recorded in the provenance (default: the examples' common task, if any).
        batch_size: prompts per forward.

    Returns:
        An ``OVector`` with provenance (model, config hash, layer, hook, task, source
        prompts, norm, dtype).

    Example:
        >>> o = extract_o_vector(model, build_prompts("capitals", n=1), layer=1)
        >>> o.vector.shape, o.meta["hook"]
        (torch.Size([1, 32]), 'blocks.1.hook_mlp_out')
    """
    if model.cfg.attn_only:
        raise LensarithError("the model is attention-only: it has no MLP outputs to extract")
    layer = check_layer(model, layer)
    if reduce not in ("none", "mean") or isinstance(reduce, bool):
        raise LensarithError(f"reduce must be 'none' (one vector per prompt) or 'mean', got {reduce!r}")
    check_int(batch_size, "batch_size", minimum=1)
    batch = as_batch(model, prompts)
    batch.positions(position)
    site = Site("mlp_out", layer, position)
    vecs = collect(model, batch, [site], stop_at_layer=layer + 1, batch_size=batch_size, desc="extract")[site]
    vecs = vecs.detach().cpu()
    sources = [e.prompt for e in batch.examples] if batch.examples else []
    if task is None and batch.examples:
        tasks = {e.task for e in batch.examples}
        task = tasks.pop() if len(tasks) == 1 else None
    if reduce == "mean":
        vecs, axes = vecs.mean(0), ("d_model",)
    else:
        axes = ("source", "d_model")
    meta = provenance(model, recipe="extract_o_vector", layer=layer, hook=site.hook_name, position=position,
                      reduce=reduce, task=task, sources=sources, n_sources=len(batch),
                      norm=vecs.float().norm(dim=-1).tolist(), dtype=str(vecs.dtype).removeprefix("torch."))
    labels = {"source": sources} if reduce == "none" and sources else {}
    return OVector({"vector": vecs}, {"vector": axes}, labels, meta)


def as_o(model: Model, o, name: str = "o") -> OVector:
    """An ``OVector`` checked against ``model``, from an OVector or a tensor ``[d_model]``."""
    if isinstance(o, Tensor):
        o = OVector.from_tensor(o)
    if not isinstance(o, OVector):
        raise LensarithError(f"{name} must be an OVector (extract_o_vector) or a tensor [d_model], got {type(o).__name__}")
    o.check(model, name=name)
    return o
