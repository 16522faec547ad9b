"""``lensarith.paper.stats``: seeded percentile-bootstrap intervals over examples."""

import numpy as np
import pytest
import torch

import lensarith as la
from lensarith.paper.stats import (bootstrap_ci, bootstrap_columns, bootstrap_distribution, percentile_ci,
                                   uniform_mrr)


def test_interval_holds_the_mean_and_is_seeded():
    values = np.random.default_rng(1).random(200)
    lo, hi = bootstrap_ci(values)
    assert lo < values.mean() < hi and hi - lo < 0.2
    assert bootstrap_ci(values) == (lo, hi)  # same seed, same interval
    assert bootstrap_ci(values, seed=1) != (lo, hi)
    assert bootstrap_ci(list(values)) == bootstrap_ci(torch.tensor(values)) == (lo, hi)


def test_a_rate_interval_matches_the_binomial_spread():
    values = [1] * 60 + [0] * 40  # rate 0.6, n=100: normal approximation +-1.96*sqrt(.24/100) = +-0.096
    lo, hi = bootstrap_ci(values, n=4000)
    assert lo == pytest.approx(0.6 - 0.096, abs=0.02) and hi == pytest.approx(0.6 + 0.096, abs=0.02)


def test_more_examples_give_narrower_intervals_and_constants_none():
    small = bootstrap_ci([0, 1] * 10)
    large = bootstrap_ci([0, 1] * 500)
    assert large[1] - large[0] < small[1] - small[0]
    assert bootstrap_ci([0.3] * 7) == (pytest.approx(0.3), pytest.approx(0.3))
    assert bootstrap_ci([0.5]) == (0.5, 0.5)


def test_level_widens_the_interval():
    values = np.arange(50.0)
    a, b = bootstrap_ci(values, level=0.5), bootstrap_ci(values, level=0.99)
    assert b[0] < a[0] < a[1] < b[1]


def test_custom_statistic_over_rows():
    rows = np.array([[1, 1]] * 50 + [[1, 0]] * 50)  # accuracy 1.0 before, 0.5 after: relative drop 0.5

    def drop(r):
        return 1 - r[:, 1].mean() / r[:, 0].mean()

    lo, hi = bootstrap_ci(rows, stat=drop)
    assert lo < 0.5 < hi
    samples = bootstrap_distribution(rows, drop, n=200, seed=3)
    assert samples.shape == (200,) and percentile_ci(samples) == pytest.approx(
        tuple(np.quantile(samples, [0.025, 0.975])))
    assert bootstrap_ci(np.arange(9.0), stat=np.median)[0] <= 4 <= bootstrap_ci(np.arange(9.0), stat=np.median)[1]


def test_columns_share_one_resampling():
    x = np.random.default_rng(0).random((80, 1))
    lo, hi = bootstrap_columns(np.hstack([x, x + 1.0]))
    assert lo.shape == hi.shape == (2,)
    assert lo[1] - lo[0] == pytest.approx(1.0) and hi[1] - hi[0] == pytest.approx(1.0)
    assert (lo[0], hi[0]) == pytest.approx(bootstrap_ci(x[:, 0]))


@pytest.mark.parametrize("values, match", [([], "values is empty"), ([1.0, float("nan")], "NaN or inf"),
                                           (3.0, "one value per example")])
def test_bad_values_raise(values, match):
    with pytest.raises(la.LensarithError, match=match):
        bootstrap_ci(values)


def test_bad_settings_raise():
    with pytest.raises(la.LensarithError, match="n must be a positive int"):
        bootstrap_ci([1, 2], n=0)
    with pytest.raises(la.LensarithError, match="level must be a number strictly between 0 and 1"):
        bootstrap_ci([1, 2], level=1.5)
    with pytest.raises(la.LensarithError, match=r"values must be \[examples, columns\]"):
        bootstrap_columns([1.0, 2.0])


def test_uniform_mrr():
    assert uniform_mrr(1) == 1.0
    assert uniform_mrr(2) == pytest.approx(0.75)
    assert uniform_mrr(4683) == pytest.approx(0.00193, abs=1e-5)
    assert uniform_mrr(50257) < 0.0003
