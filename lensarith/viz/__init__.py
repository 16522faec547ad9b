"""Pictures of results. Plotting libraries and circuitsvis's bundle load only when a renderer runs.

- ``heatmap``: patching results as layer × position / layer × head heatmaps (PNG).
- ``circuits``: offline circuitsvis widgets (logit-lens tables, coloured tokens, attention).
- ``plots``: matplotlib figures (reciprocal-rank curves, transplant and ablation curves).
- ``report``: one self-contained HTML report.
- ``vectors``: the vector bench's figures (``bench_figure``, ``sweep_figure``; also in ``lensarith.vectors``).
"""

from . import circuits as circuits
from . import plots as plots
from . import report as report
from . import vectors as vectors
from .circuits import Widget as Widget
from .circuits import attention_patterns as attention_patterns
from .circuits import colored_tokens as colored_tokens
from .circuits import init_notebook as init_notebook
from .circuits import logit_lens_table as logit_lens_table
from .circuits import patch_tokens as patch_tokens
from .heatmap import heatmap as heatmap
from .report import Report as Report

__all__ = ["circuits", "plots", "report", "vectors", "Widget", "attention_patterns", "colored_tokens", "init_notebook",
           "logit_lens_table", "patch_tokens", "heatmap", "Report"]
