"""lensarith's one bootstrap: seeded percentile confidence intervals over examples.

The percentile bootstrap: resample the examples with replacement ``n`` times, compute the
statistic on each resample, and take the ``(1 - level) / 2`` and ``(1 + level) / 2``
quantiles. The resamples come from ``numpy.random.default_rng(seed)``, so the same values
and seed always give the same interval. ``generator="torch"`` draws them from a seeded
``torch.Generator`` instead and averages them in torch (the mean only): the intervals of
``lensarith.vectors`` (``bootstrap_ci`` there, ``VectorResult.ci``, the vector bench), kept
as they were published.

A leaf: imports nothing of the package but ``_errors``; ``lensarith.paper.stats`` re-exports it
and ``lensarith.vectors.bootstrap_ci`` wraps it.

Example:
    >>> lo, hi = bootstrap_ci([0, 1, 1, 1, 0, 1, 1, 1])
    >>> 0.0 <= lo <= 0.75 <= hi <= 1.0
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._errors import LensarithError, check_choice, check_int

__all__ = ["bootstrap_ci", "bootstrap_distribution", "bootstrap_columns", "percentile_ci", "uniform_mrr", "mean",
           "N_RESAMPLES", "LEVEL", "GENERATORS"]

#: resamples per interval and the interval's coverage, as used throughout the report
N_RESAMPLES = 1000
LEVEL = 0.95
#: where the resamples come from: numpy's ``default_rng(seed)`` or a seeded ``torch.Generator``
GENERATORS = ("numpy", "torch")


def mean(values: np.ndarray) -> float:
    """The mean over the first axis (the default statistic)."""
    return float(np.mean(values, axis=0))


def _as_array(values: Any, name: str = "values") -> np.ndarray:
    """Values as a float array with examples on the first axis; rejects empty or non-finite input."""
    if hasattr(values, "detach"):
        values = values.detach().double().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise LensarithError(f"{name} must be numbers (a list, an array or a tensor), got {type(values).__name__}") from None
    if arr.ndim == 0:
        raise LensarithError(f"{name} must hold one value per example (a list or an array), got the scalar {values!r}")
    if arr.shape[0] == 0:
        raise LensarithError(f"{name} is empty: a bootstrap needs at least one example")
    if not np.isfinite(arr).all():
        raise LensarithError(f"{name} holds NaN or inf values: drop them before bootstrapping")
    return arr


def _check(n: int, seed: int, level: float) -> None:
    check_int(n, "n", minimum=1, hint="(resamples, e.g. 1000)")
    check_int(seed, "seed")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise LensarithError(f"level must be a number strictly between 0 and 1 (e.g. 0.95), got {level!r}")


def _indices(n_examples: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_examples, size=(n, n_examples))


def bootstrap_distribution(values: Sequence[float] | np.ndarray | Any, stat: Callable[[np.ndarray], float] = mean, *,
                           n: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """The statistic on ``n`` resamples of the examples (the first axis of ``values``).

    Args:
        values: one value per example (``[N]``), or one row per example (``[N, k]``: e.g.
            correctness before and after an ablation, resampled together).
        stat: maps a resample (same shape as ``values``) to a number; default the mean.
        n: number of resamples.
        seed: seeds the resampling.

    Returns:
        ``[n]`` array of the statistic.
    """
    arr = _as_array(values)
    _check(n, seed, 0.5)
    if not callable(stat):
        raise LensarithError(f"stat must be a function of the resampled values, got {stat!r}")
    idx = _indices(arr.shape[0], n, seed)
    if stat is mean and arr.ndim == 1:
        return arr[idx].mean(axis=1)
    return np.array([float(stat(arr[row])) for row in idx])


def percentile_ci(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap samples."""
    _check(1, 0, level)
    samples = _as_array(samples, "samples")
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _torch_ci(arr: np.ndarray, n: int, seed: int, level: float) -> tuple[float, float]:
    """The mean's interval with resamples from ``torch.Generator().manual_seed(seed)``, averaged in torch."""
    import torch

    x = torch.from_numpy(arr)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, x.numel(), (n, x.numel()), generator=gen)
    stats = x[idx].mean(-1)
    alpha = (1 - level) / 2
    lo, hi = torch.quantile(stats, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return float(lo), float(hi)


def bootstrap_ci(values: Sequence[float] | np.ndarray | Any, stat: Callable[[np.ndarray], float] = mean, n: int = N_RESAMPLES,
                 seed: int = 0, *, level: float = LEVEL, generator: str = "numpy") -> tuple[float, float]:
    """A percentile bootstrap confidence interval of ``stat(values)`` over examples.

    Args:
        values: one value per example (``[N]``; 0/1 for a rate), or one row per example.
        stat: the statistic (default the mean; e.g. a rate, an MRR).
        n: resamples (default 1000).
        seed: seeds the resampling (same inputs and seed, same interval).
        level: coverage (default 0.95).
        generator: ``numpy`` (the report's intervals) or ``torch`` (``lensarith.vectors``'s:
            the mean of one value per example, resampled with a seeded ``torch.Generator``).

    Returns:
        ``(lo, hi)``. A single example gives ``(value, value)``.

    Raises:
        LensarithError: empty values, NaN/inf, a bad ``n``, ``seed`` or ``level``.

    Example:
        >>> bootstrap_ci([1, 1, 1])
        (1.0, 1.0)
    """
    _check(n, seed, level)
    check_choice(generator, GENERATORS, "generator")
    if generator == "torch":
        arr = _as_array(values)
        if stat is not mean or arr.ndim != 1:
            raise LensarithError("generator='torch' bootstraps the mean of one value per example: give values [N] "
                                 "and the default stat, or use generator='numpy'")
        return _torch_ci(arr, n, seed, level)
    return percentile_ci(bootstrap_distribution(values, stat, n=n, seed=seed), level)


def bootstrap_columns(values: Any, *, n: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Intervals of the column means of ``values [N, k]`` (e.g. MRR per layer), one resampling
    of the examples shared by every column.

    Returns:
        ``(lo [k], hi [k])``.
    """
    arr = _as_array(values)
    if arr.ndim != 2:
        raise LensarithError(f"values must be [examples, columns], got shape {arr.shape}")
    _check(n, seed, level)
    idx = _indices(arr.shape[0], n, seed)
    samples = arr[idx].mean(axis=1)  # [n, k]
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def uniform_mrr(vocab_size: int) -> float:
    """The mean reciprocal rank a uniformly random ranking over ``vocab_size`` tokens gives:
    ``H(V) / V`` (the harmonic number over V), e.g. 0.0019 for 4,683 tokens."""
    check_int(vocab_size, "vocab_size", minimum=1)
    return float(np.sum(1.0 / np.arange(1, vocab_size + 1)) / vocab_size)
