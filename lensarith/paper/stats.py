"""Bootstrap confidence intervals over examples, seeded, for every rate the report prints.

lensarith's one bootstrap lives in ``lensarith._stats`` (a leaf that ``lensarith.vectors`` can use
too); this module re-exports it under the name the report and its docs use.

Example:
    >>> lo, hi = bootstrap_ci([0, 1, 1, 1, 0, 1, 1, 1])
    >>> 0.0 <= lo <= 0.75 <= hi <= 1.0
    True
"""

from .._stats import LEVEL as LEVEL
from .._stats import N_RESAMPLES as N_RESAMPLES
from .._stats import bootstrap_ci as bootstrap_ci
from .._stats import bootstrap_columns as bootstrap_columns
from .._stats import bootstrap_distribution as bootstrap_distribution
from .._stats import mean as mean
from .._stats import percentile_ci as percentile_ci
from .._stats import uniform_mrr as uniform_mrr

__all__ = ["bootstrap_ci", "bootstrap_distribution", "bootstrap_columns", "percentile_ci", "uniform_mrr", "mean",
           "N_RESAMPLES", "LEVEL"]
