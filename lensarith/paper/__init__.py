"""The paper's figures (Merullo, Eickhoff & Pavlick 2023) on any model: ``reproduce``.

- ``reproduce`` / ``ReproduceConfig``: Figs 2-7, one summary, one offline report;
- ``lensarith.paper.steps``: one function per figure (typed inputs -> typed result) that ``reproduce`` lists;
- ``lensarith.paper.verdicts``: the "reproduced?" column from stated criteria (pure functions);
- ``lensarith.paper.stats``: seeded bootstrap confidence intervals (``bootstrap_ci``);
- ``lensarith.paper.baselines``: Fig 5's transplant against control, random vectors and zeroed MLPs;
- ``lensarith.paper.tokenization``: the paper's BOS convention for hub models.
"""

from .reproduce import ReproduceConfig as ReproduceConfig
from .reproduce import format_summary as format_summary
from .reproduce import reproduce as reproduce
from .stats import bootstrap_ci as bootstrap_ci

__all__ = ["reproduce", "ReproduceConfig", "format_summary", "bootstrap_ci"]
