"""Explaining an o-vector: what it decodes to, how consistent it is, whether it is an analogy.

``decode_o_vector`` (tokens promoted and demoted through the unembedding),
``o_vector_consistency`` (cosine similarity across sources and tasks) and
``o_vector_analogy`` (the word2vec test: does o point along answer - argument?).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .._errors import LensarithError, check_choice
from ..core import Result, provenance, readout
from ._ovector import OVector, as_o
from ._search import task_batch
from .._types import Model

__all__ = [
    "DecodeResult",
    "decode_o_vector",
    "ConsistencyResult",
    "o_vector_consistency",
    "AnalogyResult",
    "o_vector_analogy",
]


# --------------------------------------------------------------------------- explain


class DecodeResult(Result):
    """What an o-vector writes into vocabulary space.

    Tensors: ``scores`` ``[d_vocab]`` (the vector through the final LayerNorm's centring
    and weight, scaled to unit RMS, then ``W_U``; biases left out), ``promoted_ids`` and
    ``demoted_ids`` ``[k]``; labels ``promoted`` / ``demoted`` hold the token strings.
    """

    kind = "o_decode"

    @property
    def promoted(self) -> list[tuple[str, float]]:
        """The tokens the vector pushes up most, with their scores."""
        return [(s, float(self.tensors["scores"][i])) for s, i in zip(self.labels["promoted"], self.tensors["promoted_ids"])]

    @property
    def demoted(self) -> list[tuple[str, float]]:
        """The tokens the vector pushes down most, with their scores."""
        return [(s, float(self.tensors["scores"][i])) for s, i in zip(self.labels["demoted"], self.tensors["demoted_ids"])]

    def rank_of(self, token_id: int) -> int:
        """Rank of a token among the promoted ones (0 = promoted most)."""
        scores = self.tensors["scores"]
        return int((scores > scores[token_id]).sum())


def decode_o_vector(model: Model, o, *, k: int = 10, through_ln: bool = True) -> DecodeResult:
    """Decode an o-vector: the tokens it promotes and demotes.

    Args:
        model: the model the vector belongs to.
        o: an ``OVector`` holding one vector (or a tensor ``[d_model]``).
        k: how many tokens to list each way.
        through_ln: apply the final LayerNorm's centring and weight (with the vector's own
            scale; LayerNorm and unembedding biases are left out, they do not depend on o).
            False projects on ``W_U`` directly.

    Returns:
        A ``DecodeResult`` with ``promoted``, ``demoted`` and ``scores``.
    """
    o = as_o(model, o)
    vec = o.single().to(model.cfg.device, model.cfg.dtype)
    if not isinstance(k, int) or not 1 <= k <= model.cfg.d_vocab:
        raise LensarithError(f"k must be an int in 1..{model.cfg.d_vocab}, got {k!r}")
    with torch.no_grad():
        # the final norm with the vector's own scale; its bias and b_U do not depend on o
        x = readout.frozen_final_norm(model, vec[None, None], vec[None])[0][0, 0] if through_ln else vec
        scores = (x @ readout.vocab_vectors(model, "unembed").T).float().cpu()
    up = scores.topk(k).indices
    down = (-scores).topk(k).indices
    labels = {"promoted": [model.to_single_str_token(int(i)) for i in up],
              "demoted": [model.to_single_str_token(int(i)) for i in down]}
    meta = provenance(model, recipe="decode_o_vector", through_ln=through_ln, o={k_: v for k_, v in o.meta.items() if k_ != "sources"})
    return DecodeResult({"scores": scores, "promoted_ids": up, "demoted_ids": down},
                        {"scores": ("d_vocab",), "promoted_ids": ("promoted",), "demoted_ids": ("demoted",)}, labels, meta)


class ConsistencyResult(Result):
    """Cosine similarity of o-vectors, one by one and by group (task).

    Tensors: ``cosine`` ``[source, source]``; ``group_mean`` ``[group, group]`` (mean cosine
    between the groups' vectors; the diagonal leaves out each vector with itself, NaN for a
    group of one); ``mean_share`` ``[group]`` = |mean o| / mean |o|: near 1 when a group's
    vectors agree, near 1/sqrt(n) when they are unrelated.
    """

    kind = "o_consistency"

    def within(self, group: str) -> float:
        i = self._group(group)
        return float(self.tensors["group_mean"][i, i])

    def between(self, a: str, b: str) -> float:
        return float(self.tensors["group_mean"][self._group(a), self._group(b)])

    def _group(self, group: str) -> int:
        groups = self.labels["group"]
        if group not in groups:
            raise LensarithError(f"group={group!r} is unknown; groups: {', '.join(groups)}")
        return groups.index(group)

    def summary(self) -> dict[str, Any]:
        groups = self.labels["group"]
        out: dict[str, Any] = {f"within:{g}": self.within(g) for g in groups}
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                out[f"between:{a}|{b}"] = self.between(a, b)
        out.update({f"mean_share:{g}": float(s) for g, s in zip(groups, self.tensors["mean_share"])})
        return out


def o_vector_consistency(vectors) -> ConsistencyResult:
    """Cosine similarity of o-vectors from different source examples and tasks.

    Args:
        vectors: an ``OVector`` with several sources (``extract_o_vector(..., reduce="none")``),
            a mapping ``{task: OVector}`` (compared within and across tasks), or a list of
            OVectors (grouped by ``meta["task"]``).

    Returns:
        A ``ConsistencyResult``: ``cosine``, ``group_mean``, ``within(task)``,
        ``between(a, b)``, ``summary()``.
    """
    if isinstance(vectors, OVector):
        items = [(str(vectors.meta.get("task") or "o"), vectors)]
    elif isinstance(vectors, Mapping):
        items = [(str(k), v) for k, v in vectors.items()]
    elif isinstance(vectors, Sequence) and not isinstance(vectors, str):
        items = [(str(v.meta.get("task") or f"o{i}") if isinstance(v, OVector) else f"o{i}", v) for i, v in enumerate(vectors)]
    else:
        raise LensarithError(f"vectors must be an OVector, a mapping of name to OVector or a list, got {type(vectors).__name__}")
    if not items:
        raise LensarithError("vectors is empty: give at least one OVector")
    rows, groups, sources = [], [], []
    for name, v in items:
        if not isinstance(v, OVector):
            raise LensarithError(f"vectors[{name!r}] must be an OVector, got {type(v).__name__}")
        mat = v.vector.reshape(-1, v.d_model).float()
        if rows and mat.shape[-1] != rows[0].shape[-1]:
            raise LensarithError(f"vectors[{name!r}] has d_model={mat.shape[-1]}, the others {rows[0].shape[-1]}")
        rows.append(mat)
        groups += [name] * mat.shape[0]
        srcs = v.meta.get("sources") or []
        sources += srcs if len(srcs) == mat.shape[0] else [f"{name}[{i}]" for i in range(mat.shape[0])]
    mat = torch.cat(rows)
    unit = mat / mat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.T
    names = list(dict.fromkeys(groups))
    gid = torch.tensor([names.index(g) for g in groups])
    gm = torch.full((len(names), len(names)), float("nan"))
    share = torch.zeros(len(names))
    eye = torch.eye(len(mat), dtype=torch.bool)
    for i in range(len(names)):
        share[i] = mat[gid == i].mean(0).norm() / mat[gid == i].norm(dim=-1).mean().clamp_min(1e-12)
        for j in range(len(names)):
            sel = (gid[:, None] == i) & (gid[None, :] == j) & ~eye
            if bool(sel.any()):
                gm[i, j] = cos[sel].mean()
    return ConsistencyResult({"cosine": cos, "group_mean": gm, "mean_share": share},
                             {"cosine": ("source", "source"), "group_mean": ("group", "group"), "mean_share": ("group",)},
                             {"source": sources, "group": names, "source_group": groups}, {"recipe": "o_vector_consistency"})


class AnalogyResult(Result):
    """The word2vec test: does o point along answer - argument?

    Tensors: ``cosine`` ``[batch]`` = cos(o, v[answer_i] - v[argument_i]); ``shuffled``
    ``[shuffle, batch]`` = cos(o, v[answer_pi(i)] - v[argument_i]) for random pairings pi
    (the control: does the pairing matter?); ``mean_difference_cosine`` (scalar) = cos(o, mean_i of
    the differences), to compare with ``random_cosine_scale`` = 1/sqrt(d_model), the typical
    |cos| of unrelated directions;
    with ``space="unembed"`` also ``logit_diff`` ``[batch]`` = o . (u_answer - u_argument),
    the direct effect of o on the logit difference (before the final LayerNorm).
    """

    kind = "o_analogy"

    def summary(self) -> dict[str, float]:
        cos, shuf = self.tensors["cosine"], self.tensors["shuffled"]
        out = {"cosine_mean": float(cos.mean()), "shuffled_mean": float(shuf.mean()),
               "fraction_above_shuffled": float((cos > shuf.mean(0)).float().mean()),
               "mean_difference_cosine": float(self.tensors["mean_difference_cosine"]),
               "random_cosine_scale": 1.0 / math.sqrt(int(self.meta.get("d_model", 1)))}
        if "logit_diff" in self.tensors:
            out["logit_diff_mean"] = float(self.tensors["logit_diff"].mean())
        return out


def o_vector_analogy(model: Model, o, examples, *, space: str = "unembed", n_shuffles: int = 20, seed: int = 0) -> AnalogyResult:
    """Compare o with the differences ``answer - argument`` of embedding or unembedding vectors.

    Args:
        model: the model the vector belongs to.
        o: an ``OVector`` holding one vector (or a tensor ``[d_model]``).
        examples: a task name, ``Example`` objects or a ``Batch``; multi-token and unknown
            items are dropped (the report is in ``meta``).
        space: ``unembed`` (columns of ``W_U``) or ``embed`` (rows of ``W_E``).
        n_shuffles: random re-pairings of answers and arguments for the control.
        seed: seeds the shuffles.

    Returns:
        An ``AnalogyResult`` (``summary()``: mean cosine vs the shuffled control).
    """
    check_choice(space, ("unembed", "embed"), "space")
    if not isinstance(n_shuffles, int) or n_shuffles < 1:
        raise LensarithError(f"n_shuffles must be a positive int, got {n_shuffles!r}")
    o = as_o(model, o)
    vec = o.single().float().cpu()
    batch = task_batch(model, examples, n=None, seed=seed, name="examples")
    if batch.answer_ids is None or batch.argument_ids is None or bool((batch.argument_ids < 0).any()):
        raise LensarithError("examples need both answers and arguments (Example.answer, Example.argument)")
    with torch.no_grad():
        table = readout.vocab_vectors(model, space).detach().float().cpu()
    ans, arg = table[batch.answer_ids], table[batch.argument_ids]

    def cos(x: Tensor) -> Tensor:
        return (x @ vec) / (x.norm(dim=-1) * vec.norm()).clamp_min(1e-12)

    gen = random.Random(seed)
    shuffled = []
    for _ in range(n_shuffles):
        perm = list(range(len(batch)))
        gen.shuffle(perm)
        shuffled.append(cos(ans[perm] - arg))
    diff = ans - arg
    tensors = {"cosine": cos(diff), "shuffled": torch.stack(shuffled),
               "mean_difference_cosine": cos(diff.mean(0, keepdim=True))[0]}
    axes = {"cosine": ("batch",), "shuffled": ("shuffle", "batch"), "mean_difference_cosine": ()}
    if space == "unembed":
        tensors["logit_diff"], axes["logit_diff"] = diff @ vec, ("batch",)
    meta = provenance(model, recipe="o_vector_analogy", space=space, n_shuffles=n_shuffles, seed=seed,
                      report=batch.report, o={k: v for k, v in o.meta.items() if k != "sources"})
    prompts = [e.prompt for e in batch.examples] if batch.examples else []
    return AnalogyResult(tensors, axes, {"batch": prompts}, meta)
